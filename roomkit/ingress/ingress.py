"""``Ingress``: inbound messages from NATS JetStream into a kit's rooms.

Other services publish ``InboundEnvelope`` JSON on ``<prefix>.in.<channel_id>`` (see
``roomkit.ingress.wire``); a JetStream stream keeps them and a durable pull consumer hands them
to ``kit.process_inbound``::

    async with RoomKit(log=log) as kit, Ingress(kit, "nats://127.0.0.1:4222") as ingress:
        await ingress.wait()                  # or: await serve_ingress(kit, url)

What it guarantees:

- **Acknowledged after commit.** A message is acknowledged only once ``process_inbound``
  returned (its event is in the log), refused messages once their dead letter is stored.
  Anything else is redelivered by JetStream, and the room's idempotency keys (rebuilt from the
  log after a restart) make the redelivery record nothing twice.
- **Per-room order.** Each message gets a lane key (the room id when the publisher names the
  room, else the channel id: see ``default_lane_key``), hashed into one of ``lanes``
  sequential lanes (default ``max_in_flight``, at most ``DEFAULT_MAX_LANES``); lanes run
  concurrently, at most ``max_in_flight`` messages are held at a time. Transient failures are
  retried in place (JetStream is told the message is in progress), never put back behind
  later messages of the same room. Messages are fetched in stream order: a room whose
  backlog fills ``max_in_flight`` (a slow hook, a failure retried) holds up the fetching of
  every other room's messages until it works through it, and a room sharing its lane waits
  for the whole backlog.
- **Order after a crash too** (with work-queue retention, the default). JetStream redelivers
  what a dead process held only after ``ack_wait``, behind newer messages, so on start the
  ingress first re-reads the consumer's unacknowledged range from the stream and processes it
  in order; only then does it fetch new messages. Each message re-read so is deleted from the
  stream once recorded or dead-lettered (what its acknowledgement would have done), so that
  JetStream does not deliver it again. After a reconnection (the server restarted,
  the link broke) it does the same once the messages it holds are finished: deliveries lost
  on the way are not overtaken. That range is only unacknowledged messages when acknowledged
  ones are deleted, so a stream with another retention (``work_queue=False``, or an
  operator's) is not re-read: JetStream redelivers after ``ack_wait``, possibly behind newer
  messages, and idempotency keys still keep anything from being recorded twice.
- **Nothing lost silently.** A payload that does not decode, an unknown channel, an invalid or
  unknown room id, a missing idempotency key, or a message that keeps failing: it is published
  with the reason to ``<prefix>.dlq.<channel_id>`` (stored in the ``dlq_stream``), answered
  with an error reply when the publisher asked for one, then terminated; the ingress goes on.
  No single message can stop the consumer: whatever fails while reading one refuses it.
- **No crash loop.** A message the process died with in hand is processed again after the
  restart; one it died with ``max_crashes`` more times is dead-lettered (``"failed"``)
  instead (see ``roomkit.ingress._crashes``). Such messages are processed one at a time, so
  that a death counts against the one in hand, not a harmless message beside it: after a
  crash, what the last process held is read again before anything new is fetched, and goes
  one at a time, so new messages wait for it (64 slow messages held at the crash: as many
  times their processing time). A stop during that recovery hands back what is left of it,
  read again at the next start. What a graceful stop handed back comes back as redeliveries,
  one at a time too, while messages delivered for the first time go on side by side, behind
  those of their own room.
- **Graceful stop.** Leaving ``async with`` normally (or ``stop()``) stops fetching and lets
  the lanes finish what they hold (up to ``drain_timeout``); messages still held are handed
  back to JetStream (nak, no delay: another process may take them at once), and with each
  the messages of its room behind it, which would otherwise be recorded before it.
  Cancellation does the same without the drain.

Ordering holds for one serving process per durable consumer; several processes sharing a
durable share its messages, and the rooms' single-writer rule still keeps every room's log
consistent, but two messages of one room may then be processed by different processes.
"""

from __future__ import annotations

import contextlib
import email.header
import logging
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.abc
import nats.errors
import nats.js.errors
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg, RetentionPolicy, StorageType
from nats.js.client import JetStreamContext

