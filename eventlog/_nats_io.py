"""The JetStream requests ``NatsEventLog`` is made of, each bounded in time and retried.

Everything that talks to the server goes through ``JetStreamIO``: requests on one shared reply
inbox, single and batched direct gets (no server-side state: the cheap way to read a few
messages), and ``retrying``, which retries transient failures (server restarting, reconnecting
client) until a deadline and then raises ``LogUnavailable``. Bulk replays are in
``_nats_replay``, live subscriptions in ``_nats_subscription``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.client import JetStreamContext

from eventlog._nats_client import RoomKitNatsClient
from eventlog._nats_codec import StoredBatch, decode_batch
from eventlog._nats_errors import ServerBusy, is_transient, translate
from eventlog.errors import EventLogError, ForeignMessage

__all__ = [
    "DIRECT_BATCH",
    "MAX_BYTES",
    "JetStreamIO",
    "MessageHandler",
    "Stored",
    "decode_message",
    "decode_or_skip",
]

logger = logging.getLogger("roomkit.eventlog.nats")

T = TypeVar("T")

#: The most messages one batched direct get asks for.
DIRECT_BATCH = 1000
#: The most bytes one batched request asks for (bounds what waits in memory).
MAX_BYTES = 8 * 1024 * 1024

#: Receives (subject, stream sequence, payload); returns whether to go on.
MessageHandler = Callable[[str, int, bytes], bool]


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored message: its stream sequence, its batch and its ``Nats-Msg-Id``."""

    seq: int
    batch: StoredBatch
    msg_id: str | None

    @property
    def last_version(self) -> int:
        return self.batch.version + len(self.batch.events) - 1


