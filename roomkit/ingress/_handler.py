"""One message to its end: recorded and acknowledged, dead-lettered and terminated, or handed
back to JetStream when the ingress stops.

``process_inbound`` returning means the event is committed, so acknowledging right after it is
"ack after commit". A failure that is not the message's fault (the log is unreachable) is
retried in place for as long as the ingress runs: a nak would let the room's next message
overtake this one. A failure that is (the log refuses its event, too large for instance) is
dead-lettered at once. Another process writing the room at the same time
(``RoomConflictError``) counts a tenth of an attempt. Other failures count as attempts;
after ``max_attempts`` the message is dead-lettered, so one poisonous message cannot block its
room for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext

from eventlog.errors import LogUnavailable
from roomkit.errors import (
    ChannelNotRegisteredError,
    EventRefusedError,
    InvalidRoomIdError,
    KitClosedError,
    LogUnavailableError,
    RoomConflictError,
    RoomNotFoundError,
    StoreUnavailableError,
)
from roomkit.ingress._crashes import CrashLedger
from roomkit.ingress._deadletter import HEADER_SLACK, fit, own_headers
from roomkit.ingress._inflight import Inflight, pause
from roomkit.ingress._nats import full_for_now, is_transient
from roomkit.ingress._work import IngressStats, Rejection, WorkItem
from roomkit.ingress.errors import IngressError, IngressUnavailable
from roomkit.ingress.wire import (
    MAX_SUBJECT_BYTES,
    REPLY_TO_HEADER,
    IngressErrorCode,
    IngressReply,
    dead_letter_subject,
    encode_reply,
    reply_for,
)
from roomkit.models.delivery import InboundResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from roomkit.core.framework import RoomKit

__all__ = ["Abandon", "HandlerSettings", "MessageHandler", "Settle"]

logger = logging.getLogger("roomkit.ingress")

#: How a delivery is settled with JetStream.
Settle = Literal["ack", "nak", "term", "in_progress"]

# Transient failures are retried after 50 ms, doubling up to this.
_RETRY_MAX_DELAY = 2.0
# Conflicts with other writers one attempt counts for (see Handler._process).
_CONFLICTS_PER_ATTEMPT = 10


class Abandon(Exception):
    """The ingress is stopping: hand the message back to JetStream instead of finishing it."""


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """What the handler needs to know of its ingress's configuration."""

    subject_prefix: str
    stream_name: str
    dlq_stream: str | None
    max_attempts: int
    request_timeout: float


# JetStream's error code for a message that is not (or no longer) in the stream.
_NO_MESSAGE = 10057


