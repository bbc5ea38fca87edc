"""Counting how often the ingress died while processing a message, so that one message cannot
crash-loop it.

A message the ingress was processing when its process died (killed for memory, a segfault in
a native library, a watchdog) is processed again after the restart: recovery re-reads it
first, or JetStream redelivers it. If processing it is what kills the process, that would go on
for ever. So the ingress marks the message in a KeyValue bucket while it processes a message
for the second time or later (a recovered message, or a delivery JetStream counts as a
redelivery) and clears the mark once the message is finished, whatever the outcome: a
graceful stop that hands it back clears it too. A mark still there when the message comes
again means the process died with it in hand; once it has ``max_crashes`` such marks, the
message is dead-lettered instead of processed. The ingress processes marked messages one at a
time (the messages in hand when the process died come back together), so that a death is
counted against the message it came with, not against a harmless one beside it.

A first delivery is not marked (a KeyValue write per message would double the ingress's
requests), so a message that kills the process at once does so ``max_crashes + 1`` times.
The bucket is best effort: if it cannot be used (JetStream away, a permission missing), the
message is processed as if unmarked, and a warning says so.
"""

from __future__ import annotations

import hashlib
import logging

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from roomkit.ingress._nats import ERR_STREAM_NAME_IN_USE

__all__ = ["CRASH_BUCKET", "CRASH_TTL", "CrashLedger"]

logger = logging.getLogger("roomkit.ingress")

#: The KeyValue bucket of the marks, shared by every ingress of a JetStream domain (each
#: ingress's keys start with a digest of its stream and durable consumer).
CRASH_BUCKET = "ROOMKIT_INGRESS_CRASHES"

#: How long a mark lives: a message that crashed the process longer ago starts again from 0.
CRASH_TTL = 7 * 24 * 3600.0


class CrashLedger:
    """The marks of one ingress (``stream`` and ``durable``), in ``CRASH_BUCKET``; a message
    with ``limit`` of them is not processed again."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        storage: StorageType,
        timeout: float,
        limit: int,
    ) -> None:
        self.limit = limit
        self._js = js
        self._storage = storage
        self._timeout = timeout
        self._names = f"{stream}\0{durable}\0"
        self._kv: KeyValue | None = None

    def _key(self, seq: int, incarnation: str) -> str:
        # The stream's incarnation (its creation time) too: a stream made again numbers its
        # messages from 1 again. Names may hold characters a key may not: a digest names them.
        digest = hashlib.sha256(f"{self._names}{incarnation}".encode()).hexdigest()[:24]
        return f"{digest}.{seq}"

    async def crashes(self, seq: int, incarnation: str) -> int | None:
        """How many times the process died with message ``seq`` of the stream's
        ``incarnation`` in hand; marks it in hand.

        Returns ``None`` when the bucket cannot be used: the message is then not marked (a
        mark that may have been written is cleared here). Cancelled, it may be marked.
        """
        key = self._key(seq, incarnation)
        writing = False
        try:
            with anyio.fail_after(self._timeout):
                kv = await self._bucket()
                try:
                    entry = await kv.get(key)
                    count = int(entry.value or b"0")
                except nats.js.errors.KeyNotFoundError:
                    count = 0
                writing = True
                await kv.put(key, str(count + 1).encode())
        except (TimeoutError, nats.errors.Error, ValueError) as exc:
            self._kv = None  # made again next time (a memory bucket is gone after a restart)
            logger.warning(
                "ingress: the crash count of message #%d cannot be kept (%r): a message that "
                "kills the process may do so again",
                seq,
                exc,
            )
            if writing:  # it may have been stored without its answer coming back
                await self.finished(seq, incarnation)
            return None
        return count

    async def finished(self, seq: int, incarnation: str) -> None:
        """Clear the mark of message ``seq``: it did not kill the process."""
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(self._timeout):
                kv = await self._bucket()
                await kv.purge(self._key(seq, incarnation))
        except (TimeoutError, nats.errors.Error) as exc:
            # The mark stays: the message counts as having crashed once more, should it come
            # again (JetStream redelivers only what was not settled).
            logger.info("ingress: clearing the crash mark of message #%d failed: %r", seq, exc)

    async def _bucket(self) -> KeyValue:
        kv = self._kv
        if kv is None:
            config = KeyValueConfig(
                bucket=CRASH_BUCKET, history=1, ttl=CRASH_TTL, storage=self._storage
            )
            try:
                kv = await self._js.create_key_value(config)
            except nats.js.errors.APIError as exc:
                if exc.err_code != ERR_STREAM_NAME_IN_USE:
                    raise
                kv = await self._js.key_value(CRASH_BUCKET)  # as an operator made it
            self._kv = kv
        return kv
