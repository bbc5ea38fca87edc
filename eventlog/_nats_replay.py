"""Bulk replays through an ephemeral pull consumer that is asked for exactly what is needed.

A replay knows how much it wants: the consumer reports how many messages are pending when it
is created, and a page has a limit. Pull requests of at most ``CHUNK`` messages deliver exactly
that, streamed (the handler runs as messages arrive) and bounded in memory, with no flow
control or heartbeats to handle, and nothing pushed past the end of a page. Only the stored
headers come with each message (a batched direct get adds six more to parse).
"""

from __future__ import annotations

import functools
import json
import logging
import time

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from eventlog._nats_consumer_config import reader_config
from eventlog._nats_errors import translate
from eventlog._nats_io import MAX_BYTES, JetStreamIO, MessageHandler
from eventlog.errors import LogUnavailable

__all__ = ["CHUNK", "pull_replay"]

logger = logging.getLogger("roomkit.eventlog.nats")

#: Messages per pull request: large enough that the round trip between two is noise.
CHUNK = 5000
# Reply subjects: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or
# with ``<domain>.<account hash>`` after ``ACK`` and a token at the end (12 tokens).
_V1_TOKENS = 9


class _Chunk:
    """Receives the replies to one pull request, from nats-py's delivery task."""

    def __init__(self, handle: MessageHandler, size: int, after_cseq: int) -> None:
        self.handle = handle
        self.left = size
        self.cseq = after_cseq  # consumer sequence of the last message handled
        self.delivered = 0
        self.next_seq = 0
        self.stopped = False  # the handler has enough
        self.exhausted = False  # the server has nothing more
        self.failed = False  # consumer gone, or a message lost: the replay starts another
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self.last_activity = time.monotonic()

    def connection_replaced(self) -> None:
        """What the consumer sent on the old connection is lost: start another one."""
        if not self.done.is_set():
            self.failed = True
            self.done.set()

    def __call__(self, msg: Msg) -> None:
        if self.done.is_set():
            return
        self.last_activity = time.monotonic()
        headers = msg.headers
        if not msg.data and headers is not None and "Status" in headers:
            status = headers["Status"]
            # 404 No Messages / 408 Request Timeout: the end for now. 409 with MaxBytes: this
            # request is full, ask again. Any other 409 (consumer deleted...): start another.
            self.exhausted = status in ("404", "408")
            self.failed = not self.exhausted and not (
                status == "409" and headers.get("Description", "").endswith("MaxBytes")
            )
            self.done.set()
            return
        try:
            tokens = msg.reply.split(".")
            if len(tokens) == _V1_TOKENS:
                seq, cseq, pending = int(tokens[5]), int(tokens[6]), int(tokens[8])
            else:
                seq, cseq, pending = int(tokens[7]), int(tokens[8]), int(tokens[10])
            if cseq != self.cseq + 1:
                # nats-py dropped a message (slow consumer): resume after the last one handled.
                logger.warning("replay lost a message (consumer sequence %d); resuming", cseq)
                self.failed = True
                self.done.set()
                return
            go_on = self.handle(msg.subject, seq, msg.data)
        except Exception as exc:  # re-raised by the replay, in its own task
            self.error = exc
            self.done.set()
            return
        self.cseq = cseq
        self.next_seq = seq + 1
        self.delivered += 1
        self.left -= 1
        if not go_on:
            self.stopped = True
        if pending == 0:
            self.exhausted = True
        if self.stopped or self.exhausted or self.left == 0:
            self.done.set()


