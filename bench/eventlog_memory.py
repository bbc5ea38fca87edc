"""MemoryEventLog: append, replay and memory per stored event."""

from __future__ import annotations

import gc
import tracemalloc

import anyio

from bench._table import Row, Stopwatch, print_table, rate, row
from eventlog import MemoryEventLog, NewEvent

PAYLOAD = b"x" * 200


async def bench_memory_log(events: int = 100_000, streams: int = 1_000) -> list[Row]:
    rows: list[Row] = []
    name = "MemoryEventLog"

    log = MemoryEventLog()
    event = NewEvent("bench", PAYLOAD)
    with Stopwatch() as sw:
        for version in range(events):
            await log.append("one", [event], expected_version=version)
    rows.append(row(name, "sequential append, 1 stream", rate(events, sw.seconds), "appends/s"))

    log = MemoryEventLog()
    per_stream = max(events // streams, 1)

    async def writer(stream: str) -> None:
        for version in range(per_stream):
            await log.append(stream, [event], expected_version=version)

    with Stopwatch() as sw:
        async with anyio.create_task_group() as tg:
            for n in range(streams):
                tg.start_soon(writer, f"s{n}")
    total = streams * per_stream
    rows.append(
        row(name, f"concurrent append, {streams:,} streams", rate(total, sw.seconds), "appends/s")
    )

    with Stopwatch() as sw:
        replayed = 0
        position = 0
        while batch := await log.read_all(after_position=position, limit=10_000):
            replayed += len(batch)
            position = batch[-1].position
    rows.append(
        row(name, f"replay read_all {replayed:,} events", rate(replayed, sw.seconds), "events/s")
    )

    one = MemoryEventLog()
    await one.append("big", [event] * 1000, expected_version=0)
    for version in range(1000, events, 1000):
        await one.append("big", [event] * 1000, expected_version=version)
    with Stopwatch() as sw:
        stored = await one.read("big")
    rows.append(
        row(
            name,
            f"replay one stream {len(stored):,} events",
            rate(len(stored), sw.seconds),
            "events/s",
        )
    )
    del one, stored

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    log = MemoryEventLog()
    for version in range(events):
        await log.append(
            "mem", [NewEvent("bench", bytes(bytearray(PAYLOAD)))], expected_version=version
        )
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rows.append(
        row(
            name,
            "memory per stored 200-byte event",
            (after - before) / events,
            "bytes",
            "tracemalloc",
        )
    )
    return rows


def main() -> None:
    print_table("event log: memory backend", anyio.run(bench_memory_log))


if __name__ == "__main__":
    main()
