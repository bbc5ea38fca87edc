"""Workload (a) with the read model in PostgreSQL (``PostgresStore``), against ``InMemoryStore``.

The server is a real PostgreSQL from the ``pgserver`` package (dev extra), on a Unix socket.
Every message costs the store projection two statements (the event, the room's counters), and
``process_inbound`` waits for them (its read-your-writes barrier), so the round trips and the
server's commit (a WAL flush, unless ``synchronous_commit`` is off) set the rate.
"""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

from bench._table import Row, Stopwatch, rate, row
from bench.roomkit_inbound import _hooks, _room, message
from eventlog import MemoryEventLog
from roomkit import RoomKit
from roomkit.store.base import ConversationStore
from roomkit.store.memory import InMemoryStore
from roomkit.store.postgres import PostgresStore


async def _sequential(
    store: ConversationStore, messages: int, log: MemoryEventLog | None = None
) -> float:
    async with RoomKit(log=log or MemoryEventLog(), store=store) as kit:
        _hooks(kit)
        await _room(kit, "busy", 1)
        with Stopwatch() as watch:
            for n in range(messages):
                await kit.process_inbound(message("in", n), room_id="busy")
    return rate(messages, watch.seconds)


async def _restart(store: PostgresStore, log: MemoryEventLog) -> Row:
    """A kit starting on that log again: the tables keep the position they hold it up to."""
    records = await log.last_position()
    with Stopwatch() as watch:
        async with RoomKit(log=log, store=store) as kit:
            await kit.get_room("busy")
    return row(
        "PostgresStore",
        f"kit start and first read, on that log ({records:,} records) and its tables",
        watch.seconds * 1000,
        "ms",
        "the tables are taken up at the log position they keep",
    )


async def _rebuild(store: PostgresStore, log: MemoryEventLog) -> Row:
    """``rebuild_store()``: the tables emptied and filled again from the log, in one
    transaction (each record in a savepoint of it)."""
    records = await log.last_position()
    async with RoomKit(log=log, store=store) as kit:
        await kit.get_room("busy")
        with Stopwatch() as watch:
            await kit.rebuild_store()
    return row(
        "PostgresStore",
        f"rebuild_store() of that log ({records:,} records)",
        watch.seconds * 1000 / records,
        "ms/record",
        "one transaction; the position written once, as it commits",
    )


async def bench_postgres_store(messages: int = 2_000) -> list[Row]:
    import asyncpg  # type: ignore[import-untyped]  # no stubs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import pgserver  # type: ignore[import-untyped]  # no stubs

    name = "PostgresStore"
    label = f"(a) 1 room, {messages:,} sequential, memory log"
    rows: list[Row] = []
    in_memory = await _sequential(InMemoryStore(), messages)
    rows.append(row("InMemoryStore", label, in_memory, "msg/s"))
    with tempfile.TemporaryDirectory() as directory:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server: Any = pgserver.get_server(directory, cleanup_mode="stop")
        try:
            log = MemoryEventLog()
            restart: Row | None = None
            rebuild: Row | None = None
            for commit in ("on", "off"):
                pool = await asyncpg.create_pool(
                    server.get_uri(), server_settings={"synchronous_commit": commit}
                )
                try:
                    store = PostgresStore(pool=pool, table_prefix=f"bench_{commit}_")
                    value = await _sequential(store, messages, log if commit == "on" else None)
                    if commit == "on":
                        restart = await _restart(store, log)
                        rebuild = await _rebuild(store, log)
                finally:
                    await pool.close()
                note = (
                    f"synchronous_commit={commit}; InMemoryStore / this = {in_memory / value:.1f}"
                )
                rows.append(row(name, label, value, "msg/s", note))
            assert restart is not None and rebuild is not None
            rows.extend([restart, rebuild])
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server.cleanup()
    return rows
