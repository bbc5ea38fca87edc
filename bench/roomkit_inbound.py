"""RoomKit inbound workloads (issue 4): one busy room, many rooms, fan-out, memory, import time.

Every workload runs on a given event log; ``suite_roomkit`` runs them on the memory log and on
JetStream.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio

from bench._table import Row, Stopwatch, print_table, rate, row
from eventlog import EventLog, MemoryEventLog
from roomkit import (
    ChannelBinding,
    ChannelOutput,
    HookExecution,
    HookResult,
    HookTrigger,
    InboundMessage,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from roomkit.channels.base import Channel
from roomkit.models.event import EventSource

LogFactory = Callable[[], AbstractAsyncContextManager[EventLog]]


class RecordingChannel(Channel):
    """Inbound and outbound test channel: counts deliveries, keeps nothing."""

    channel_type = "sms"  # type: ignore[assignment]

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.count = 0

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        return RoomEvent(
            room_id=context.room.id,
            source=EventSource(channel_id=self.channel_id, channel_type="sms"),
            content=message.content,
            idempotency_key=message.idempotency_key,
        )

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.count += 1
        return ChannelOutput.empty()


def message(channel_id: str, n: int, key: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel_id=channel_id,
        sender_id="bench",
        content=TextContent(body=f"message {n}"),
        idempotency_key=key,
    )


async def _room(kit: RoomKit, room_id: str, targets: int) -> list[RecordingChannel]:
    await kit.create_room(room_id=room_id)
    channels = []
    for name in ["in", *[f"out{i}" for i in range(targets)]]:
        channel = kit.get_channel(name)
        if channel is None:
            channel = RecordingChannel(name)
            kit.register_channel(channel)
        channels.append(channel)
        await kit.attach_channel(room_id, name)
    return channels  # type: ignore[return-value]


def _hooks(kit: RoomKit) -> None:
    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def allow(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.allow()

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
    async def observe(event: RoomEvent, context: RoomContext) -> None:
        return None


async def one_busy_room(name: str, logs: LogFactory, messages: int = 20_000) -> list[Row]:
    async with logs() as log, RoomKit(log=log) as kit:
        _hooks(kit)
        await _room(kit, "busy", 1)
        laps: list[float] = []
        with Stopwatch() as total:
            start = time.perf_counter()
            for n in range(messages):
                await kit.process_inbound(message("in", n), room_id="busy")
                if (n + 1) % 1000 == 0:
                    now = time.perf_counter()
                    laps.append(now - start)
                    start = now
    first, last = 1000 / laps[0], 1000 / laps[-1]
    return [
        row(name, f"(a) 1 room, {messages:,} sequential", rate(messages, total.seconds), "msg/s"),
        row(name, "(a) first 1,000", first, "msg/s"),
        row(name, "(a) last 1,000", last, "msg/s", f"last/first = {last / first:.2f}"),
    ]


async def many_rooms(
    name: str,
    logs: LogFactory,
    rooms: int = 1_000,
    per_room: int = 20,
    gc_threshold: tuple[int, int, int] | None = None,
) -> list[Row]:
    """(b); with ``gc_threshold``, under that garbage-collector setting (docs/performance.md)."""
    latencies: list[float] = []
    default_threshold = gc.get_threshold()
    if gc_threshold is not None:
        gc.set_threshold(*gc_threshold)
    try:
        seconds = await _many_rooms(logs, rooms, per_room, latencies)
    finally:
        gc.set_threshold(*default_threshold)
    total = rooms * per_room
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    label = f"(b) {rooms:,} rooms x {per_room}"
    if gc_threshold is not None:
        label += f", gc.set_threshold{gc_threshold}"
    return [
        row(name, label, rate(total, seconds), "msg/s"),
        row(name, f"{label} p50 latency", p50, "ms"),
        row(name, f"{label} p99 latency", p99, "ms"),
    ]


async def _many_rooms(
    logs: LogFactory, rooms: int, per_room: int, latencies: list[float]
) -> float:

    async with logs() as log, RoomKit(log=log, mailbox_size=64) as kit:
        for r in range(rooms):
            await _room(kit, f"room-{r}", 1)

        async def talk(room_id: str) -> None:
            for n in range(per_room):
                start = time.perf_counter()
                await kit.process_inbound(message("in", n), room_id=room_id)
                latencies.append(time.perf_counter() - start)

        with Stopwatch() as sw:
            async with anyio.create_task_group() as tg:
                for r in range(rooms):
                    tg.start_soon(talk, f"room-{r}")
    return sw.seconds


async def fan_out(name: str, logs: LogFactory, messages: int = 5_000) -> list[Row]:
    async with logs() as log, RoomKit(log=log) as kit:
        channels = await _room(kit, "fan", 10)
        with Stopwatch() as sw:
            for n in range(messages):
                await kit.process_inbound(message("in", n), room_id="fan")
        delivered = sum(c.count for c in channels)
    assert delivered == messages * 10
    return [row(name, "(c) 1 room -> 10 channels", rate(messages, sw.seconds), "msg/s")]


async def keyed_senders(
    name: str, logs: LogFactory, senders: int = 32, per_sender: int = 100
) -> list[Row]:
    """(f), beyond issue 4's list: concurrent senders of keyed messages (a webhook's retry
    key) into one room past its window of 1,000 keys, where each new key is also looked up in
    the read model (docs/performance.md)."""
    async with logs() as log, RoomKit(log=log) as kit:
        await _room(kit, "keyed", 1)
        for n in range(1_200):
            await kit.process_inbound(message("in", n, f"first-{n}"), room_id="keyed")

        async def sender(s: int) -> None:
            for n in range(per_sender):
                result = await kit.process_inbound(
                    message("in", n, f"sender-{s}-{n}"), room_id="keyed"
                )
                assert not result.blocked

        with Stopwatch() as sw:
            async with anyio.create_task_group() as tg:
                for s in range(senders):
                    tg.start_soon(sender, s)
    label = f"(f) {senders} senders x {per_sender} keyed messages, 1 room past its key window"
    return [row(name, label, rate(senders * per_sender, sw.seconds), "msg/s")]


TUNED_GC = (50_000, 20, 100)
"""A garbage-collector setting for processes holding many busy rooms (docs/performance.md)."""

_TASK_LINGER = 1.0  # the ActorSystem's default, which the kit keeps
_REST_AFTER = 10.0  # RoomKit's default: a room quiet this long rests (its models as JSON)


def _traced() -> int:
    """The memory tracemalloc traces now, garbage collected first."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def memory(
    name: str, logs: LogFactory, rooms: int = 10_000, events: int = 20_000
) -> list[Row]:
    rows: list[Row] = []
    gc.collect()
    tracemalloc.start()
    async with logs() as log, RoomKit(log=log, idle_timeout=None) as kit:
        kit.register_channel(RecordingChannel("in"))
        kit.register_channel(RecordingChannel("out0"))
        before = _traced()
        for r in range(rooms):
            await kit.create_room(room_id=f"idle-{r}")
            await kit.attach_channel(f"idle-{r}", "in")
            await kit.attach_channel(f"idle-{r}", "out0")

        def per_room(state: str, note: str) -> None:
            label = f"{state} ({rooms:,})" if state else f" ({rooms:,}, 2 channels)"
            memory = (_traced() - before) / rooms
            rows.append(row(name, f"(d) memory per idle room{label}", memory, "bytes", note))

        per_room("", "log + active actors (tasks parked) + read model")
        # An actor idle for task_linger (1 s) returns its task and stays active: what a room
        # costs between two messages a second or more apart.
        await anyio.sleep(_TASK_LINGER + 0.5)
        per_room(f", idle > {_TASK_LINGER:g} s", "log + active actors (no task) + read model")
        await anyio.sleep(_REST_AFTER - _TASK_LINGER)
        per_room(f", idle > {_REST_AFTER:g} s", "log + active actors, room at rest + read model")
        # What an idle room costs once its actors passivated (after idle_timeout, 300 s by
        # default): the log (in process for the memory log) and the read model.
        system = kit._runtime._system
        assert system is not None
        for r in range(rooms):
            await system.passivate("room", f"idle-{r}")
            await system.passivate("room-delivery", f"idle-{r}")
        per_room(", actors passivated", "log + read model")
        await _room(kit, "mem", 1)
        records_before = await log.last_version("mem")
        before_events = _traced()
        for n in range(events):
            await kit.process_inbound(message("in", n), room_id="mem")
        after_events = _traced()
        stored = await log.last_version("mem") - records_before
        rows.append(
            row(
                name,
                "(d) memory per stored message",
                (after_events - before_events) / events,
                "bytes",
                "log + read model, message + its delivery record",
            )
        )
        rows.append(
            row(
                name,
                "(d) memory per stored event",
                (after_events - before_events) / stored,
                "bytes",
                f"{stored:,} log records",
            )
        )

    tracemalloc.stop()
    return rows