class _BatchReply:
    """Collects the replies to one batched direct get (data messages, then an end marker)."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.status: str | None = None
        self.pending = 0
        self.done = anyio.Event()
        self.cut = False  # its connection was replaced: the rest of the replies never come

    def connection_replaced(self) -> None:
        self.cut = True
        self.done.set()

    def __call__(self, msg: Msg) -> None:
        if msg.data:
            self.messages.append(msg)
            return
        headers = msg.headers or {}
        self.status = headers.get("Status", "")
        self.pending = int(headers.get("Nats-Num-Pending", "0") or 0)
        self.done.set()


class JetStreamIO:
    """Bounded, retried requests on one JetStream stream.

    Args:
        nc: a connected client.
        js: its JetStream context (its timeout bounds management requests).
        stream_name: the JetStream stream holding the log.
        request_timeout: bound of one request.
        retry_timeout: how long transient failures are retried before ``LogUnavailable``.
        idle_heartbeat: heartbeat interval of push consumers (stall detection unit).
    """

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        *,
        stream_name: str,
        request_timeout: float,
        retry_timeout: float,
        idle_heartbeat: float,
    ) -> None:
        self.nc = nc
        self.js = js
        self.stream_name = stream_name
        self.request_timeout = request_timeout
        self.retry_timeout = retry_timeout
        self.idle_heartbeat = idle_heartbeat
        self._direct_subject = f"{js._prefix}.DIRECT.GET.{stream_name}"
        # One wildcard inbox for every batched direct get, demultiplexed by its last token,
        # instead of a subscription (and a nats-py task) per request.
        self._inbox = ""
        self._inbox_sub: NatsSubscription | None = None
        self._replies: dict[str, _BatchReply] = {}
        self._tokens = itertools.count()
        # The requests waiting for their reply, by token: (deadline, future, subject). One timer
        # handle for all of them (see request).
        self._requests: dict[str, tuple[float, asyncio.Future[Msg], str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._unlisten: Callable[[], None] | None = None
        # The last transient failure a retry waited out: why a connect, an append or a read
        # took long, for whoever timed it out (NatsEventLog.last_failure).
        self.last_failure: EventLogError | None = None

    async def start(self) -> None:
        """Subscribe the reply inbox (once connected)."""
        if self._inbox_sub is None:
            self._inbox = self.nc.new_inbox() + "."
            self._inbox_sub = await self.nc.subscribe(self._inbox + "*", cb=self._on_reply)
        if self._unlisten is None:
            self._unlisten = self.on_reconnect(self._fail_requests_in_flight)

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each reconnect of the connection, when it is the log's own
        (an app's client says nothing: its readers find out by their timeouts); returns what
        stops that."""
        if isinstance(self.nc, RoomKitNatsClient):
            return self.nc.on_reconnect(listener)
        return lambda: None

    async def stop(self) -> None:
        """Unsubscribe the reply inbox (the connection may belong to the application)."""
        unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            unlisten()
        sub, self._inbox_sub = self._inbox_sub, None
        if sub is not None and not self.nc.is_closed:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                logger.debug("unsubscribing the reply inbox: %r", exc)

    def listen(self, handler: _BatchReply) -> str:
        """Route the replies sent to a fresh reply subject to ``handler`` (a batched direct
        get's); return the subject.

        Only for replies published *to* that subject (requests, direct gets): messages a
        consumer delivers keep their original subject and need their own subscription.
        """
        token = str(next(self._tokens))
        self._replies[token] = handler
        return self._inbox + token

    def forget(self, reply: str) -> None:
        """Stop routing ``reply`` (a subject returned by ``listen``)."""
        self._replies.pop(reply[len(self._inbox) :], None)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox) :]
        request = self._requests.pop(token, None)
        if request is not None:
            future = request[1]
            if not future.done():
                future.set_result(msg)
            return
        handler = self._replies.get(token)
        if handler is not None:
            handler(msg)

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Msg:
        """Publish and wait for the one reply, at most ``request_timeout`` seconds.

        nats-py's ``request`` does the same with a fresh NUID and ``asyncio.wait_for`` per call.
        Here a counter token names the reply, and one timer handle serves every request in
        flight, instead of a handle and two closures per request (~2.5 µs, and left in the
        loop's timer heap until purged even once cancelled): with a thousand appends in flight,
        ~4% more appends per second.

        Raises:
            TimeoutError: no reply in time.
            nats.errors.NoRespondersError: nobody listens (JetStream not ready, no stream).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        token = str(next(self._tokens))
        deadline = loop.time() + self.request_timeout
        self._requests[token] = (deadline, future, subject)
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._expire, loop)
        try:
            await self.nc.publish(subject, payload, reply=self._inbox + token, headers=headers)
            msg = await future
        finally:
            self._requests.pop(token, None)
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError
        return msg

    def _fail_requests_in_flight(self) -> None:
        """The connection was replaced: a request written to the old one just before it died
        gets no reply, and waited its whole ``request_timeout`` (2 s after every server
        restart). Fail them all now, for ``retrying`` to send them again at once (safe: an
        append keeps its message id, a read changes nothing)."""
        requests, self._requests = self._requests, {}
        for _deadline, future, subject in requests.values():
            if not future.done():
                future.set_exception(
                    ConnectionError(f"no reply on {subject}: the connection was replaced")
                )
        for handler in list(self._replies.values()):  # batched direct gets: the same
            handler.connection_replaced()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the requests past their deadline; wake again at the nearest one left.

        Replies come in milliseconds, so this runs about once per ``request_timeout`` under
        steady traffic, and its scan of the requests in flight is cheap.
        """
        self._timer = None
        now = loop.time()
        nearest = math.inf
        for token, (deadline, future, subject) in list(self._requests.items()):
            if deadline <= now:
                del self._requests[token]
                if not future.done():
                    future.set_exception(TimeoutError(f"no reply on {subject} in time"))
            elif deadline < nearest:
                nearest = deadline
        if nearest != math.inf:
            self._timer = loop.call_at(nearest, self._expire, loop)

    # -- retries ---------------------------------------------------------------------------

    def deadline(self) -> float:
        return time.monotonic() + self.retry_timeout

    async def retrying(
        self, doing: str, attempt: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying transient failures until ``deadline``.

        Raises:
            LogUnavailable: still failing at the deadline.
            EventLogError: any other failure, translated.
        """
        if deadline is None:
            deadline = self.deadline()
        delay = 0.02
        while True:
            try:
                return await attempt()
            except EventLogError:
                raise
            except Exception as exc:
                failure = translate(exc, doing)
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise failure from exc
                self.last_failure = failure
                logger.debug("%s: %r; retrying in %.2f s", doing, exc, delay)
            # Backoff between attempts while the server or the connection comes back.
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- direct gets -----------------------------------------------------------------------

    async def _direct(self, subject: str, payload: bytes) -> Stored | None:
        msg = await self.request(subject, payload)
        headers = msg.headers or {}
        if not msg.data:
            status = headers.get("Status")
            if status == "404":
                return None
            raise _status_error(status, headers)
        seq = int(headers["Nats-Sequence"])
        batch = decode_message(msg.data, seq, headers.get("Nats-Subject"))
        return Stored(seq=seq, batch=batch, msg_id=headers.get("Nats-Msg-Id"))

    async def last_of(self, subject: str, deadline: float | None = None) -> Stored | None:
        """The last message on ``subject`` (one direct get), or ``None``."""
        return await self.retrying(
            f"reading the last message of {subject}",
            lambda: self._direct(f"{self._direct_subject}.{subject}", b""),
            deadline,
        )

    async def at(self, seq: int, deadline: float | None = None) -> Stored | None:
        """The message with stream sequence ``seq``, or ``None``."""
        payload = json.dumps({"seq": seq}).encode()
        return await self.retrying(
            f"reading message {seq}", lambda: self._direct(self._direct_subject, payload), deadline
        )

    async def last_seq(self) -> int:
        """The sequence of the stream's last message (0 if it is empty)."""
        info = await self.retrying(
            "reading the stream state", lambda: self.js.stream_info(self.stream_name)
        )
        return info.state.last_seq or 0

    async def next_of(self, subject: str, seq: int) -> Stored | None:
        """The first message on ``subject`` at or after stream sequence ``seq``, or ``None``."""
        payload = json.dumps({"seq": seq, "next_by_subj": subject}).encode()
        return await self.retrying(
            f"reading {subject} from {seq}", lambda: self._direct(self._direct_subject, payload)
        )

    async def _batch(self, subject: str | None, seq: int, count: int) -> _BatchReply:
        reply = _BatchReply()
        reply_subject = self.listen(reply)
        try:
            # max_bytes: the replies are collected before they are handled.
            request: dict[str, object] = {"seq": seq, "batch": count, "max_bytes": MAX_BYTES}
            if subject is not None:
                request["next_by_subj"] = subject
            await self.nc.publish(
                self._direct_subject, json.dumps(request).encode(), reply=reply_subject
            )
            with anyio.fail_after(self.request_timeout):
                await reply.done.wait()
        finally:
            self.forget(reply_subject)
        if reply.cut:
            raise ConnectionError("batched direct get: the connection was replaced")
        if reply.status not in ("204", "404"):
            raise _status_error(reply.status, {})
        return reply

    async def scan_direct(
        self, subject: str | None, start_seq: int, handle: MessageHandler, *, max_messages: int
    ) -> None:
        """Feed ``handle`` the messages on ``subject`` from ``start_seq``, by batched direct gets.

        ``subject=None`` reads the whole JetStream stream: far cheaper for the server than the
        equivalent wildcard.

        Stops when ``handle`` returns False, after ``max_messages``, or at the end of the stream.
        """
        seq = start_seq
        left = max_messages
        while left > 0:
            count = min(left, DIRECT_BATCH)
            reply = await self.retrying(
                f"reading {subject or 'the log'} from {seq}",
                functools.partial(self._batch, subject, seq, count),
            )
            for msg in reply.messages:
                headers = msg.headers or {}
                seq = int(headers["Nats-Sequence"]) + 1
                left -= 1
                if not handle(headers["Nats-Subject"], seq - 1, msg.data):
                    return
            if reply.status == "404" or reply.pending == 0 or not reply.messages:
                return


def decode_or_skip(data: bytes, seq: int, subject: str) -> StoredBatch | None:
    """Decode the batch stored in message ``seq``, or ``None`` (with a warning) for a message
    that is not one: someone else published on the log's subjects. Reads of the whole log
    and subscriptions skip it (it is no stream's record, and one such message would stop
    every reader of the log for good); reads of one stream still refuse it."""
    try:
        return decode_batch(data)
    except Exception:
        logger.warning(
            "message %d on %s is not a RoomKit event batch (someone else published on the "
            "log's subjects): skipped",
            seq,
            subject,
        )
        return None


def decode_message(data: bytes, seq: int, subject: str | None = None) -> StoredBatch:
    """Decode the batch stored in message ``seq`` (on ``subject``, when known).

    Raises:
        ForeignMessage: the message is not a RoomKit batch (someone else wrote on our
            subjects); an ``EventLogError``, typed so that readers can say what it is.
    """
    try:
        return decode_batch(data)
    except Exception as exc:
        raise ForeignMessage(seq, subject) from exc


def _status_error(status: str | None, headers: dict[str, str]) -> Exception:
    description = headers.get("Description", "")
    if status in ("503", "408"):
        return ServerBusy(f"direct get answered {status} {description}")
    return EventLogError(f"direct get answered {status} {description}")
