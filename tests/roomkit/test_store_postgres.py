"""PostgresStore (real PostgreSQL from pgserver) passes the ConversationStore contract, and a kit
keeps its read model there: the same read model as InMemoryStore's from the same log, rebuilt
into tables that outlive the kit."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import asyncpg
import nats
import pytest

from eventlog import EventLog, MemoryEventLog, NewEvent
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from roomkit import (
    ChannelCategory,
    HookResult,
    HookTrigger,
    Identity,
    InboundMessage,
    Observation,
    Room,
    RoomContext,
    RoomEvent,
    RoomKit,
    StoreUnavailableError,
    Task,
    TextContent,
)
from roomkit.store import ConversationStore, InMemoryStore
from roomkit.store.postgres import PostgresStore, StoreClosedError, StoreSchemaError
from roomkit.store.testing import ConversationStoreContract, make_event, make_room
from tests.postgres_fixtures import postgres_directory, start_postgres, stop_postgres
from tests.roomkit.kit_helpers import SimpleChannel, eventually, text
from tests.roomkit.test_kit_replay import new_kit, snapshot


class TestPostgresStoreContract(ConversationStoreContract):
    supports_clear = True
    keeps_position = True

    @pytest.fixture
    async def store(
        self, postgres_uri: str, postgres_prefix: str
    ) -> AsyncIterator[ConversationStore]:
        async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
            yield store


async def converse(kit: RoomKit) -> None:
    """A conversation touching every table: bindings, participants, events (blocked and with a
    NUL character), tasks, observations, read markers, an idempotency key."""

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def moderate(event: RoomEvent, context: RoomContext) -> HookResult:
        body = getattr(event.content, "body", "")
        if "secret" in body:
            return HookResult.block("no secrets")
        if "todo" in body:
            return HookResult(
                action="allow",
                tasks=[{"room_id": event.room_id, "title": "follow up"}],  # type: ignore[list-item]
                observations=[
                    {"room_id": event.room_id, "channel_id": "sms", "content": "asked"}  # type: ignore[list-item]
                ],
            )
        return HookResult.allow()

    await kit.create_room(room_id="r1", metadata={"team": "support"})
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")
    await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
    first = await kit.process_inbound(text("sms", "hello", sender="+1555", idempotency_key="m1"))
    await kit.process_inbound(text("sms", "a secret", sender="+1555"))
    await kit.process_inbound(text("sms", "a todo", sender="+1555"))
    await kit.process_inbound(text("ws", "nul \x00 inside", sender="agent"))
    assert first.event is not None
    await kit.mark_read("r1", "ws", first.event.id)
    await kit.ensure_participant("r1", "ws", "agent", display_name="Agent")
    await kit.create_room(room_id="r2")
    await kit.attach_channel("r2", "sms")
    await kit.close_room("r2")


@asynccontextmanager
async def postgres_kit(log: EventLog, uri: str, prefix: str) -> AsyncIterator[RoomKit]:
    # The kit does not close its store (0.3.0's close() did not either): its owner does.
    async with (
        PostgresStore(uri, table_prefix=prefix) as store,
        new_kit(log, store=store) as kit,
    ):
        yield kit


async def test_a_kit_on_postgres_has_the_read_model_a_kit_in_memory_has(
    event_log: EventLog, postgres_uri: str, postgres_prefix: str
) -> None:
    async with postgres_kit(event_log, postgres_uri, postgres_prefix) as kit:
        await converse(kit)
        on_postgres = await snapshot(kit)
        assert len(on_postgres["r1"]["events"]) > 5 and on_postgres["r1"]["tasks"]
        timeline = await kit.get_timeline("r1", limit=100)
        assert any(
            isinstance(e.content, TextContent) and e.content.body == "nul \x00 inside"
            for e in timeline
        )
    async with new_kit(event_log, store=InMemoryStore()) as in_memory:
        assert await snapshot(in_memory) == on_postgres


async def test_a_message_from_a_sender_with_a_huge_address_reaches_the_tables(
    event_log: EventLog, postgres_uri: str, postgres_prefix: str
) -> None:
    # A sender's address is external input; past some 2,700 bytes the index refused the
    # participant, and the record's message was missing from the tables with it.
    # Random digits, so that no compression makes it short.
    digits = random.Random(7)
    sender = "+1" + "".join(digits.choice("0123456789") for _ in range(8000))
    async with postgres_kit(event_log, postgres_uri, postgres_prefix) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        result = await kit.process_inbound(text("sms", "hello", sender=sender))
        assert result.event is not None
        await kit.ensure_participant("r1", "sms", sender)
        assert [p.id for p in await kit.store.list_participants("r1")] == [sender]
        on_postgres = await snapshot(kit)
        assert [e["id"] for e in on_postgres["r1"]["events"]][-1:] == [result.event.id]
    async with new_kit(event_log, store=InMemoryStore()) as in_memory:
        assert await snapshot(in_memory) == on_postgres


class CountingStore(PostgresStore):
    """Counts the records it applies."""

    applied = 0

    async def apply_record(
        self,
        position: int,
        apply: Callable[[], Awaitable[None]],
        *,
        after: int = 0,
        timestamp: float | None = None,
    ) -> bool:
        done = await super().apply_record(position, apply, after=after, timestamp=timestamp)
        self.applied += done
        return done


class CountingStoreOfBefore(PostgresStore):
    """Counts the records it applies, as an app's override written before ``apply_record``
    took the record's timestamp: the kit calls it without one."""

    applied = 0

    async def apply_record(
        self, position: int, apply: Callable[[], Awaitable[None]], *, after: int = 0
    ) -> bool:
        done = await super().apply_record(position, apply, after=after)
        self.applied += done
        return done


@pytest.mark.parametrize("counting", [CountingStore, CountingStoreOfBefore])
async def test_a_restarted_kit_takes_the_tables_up_where_they_are(
    event_log: EventLog,
    postgres_uri: str,
    postgres_prefix: str,
    counting: type[CountingStore | CountingStoreOfBefore],
) -> None:
    store: CountingStore | CountingStoreOfBefore = counting(
        postgres_uri, table_prefix=postgres_prefix
    )
    async with store, new_kit(event_log, store=store) as kit:
        await converse(kit)
        before = await snapshot(kit)
        _, timestamp = await store.applied_record()
        assert (timestamp is None) == (counting is CountingStoreOfBefore)
    # A new process: the tables are as the last kit left them, with the log position they
    # hold (and the record's timestamp, which the log's record there has); the kit applies
    # nothing of the log before it (it replayed the whole log before).
    store = counting(postgres_uri, table_prefix=postgres_prefix)
    async with store, new_kit(event_log, store=store) as again:
        assert store.applied == 0
        assert await store.applied_position() == await event_log.last_position() > 0
        assert await snapshot(again) == before
        room = await again.get_room("r1")
        assert room.event_count == len(before["r1"]["events"])
        duplicate = await again.process_inbound(
            text("sms", "hello", sender="+1555", idempotency_key="m1")
        )
        assert duplicate.blocked and duplicate.reason == "duplicate"
        assert await snapshot(again) == before
        await again.rebuild_store()
        assert await snapshot(again) == before