async def conversation_memory(
    name: str, logs: LogFactory, rooms: int = 200, messages: int = 60
) -> list[Row]:
    """What a room costs after a conversation whose history was read (an AI channel, a
    moderation hook): while its actors hold their tasks, then idle (past task_linger)."""
    rows: list[Row] = []
    gc.collect()
    tracemalloc.start()
    async with logs() as log, RoomKit(log=log, idle_timeout=None) as kit:

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def reads_the_history(event: RoomEvent, context: RoomContext) -> None:
            len(context.recent_events)

        await _room(kit, "warm", 1)
        before = _traced()
        for r in range(rooms):
            await _room(kit, f"talk-{r}", 1)
            for n in range(messages):
                await kit.process_inbound(message("in", n), room_id=f"talk-{r}")
        busy = _traced()
        await anyio.sleep(_TASK_LINGER + 0.5)
        idle = _traced()
        await anyio.sleep(_REST_AFTER - _TASK_LINGER)
        rested = _traced()
    tracemalloc.stop()
    label = f"(d) memory per room after {messages} messages, history read ({rooms:,})"
    rows.append(row(name, label, (busy - before) / rooms, "bytes", "actors active"))
    rows.append(row(name, f"{label}, idle > {_TASK_LINGER:g} s", (idle - before) / rooms, "bytes"))
    rows.append(
        row(
            name,
            f"{label}, idle > {_REST_AFTER:g} s",
            (rested - before) / rooms,
            "bytes",
            "at rest: models and recent events as JSON only",
        )
    )
    return rows


