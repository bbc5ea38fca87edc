"""The floor under the inbound workloads: a message's own work, without RoomKit's machinery.

A reference to read RoomKit's figures against, not a product. It runs workloads (a), (b) and
(c) with the very channels, hooks and messages of ``bench.roomkit_inbound`` (hooks in (a)
only, as there) and only what the design cannot do without:

- the caller builds its ``InboundMessage`` and hands it to the room's task;
- the room's task runs the channel's ``handle_inbound`` and the BEFORE_BROADCAST hook, gives
  the event its index, encodes its JSON once and appends it to a list (the log);
- the room's delivery task calls ``deliver`` on each target, one after the other, and runs
  the AFTER_BROADCAST hook, then wakes the caller.

So three task hops per message, as in RoomKit (caller, room, delivery). Nothing else: no
routing rules, no read model, no idempotency, no outcome records, no hook timeouts, no
context copies, no mailbox bounds. RoomKit's time per message divided by the floor's says how
much of it the machinery takes.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench._table import Row, Stopwatch, rate, row
from bench.roomkit_inbound import RecordingChannel, message
from roomkit import (
    ChannelBinding,
    HookResult,
    InboundMessage,
    Room,
    RoomContext,
    RoomEvent,
)

_Reply = asyncio.Future[RoomEvent]


async def _allow(event: RoomEvent, context: RoomContext) -> HookResult:
    return HookResult.allow()


async def _observe(event: RoomEvent, context: RoomContext) -> None:
    return None


class _FloorRoom:
    """One room: a task that decides and logs, a task that delivers."""

    def __init__(
        self,
        room_id: str,
        source: RecordingChannel,
        targets: list[RecordingChannel],
        hooks: bool,
    ) -> None:
        self.source = source
        self.targets = targets
        self.hooks = hooks
        bindings = [
            ChannelBinding(room_id=room_id, channel_id=c.channel_id, channel_type="sms")
            for c in [source, *targets]
        ]
        self.bindings = bindings[1:]
        self.context = RoomContext(room=Room(id=room_id), bindings=bindings)
        self.inbox: asyncio.Queue[tuple[InboundMessage, _Reply]] = asyncio.Queue()
        self.outbox: asyncio.Queue[tuple[RoomEvent, _Reply]] = asyncio.Queue()
        self.log: list[bytes] = []

    async def decide(self) -> None:
        while True:
            inbound, reply = await self.inbox.get()
            event = await self.source.handle_inbound(inbound, self.context)
            if self.hooks and (await _allow(event, self.context)).action != "allow":
                reply.set_result(event)
                continue
            event = event.model_copy(update={"index": len(self.log)})
            self.log.append(event.__pydantic_serializer__.to_json(event, exclude_none=True))
            self.outbox.put_nowait((event, reply))

    async def deliver(self) -> None:
        while True:
            event, reply = await self.outbox.get()
            for channel, binding in zip(self.targets, self.bindings, strict=True):
                await channel.deliver(event, binding, self.context)
            if self.hooks:
                await _observe(event, self.context)
            reply.set_result(event)


async def _run(
    rooms: int, per_room: int, targets: int, latencies: list[float], hooks: bool = False
) -> float:
    loop = asyncio.get_running_loop()
    source = RecordingChannel("in")
    outs = [RecordingChannel(f"out{i}") for i in range(targets)]
    floor_rooms = [_FloorRoom(f"room-{r}", source, outs, hooks) for r in range(rooms)]
    tasks = [loop.create_task(room.decide()) for room in floor_rooms]
    tasks += [loop.create_task(room.deliver()) for room in floor_rooms]

    async def talk(room: _FloorRoom) -> None:
        for n in range(per_room):
            start = time.perf_counter()
            reply: _Reply = loop.create_future()
            room.inbox.put_nowait((message("in", n), reply))
            await reply
            latencies.append(time.perf_counter() - start)

    try:
        with Stopwatch() as sw:
            await asyncio.gather(*(talk(room) for room in floor_rooms))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(c.count == rooms * per_room for c in outs)
    return sw.seconds


async def bench_floor(
    messages: int = 20_000, rooms: int = 1_000, fan_out: int = 5_000
) -> list[Row]:
    """Workloads (a), (b) and (c) at the floor."""
    seconds = await _run(1, messages, 1, [], hooks=True)
    rows = [row("floor", f"(a) 1 room, {messages:,} sequential", rate(messages, seconds), "msg/s")]
    latencies: list[float] = []
    per_room = 20
    seconds = await _run(rooms, per_room, 1, latencies)
    latencies.sort()
    label = f"(b) {rooms:,} rooms x {per_room}"
    rows.append(row("floor", label, rate(rooms * per_room, seconds), "msg/s"))
    rows.append(row("floor", f"{label} p50 latency", statistics.median(latencies) * 1000, "ms"))
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    rows.append(row("floor", f"{label} p99 latency", p99, "ms"))
    seconds = await _run(1, fan_out, 10, [])
    rows.append(row("floor", "(c) 1 room -> 10 channels", rate(fan_out, seconds), "msg/s"))
    return rows


def over_floor(kit_rows: list[Row], floor_rows: list[Row]) -> list[Row]:
    """For each msg/s workload of both: RoomKit's time per message over the floor's."""
    floor = {r["workload"]: r["value"] for r in floor_rows if r["unit"] == "msg/s"}
    return [
        row(
            r["backend"],
            f"{r['workload']}: time per message / floor's",
            floor[r["workload"]] / r["value"],
            "x",
            f"floor {floor[r['workload']]:,.0f} msg/s",
        )
        for r in kit_rows
        if r["unit"] == "msg/s" and r["workload"] in floor
    ]