class MessageHandler:
    """Processes messages for an ingress (``handle``) and settles their deliveries.

    Args:
        kit: the kit whose ``process_inbound`` records them.
        nc: the ingress's NATS connection (replies, core dead letters, acks).
        js: its JetStream context (stored dead letters).
        settings: prefixes, stream names, attempts and timeouts.
        stats: counters to update.
        inflight: the held messages (settling one frees its slot).
        stopping: set when the ingress stops: retries give up, messages go back.
        on_fatal: called with why the ingress must stop (the kit closed, the NATS connection
            closed under it); the message at hand is then handed back.
        ensure_dlq: creates the dead-letter stream again when a dead letter finds it gone.
        crashes: counts the deaths of the process with a message in hand, and says how many
            a message may have (``None``: not counted, no limit).
    """

    def __init__(
        self,
        kit: RoomKit,
        nc: NatsClient,
        js: JetStreamContext,
        settings: HandlerSettings,
        stats: IngressStats,
        inflight: Inflight,
        stopping: anyio.Event,
        on_fatal: Callable[[BaseException], None],
        ensure_dlq: Callable[[], Awaitable[None]] | None = None,
        crashes: CrashLedger | None = None,
    ) -> None:
        self._kit = kit
        self._crashes = crashes
        # One message marked in hand at a time (see handle): created with the handler, in the
        # ingress's event loop.
        self._one_marked = anyio.Lock()
        self._ensure_dlq = ensure_dlq
        self._nc = nc
        self._js = js
        self._settings = settings
        self._stats = stats
        self._inflight = inflight
        self._stopping = stopping
        self._on_fatal = on_fatal
        self._in_base = f"{settings.subject_prefix}.in."
        # Where a reply is never published (see wire.py): the server's APIs, the event log's
        # subjects, this ingress's own, and those of the kit's room ownership (its commands
        # and announcements) and realtime backend (its ephemeral events).
        refused = ["$", self._in_base, f"{settings.subject_prefix}.dlq."]
        log_prefix = getattr(getattr(kit, "log", None), "subject_prefix", None)
        if isinstance(log_prefix, str):
            refused.append(f"{log_prefix}.ev.")
        owner_prefix = getattr(getattr(kit, "_ownership", None), "subject_prefix", None)
        if isinstance(owner_prefix, str):
            refused += [f"{owner_prefix}.owner.", f"{owner_prefix}.owners"]
        realtime_prefix = getattr(getattr(kit, "realtime", None), "subject_prefix", None)
        if isinstance(realtime_prefix, str):
            refused.append(f"{realtime_prefix}.rt.")
        self._refused_inboxes = tuple(refused)

    async def handle(self, item: WorkItem) -> bool:
        """Take ``item`` to its end (see the module docs); never raises but cancellation.

        Returns:
            False when it was handed back (the ingress stopping): the messages of its room
            behind it must be handed back too (``release``), or they would be recorded before
            it.
        """
        if item.msg is None and self._stopping.is_set():
            return await self._hand_back_recovered(item)
        # Counted only for a message that may have been in hand when the process died.
        ledger = self._crashes if item.again and item.rejection is None else None
        if ledger is not None and item.seq is not None:
            # One at a time, so that a death is counted against the one message it came
            # with. The messages in hand when the process died come back together, each in
            # its room's lane: processed side by side, each death was counted against every
            # one of them, and a slow, harmless message beside a crasher was dead-lettered
            # with it. (First deliveries are not marked, and go on side by side.)
            async with self._one_marked:
                if item.msg is None and self._stopping.is_set():
                    return await self._hand_back_recovered(item)
                return await self._handle(item, ledger)
        return await self._handle(item, None)

    async def _hand_back_recovered(self, item: WorkItem) -> bool:
        """Leave a recovered message in the stream, the ingress stopping: the next start
        reads it again (and the messages of its room behind it, which are handed back too).
        Processed, the stop waited for the whole recovery, however long (a minute for 64
        slow messages), past the drain_timeout it promises."""
        await self.release(item)
        return False

    async def _handle(self, item: WorkItem, ledger: CrashLedger | None) -> bool:
        seq = item.seq
        # In hand in the crash ledger: cleared once finished. Set before the mark is written:
        # cut short while writing it (cancelled), the mark may be stored all the same.
        marked = ledger is not None and seq is not None
        try:
            outcome: InboundResult | Rejection | None = item.rejection
            if ledger is not None and seq is not None:
                crashes = await ledger.crashes(seq, item.incarnation)
                marked = crashes is not None  # not counted: nothing to clear
                if crashes is not None and crashes >= ledger.limit:
                    # It keeps its mark: JetStream may still redeliver a recovered message,
                    # which must not be processed then either.
                    marked = False
                    outcome = Rejection.of(
                        IngressErrorCode.FAILED,
                        f"the ingress died while processing it, {crashes} time(s) "
                        f"(max_crashes={ledger.limit})",
                    )
            if outcome is None:
                outcome = await self._process(item)
            if isinstance(outcome, Rejection):
                await self._dead_letter(item, outcome)
                await self.settle(item, "term")
                refusal = IngressReply(
                    ok=False, error=outcome.code, detail=outcome.detail, stream_seq=item.seq
                )
                await self._reply(item, refusal)
                self._stats.dead_lettered += 1
                return True
            await self.settle(item, "ack")
            await self._reply(item, reply_for(outcome, stream_seq=item.seq))
            if outcome.reason == "duplicate":
                self._stats.duplicates += 1
            elif outcome.blocked and outcome.reason != "process_timeout":
                self._stats.blocked += 1
            else:
                self._stats.recorded += 1
            return True
        except Abandon:
            await self.release(item)
            return False
        finally:
            if marked and ledger is not None and seq is not None:
                await ledger.finished(seq, item.incarnation)

    async def release(self, item: WorkItem) -> None:
        """Hand ``item`` back to JetStream unprocessed, for redelivery."""
        await self.settle(item, "nak")
        self._stats.released += 1

    async def _process(self, item: WorkItem) -> InboundResult | Rejection:
        """``process_inbound``, retried in place on failures (so the room's order holds)."""
        assert item.message is not None
        attempts = 0
        conflicts = 0
        delay = 0.05
        while True:
            try:
                result = await self._kit.process_inbound(item.message, room_id=item.room_id)
            except ChannelNotRegisteredError as exc:
                return Rejection.of(IngressErrorCode.UNKNOWN_CHANNEL, str(exc))
            except InvalidRoomIdError as exc:
                return Rejection.of(IngressErrorCode.INVALID_ROOM_ID, str(exc))
            except RoomNotFoundError as exc:
                return Rejection.of(IngressErrorCode.ROOM_NOT_FOUND, str(exc))
            except EventRefusedError as exc:
                # The message's fault (its event is too large for the log, say): the same
                # append would be refused at every attempt.
                return Rejection.of(IngressErrorCode.EVENT_REFUSED, str(exc))
            except KitClosedError as exc:
                self._on_fatal(exc)
                raise Abandon from exc
            except (LogUnavailableError, LogUnavailable) as exc:
                failure = f"the log is unavailable: {exc}"  # not the message's fault: no count
            except StoreUnavailableError as exc:
                # The read model's database is away (routing waits for it; a command recorded
                # answers duplicate when tried again): an outage as the log's, not counted.
                failure = f"the store is unavailable: {exc}"
            except RoomConflictError as exc:
                # Other processes wrote the room at the same time (services sharing the
                # ingress without ownership): safe to try again, and seldom the message's
                # fault. Counted as attempts, a busy room's valid messages were dead-lettered;
                # not counted, one whose own hooks change the room through another writer at
                # every try was tried for ever: each counts a tenth of one.
                conflicts += 1
                if conflicts % _CONFLICTS_PER_ATTEMPT == 0:
                    attempts += 1
                failure = f"other writers changed the room: {exc}"
            except Exception as exc:
                attempts += 1
                failure = repr(exc)
            else:
                if result.reason != "process_timeout" or result.event is not None:
                    # A process_timeout with its event: recorded, and only its delivery or
                    # async hooks overran; done (tried again, it would answer "duplicate").
                    return result
                attempts += 1
                failure = "process_inbound timed out"
            if attempts >= self._settings.max_attempts:
                return Rejection.of(
                    IngressErrorCode.FAILED, f"gave up after {attempts} attempts: {failure}"
                )
            if self._stopping.is_set():
                raise Abandon
            self._stats.retried += 1
            logger.warning(
                "ingress: %s #%s failed (%s); retrying in %.2f s",
                item.subject,
                item.seq,
                failure,
                delay,
            )
            await pause(self._stopping, delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)

    async def _dead_letter(self, item: WorkItem, rejection: Rejection) -> None:
        """Publish the raw payload with the reason on ``<prefix>.dlq.<channel>``, retried until
        stored: a message is terminated only once its dead letter exists.

        What would not fit the server's max payload is cut (see ``_deadletter.fit``); a dead
        letter JetStream refuses for good is stored without payload nor original headers. A
        dead-letter stream that is full (its limits with ``discard=new``) is waited for, the
        letter whole: it was stripped of its payload, which it then lost once the stream had
        room, and the letter was sent again at once, thousands of times a second.

        Raises:
            Abandon: the ingress is stopping, or the NATS connection was closed (which stops
                the ingress: nothing can be settled on it any more).
        """
        logger.warning(
            "ingress: dead-lettering %s #%s: %s (%s)",
            item.subject,
            item.seq,
            rejection.code,
            rejection.detail,
        )
        settings = self._settings
        own = own_headers(item, rejection, settings.stream_name)
        limit = self._nc.max_payload - HEADER_SLACK
        data, headers = fit(item.data, item.headers, own, limit)
        subject = dead_letter_subject(settings.subject_prefix, item.subject[len(self._in_base) :])
        delay = 0.05
        stripped = False
        while True:
            try:
                with anyio.fail_after(settings.request_timeout):
                    if settings.dlq_stream is None:
                        await self._nc.publish(subject, data, headers=headers)
                    else:
                        await self._js.publish(
                            subject, data, headers=headers, stream=settings.dlq_stream
                        )
                return
            except nats.errors.ConnectionClosedError as exc:
                # Closed for good (a reconnecting client raises other errors): retrying would
                # spin for ever, and every held message is lost to this connection anyway.
                failure = IngressUnavailable("the NATS connection was closed under the ingress")
                failure.__cause__ = exc
                self._on_fatal(failure)
                raise Abandon from exc
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                if self._stopping.is_set():
                    raise Abandon from exc
                full = await full_for_now(
                    exc,
                    self._js,
                    settings.dlq_stream,
                    subject,
                    len(data or b""),
                    # as sent: nats-py adds the stream it expects
                    {**(headers or {}), "Nats-Expected-Stream": settings.dlq_stream or ""},
                    settings.request_timeout,
                )
                refused = (
                    isinstance(exc, nats.js.errors.APIError) and not is_transient(exc) and not full
                ) or isinstance(exc, nats.errors.BadHeaderError)
                if refused and not stripped:
                    # JetStream refuses this letter itself (a limit of the dead-letter
                    # stream), or nats-py will not send one of its headers: keep what says
                    # why, which any stream takes. (Retried as it was, it was retried for
                    # ever, and again after every restart.)
                    logger.warning(
                        "ingress: the dead letter was refused (%r); storing it without its "
                        "payload and original headers",
                        exc,
                    )
                    data, headers = fit(item.data, {}, own, 0)
                    stripped = True
                    continue
                if full:
                    logger.warning(
                        "ingress: the dead-letter stream is full (%s): raise its limits, or "
                        "remove what it no longer needs to hold; retrying",
                        getattr(exc, "description", exc),
                    )
                else:
                    logger.warning("ingress: storing a dead letter failed (%r); retrying", exc)
                await pause(self._stopping, delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
                if isinstance(exc, nats.js.errors.NoStreamResponseError):
                    # No stream takes the subject: the dead-letter stream is gone (deleted by
                    # an operator). Retrying alone held this letter, and its lane, for good.
                    await self._dlq_again()

    async def _dlq_again(self) -> None:
        if self._ensure_dlq is None:
            return
        try:
            await self._ensure_dlq()
        except IngressError as exc:
            logger.warning("ingress: the dead-letter stream could not be made again: %s", exc)
        else:
            logger.warning("ingress: the dead-letter stream was gone; made again")

    async def settle(self, item: WorkItem, how: Settle) -> None:
        """Acknowledge (or nak, term, keep alive) ``item``'s delivery; release its slot.

        Best effort: a lost acknowledgement means a redelivery, which the idempotency key
        turns into a recognised duplicate. A recovered message (its delivery belonged to a
        process that died) has no delivery to settle: once recorded or dead-lettered it is
        deleted from the stream (a work queue: recovery reads no other), which is what an
        acknowledgement does there. Left in it, JetStream redelivered it after ``ack_wait``:
        answered twice, and dead-lettered twice when the redelivery came after the dead
        letters' ``duplicate_window``.
        """
        if how != "in_progress":
            self._inflight.release(item)
        msg = item.msg
        if msg is None:
            if how in ("ack", "term") and item.seq is not None:
                await self._delete_recovered(item, item.seq)
            return
        try:
            with anyio.move_on_after(self._settings.request_timeout):
                if how == "ack":
                    await msg.ack()
                elif how == "term":
                    await msg.term()
                elif how == "nak":
                    await msg.nak()
                else:
                    await msg.in_progress()
        except (nats.errors.Error, OSError) as exc:
            logger.info("ingress: %s of %s #%s failed: %r", how, item.subject, item.seq, exc)

    async def _delete_recovered(self, item: WorkItem, seq: int) -> None:
        """Delete a recovered message, best effort: kept, its redelivery is answered as a
        duplicate (or stored as a dead letter of the same id, within the window)."""
        try:
            with anyio.move_on_after(self._settings.request_timeout):
                await self._js.delete_msg(self._settings.stream_name, seq)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _NO_MESSAGE:  # else acknowledged meanwhile (a redelivery)
                logger.info("ingress: deleting %s #%s failed: %r", item.subject, seq, exc)
        except (nats.errors.Error, OSError) as exc:
            logger.info("ingress: deleting %s #%s failed: %r", item.subject, seq, exc)

    async def _reply(self, item: WorkItem, reply: IngressReply) -> None:
        inbox = item.headers.get(REPLY_TO_HEADER)
        if not inbox:
            return
        if any(c in inbox for c in "*> \t\r\n") or len(inbox.encode()) > MAX_SUBJECT_BYTES:
            # A malformed subject, or one longer than the server's protocol line, would make
            # the server drop the connection (and nats-py close it for good): refuse it here.
            logger.info("ingress: ignoring the invalid reply inbox %r", inbox[:200])
            return
        if inbox.startswith(self._refused_inboxes):
            logger.warning(
                "ingress: no reply to %s #%s on %r: a subject of the server, the event log or "
                "the ingress itself",
                item.subject,
                item.seq,
                inbox,
            )
            return
        try:
            with anyio.move_on_after(self._settings.request_timeout):
                await self._nc.publish(inbox, encode_reply(reply))
        except (nats.errors.Error, OSError) as exc:
            logger.info("ingress: replying to %s failed: %r", inbox, exc)
