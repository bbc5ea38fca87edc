"""The event log suite: memory backend, then NATS JetStream against the raw client."""

from __future__ import annotations

from bench._table import Row
from bench.eventlog_memory import bench_memory_log


async def suite() -> list[tuple[str, list[Row]]]:
    tables = [("event log: MemoryEventLog", await bench_memory_log())]
    from bench.eventlog_nats import after_restart, bench_nats

    rows = [*await bench_nats(), *await after_restart()]
    tables.append(("event log: NatsEventLog vs raw nats-py", rows))
    return tables