from actors import check_count, check_finite_seconds, check_seconds
from eventlog._nats_setup import client_or_servers, require_asyncio
from roomkit.ingress._crashes import CrashLedger
from roomkit.ingress._handler import HandlerSettings, MessageHandler
from roomkit.ingress._inflight import Inflight, pause
from roomkit.ingress._nats import (
    close_quietly,
    connect,
    ensure_consumer,
    ensure_stream,
    is_transient,
)
from roomkit.ingress._recovery import recover
from roomkit.ingress._work import (
    IngressStats,
    LaneKey,
    WorkItem,
    default_lane_key,
    prepare,
    refused,
)
from roomkit.ingress.errors import IngressError, IngressUnavailable
from roomkit.ingress.wire import IngressErrorCode, check_jetstream_name, check_subject_prefix

if TYPE_CHECKING:
    from roomkit.core.framework import RoomKit

__all__ = ["DEFAULT_MAX_LANES", "Ingress", "serve_ingress"]

logger = logging.getLogger("roomkit.ingress")

# A fetch that failed (server away) is retried after this long.
_FETCH_RETRY_DELAY = 1.0

#: The most lanes (tasks) ``lanes=None`` makes: more lanes than rooms at work buy nothing.
DEFAULT_MAX_LANES = 256


class Ingress:
    """Consumes inbound messages from JetStream into ``kit`` (see the module docs).

    An async context manager owning its tasks: ``async with Ingress(kit, url) as ingress``.
    The kit should be running (``async with kit``); it starts on first use otherwise.

    Args:
        kit: the kit whose ``process_inbound`` records the messages.
        nats_url: the NATS URL(s) to connect to, or a connected nats-py client (left open).
            The ingress's own connection (from a URL) takes a publisher's ``Status`` header
            for what it is; a plain nats-py client reads it as the server's status, and its
            fetches skip (``Status: 404``) or fail on (``Status: 503``) such a message.
        subject_prefix: subjects are ``<prefix>.in.<channel_id>`` and ``<prefix>.dlq.<...>``.
        stream_name: the JetStream stream of inbound messages (created if missing; an existing
            one is used as it is, if it captures ``<prefix>.in.>``).
        durable: the durable pull consumer's name (its position survives restarts).
        dlq_stream: the JetStream stream keeping dead letters; ``None`` publishes them on core
            NATS only (then only live subscribers see them).
        max_in_flight: at most this many messages are held (fetched, not yet acknowledged).
        lanes: sequential lanes (rooms processed concurrently); default ``max_in_flight``, at
            most ``DEFAULT_MAX_LANES``.
        lane_key: the ordering key of a message (default: room id, else channel id). If it
            raises or returns no str for a message, that message gets the default key (a
            warning is logged); it never stops the ingress.
        require_idempotency_key: dead-letter messages without an ``idempotency_key``.
        storage: ``"file"`` or ``"memory"`` for the streams this ingress creates.
        duplicate_window: seconds during which JetStream drops a re-published ``Nats-Msg-Id``.
        work_queue: create the inbound stream with work-queue retention (an acknowledged
            message is deleted); ``False`` keeps them (limits retention), and then a restart
            does not re-read the unacknowledged range first (see "Order after a crash").
        ack_wait: seconds JetStream waits for an acknowledgement before redelivering; held
            messages are kept alive with "in progress" acks every third of it.
        fetch_batch: messages asked for per fetch.
        fetch_timeout: how long one fetch (a long poll) waits for messages.
        max_attempts: a message whose processing fails this many times (errors other than an
            unreachable log, which is retried for as long as the ingress runs; a conflict with
            another writer of the room, ``RoomConflictError``, counts a tenth of a time) is
            dead-lettered with ``"failed"``.
        max_crashes: a message the ingress was processing when its process died this many
            times (counted from its first redelivery; see ``roomkit.ingress._crashes``) is
            dead-lettered with ``"failed"`` instead of processed again, so that a message
            that kills the process cannot crash-loop it. The counts live in the KeyValue
            bucket ``ROOMKIT_INGRESS_CRASHES`` (created if missing). ``None``: no limit, no
            bucket.
        request_timeout: bound of each request to NATS.
        connect_timeout: bound of the initial connection.
        drain_timeout: how long a graceful stop lets the lanes finish what they hold.
        connect_options: more keyword arguments for ``nats.connect`` (TLS, credentials, ...).

    Raises:
        TypeError: a count or a duration is not a number (counts: not an integer), or
            ``nats_url`` is neither URLs nor a client.
        ValueError: a setting is out of range: a name JetStream refuses (or ``dlq_stream``
            equal to ``stream_name``), a count below 1, a duration NATS is given that is not
            positive and finite (``duplicate_window`` may be 0, the server's default window),
            a negative ``drain_timeout``.

    Raises (on entering):
        IngressUnavailable: NATS could not be reached, or JetStream did not answer.
        IngressError: JetStream refused the streams or the consumer, or the event loop is not
            asyncio's (nats-py runs on asyncio only).
    """

    def __init__(
        self,
        kit: RoomKit,
        nats_url: str | Sequence[str] | NatsClient = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "roomkit",
        stream_name: str = "ROOMKIT_IN",
        durable: str = "roomkit-ingress",
        dlq_stream: str | None = "ROOMKIT_DLQ",
        max_in_flight: int = 64,
        lanes: int | None = None,
        lane_key: LaneKey = default_lane_key,
        require_idempotency_key: bool = True,
        storage: Literal["file", "memory"] = "file",
        duplicate_window: float = 120.0,
        work_queue: bool = True,
        ack_wait: float = 30.0,
        fetch_batch: int = 64,
        fetch_timeout: float = 1.0,
        max_attempts: int = 10,
        max_crashes: int | None = 3,
        request_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        drain_timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_subject_prefix(subject_prefix)
        check_jetstream_name(stream_name, "stream_name")
        check_jetstream_name(durable, "durable")
        if dlq_stream is not None:
            check_jetstream_name(dlq_stream, "dlq_stream")
            if dlq_stream == stream_name:
                raise ValueError(f"dlq_stream and stream_name are both {stream_name!r}")
        # Checked here: each one is first used in a task of the running ingress, or by NATS.
        max_in_flight = check_count("max_in_flight", max_in_flight)
        lanes = check_count("lanes", lanes, none=True)
        fetch_batch = check_count("fetch_batch", fetch_batch)
        max_attempts = check_count("max_attempts", max_attempts)
        max_crashes = check_count("max_crashes", max_crashes, none=True)
        if (
            max_in_flight < 1
            or (lanes is not None and lanes < 1)
            or max_attempts < 1
            or (max_crashes is not None and max_crashes < 1)
        ):
            raise ValueError(
                "max_in_flight, lanes, max_attempts and max_crashes must be at least 1"
            )
        duplicate_window = check_finite_seconds("duplicate_window", duplicate_window, zero=True)
        ack_wait = check_finite_seconds("ack_wait", ack_wait)
        fetch_timeout = check_finite_seconds("fetch_timeout", fetch_timeout)
        request_timeout = check_finite_seconds("request_timeout", request_timeout)
        connect_timeout = check_finite_seconds("connect_timeout", connect_timeout)
        drain_timeout = check_seconds("drain_timeout", drain_timeout)
        if not drain_timeout >= 0:
            raise ValueError(f"drain_timeout must be >= 0 (inf: no bound), got {drain_timeout!r}")
        if storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', not {storage!r}")
        self.kit = kit
        self.subject_prefix = subject_prefix
        self.stream_name = stream_name
        self.durable = durable
        self.dlq_stream = dlq_stream
        self.max_in_flight = max_in_flight
        self.lanes = lanes if lanes is not None else min(max_in_flight, DEFAULT_MAX_LANES)
        self.require_idempotency_key = require_idempotency_key
        self.stats = IngressStats()
        # A URL of another type (a port number) is refused here, by name.
        self._client, servers = client_or_servers(nats_url)
        self._servers = None if self._client is not None else servers
        self._lane_key = lane_key
        self._storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self._duplicate_window = duplicate_window
        self._work_queue = work_queue
        self._ack_wait = ack_wait
        self._fetch_batch = max(1, min(fetch_batch, max_in_flight))
        self._fetch_timeout = fetch_timeout
        self._max_attempts = max_attempts
        self._max_crashes = max_crashes
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._drain_timeout = drain_timeout
        self._connect_options = dict(connect_options or {})
        self._in_base = f"{subject_prefix}.in."
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._handler: MessageHandler | None = None
        self._fetch_scope: anyio.CancelScope | None = None
        self._direct = True
        self._recoverable = True
        self._incarnation = ""
        self._tg: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._inflight = Inflight(max_in_flight)
        self._senders: list[MemoryObjectSendStream[WorkItem]] = []
        self._stopping = anyio.Event()
        self._consumed = anyio.Event()
        self._lanes_done = anyio.Event()
        self._lanes_running = 0
        self._failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def subject(self) -> str:
        """The subjects consumed: ``<prefix>.in.>``."""
        return f"{self._in_base}>"

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an Ingress runs once; make a new one")
        require_asyncio("the NATS ingress", IngressError)
        self._entered = True
        nc = self._client
        if nc is None:
            assert self._servers is not None
            nc = await connect(
                self._servers,
                connect_timeout=self._connect_timeout,
                request_timeout=self._request_timeout,
                name="roomkit-ingress",
                options=self._connect_options,
            )
        self._nc = nc
        try:
            self._js = nc.jetstream(timeout=self._request_timeout)
            await self._setup()
        except BaseException:
            if self._client is None:
                with anyio.CancelScope(shield=True):
                    await close_quietly(nc)
            raise
        self._handler = MessageHandler(
            self.kit,
            nc,
            self._js,
            HandlerSettings(
                subject_prefix=self.subject_prefix,
                stream_name=self.stream_name,
                dlq_stream=self.dlq_stream,
                max_attempts=self._max_attempts,
                request_timeout=self._request_timeout,
            ),
            self.stats,
            self._inflight,
            self._stopping,
            on_fatal=self._fail,
            ensure_dlq=self._ensure_dlq,
            crashes=None
            if self._max_crashes is None
            else CrashLedger(
                self._js,
                self.stream_name,
                self.durable,
                self._storage,
                self._request_timeout,
                self._max_crashes,
            ),
        )
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        receivers: list[MemoryObjectReceiveStream[WorkItem]] = []
        for _ in range(self.lanes):
            # Never full: the held messages are bounded by max_in_flight (Inflight), but for
            # the few a fetch may hand over beyond it (see _fetch_once).
            send, receive = anyio.create_memory_object_stream[WorkItem](math.inf)
            self._senders.append(send)
            receivers.append(receive)
        self._lanes_running = len(receivers)
        for index, receive in enumerate(receivers):
            tg.start_soon(self._lane, receive, name=f"ingress lane {index}")
        tg.start_soon(self._consume, name="ingress consumer")
        tg.start_soon(self._keep_alive, name="ingress keep-alive")
        logger.info(
            "ingress: consuming %s (stream %s, durable %s), %d in flight over %d lanes",
            self.subject,
            self.stream_name,
            self.durable,
            self.max_in_flight,
            self.lanes,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg = self._tg
        assert tg is not None, "__aexit__ without __aenter__"
        self.stop()
        try:
            with anyio.CancelScope(shield=True):
                if exc_type is None:
                    await self._drain()
                tg.cancel_scope.cancel()
            # The body's own exception propagates from the caller's frame unchanged; passing
            # it to the task group would wrap it in an ExceptionGroup.
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._release_held()
                await self._close()

    def stop(self) -> None:
        """Ask for a graceful stop: no more fetches; ``wait()`` returns once fetching ended.

        Leaving ``async with`` then lets the lanes finish what they hold.
        """
        self._stopping.set()
        self._inflight.wake()  # a resync waiting for the lanes gives up
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()

    async def wait(self) -> None:
        """Wait until the ingress stops fetching (``stop()``, or the kit closed under it).

        Raises:
            KitClosedError: the kit was closed while the ingress ran.
            IngressUnavailable: the NATS connection was closed under the ingress.
        """
        await self._consumed.wait()
        if self._failure is not None:
            raise self._failure

    async def _drain(self) -> None:
        with anyio.move_on_after(self._drain_timeout) as scope:
            await self._consumed.wait()
            for send in self._senders:
                send.close()  # each lane finishes its queue, then ends
            await self._lanes_done.wait()
        if scope.cancelled_caught:
            logger.warning(
                "ingress: %d message(s) still held after the %.1f s drain; handing them back",
                len(self._inflight),
                self._drain_timeout,
            )

    async def _release_held(self) -> None:
        """Hand every message still held back to JetStream, for prompt redelivery."""
        if self._handler is None:
            return
        for item in self._inflight.items():
            await self._handler.settle(item, "nak")
            self.stats.released += 1

    async def _close(self) -> None:
        for send in self._senders:
            send.close()
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                with anyio.move_on_after(self._request_timeout):
                    await sub.unsubscribe()
            except nats.errors.Error as exc:
                logger.debug("ingress: unsubscribing: %r", exc)
        nc, self._nc = self._nc, None
        if nc is not None and self._client is None:
            await close_quietly(nc)

    def _fail(self, failure: BaseException) -> None:
        if self._failure is None:
            logger.error("ingress: stopping: %s", failure)
            self._failure = failure
        self.stop()

    # -- setup -------------------------------------------------------------------------------

    async def _ensure_dlq(self) -> None:
        """Create the dead-letter stream, or check the existing one (at start, and when a dead
        letter finds it gone: deleted by an operator, a memory stream after a restart)."""
        js = self._js
        if self.dlq_stream is None or js is None:
            return
        await ensure_stream(
            js,
            self.dlq_stream,
            f"{self.subject_prefix}.dlq.>",
            storage=self._storage,
            duplicate_window=self._duplicate_window,
            work_queue=False,
            timeout=self._request_timeout,
        )

    async def _setup(self) -> None:
        js = self._js
        assert js is not None
        info = await ensure_stream(
            js,
            self.stream_name,
            self.subject,
            storage=self._storage,
            duplicate_window=self._duplicate_window,
            work_queue=self._work_queue,
            timeout=self._request_timeout,
        )
        self._direct = bool(info.config.allow_direct)
        # Only then is the range above the ack floor exactly the unacknowledged messages.
        self._recoverable = info.config.retention == RetentionPolicy.WORK_QUEUE
        self._incarnation = info.created.isoformat() if info.created is not None else ""
        await self._ensure_dlq()
        self._sub = await ensure_consumer(
            js,
            self.stream_name,
            self.durable,
            self.subject,
            ack_wait=self._ack_wait,
            # Room for what a crashed process still holds while this one fetches.
            max_ack_pending=max(1000, 4 * self.max_in_flight),
            timeout=self._request_timeout,
        )

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        nc = self._nc
        assert nc is not None
        try:
            reconnects = nc.stats["reconnects"]
            await self._recover()
            while not self._stopping.is_set():
                if nc.stats["reconnects"] != reconnects:
                    reconnects = nc.stats["reconnects"]
                    await self._resync()
                else:
                    await self._fetch_once()
        finally:
            self._consumed.set()

    async def _resync(self) -> None:
        """After a reconnection: re-read what the server delivered but this ingress never got.

        Messages in flight toward it when the link (or the server) went down count as
        delivered for JetStream (see ``_recovery``). Once everything held is finished, the
        unacknowledged range is processed again in order, before new fetches.
        """
        logger.info("ingress: reconnected; finishing held messages, then re-reading the rest")
        await self._inflight.wait_empty(self._stopping)
        await self._recover()

    async def _fetch_once(self) -> None:
        sub = self._sub
        assert sub is not None
        wanted = await self._inflight.reserve(self._fetch_batch)
        msgs: list[Msg] = []
        try:
            # Stopping cancels a waiting fetch. A message the server sends to it meanwhile is
            # held by nobody: JetStream redelivers it after ack_wait, and a restart of this
            # ingress re-reads it at once (see _recover).
            with anyio.CancelScope() as self._fetch_scope:
                if self._stopping.is_set():
                    self._fetch_scope.cancel()
                msgs = await sub.fetch(wanted, timeout=self._fetch_timeout)
        except TimeoutError:
            pass  # nothing to do for now
        except nats.errors.ConnectionClosedError as exc:
            failure = IngressUnavailable("the NATS connection was closed under the ingress")
            failure.__cause__ = exc
            self._fail(failure)
        except (nats.errors.Error, OSError) as exc:
            await self._fetch_failed(exc)
        finally:
            # nats-py's fetch first hands over what an earlier fetch left in its queue (one
            # whose wait ended as the messages came: an event loop held up), however many
            # were asked for. Those come first in the stream's order: held, over the bound.
            if len(msgs) > wanted:
                self._inflight.hold_over(len(msgs) - wanted)
            else:
                self._inflight.unreserve(wanted - len(msgs))
        # _prepare never raises: every fetched message must be held (and settled). All are
        # held before any is sent: a fetch can return messages to an ingress already
        # cancelled (nats-py's wait can swallow the cancellation as they come), whose lanes
        # ended; those stay held, and leaving hands them back.
        items = [self._prepare(msg) for msg in msgs]
        for item in items:
            self._inflight.hold(item)
        for item in items:
            self._dispatch(item)

    async def _fetch_failed(self, exc: BaseException) -> None:
        await pause(self._stopping, _FETCH_RETRY_DELAY)
        if is_transient(exc) and await self._consumer_exists() is not False:
            logger.info("ingress: fetching failed (%r); retrying", exc)
            return
        # The consumer or the stream is gone (deleted by an operator, a memory stream after a
        # server restart; a fetch from a deleted consumer fails like an unavailable server):
        # create them again.
        logger.warning("ingress: fetching failed (%r); ensuring the stream and consumer", exc)
        old, self._sub = self._sub, None
        try:
            await self._setup()
        except IngressUnavailable as again:
            self._sub = old  # keep trying with what we had
            logger.info("ingress: %s; retrying", again)
            return
        except IngressError as fatal:  # e.g. the stream now exists with other subjects
            self._sub = old
            self._fail(fatal)
            return
        if old is not None:
            with (
                anyio.move_on_after(self._request_timeout),
                contextlib.suppress(nats.errors.Error),
            ):
                await old.unsubscribe()

    async def _consumer_exists(self) -> bool | None:
        """Whether the durable consumer exists (``None``: JetStream did not say)."""
        js = self._js
        assert js is not None
        try:
            with anyio.fail_after(self._request_timeout):
                await js.consumer_info(self.stream_name, self.durable)
        except nats.js.errors.NotFoundError:
            return False
        except (TimeoutError, nats.errors.Error):
            return None
        return True

    def _prepare(self, msg: Msg) -> WorkItem:
        self.stats.received += 1
        try:
            metadata = msg.metadata
            seq: int | None = metadata.sequence.stream
            again = metadata.num_delivered > 1
        except Exception:  # a delivery without JetStream metadata: still processed
            seq, again = None, False
        return self._work(msg.subject, msg.data, msg.headers, seq, msg, again=again)

    def _work(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        seq: int | None,
        msg: Msg | None,
        *,
        again: bool,
    ) -> WorkItem:
        """``prepare``, guarded: whatever fails while reading one message refuses that message
        instead of stopping the consumer (and, after a restart, stopping it again)."""
        if not subject.isascii():
            # Bytes that are not UTF-8 (the client keeps them as lone surrogates, which no
            # text can be written with: not its dead letter's subject, nor its headers) are
            # read as U+FFFD, as recovery reads the subjects of the messages held.
            subject = subject.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        channel_token = subject[len(self._in_base) :]
        try:
            item = prepare(
                subject=subject,
                channel_token=channel_token,
                data=data,
                headers=headers,
                seq=seq,
                msg=msg,
                lane_key=self._lane_key,
                require_idempotency_key=self.require_idempotency_key,
            )
        except Exception as exc:
            logger.exception("ingress: reading %s #%s failed", subject, seq)
            item = refused(
                subject=subject,
                channel_token=channel_token,
                data=data,
                headers=headers,
                seq=seq,
                msg=msg,
                code=IngressErrorCode.BAD_PAYLOAD,
                detail=f"the message cannot be read: {exc!r}",
            )
        item.incarnation = self._incarnation
        item.again = again
        return item

    def _dispatch(self, item: WorkItem) -> None:
        """Give ``item`` (held) to its room's lane.

        No checkpoint between the fetch and here: a fetched message is always held (and so
        acknowledged or handed back), even if the ingress is cancelled right now. The lane
        has room: its buffer is unbounded (the held messages are bounded by Inflight).
        """
        # Any str: a lane_key's lone surrogate raised here, outside every guard, and stopped
        # the ingress (at every start after, the message being still there).
        lane = zlib.crc32(item.key.encode("utf-8", "surrogatepass")) % self.lanes
        try:
            self._senders[lane].send_nowait(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The lanes ended (the ingress cancelled): it raised out of the cancelled
            # ingress and left the batch's next messages unheld, pending until ack_wait.
            # Held, it is handed back as the ingress leaves.
            logger.debug("ingress: the lanes ended; %s is handed back", item.key)

    async def _lane(self, receive: MemoryObjectReceiveStream[WorkItem]) -> None:
        handler = self._handler
        assert handler is not None
        released: set[str] = set()  # keys of the messages handed back (the ingress stopping)
        try:
            async with receive:
                async for item in receive:
                    if item.key in released:
                        # Behind a message of its room handed back: recorded now, it would
                        # come before that one.
                        await handler.release(item)
                    elif not await handler.handle(item):
                        released.add(item.key)
        finally:
            self._lanes_running -= 1
            if self._lanes_running == 0:
                self._lanes_done.set()

    async def _keep_alive(self) -> None:
        # Tell JetStream that held messages are being worked on, so that a message waiting
        # behind a slow one of its room is not redelivered (and reordered) meanwhile.
        handler = self._handler
        assert handler is not None
        interval = self._ack_wait / 3
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            for item in self._inflight.items():
                if item.msg is not None and now - item.last_progress >= interval:
                    item.last_progress = now
                    await handler.settle(item, "in_progress")

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self) -> None:
        js, handler = self._js, self._handler
        assert js is not None and handler is not None
        if not self._recoverable:
            return  # see "Order after a crash" in the module docs
        await recover(
            js,
            self.stream_name,
            self.durable,
            direct=self._direct,
            timeout=self._request_timeout,
            stopping=self._stopping,
            to_item=self._prepare_raw,
            handle=handler.handle,
        )

    def _prepare_raw(self, raw: RawStreamMsg) -> WorkItem | None:
        subject = raw.subject or ""
        if not subject.startswith(self._in_base):
            return None
        self.stats.recovered += 1
        headers = {k: _header_text(v) for k, v in (raw.headers or {}).items()}
        return self._work(subject, raw.data or b"", headers, raw.seq, None, again=True)


def _header_text(value: object) -> str:
    """A header value of a message read back from the stream, as published. On a stream
    without direct gets, nats-py parses headers with the ``email`` package, which gives a
    value with bytes beyond ASCII (UTF-8 text) as an ``email.header.Header``: left out, a
    recovered message lost its reply inbox and its other non-ASCII headers."""
    if isinstance(value, str):
        return value
    if not isinstance(value, email.header.Header):
        return str(value)
    parts = email.header.decode_header(value)
    return b"".join(
        part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape")
        for part, _ in parts
    ).decode("utf-8", "replace")


async def serve_ingress(
    kit: RoomKit,
    nats_url: str | Sequence[str] | NatsClient = "nats://127.0.0.1:4222",
    *,
    subject_prefix: str = "roomkit",
    stream_name: str = "ROOMKIT_IN",
    durable: str = "roomkit-ingress",
    max_in_flight: int = 64,
    task_status: anyio.abc.TaskStatus[Ingress] = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run an ``Ingress`` for ``kit`` until cancelled (or ``stop()``-ed, then drained).

    ``await tg.start(serve_ingress, kit, url)`` returns the running ``Ingress`` once its
    stream and consumer exist (publishers may publish from then on).

    Args:
        kit: the kit whose ``process_inbound`` records the messages.
        nats_url: the NATS URL(s), or a connected nats-py client (left open).
        subject_prefix: consume ``<prefix>.in.>``.
        stream_name: the JetStream stream of inbound messages.
        durable: the durable consumer's name.
        max_in_flight: at most this many messages held at a time.
        task_status: set by ``TaskGroup.start`` (the running ``Ingress``).
        **options: more keyword arguments of ``Ingress``.

    Raises:
        IngressUnavailable: NATS could not be reached at start.
        IngressError: JetStream refused the stream or the consumer.
        KitClosedError: the kit was closed while the ingress ran.
    """
    async with Ingress(
        kit,
        nats_url,
        subject_prefix=subject_prefix,
        stream_name=stream_name,
        durable=durable,
        max_in_flight=max_in_flight,
        **options,
    ) as ingress:
        task_status.started(ingress)
        await ingress.wait()