@pytest.mark.parametrize("emptied", ["truncated", "position only"])
async def test_tables_an_operator_emptied_are_filled_again_from_the_log(
    postgres_uri: str, postgres_prefix: str, emptied: str
) -> None:
    # Without the position's row, applied_position() was None: the kit's start failed with a
    # TypeError. With the other rows left, applying the log again over them counted each
    # message twice.
    log = MemoryEventLog()
    async with postgres_kit(log, postgres_uri, postgres_prefix) as kit:
        await converse(kit)
        before = await snapshot(kit)
    tables = [f"{postgres_prefix}{name}" for name in ("position", "rooms", "events")]
    admin = await asyncpg.connect(postgres_uri)
    try:
        if emptied == "truncated":
            await admin.execute(f"TRUNCATE {', '.join(tables)}")
        else:
            await admin.execute(f"DELETE FROM {tables[0]}")
    finally:
        await admin.close()
    store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    async with store:
        assert await store.applied_position() == 0
        async with new_kit(log, store=store) as again:
            assert await snapshot(again) == before
            assert await store.applied_position() == await log.last_position()
            room = await again.get_room("r1")
            assert room.event_count == len(before["r1"]["events"])
            # A rebuild finding no row to lock writes the position all the same.
            admin = await asyncpg.connect(postgres_uri)
            try:
                await admin.execute(f"DELETE FROM {tables[0]}")
            finally:
                await admin.close()
            await again.rebuild_store()
            assert await snapshot(again) == before
            assert await store.applied_position() == await log.last_position()