async def pull_replay(
    io: JetStreamIO,
    subject: str | None,
    start_seq: int,
    handle: MessageHandler,
    *,
    max_messages: int | None = None,
    last_per_subject: bool = False,
) -> None:
    """Feed ``handle`` the messages on ``subject`` from ``start_seq``, in stream order.

    Stops when ``handle`` returns False, after ``max_messages``, or after the messages that
    were pending when the replay started (appends made meanwhile are not waited for).
    ``subject=None`` reads the whole JetStream stream, which the server serves much faster
    than the equivalent wildcard. If the server goes away mid-replay, a new consumer resumes
    after the last message handled (with ``last_per_subject`` it starts over, so ``handle``
    must tolerate seeing a subject twice).

    Raises:
        LogUnavailable: the server stayed away, or stopped answering, beyond the retry timeout.
        EventLogError: ``handle`` failed (re-raised), or the server refused the consumer.
    """
    what = f"replaying {subject or 'the log'}"
    next_seq = start_seq
    left = max_messages
    deadline = io.deadline()
    while True:
        name = io.nc._nuid.next().decode()
        config = reader_config(
            name,
            filter_subject=subject,
            start_seq=next_seq,
            last_per_subject=last_per_subject,
            inactive_threshold=5.0,
        )
        # Pulled messages keep their own subject, so they are routed by subscription, not by
        # the shared reply inbox: one inbox per consumer (a replaced consumer's stragglers
        # cannot reach its successor).
        inbox = _Inbox(io.nc.new_inbox())
        sub = await io.retrying(
            what, functools.partial(io.nc.subscribe, inbox.subject, cb=inbox.route), deadline
        )
        progress = False
        try:
            info = await io.retrying(
                what, functools.partial(io.js.add_consumer, io.stream_name, config), deadline
            )
            want = info.num_pending or 0
            if left is not None:
                want = min(want, left)
            while want > 0:
                chunk = await inbox.pull(io, name, handle, min(want, CHUNK))
                if chunk.error is not None:
                    raise translate(chunk.error, what) from chunk.error
                progress = progress or chunk.delivered > 0
                if chunk.next_seq:
                    next_seq = chunk.next_seq
                want -= chunk.delivered
                if left is not None:
                    left -= chunk.delivered
                if chunk.stopped or chunk.exhausted:
                    return
                if chunk.failed or not chunk.done.is_set():
                    break  # consumer gone, or the server stopped answering: start another
            else:
                return
        finally:
            with anyio.CancelScope(shield=True):
                await _release(io, name, sub)
        if progress:
            deadline = io.deadline()  # a long replay that moves is not stuck
        if time.monotonic() > deadline:
            raise LogUnavailable(f"{what}: the server stopped answering")
        logger.info("%s: the consumer stopped answering; starting another one", what)


class _Inbox:
    """The reply subject of one consumer, handing messages to the chunk being pulled."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self._chunk: _Chunk | None = None
        self._cseq = 0

    async def route(self, msg: Msg) -> None:
        if self._chunk is not None:
            self._chunk(msg)

    async def pull(
        self, io: JetStreamIO, consumer: str, handle: MessageHandler, size: int
    ) -> _Chunk:
        """Ask ``consumer`` for ``size`` messages and hand them to ``handle`` as they come."""
        chunk = self._chunk = _Chunk(handle, size, self._cseq)
        # Not waited out until it falls silent for request_timeout (2 s after every restart).
        unlisten = io.on_reconnect(chunk.connection_replaced)
        try:
            request = json.dumps({"batch": size, "max_bytes": MAX_BYTES, "no_wait": True})
            await io.nc.publish(
                f"{io.js._prefix}.CONSUMER.MSG.NEXT.{io.stream_name}.{consumer}",
                request.encode(),
                reply=self.subject,
            )
            # No deadline on a whole chunk (it may take a while on a busy machine), only on
            # silence.
            while not chunk.done.is_set():
                with anyio.move_on_after(io.request_timeout):
                    await chunk.done.wait()
                if time.monotonic() - chunk.last_activity > io.request_timeout:
                    break
        except nats.errors.Error as exc:
            logger.debug("pull request on %s: %r", consumer, exc)
        finally:
            unlisten()
            self._chunk = None
            self._cseq = chunk.cseq
        return chunk


async def _release(io: JetStreamIO, consumer: str, sub: NatsSubscription) -> None:
    if io.nc.is_closed:
        return
    try:
        await sub.unsubscribe()
        # Fire and forget: a lost delete is covered by inactive_threshold.
        await io.nc.publish(f"{io.js._prefix}.CONSUMER.DELETE.{io.stream_name}.{consumer}")
    except nats.errors.Error as exc:
        logger.debug("releasing consumer %s: %r", consumer, exc)