def import_time() -> list[Row]:
    code = "import time; t = time.perf_counter(); import roomkit; print(time.perf_counter() - t)"
    full = (
        "import time; t = time.perf_counter(); from roomkit import RoomKit; "
        "print(time.perf_counter() - t)"
    )
    rows = []
    for label, snippet in (("import roomkit", code), ("from roomkit import RoomKit", full)):
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", snippet], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(5)
        ]
        rows.append(row("python", f"(e) {label}", statistics.median(runs), "s", "median of 5"))
    return rows


class _MemoryLogs:
    async def __aenter__(self) -> EventLog:
        return MemoryEventLog()

    async def __aexit__(self, *exc: object) -> None:
        return None


def memory_logs() -> AbstractAsyncContextManager[EventLog]:
    return _MemoryLogs()


async def bench_inbound(name: str, logs: LogFactory, *, quick: bool = False) -> list[Row]:
    scale = 10 if quick else 1
    rows = await one_busy_room(name, logs, 20_000 // scale)
    rows += await many_rooms(name, logs, 1_000 // scale)
    rows += await many_rooms(name, logs, 1_000 // scale, gc_threshold=TUNED_GC)
    rows += await fan_out(name, logs, 5_000 // scale)
    rows += await keyed_senders(name, logs, per_sender=100 // scale)
    rows += await memory(name, logs, 10_000 // scale, 20_000 // scale)
    rows += await conversation_memory(name, logs, 200 // scale)
    return rows


def main() -> None:
    rows = anyio.run(bench_inbound, "memory log", memory_logs)
    print_table("RoomKit inbound: memory log", rows + import_time())


if __name__ == "__main__":
    main()
