"""``NatsSubscription``: catch-up and live tail of the whole log, through one push consumer.

nats-py delivers in its own asyncio tasks; the consumer's handler bridges each message into
this subscription through a bounded ``Handover``. When it is full the handler waits, so flow
control stops the server: a slow subscriber holds at most the buffer plus the flow-control
window in memory. A consumer that breaks (gap, or silent because the server restarted) is
replaced at the sequence after the last message handed over, so records arrive exactly once
and in order. So is one that lived through a reconnect: a restarted server may have lost it,
and waiting until it is found silent (three heartbeats) held every reader of the log that
long after each restart.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio

from eventlog._handover import Handover, HandoverClosed
from eventlog._nats_codec import first_seq_after, records_of
from eventlog._nats_consumer import PushConsumer
from eventlog._nats_errors import is_transient, translate
from eventlog._nats_io import JetStreamIO, decode_or_skip
from eventlog._streams import MAX_POSITION
from eventlog.base import Subscription
from eventlog.errors import EventLogError
from eventlog.record import Record

__all__ = ["NatsSubscription"]

logger = logging.getLogger("roomkit.eventlog.nats")

# Batches (one per JetStream message) buffered between nats-py's task and the reader. A read
# of the socket brings as many messages as appends were in flight (a thousand busy rooms: about
# a thousand). With 64, nats-py's task stopped at the 64th and put the rest one slot per turn
# of the event loop, so the reader (the kit's read model) fell a wave behind and nearly every
# delivery waited for it (a cancel scope, a timer and an event each, and more objects alive
# for the garbage collector): JetStream workload (b), 1,000 rooms x 10, took ~1,720 us of CPU
# per message against ~1,140 with 1,024 (medians, 2026-11-28). The price: a slow reader holds
# up to this many batches (each one append: a message and its outcomes, ~1 KB) besides the
# flow-control window.
_BUFFER = 1024


class NatsSubscription(Subscription):
    """Records of every stream after ``after_position``, in global order; see the module doc."""

    def __init__(
        self,
        io: JetStreamIO,
        *,
        subject: str | None,
        subject_base: str,
        after_position: int,
        on_close: Callable[[NatsSubscription], None],
    ) -> None:
        self._io = io
        self._subject = subject
        self._base = len(subject_base)
        self._after_position = max(after_position, 0)
        # Past MAX_POSITION no record is: a sequence past JetStream's 64 bits was refused
        # ("cannot unmarshal number") where the memory log waits, as a subscription does.
        self._next_seq = first_seq_after(min(after_position, MAX_POSITION))
        self._on_close = on_close
        self._batches: Handover[list[Record]] = Handover(_BUFFER)
        self._ready: deque[Record] = deque()
        self._consumer: PushConsumer | None = None
        self._starting: PushConsumer | None = None  # the consumer _replace is starting
        self._backing_off: anyio.Event | None = None  # set by aclose: _replace stops waiting
        self._closed = False
        self._reconnects = 0  # the connection's count when the consumer was started
        # Our own client says when it reconnects; an app's own one is checked every heartbeat.
        self._unlisten = io.on_reconnect(self._batches.interrupt)

    async def _deliver(self, subject: str, seq: int, data: bytes, pending: int) -> bool:
        # Runs in nats-py's delivery task.
        batch = decode_or_skip(data, seq, subject)
        if batch is None:
            return True
        records = records_of(subject[self._base :], seq, batch)
        if records[0].position <= self._after_position:
            records = [r for r in records if r.position > self._after_position]
            if not records:
                return True
        try:
            # Waits only while the reader is behind (backpressure); no yield when there is room.
            await self._batches.put(records)
        except HandoverClosed:
            return False
        return True

    async def __anext__(self) -> Record:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed:
                raise StopAsyncIteration
            consumer = self._consumer
            if consumer is None or consumer.broken:
                consumer = await self._replace(consumer)
            if consumer.error is not None:
                error = consumer.error
                raise translate(error, "following the log") from error
            batch = self._batches.take()
            if batch is not None:
                self._ready.extend(batch)
                continue
            if self._batches.closed:
                raise StopAsyncIteration
            if self._io.nc.stats["reconnects"] != self._reconnects:
                logger.info("reconnected: replacing the subscription consumer")
                consumer.broken = True
                continue
            if await self._batches.wait(self._io.idle_heartbeat):
                continue
            # Nothing for a heartbeat interval (or a reconnect, seen above): fine if heartbeats
            # still come.
            if consumer.stalled():
                logger.info("subscription consumer went silent; replacing it")
                consumer.broken = True

    async def _replace(self, old: PushConsumer | None) -> PushConsumer:
        """Start a consumer at the first sequence not handed over yet, retrying for ever.

        A subscription outlives server restarts like the connection does; each attempt is
        bounded and the caller can always cancel. Closed meanwhile (``aclose`` from another
        task), it stops what it started and ends: it went on retrying while the server was
        away, and the consumer it then started was left pushing every record to nobody.

        Raises:
            StopAsyncIteration: the subscription was closed.
        """
        if old is not None:
            self._next_seq = max(self._next_seq, old.next_seq)
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._io.request_timeout):
                await old.stop()
        delay = 0.05
        while True:
            if self._closed:
                raise StopAsyncIteration
            consumer = PushConsumer(
                self._io.js,
                self._io.nc,
                stream_name=self._io.stream_name,
                filter_subject=self._subject,
                handler=self._deliver,
                idle_heartbeat=self._io.idle_heartbeat,
            )
            self._consumer = consumer
            # Read first: a reconnect while the consumer starts replaces it again.
            self._reconnects = self._io.nc.stats["reconnects"]
            self._starting = consumer
            try:
                with anyio.fail_after(self._io.request_timeout * 2):
                    await consumer.start(self._next_seq)
            except BaseException as exc:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await consumer.stop()
                if not isinstance(exc, Exception):
                    raise  # cancelled: what it started is stopped all the same
                if self._io.nc.is_closed:
                    raise EventLogError("the NATS connection is closed") from exc
                if not is_transient(exc):
                    raise translate(exc, "subscribing to the log") from exc
                logger.warning("cannot (re)start the subscription consumer yet: %r", exc)
            else:
                if not self._closed:
                    return consumer
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(self._io.request_timeout):
                        await consumer.stop(wait=True)
                raise StopAsyncIteration
            finally:
                self._starting = None
            # Backoff while the server is away, unless the subscription is closed meanwhile.
            backing_off = self._backing_off = anyio.Event()
            with anyio.move_on_after(delay):
                await backing_off.wait()
            self._backing_off = None
            delay = min(delay * 2, 1.0)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        self._unlisten()
        if self._backing_off is not None:
            self._backing_off.set()
        consumer, self._consumer = self._consumer, None
        with anyio.CancelScope(shield=True):
            # One being started is _replace's to stop once its start returns: stopped here
            # first, it would be left running on the server once started.
            if consumer is not None and consumer is not self._starting:
                with anyio.move_on_after(self._io.request_timeout):
                    await consumer.stop(wait=True)
            self._batches.close()
