"""The RoomKit suite: the inbound workloads on the memory log and on JetStream, and their floor."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bench._table import Row
from bench.roomkit_floor import bench_floor, over_floor
from bench.roomkit_inbound import bench_inbound, import_time, memory_logs
from bench.roomkit_ownership import bench_ownership
from bench.roomkit_postgres import bench_postgres_store
from eventlog import EventLog


async def suite() -> list[tuple[str, list[Row]]]:
    from eventlog.nats import NatsEventLog
    from eventlog.testing_nats import NatsServer

    kit_rows = await bench_inbound("memory log", memory_logs)
    floor_rows = await bench_floor()
    tables = [
        ("RoomKit inbound: memory log", kit_rows),
        ("The floor under (a)-(c) (bench/roomkit_floor.py)", floor_rows),
        ("RoomKit on the memory log over the floor", over_floor(kit_rows, floor_rows)),
    ]
    with tempfile.TemporaryDirectory() as directory, NatsServer(directory) as server:

        @asynccontextmanager
        async def nats_logs() -> AsyncIterator[EventLog]:
            # A fresh stream per workload, so that each starts from an empty log.
            nats_logs.count += 1  # type: ignore[attr-defined]
            name = f"BENCH{nats_logs.count}"  # type: ignore[attr-defined]
            async with NatsEventLog(
                server.url, stream_name=name, subject_prefix=name.lower()
            ) as log:
                yield log

        nats_logs.count = 0  # type: ignore[attr-defined]
        rows = await bench_inbound("JetStream", nats_logs)
        tables.append(("RoomKit inbound: NatsEventLog (JetStream, file storage)", rows))
        tables.append(
            (
                "Rooms owned by another process (bench/roomkit_ownership.py)",
                await bench_ownership(server.url),
            )
        )
    if importlib.util.find_spec("pgserver") is not None:  # no binaries for Linux on ARM
        tables.append(
            (
                "The read model in PostgreSQL (bench/roomkit_postgres.py)",
                await bench_postgres_store(),
            )
        )
    tables.append(("import time", import_time()))
    return tables