async def test_a_message_sent_after_an_operator_emptied_the_tables_reaches_them(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # Each record's update of the position found no row: every record after the TRUNCATE was
    # skipped (a TypeError logged), while its caller was answered.
    log = MemoryEventLog()
    async with postgres_kit(log, postgres_uri, postgres_prefix) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.process_inbound(text("sms", "before"), room_id="r1")
        admin = await asyncpg.connect(postgres_uri)
        try:
            await admin.execute(
                "TRUNCATE "
                + ", ".join(f"{postgres_prefix}{name}" for name in ("position", "rooms", "events"))
            )
        finally:
            await admin.close()
        await kit.process_inbound(text("sms", "after"), room_id="r1")
        timeline = await kit.get_timeline("r1", limit=100)
        bodies = [e.content.body for e in timeline if isinstance(e.content, TextContent)]
        assert bodies == ["before", "after"]
        assert (await kit.get_room("r1")).event_count == len(timeline)
        on_postgres = await snapshot(kit)
    async with new_kit(log, store=InMemoryStore()) as in_memory:
        assert await snapshot(in_memory) == on_postgres


async def test_kits_of_two_processes_sharing_the_tables_apply_each_record_once(
    nats_server: NatsServer, postgres_uri: str, postgres_prefix: str
) -> None:
    """Two kits on one NATS log, each with its own store on the same tables (two processes):
    each follows the whole log, and each record goes into the tables once (a message applied
    by both was counted twice: event_count twice the timeline's length)."""
    async with (
        NatsEventLog(nats_server.url) as log_a,
        NatsEventLog(nats_server.url) as log_b,
        postgres_kit(log_a, postgres_uri, postgres_prefix) as a,
        postgres_kit(log_b, postgres_uri, postgres_prefix) as b,
    ):
        await converse(a)
        await b.process_inbound(text("ws", "from the other process", sender="agent"))
        await a.process_inbound(text("sms", "and back", sender="+1555"))
        last = await log_a.last_position()
        for kit in (a, b):
            # Both projections followed the whole log (each applied or skipped every record).
            projection = kit._runtime.projection

            async def caught_up(projection: Any = projection) -> bool:
                return bool(projection.checkpoint >= last)

            await eventually(caught_up, what="the kit's projection at the log's end")
        for kit in (a, b):
            room = await kit.get_room("r1")
            assert room.event_count == len(await kit.get_timeline("r1", limit=1000))
        on_postgres = await snapshot(a)
        assert await snapshot(b) == on_postgres
        assert last > 0
    async with NatsEventLog(nats_server.url) as log, new_kit(log, store=InMemoryStore()) as mem:
        assert await snapshot(mem) == on_postgres


async def test_a_rebuild_while_another_process_writes_loses_nothing_and_hides_nothing(
    nats_server: NatsServer, postgres_uri: str, postgres_prefix: str
) -> None:
    """Kit A rebuilds the shared tables while kit B records messages and reads: B never finds
    the room gone (the rebuild is one transaction), and no record B's projection would have
    applied meanwhile is lost (it waits for the rebuild, then skips what it applied)."""
    async with (
        NatsEventLog(nats_server.url) as log_a,
        NatsEventLog(nats_server.url) as log_b,
        postgres_kit(log_a, postgres_uri, postgres_prefix) as a,
        postgres_kit(log_b, postgres_uri, postgres_prefix) as b,
    ):
        await converse(a)
        for n in range(30):
            await a.process_inbound(text("sms", f"before {n}", sender="+1555"))
        seen_gone = False

        async def b_writes_and_reads() -> None:
            nonlocal seen_gone
            for n in range(10):
                await b.process_inbound(text("ws", f"during {n}", sender="agent"), room_id="r1")
                seen_gone |= await b.store.get_room("r1") is None

        async with anyio.create_task_group() as tg:
            tg.start_soon(b_writes_and_reads)
            await a.rebuild_store()
        assert not seen_gone
        last = await log_a.last_position()
        for kit in (a, b):
            projection = kit._runtime.projection

            async def caught_up(projection: Any = projection) -> bool:
                return bool(projection.checkpoint >= last)

            await eventually(caught_up, what="the kit's projection at the log's end")
        on_postgres = await snapshot(a)
        room = on_postgres["r1"]
        assert room["room"]["event_count"] == len(room["events"])
    async with NatsEventLog(nats_server.url) as log, new_kit(log, store=InMemoryStore()) as mem:
        assert await snapshot(mem) == on_postgres


async def test_tables_filled_from_another_log_are_filled_again(
    postgres_uri: str, postgres_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with postgres_kit(MemoryEventLog(), postgres_uri, postgres_prefix) as kit:
        await converse(kit)
    # A new, shorter log (an in-memory one after a restart, say): the tables hold a position
    # past its end, so what they hold is not its read model.
    log = MemoryEventLog()
    with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
        async with postgres_kit(log, postgres_uri, postgres_prefix) as kit:
            await kit.create_room(room_id="fresh")
            assert [r.id for r in await kit.store.list_rooms()] == ["fresh"]
    assert any("filled from another log" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", ["deleted and made again", "purged"])
async def test_tables_of_a_stream_made_anew_are_filled_again_from_it(
    nats_server: NatsServer,
    postgres_uri: str,
    postgres_prefix: str,
    caplog: pytest.LogCaptureFixture,
    stream: str,
) -> None:
    # The kit checked only that the tables' position was within the log. A stream deleted,
    # made again and written past that position by another process, or purged (JetStream
    # goes on counting: its last position stays the tables'), left the tables with the old
    # stream's room and without the new one's: reading it raised RoomNotFoundError, and a
    # room made again under the old id showed the purged messages.
    async with (
        NatsEventLog(nats_server.url) as log,
        postgres_kit(log, postgres_uri, postgres_prefix) as kit,
    ):
        await kit.create_room(room_id="old")
        await kit.attach_channel("old", "sms")
        for n in range(2):
            await kit.process_inbound(text("sms", f"old {n}"), room_id="old")
        held = await log.last_position()
    nc = await nats.connect(nats_server.url)
    try:
        if stream == "purged":
            await nc.jetstream().purge_stream(log.stream_name)
        else:
            await nc.jetstream().delete_stream(log.stream_name)
    finally:
        await nc.close()
    if stream == "deleted and made again":
        # Another process (no tables) makes the stream again and writes past their position.
        async with NatsEventLog(nats_server.url) as log, new_kit(log) as other:
            await other.create_room(room_id="new")
            await other.attach_channel("new", "sms")
            for n in range(4):
                await other.process_inbound(text("sms", f"new {n}"), room_id="new")
            assert await log.last_position() > held
    with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
        async with (
            NatsEventLog(nats_server.url) as log,
            postgres_kit(log, postgres_uri, postgres_prefix) as kit,
        ):
            on_postgres = await snapshot(kit)
            await kit.create_room(room_id="old")
            assert await kit.get_timeline("old", limit=100) == []
            assert (await kit.get_room("old")).event_count == 0
    assert any("filled from another log" in r.getMessage() for r in caplog.records)
    async with NatsEventLog(nats_server.url) as log, new_kit(log, store=InMemoryStore()) as mem:
        expected = await snapshot(mem)
    assert list(on_postgres) == ([] if stream == "purged" else ["new"])
    assert on_postgres == {room: expected[room] for room in on_postgres}


async def test_tables_whose_record_the_stream_limits_dropped_are_kept(
    nats_server: NatsServer,
    postgres_uri: str,
    postgres_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The kit took a log without the record at the tables' position for another log's: the
    # stream's limits (discard=old) had dropped it while later records remained, and the
    # tables were emptied and filled again without the rooms whose early records were
    # dropped (their actors still resumed them from their snapshots).
    tables = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    async with NatsEventLog(nats_server.url) as log, tables, new_kit(log, store=tables) as kit:
        await kit.create_room(room_id="r")
        await kit.attach_channel("r", "sms")
        for n in range(3):
            await kit.process_inbound(text("sms", f"first {n}"), room_id="r")
        held = await tables.applied_position()
    # Another process (with a store of its own) goes on with the room.
    async with NatsEventLog(nats_server.url) as log, new_kit(log) as other:
        for n in range(3):
            await other.process_inbound(text("sms", f"then {n}"), room_id="r")
        last = await log.last_position()
    nc = await nats.connect(nats_server.url)
    try:
        # The operator's limit keeps the messages after the one of the tables' position
        # alone (the last record of message ``seq`` is at position ``seq * 1000``).
        info = await nc.jetstream().stream_info(log.stream_name)
        info.config.max_msgs = (last - held) // 1000
        info = await nc.jetstream().update_stream(info.config)
        assert info.state.first_seq * 1000 > held
    finally:
        await nc.close()
    store = CountingStore(postgres_uri, table_prefix=postgres_prefix)
    with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
        async with NatsEventLog(nats_server.url) as log, store, new_kit(log, store=store) as kit:
            bodies = [
                e.content.body
                for e in await kit.get_timeline("r", limit=100)
                if isinstance(e.content, TextContent)
            ]
            assert bodies == [f"first {n}" for n in range(3)] + [f"then {n}" for n in range(3)]
            assert store.applied > 0
    assert not any("filled from another log" in r.getMessage() for r in caplog.records)


async def test_tables_of_a_stream_made_anew_without_a_record_there_are_not_kept(
    nats_server: NatsServer,
    postgres_uri: str,
    postgres_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tables kept when the limits dropped their record (above) are not kept on a stream made
    # anew that has no record at their position but records past it (its messages hold the
    # events differently): it holds records before it too, written after the tables' own.
    async with NatsEventLog(nats_server.url) as log, new_kit(log) as other:
        await other.create_room(room_id="new")
        await other.attach_channel("new", "sms")
        for n in range(4):
            await other.process_inbound(text("sms", f"new {n}"), room_id="new")
        positions = [record.position for record in await log.read_all()]
    held = positions[-1] - 1  # no record there: the last of its message is at seq * 1000
    assert held not in positions and held > positions[0]
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as tables:
        # Filled from the stream deleted before, whose record there is older.
        assert await tables.apply_record(
            held, lambda: tables.create_room(make_room("old")), timestamp=1.0
        )
    with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
        async with (
            NatsEventLog(nats_server.url) as log,
            postgres_kit(log, postgres_uri, postgres_prefix) as kit,
        ):
            assert [room.id for room in await kit.store.list_rooms(limit=10)] == ["new"]
    assert any("filled from another log" in r.getMessage() for r in caplog.records)


async def test_a_record_with_no_time_at_the_tables_position_is_recognised(
    postgres_uri: str,
    postgres_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A record another writer logged with a NaN timestamp (which appends now refuse) at the
    # tables' position: NaN is not equal to itself, and the tables were taken for another
    # log's, emptied and filled again from the whole log at every start.
    log = MemoryEventLog()
    tables = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    async with tables, new_kit(log, store=tables) as kit:
        await converse(kit)
        before = await snapshot(kit)
        with monkeypatch.context() as unchecked:
            unchecked.setattr("eventlog._streams._problem", lambda event: None)
            await log.append(
                "another-app",
                [NewEvent(type="x", data=b"{}", timestamp=math.nan)],
                expected_version=None,
            )
        nan = await log.last_position()
        await eventually(lambda: _applied(tables, nan), what="the record applied")
        assert math.isnan((await tables.applied_record())[1] or 0.0)
    store = CountingStore(postgres_uri, table_prefix=postgres_prefix)
    with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
        async with store, new_kit(log, store=store) as again:
            assert store.applied == 0
            assert await snapshot(again) == before
    assert not any("filled from another log" in r.getMessage() for r in caplog.records)


async def _applied(store: PostgresStore, position: int) -> bool:
    return await store.applied_position() == position


class WatchedPositionStore(PostgresStore):
    """An app's PostgresStore that overrides ``applied_position`` (to watch it)."""

    asked = 0

    async def applied_position(self) -> int:
        self.asked += 1
        return await super().applied_position()


async def test_an_override_of_applied_position_is_consulted_at_start(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # The kit starting read the tables' position and record in one query of its own: a
    # subclass's applied_position was no longer consulted.
    log = MemoryEventLog()
    tables = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    async with tables, new_kit(log, store=tables) as kit:
        await converse(kit)
        before = await snapshot(kit)
        kept = await tables.applied_record()
    store = WatchedPositionStore(postgres_uri, table_prefix=postgres_prefix)
    async with store, new_kit(log, store=store) as again:
        assert store.asked > 0
        assert await snapshot(again) == before
        # The timestamp kept with the position still comes with it.
        assert await store.applied_record() == kept
        assert kept[1] is not None


async def test_the_tables_keep_the_timestamp_of_the_record_at_their_position(
    postgres_uri: str, postgres_prefix: str
) -> None:
    async def create(room_id: str) -> None:
        await store.create_room(make_room(room_id))

    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
        assert await store.applied_record() == (0, None)
        assert await store.apply_record(3, lambda: create("r3"), timestamp=1.25)
        assert not await store.apply_record(2, lambda: create("r2"), timestamp=9.0)
        assert await store.applied_record() == (3, 1.25)
        assert await store.apply_record(5, lambda: create("r5"))  # given none: not known
        assert await store.applied_record() == (5, None)
        async with store.rebuilding():
            await store.clear()
            assert await store.apply_record(1, lambda: create("r1"), timestamp=2.5)
        assert await store.applied_record() == (1, 2.5)
        await store.clear()
        assert await store.applied_record() == (0, None)


async def test_tables_made_before_they_kept_the_record_are_taken_up_as_they_are(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # The tables keep the timestamp of the record at their position: tables made before
    # (without it) get its columns in place, not refused nor filled again. They keep schema
    # version 1: made version 2, a process of the RoomKit before (which writes the position
    # alone, and does not mind the columns) refused them and could not restart.
    log = MemoryEventLog()
    async with postgres_kit(log, postgres_uri, postgres_prefix) as kit:
        await converse(kit)
        before = await snapshot(kit)
    position = f"{postgres_prefix}position"
    version = f"SELECT obj_description('{position}'::regclass, 'pg_class')"
    admin = await asyncpg.connect(postgres_uri)
    try:
        assert await admin.fetchval(version) == "RoomKit schema 1"
        await admin.execute(
            f"ALTER TABLE {position} DROP COLUMN record_position, DROP COLUMN record_time"
        )
        store = CountingStore(postgres_uri, table_prefix=postgres_prefix)
        async with store, new_kit(log, store=store) as again:
            assert store.applied == 0
            assert await snapshot(again) == before
            # Not known for the record the tables were left at; known from the next one on.
            assert await store.applied_record() == (await log.last_position(), None)
        assert await admin.fetchval(version) == "RoomKit schema 1"
        # A process of the RoomKit before moves the position alone, as it always did.
        held = await admin.fetchval(f"SELECT position FROM {position}")
        await admin.execute(f"UPDATE {position} SET position = position + 1 WHERE id = 1")
        async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
            assert await store.applied_record() == (held + 1, None)
        await admin.execute(f"UPDATE {position} SET position = position - 1 WHERE id = 1")
    finally:
        await admin.close()
    async with postgres_kit(log, postgres_uri, postgres_prefix) as kit:
        await kit.process_inbound(text("sms", "after the upgrade", sender="+1555"))
        # The last record the tables took (delivery outcomes go into no table).
        last = [r for r in await log.read_all() if r.type != "delivery.recorded"][-1]
        assert await kit.store.applied_record() == (last.position, last.timestamp)


async def test_stores_with_other_prefixes_share_a_database_apart(
    postgres_uri: str, postgres_prefix: str
) -> None:
    async with (
        PostgresStore(postgres_uri, table_prefix=postgres_prefix + "a_") as one,
        PostgresStore(postgres_uri, table_prefix=postgres_prefix + "b_") as other,
    ):
        await one.create_room(make_room("r1"))
        await one.add_event(make_event("r1"))
        assert await other.get_room("r1") is None
        assert await other.get_event_count("r1") == 0
        assert await one.get_event_count("r1") == 1


async def test_what_it_stored_outlives_the_store_and_a_given_pool_stays_open(
    postgres_uri: str, postgres_prefix: str
) -> None:
    pool = await asyncpg.create_pool(postgres_uri, min_size=1, max_size=2)
    try:
        async with PostgresStore(pool=pool, table_prefix=postgres_prefix) as store:
            await store.create_room(make_room("r1", metadata={"k": 1}))
        assert await pool.fetchval("SELECT 1") == 1  # not closed by the store
        # Used without init(): the first call opens the pool and finds the tables.
        later = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
        try:
            room = await later.get_room("r1")
            assert room is not None and room.metadata == {"k": 1}
        finally:
            await later.close()
    finally:
        await pool.close()


async def test_a_given_pool_with_a_json_codec_reads_and_writes_the_same_json(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # A pool set up as asyncpg's documentation shows (a json codec): each model's JSON was
    # written as a JSON string, which SQL, and stores on other pools, could not read.
    async def with_codec(conn: Any) -> None:
        await conn.set_type_codec(
            "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )

    pool = await asyncpg.create_pool(postgres_uri, min_size=1, max_size=2, init=with_codec)
    try:
        async with (
            PostgresStore(pool=pool, table_prefix=postgres_prefix) as coded,
            PostgresStore(postgres_uri, table_prefix=postgres_prefix) as plain,
        ):
            for store, room_id in ((coded, "by-codec"), (plain, "by-plain")):
                await store.create_room(make_room(room_id, metadata={"k": 1}))
                await store.add_event(make_event(room_id, "hi", id=f"e-{room_id}"))
                await store.create_identity(Identity(id=f"i-{room_id}", display_name="Ann"))
            for store in (coded, plain):
                assert [r.id for r in await store.list_rooms()] == ["by-codec", "by-plain"]
                for room_id in ("by-codec", "by-plain"):
                    room = await store.get_room(room_id)
                    assert room is not None and room.metadata == {"k": 1}
                    event = await store.get_event(f"e-{room_id}")
                    assert event is not None and event.room_id == room_id
                    assert await store.get_identity(f"i-{room_id}") is not None
            ids = await pool.fetch(f"SELECT data->>'id' AS id FROM {postgres_prefix}rooms")
            assert sorted(row["id"] for row in ids) == ["by-codec", "by-plain"]
    finally:
        await pool.close()


async def test_two_stores_creating_the_tables_at_once_both_start(
    postgres_uri: str, postgres_prefix: str
) -> None:
    stores = [PostgresStore(postgres_uri, table_prefix=postgres_prefix) for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for store in stores:
                tg.start_soon(store.init)
        await stores[0].create_room(make_room("r1"))
        assert (await stores[3].get_room("r1")) is not None
    finally:
        for store in stores:
            await store.close()


async def test_tables_of_an_older_schema_are_refused_and_dropping_them_rebuilds_them(
    postgres_uri: str, postgres_prefix: str
) -> None:
    log = MemoryEventLog()
    async with new_kit(log, store=InMemoryStore()) as in_memory:
        await converse(in_memory)
        expected = await snapshot(in_memory)
    # The tables as a RoomKit before the schema's version left them (commit 07ef95c^: no
    # idempotency table, no counter columns; no version): each record failed on them, and
    # was skipped while its caller was answered.
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
        await store.create_identity(Identity(id="i1", display_name="Ann"))
    admin = await asyncpg.connect(postgres_uri)
    try:
        await admin.execute(
            f"""DROP TABLE {postgres_prefix}idempotency;
            ALTER TABLE {postgres_prefix}rooms DROP COLUMN event_count, DROP COLUMN latest_index;
            COMMENT ON TABLE {postgres_prefix}position IS NULL"""
        )
        store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
        with pytest.raises(StoreSchemaError, match="kept no version.* version is 1") as refused:
            async with new_kit(log, store=store) as kit:
                await kit.get_room("r1")
        await store.close()
        # What the error says to do: drop the tables the log rebuilds, identities kept.
        drop = re.search(r"DROP TABLE [^)]*", str(refused.value))
        assert drop is not None and f"{postgres_prefix}identities" not in drop[0]
        await admin.execute(drop[0])
    finally:
        await admin.close()
    store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    async with store, new_kit(log, store=store) as kit:
        assert await snapshot(kit) == expected
        assert await store.get_identity("i1") == Identity(id="i1", display_name="Ann")


async def test_tables_of_another_schema_version_are_refused(
    postgres_uri: str, postgres_prefix: str
) -> None:
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
        await store.create_room(make_room("r1"))
    admin = await asyncpg.connect(postgres_uri)
    try:
        for change, found in [
            ("COMMENT ON TABLE {p}position IS 'RoomKit schema 2'", "schema version 2"),
            # Older still: tables from before the position's (the schema is not created
            # next to them).
            ("DROP TABLE {p}position", "kept no version"),
        ]:
            await admin.execute(change.format(p=postgres_prefix))
            store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
            with pytest.raises(StoreSchemaError, match=found):
                await store.get_room("r1")
            await store.close()
        assert await admin.fetchval("SELECT to_regclass($1)", f"{postgres_prefix}position") is None
    finally:
        await admin.close()


async def test_a_store_refusing_the_tables_closes_the_pool_it_opened(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # Each refused store left its pool open, a connection held, with nobody to close it.
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix):
        pass
    admin = await asyncpg.connect(postgres_uri)
    given = await asyncpg.create_pool(postgres_uri, min_size=1, max_size=1)
    count = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    try:
        await admin.execute(f"COMMENT ON TABLE {postgres_prefix}position IS 'RoomKit schema 2'")
        connections = await admin.fetchval(count)
        for _ in range(3):
            with pytest.raises(StoreSchemaError):
                async with PostgresStore(postgres_uri, table_prefix=postgres_prefix):
                    pass
        assert await admin.fetchval(count) == connections
        # A pool the app gave stays open.
        with pytest.raises(StoreSchemaError):
            await PostgresStore(pool=given, table_prefix=postgres_prefix).init()
        assert await given.fetchval("SELECT 1") == 1
    finally:
        await given.close()
        await admin.close()


async def test_a_room_whose_json_jsonb_refuses_is_counted_all_the_same(
    postgres_uri: str, postgres_prefix: str
) -> None:
    """count_event changes the room as jsonb, which refuses a NUL character."""
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
        await store.create_room(make_room("nul", metadata={"note": "a\x00b"}))
        await store.create_room(make_room("plain"))
        for room_id in ("nul", "plain"):
            await store.count_event(room_id, 7, at)
            await store.count_event(room_id, 3, None)
            room = await store.get_room(room_id)
            assert room is not None
            assert (room.event_count, room.latest_index) == (2, 7)
            assert room.timers.last_activity_at == at
        nul = await store.get_room("nul")
        assert nul is not None and nul.metadata == {"note": "a\x00b"}
        await store.count_event("unknown", 1, at)  # ignored
        assert await store.get_room("unknown") is None


async def test_a_message_sent_while_the_database_restarts_reaches_the_read_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server goes away after a conversation. A message that needs a read of the store
    (routing) is refused with a typed error, nothing recorded; one sent to its room is
    committed to the log, and its call returns once the restarted server holds it."""
    with postgres_directory() as directory:
        await restart_during_a_message(directory, caplog)


async def restart_during_a_message(directory: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = start_postgres(directory)
    uri = server.get_uri()
    try:
        log = MemoryEventLog()
        async with postgres_kit(log, uri, "r_") as kit:
            await converse(kit)
            first = await snapshot(kit)
            stop_postgres(server)
            with pytest.raises(StoreUnavailableError):
                await kit.process_inbound(text("sms", "routed while it is down"))
            second: list[Any] = []

            async def send() -> None:
                message = text("sms", "while it restarts")
                second.append(await kit.process_inbound(message, room_id="r1"))

            with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send)
                    await anyio.sleep(0.5)
                    assert not second  # waiting for the read model
                    server = await anyio.to_thread.run_sync(start_postgres, directory)
            assert second and second[0].event is not None
            now = await snapshot(kit)
            events, before = now["r1"]["events"], first["r1"]["events"]
            assert events[: len(before)] == before
            # The message, and the AI channel's reply to it.
            assert [e["id"] for e in events[len(before) :]][0] == second[0].event.id
            assert now["r1"]["room"]["event_count"] == len(events)
        # Nothing skipped or counted twice: the read model a kit in memory makes of the log.
        async with new_kit(log, store=InMemoryStore()) as in_memory:
            assert await snapshot(in_memory) == now
        assert any("the store is unavailable" in r.getMessage() for r in caplog.records)
    finally:
        stop_postgres(server)


async def test_identity_writes_at_once_leave_owners_and_addresses_agreeing(
    postgres_uri: str, postgres_prefix: str
) -> None:
    """Two writes claiming one address at once (two tasks, or two processes' stores): the
    result is one order's or the other's, never an address resolved to an identity that does
    not list it, or listed by two."""

    async def agree(store: PostgresStore, ids: list[str], address: str) -> None:
        owner = await store.resolve_identity("sms", address)
        listing = []
        for identity_id in ids:
            identity = await store.get_identity(identity_id)
            if identity is not None and address in identity.channel_addresses.get("sms", []):
                listing.append(identity_id)
        assert listing == ([] if owner is None else [owner.id]), (address, owner, listing)

    async with (
        PostgresStore(postgres_uri, table_prefix=postgres_prefix) as one,
        PostgresStore(postgres_uri, table_prefix=postgres_prefix) as other,
    ):
        for n in range(15):
            u, v, z = f"u{n}", f"v{n}", f"z{n}"
            for identity_id in (u, v, z):
                await one.create_identity(Identity(id=identity_id))
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.link_address, u, "sms", f"+1{n}")
                tg.start_soon(other.link_address, v, "sms", f"+1{n}")
                tg.start_soon(one.link_address, z, "sms", f"+2{n}")
                tg.start_soon(other.create_identity, Identity(id=z, display_name="again"))
            await agree(one, [u, v], f"+1{n}")
            await agree(one, [z], f"+2{n}")


async def test_task_and_observation_writes_at_once_leave_rows_and_rooms_agreeing(
    postgres_uri: str, postgres_prefix: str
) -> None:
    """Writes of one task (observation) id for three rooms at once: a concurrent insert won
    the upsert's conflict, and the row kept its room while its data named another (listed
    under one room, read back as another's, in 29 of 30 trials)."""
    async with (
        PostgresStore(postgres_uri, table_prefix=postgres_prefix) as one,
        PostgresStore(postgres_uri, table_prefix=postgres_prefix) as other,
    ):
        rooms = ["A", "B", "C"]
        for room_id in rooms:
            await one.create_room(Room(id=room_id))
        for n in range(10):
            async with anyio.create_task_group() as tg:
                for store, room_id in zip((one, other, one), rooms, strict=True):
                    tg.start_soon(store.add_task, Task(id=f"t{n}", room_id=room_id, title="x"))
                    observation = Observation(
                        id=f"o{n}", room_id=room_id, channel_id="c", content="x"
                    )
                    tg.start_soon(store.add_observation, observation)
            task = await one.get_task(f"t{n}")
            assert task is not None
            assert [r for r in rooms if f"t{n}" in {t.id for t in await one.list_tasks(r)}] == [
                task.room_id
            ]
            found = [
                (r, o) for r in rooms for o in await one.list_observations(r) if o.id == f"o{n}"
            ]
            assert [(r, o.room_id) for r, o in found] in ([(r, r)] for r in rooms)


async def test_calls_after_close_say_the_store_is_closed(
    postgres_uri: str, postgres_prefix: str
) -> None:
    store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    await store.create_room(make_room("r1"))
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_room("r1")  # not a pool opened again for nobody to close
    await store.init()
    try:
        assert await store.get_room("r1") is not None
    finally:
        await store.close()


async def test_a_message_recorded_while_the_store_is_closed_reaches_it_once_opened(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # A closed store raised a plain RuntimeError, which the store projection took for a
    # record it could not apply: skipped, the message was missing from the read model for
    # good (its room counted the others only).
    async with (
        PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store,
        new_kit(MemoryEventLog(), store=store) as kit,
    ):
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.process_inbound(text("sms", "one"), room_id="r1")
        await store.close()
        sent: list[Any] = []

        async def send() -> None:
            sent.append(await kit.process_inbound(text("sms", "two"), room_id="r1"))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.sleep(0.3)
                assert not sent  # waiting for the read model
                await store.init()
            await kit.process_inbound(text("sms", "three"), room_id="r1")
        assert not sent[0].blocked
        timeline = await kit.get_timeline("r1", limit=100)
        bodies = [e.content.body for e in timeline if isinstance(e.content, TextContent)]
        assert bodies[-3:] == ["one", "two", "three"]
        room = await kit.get_room("r1")
        assert room.event_count == len(timeline)


@pytest.mark.parametrize("step", ["pool", "tables"])
async def test_a_close_while_the_store_opens_leaves_it_closed(
    postgres_uri: str, postgres_prefix: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closed as it made its pool, the store went on and opened all the same (the pool left
    # to nobody); closed as it made its tables, it said it was ready with no pool, and every
    # call failed with an AttributeError, init() included.
    closing, closed = anyio.Event(), anyio.Event()

    async def paused() -> None:
        closing.set()
        await closed.wait()

    if step == "pool":
        create_pool = asyncpg.create_pool

        async def slow_pool(*args: Any, **kwargs: Any) -> Any:
            pool = await create_pool(*args, **kwargs)
            await paused()
            return pool

        monkeypatch.setattr(asyncpg, "create_pool", slow_pool)
    else:
        create_tables = PostgresStore._create_tables

        async def slow_tables(self: PostgresStore) -> None:
            await paused()
            await create_tables(self)

        monkeypatch.setattr(PostgresStore, "_create_tables", slow_tables)
    store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    failed: list[BaseException] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_get_room_noting_failure, store, failed)
            await closing.wait()
            await store.close()
            closed.set()
        assert [type(exc) for exc in failed] == [StoreClosedError]
        assert store._pool is None
        with pytest.raises(StoreClosedError):
            await store.get_room("r1")
        monkeypatch.undo()
        async with store:
            assert await store.get_room("r1") is None


async def _get_room_noting_failure(store: PostgresStore, failed: list[BaseException]) -> None:
    """Read room r1, noting what the read raised (a store closed under the call)."""
    try:
        await store.get_room("r1")
    except Exception as exc:
        failed.append(exc)


async def test_a_call_waiting_for_a_connection_as_the_store_closes_says_it_is_closed(
    postgres_uri: str, postgres_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It got asyncpg's InterfaceError ("pool is closing"): the store projection took it for a
    # record that cannot be stored and skipped the record for good, where it holds one the
    # store is closed for until init() opens the store again.
    connecting, connect = anyio.Event(), anyio.Event()
    pools: list[Any] = []
    create_pool = asyncpg.create_pool

    async def gate(conn: Any) -> None:
        if pools and not connect.is_set():  # the pool's later connections
            connecting.set()
            await connect.wait()

    async def gated_pool(*args: Any, **kwargs: Any) -> Any:
        pools.append(await create_pool(*args, init=gate, **kwargs))
        return pools[-1]

    monkeypatch.setattr(asyncpg, "create_pool", gated_pool)
    store = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    await store.init()
    await pools[0].expire_connections()  # the next call connects anew, and waits at the gate
    failed: list[BaseException] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_get_room_noting_failure, store, failed)
            await connecting.wait()
            tg.start_soon(store.close)
            await anyio.sleep(0.1)
            connect.set()
        assert [type(exc) for exc in failed] == [StoreClosedError]
        async with store:
            assert await store.get_room("r1") is None


async def test_a_pool_the_app_gave_and_closed_is_not_said_closed_by_the_store(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # StoreClosedError says init() opens the store again, and the kit's projection waits for
    # that: for a pool the app closed, which init() cannot open, it waited for ever (every
    # message then held until process_timeout).
    pool = await asyncpg.create_pool(postgres_uri, min_size=1)
    store = PostgresStore(pool=pool, table_prefix=postgres_prefix)
    await store.init()
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError, match="pool is closed"):
        await store.get_room("r1")


async def test_an_argument_of_the_wrong_type_is_a_type_error(
    postgres_uri: str, postgres_prefix: str
) -> None:
    # It was asyncpg's DataError (InMemoryStore answered None, kit.store raises TypeError).
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as store:
        with pytest.raises(TypeError, match="expected str"):
            await store.get_room(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected str"):
            await store.list_events("r1", visibility_filter=5)  # type: ignore[arg-type]
        assert await store.get_room("r1") is None


class ConnectionDyingStore(PostgresStore):
    """Its connection is terminated by the server in the middle of the next record's
    transaction (between the event's write and the room's count), as in a restart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_next = False

    async def count_event(self, room_id: str, index: int, activity_at: datetime | None) -> None:
        if self.kill_next:
            self.kill_next = False
            conn = await self._db()  # the record's connection
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            other = await asyncpg.connect(self._dsn)
            try:
                await other.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await other.close()
        await super().count_event(room_id, index, activity_at)


async def test_a_record_whose_connection_dies_mid_transaction_is_applied_again(
    postgres_uri: str, postgres_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The transaction's end then fails with asyncpg's InterfaceError ("the underlying
    connection is closed"): it was taken for a failing record and skipped for good."""
    log = MemoryEventLog()
    store = ConnectionDyingStore(postgres_uri, table_prefix=postgres_prefix)
    async with store, new_kit(log, store=store) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        store.kill_next = True
        with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
            result = await kit.process_inbound(text("sms", "through a lost connection"))
        assert result.event is not None and not store.kill_next
        timeline = await kit.get_timeline("r1")
        assert timeline[-1].id == result.event.id
        assert (await kit.get_room("r1")).event_count == len(timeline)
        on_postgres = await snapshot(kit)
    assert any("the store is unavailable" in r.getMessage() for r in caplog.records)
    assert not any("store projection failed" in r.getMessage() for r in caplog.records)
    async with new_kit(log, store=InMemoryStore()) as in_memory:
        assert await snapshot(in_memory) == on_postgres


@pytest.mark.parametrize("refusal", ["lock_timeout", "cancelled"])
async def test_a_write_the_database_refuses_for_a_while_is_applied_once_it_takes_it(
    postgres_uri: str, postgres_prefix: str, refusal: str
) -> None:
    # A lock_timeout (a migration holding the table) or a statement cancelled (an admin's
    # pg_cancel_backend, a statement_timeout) were taken for a record that cannot be stored:
    # skipped for good (only a rebuild repaired it) while its caller was answered, and a
    # retry of the message past the room's dedup window was then recorded twice.
    separator = "&" if "?" in postgres_uri else "?"
    dsn = postgres_uri
    if refusal == "lock_timeout":
        dsn += f"{separator}options=" + quote("-c lock_timeout=100")
    other = await asyncpg.connect(postgres_uri)
    try:
        async with (
            PostgresStore(dsn, table_prefix=postgres_prefix) as store,
            new_kit(MemoryEventLog(), store=store) as kit,
        ):
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            locked = other.transaction()
            await locked.start()
            await other.execute(f"LOCK TABLE {postgres_prefix}events IN EXCLUSIVE MODE")

            async def release_later() -> None:
                if refusal == "cancelled":
                    query = (
                        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = "
                        f"'{postgres_prefix}events'::regclass"
                    )
                    with anyio.fail_after(10):
                        while not (waiting := await other.fetch(query)):
                            await anyio.sleep(0.02)
                    for row in waiting:
                        await other.execute("SELECT pg_cancel_backend($1)", row["pid"])
                await anyio.sleep(0.5)
                await locked.rollback()

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(release_later)
                    result = await kit.process_inbound(text("sms", "held"), room_id="r1")
            assert result.event is not None
            timeline = await kit.get_timeline("r1")
            assert timeline[-1].id == result.event.id
            assert (await kit.get_room("r1")).event_count == len(timeline)
    finally:
        await other.close()


async def test_a_store_starting_next_to_one_applying_records_does_not_deadlock(
    postgres_uri: str, postgres_prefix: str
) -> None:
    """A kit starting (init) while another process's kit applies records to the same tables:
    init took locks on every table (CREATE INDEX IF NOT EXISTS), then waited for the position
    row the other held while waiting to write into those tables."""
    async with PostgresStore(postgres_uri, table_prefix=postgres_prefix) as writer:
        await writer.create_room(make_room("r"))
        stop = anyio.Event()
        applied = 0

        async def apply_records() -> None:
            nonlocal applied
            position = 0
            while not stop.is_set():
                position += 1

                async def apply(n: int = position) -> None:
                    await writer.add_event(make_event("r", id=f"e{n}"))
                    await writer.count_event("r", n, None)

                applied += await writer.apply_record(position, apply)

        async with anyio.create_task_group() as tg:
            tg.start_soon(apply_records)
            for _ in range(40):
                starting = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
                try:
                    await starting.init()
                finally:
                    await starting.close()
            stop.set()
        room = await writer.get_room("r")
        assert room is not None and room.event_count == applied > 0


class Failover:
    """A failover to a replica behind the primary, on one prefix's tables: ``replicate`` keeps
    their state (the replica's), ``happen`` puts it back and cuts every other connection (the
    new primary)."""

    TABLES = ("rooms", "events", "idempotency", "read_markers", "tasks", "observations")

    def __init__(self, admin: Any, prefix: str) -> None:
        self._admin = admin
        self._tables = [f"{prefix}{name}" for name in (*self.TABLES, "position")]

    async def replicate(self) -> None:
        async with self._admin.transaction(isolation="repeatable_read"):
            for table in self._tables:
                await self._admin.execute(f"CREATE TABLE {table}_replica AS TABLE {table}")

    async def happen(self) -> None:
        async with self._admin.transaction():
            for table in self._tables:  # no kit writes while the replica takes over
                await self._admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            await self._admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
            for table in self._tables:
                await self._admin.execute(f"DELETE FROM {table}")
                await self._admin.execute(
                    f"INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {table}_replica"
                )

    async def forget(self) -> None:
        for table in self._tables:
            await self._admin.execute(f"DROP TABLE IF EXISTS {table}_replica")


class LaggingStore(PostgresStore):
    """Applies each record a little after the others (a slower host): it mostly finds them
    applied already, and follows."""

    async def apply_record(
        self, position: int, apply: Callable[[], Awaitable[None]], *, after: int = 0
    ) -> bool:
        await anyio.sleep(0.03)
        return await super().apply_record(position, apply, after=after)


@pytest.mark.parametrize("kits", ["one", "a follower takes over", "two on one store"])
async def test_a_database_that_comes_back_without_its_last_commits_gets_them_again(
    postgres_uri: str, postgres_prefix: str, caplog: pytest.LogCaptureFixture, kits: str
) -> None:
    """A failover to a replica behind the primary (or commits lost with synchronous_commit
    off): the database comes back from an outage holding the log only up to an earlier
    position. The next record moved the position past the lost ones for good. Also when the
    kit that writes next mostly followed another through the log (it knew the tables by their
    position only), or when two kits share one store (each must see the loss)."""
    admin = await asyncpg.connect(postgres_uri)
    failover = Failover(admin, postgres_prefix)
    log = MemoryEventLog()
    first = PostgresStore(postgres_uri, table_prefix=postgres_prefix)
    second: PostgresStore | None = None
    if kits == "a follower takes over":
        second = LaggingStore(postgres_uri, table_prefix=postgres_prefix)
    elif kits == "two on one store":
        second = first
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(first)
            a = await stack.enter_async_context(new_kit(log, store=first))
            b = None
            if second is not None:
                if second is not first:
                    await stack.enter_async_context(second)
                b = await stack.enter_async_context(new_kit(log, store=second))
            await converse(a)
            await failover.replicate()
            for n in range(3):  # committed on the primary only
                await a.process_inbound(text("sms", f"lost {n}", sender="+1555"), room_id="r1")
            for kit in (a, b):
                if kit is not None:
                    await caught_up_with(kit, log)
            writer = a
            if kits == "a follower takes over":
                await a.close()  # its process went down with the primary
                writer = b
            await failover.happen()
            assert writer is not None
            with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
                await writer.process_inbound(text("sms", "after", sender="+1555"), room_id="r1")
                for kit in (a, b) if writer is a else (b,):
                    if kit is not None:
                        await caught_up_with(kit, log)
            on_postgres = await snapshot(writer)
        async with new_kit(log, store=InMemoryStore()) as in_memory:
            assert await snapshot(in_memory) == on_postgres
        assert any("lost its last commits" in r.getMessage() for r in caplog.records)
    finally:
        await failover.forget()
        await admin.close()


async def caught_up_with(kit: RoomKit, log: EventLog) -> None:
    """Once the kit's store projection has gone through the whole log."""
    last = await log.last_position()
    projection = kit._runtime.projection

    async def there() -> bool:
        return bool(projection.checkpoint >= last)

    await eventually(there, what="the kit's projection at the log's end")


class RebuildFailingStore(PostgresStore):
    """Its next rebuild fails at its very end (its transaction then rolls back whole), and
    each record takes it a little while, so that others come meanwhile."""

    fail_rebuild = False

    async def apply_record(
        self, position: int, apply: Callable[[], Awaitable[None]], *, after: int = 0
    ) -> bool:
        await anyio.sleep(0.005)
        return await super().apply_record(position, apply, after=after)

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[None]:
        async with super().rebuilding():
            yield
            if self.fail_rebuild:
                raise RuntimeError("the rebuild's commit failed")


async def test_a_failed_rebuild_leaves_the_kit_where_its_store_is(
    postgres_uri: str, postgres_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The tables roll a failed rebuild back whole; the kit took the records it read as
    applied, and skipped those that came meanwhile (another kit's) until a false "lost its
    last commits" rewind repaired them."""
    log = MemoryEventLog()
    store = RebuildFailingStore(postgres_uri, table_prefix=postgres_prefix)
    async with (
        store,
        new_kit(log, store=store) as kit,
        postgres_kit(log, postgres_uri, postgres_prefix + "o_") as other,
    ):
        await converse(kit)
        store.fail_rebuild = True

        async def others_write() -> None:
            for n in range(5):
                await other.process_inbound(text("sms", f"meanwhile {n}"), room_id="r1")

        with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(others_write)
                with pytest.raises(RuntimeError, match="commit failed"):
                    await kit.rebuild_store()
            await caught_up_with(kit, log)
            on_postgres = await snapshot(kit)
    async with new_kit(log, store=InMemoryStore()) as in_memory:
        assert await snapshot(in_memory) == on_postgres
    assert not any("lost its last commits" in r.getMessage() for r in caplog.records)


class GatedChannel(SimpleChannel):
    """Its handle_inbound waits for ``gate``."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.entered = anyio.Event()
        self.gate = anyio.Event()

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        self.entered.set()
        await self.gate.wait()
        return await super().handle_inbound(message, context)


class GatedRebuildStore(PostgresStore):
    """Its rebuild's clear() waits for ``rebuild_gate`` and its rebuild fails at its end;
    once ``tail_gate`` is given, records applied outside a rebuild wait for it."""

    def __init__(self, uri: str, prefix: str) -> None:
        super().__init__(uri, table_prefix=prefix)
        self.clearing = anyio.Event()
        self.rebuild_gate = anyio.Event()
        self.tail_gate: anyio.Event | None = None
        self.in_rebuild = False

    async def clear(self) -> None:
        self.clearing.set()
        await self.rebuild_gate.wait()
        await super().clear()

    async def apply_record(
        self, position: int, apply: Callable[[], Awaitable[None]], *, after: int = 0
    ) -> bool:
        if self.tail_gate is not None and not self.in_rebuild:
            await self.tail_gate.wait()
        return await super().apply_record(position, apply, after=after)

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[None]:
        async with super().rebuilding():
            self.in_rebuild = True
            try:
                yield
            finally:
                self.in_rebuild = False
            raise RuntimeError("the rebuild's commit failed")


async def test_a_message_recorded_during_a_failed_rebuild_is_readable_once_returned(
    postgres_uri: str, postgres_prefix: str
) -> None:
    """The rebuild applied the message in its transaction and released its caller, whose
    read then missed it: the transaction was rolled back, and the live tail had not applied
    it again yet. The caller now waits until the tables hold it for good."""
    log = MemoryEventLog()
    store = GatedRebuildStore(postgres_uri, postgres_prefix)
    gated = GatedChannel("gated")
    async with store, new_kit(log, store=store) as kit:
        kit.register_channel(gated)
        await converse(kit)
        await kit.attach_channel("r1", "gated")
        seen: dict[str, bool] = {}
        async with anyio.create_task_group() as tg:

            async def rebuild() -> None:
                with pytest.raises(RuntimeError, match="commit failed"):
                    await kit.rebuild_store()
                seen["returned during the rebuild"] = "visible" in seen
                assert store.tail_gate is not None
                store.tail_gate.set()

            async def send() -> None:
                result = await kit.process_inbound(text("gated", "meanwhile"), room_id="r1")
                assert result.event is not None
                ids = [e.id for e in await kit.get_timeline("r1", limit=100)]
                seen["visible"] = result.event.id in ids

            last = await log.last_position()
            tg.start_soon(send)  # in the room before the rebuild starts, committed during it
            await gated.entered.wait()
            tg.start_soon(rebuild)
            await store.clearing.wait()
            gated.gate.set()

            async def committed() -> bool:
                return await log.last_position() > last

            await eventually(committed, what="the message committed")
            store.tail_gate = anyio.Event()  # the live tail, once the rebuild failed
            store.rebuild_gate.set()
    assert seen == {"returned during the rebuild": False, "visible": True}


def test_a_bad_table_prefix_is_refused() -> None:
    for prefix in ("", "Rooms_", "1x_", "x; DROP TABLE y; --", "x" * 41):
        with pytest.raises(ValueError, match="table_prefix"):
            PostgresStore(table_prefix=prefix)


async def test_without_asyncpg_init_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg raises ImportError
    with pytest.raises(ImportError, match=r"roomkit\[postgres\]"):
        await PostgresStore("postgresql://nowhere/db").init()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_init_says_it_needs_asyncio(anyio_backend: Any) -> None:
    with pytest.raises(RuntimeError, match="asyncio only"):
        await PostgresStore("postgresql://nowhere/db").init()
