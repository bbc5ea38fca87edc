"""Reading what a durable consumer delivered but never got acknowledged.

JetStream redelivers an unacknowledged message only after ``ack_wait``, and meanwhile hands out
newer messages, so after a crash (or deliveries lost in a reconnection) a room's older message
would be recorded after its newer ones. The ingress reads that range from the stream itself,
in order, before it fetches anything new.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext

from roomkit.ingress._inflight import pause
from roomkit.ingress._nats import is_transient
from roomkit.ingress._work import WorkItem

__all__ = ["CHUNK", "read_range", "recover", "unacknowledged_range"]

logger = logging.getLogger("roomkit.ingress")

#: Messages of the range read (and processed) at a time.
CHUNK = 64
# Retries of a transient failure wait this long.
_RETRY_DELAY = 1.0


async def unacknowledged_range(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    timeout: float,
    stopping: anyio.Event,
) -> tuple[int, int] | None:
    """The stream sequences ``(first, last)`` that may hold unacknowledged deliveries.

    From the consumer's ack floor (everything before it is acknowledged) to the last message
    it delivered; ``None`` when nothing is pending. Retries while JetStream does not answer,
    until ``stopping`` is set (then ``None``).
    """
    while True:
        try:
            with anyio.fail_after(timeout):
                info = await js.consumer_info(stream, durable)
            break
        except (TimeoutError, nats.errors.Error) as exc:
            if stopping.is_set():
                return None
            logger.info("ingress: reading the consumer state failed (%r); retrying", exc)
            await pause(stopping, _RETRY_DELAY)
    if not info.num_ack_pending or info.ack_floor is None or info.delivered is None:
        return None
    first, last = info.ack_floor.stream_seq + 1, info.delivered.stream_seq
    logger.info(
        "ingress: %d message(s) delivered but unacknowledged; re-reading %d..%d first",
        info.num_ack_pending,
        first,
        last,
    )
    return first, last


async def read_range(
    js: JetStreamContext,
    stream: str,
    first: int,
    last: int,
    *,
    direct: bool,
    timeout: float,
    stopping: anyio.Event,
) -> list[RawStreamMsg]:
    """The messages of ``stream`` from ``first`` to ``last`` that still exist, in order.

    One get per sequence, all at once (the range is at most ``CHUNK`` long). A message that
    cannot be read is skipped with a warning: JetStream still redelivers it after ack_wait.
    """
    found: dict[int, RawStreamMsg] = {}

    async def get(seq: int) -> None:
        while True:
            try:
                with anyio.fail_after(timeout):
                    found[seq] = await js.get_msg(stream, seq, direct=direct)
                return
            except nats.js.errors.NotFoundError:
                return  # acknowledged and deleted (work queue), or removed by a limit
            except (TimeoutError, nats.errors.Error) as exc:
                if not is_transient(exc) or stopping.is_set():
                    logger.warning("ingress: cannot re-read message %d: %r", seq, exc)
                    return
                await pause(stopping, _RETRY_DELAY)

    async with anyio.create_task_group() as tg:
        for seq in range(first, last + 1):
            tg.start_soon(get, seq)
    return [found[seq] for seq in sorted(found)]


async def recover(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    direct: bool,
    timeout: float,
    stopping: anyio.Event,
    to_item: Callable[[RawStreamMsg], WorkItem | None],
    handle: Callable[[WorkItem], Awaitable[bool]],
) -> None:
    """Process the consumer's unacknowledged range, in stream order, chunk by chunk.

    Within a chunk, messages of one lane key are handled one after the other and different
    keys concurrently; the next chunk starts once the chunk is done, so each room's order
    holds across chunks. Messages of the range that were processed before are recognised by
    their idempotency keys (with work-queue retention, acknowledged ones no longer exist).

    Args:
        js: the JetStream context.
        stream: the ingress stream.
        durable: its durable consumer.
        direct: whether the stream allows direct gets.
        timeout: bound of each request.
        stopping: stops the recovery between chunks.
        to_item: a stored message as work (``None`` to skip it); never raises (the ingress
            refuses a message it cannot read, see ``Ingress._work``).
        handle: takes one item to its end; False when it handed it back (the ingress
            stopping): the items of its key behind it are left for redelivery.
    """
    found = await unacknowledged_range(js, stream, durable, timeout=timeout, stopping=stopping)
    if found is None:
        return
    first, last = found
    for start in range(first, last + 1, CHUNK):
        if stopping.is_set():
            return
        end = min(start + CHUNK - 1, last)
        raws = await read_range(
            js, stream, start, end, direct=direct, timeout=timeout, stopping=stopping
        )
        lanes: dict[str, list[WorkItem]] = defaultdict(list)
        for raw in raws:
            item = to_item(raw)  # never raises: a message it cannot read is refused
            if item is not None:
                lanes[item.key].append(item)

        async def in_order(items: list[WorkItem]) -> None:
            for item in items:
                if not await handle(item):
                    return

        async with anyio.create_task_group() as tg:
            for items in lanes.values():
                tg.start_soon(in_order, items)
