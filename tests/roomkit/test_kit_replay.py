"""Event sourcing: a kit rebuilt from the same log has the same rooms, bindings, participants,
timeline and read markers; duplicates are recognised across restarts."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventLog, MemoryEventLog
from roomkit import (
    AIChannel,
    ChannelCategory,
    HookResult,
    HookTrigger,
    Identity,
    InboundMessage,
    MockAIProvider,
    MockIdentityResolver,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomStatus,
    TextContent,
)
from roomkit.core import _store_projection
from roomkit.models.room import Room, RoomTimers
from roomkit.store import InMemoryStore
from tests.roomkit.kit_helpers import SimpleChannel, category_of, text


def channels() -> list[Any]:
    return [
        SimpleChannel("sms"),
        SimpleChannel("ws"),
        AIChannel("ai", provider=MockAIProvider(["noted"])),
    ]


def new_kit(log: EventLog, **kwargs: Any) -> RoomKit:
    kit = RoomKit(log=log, **kwargs)
    for channel in channels():
        kit.register_channel(channel)
    return kit


async def snapshot(kit: RoomKit) -> dict[str, Any]:
    """Everything observable about the rooms, as plain data."""
    store = kit.store
    rooms = sorted(await store.list_rooms(limit=1000), key=lambda r: r.id)
    out: dict[str, Any] = {}
    for room in rooms:
        events = await store.list_events(room.id, limit=10_000)
        bindings = sorted(await store.list_bindings(room.id), key=lambda b: b.channel_id)
        participants = sorted(await store.list_participants(room.id), key=lambda p: p.id)
        out[room.id] = {
            "room": room.model_dump(),
            "events": [e.model_dump() for e in events],
            "bindings": [b.model_dump() for b in bindings],
            "participants": [p.model_dump() for p in participants],
            "unread": {
                b.channel_id: await store.get_unread_count(room.id, b.channel_id) for b in bindings
            },
            "tasks": [t.model_dump() for t in await store.list_tasks(room.id)],
            "observations": [o.model_dump() for o in await store.list_observations(room.id)],
        }
    return out


async def test_rebuilt_kit_has_the_same_state_and_keeps_idempotency(event_log: EventLog) -> None:
    log = event_log
    identity = Identity(id="id-ana", display_name="Ana")
    resolver = MockIdentityResolver(mapping={"+1555": identity})
    async with new_kit(log, identity_resolver=resolver) as kit:

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def block_secret(event: RoomEvent, context: RoomContext) -> HookResult:
            if "secret" in getattr(event.content, "body", ""):
                return HookResult.block("no secrets")
            return HookResult.allow()

        await kit.create_room(room_id="r1", timers=RoomTimers(inactive_after_seconds=60))
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        first = await kit.process_inbound(
            text("sms", "hello", sender="+1555", idempotency_key="m1")
        )
        await kit.process_inbound(text("sms", "a secret", sender="+1555"))
        await kit.mute("r1", "ai")
        await kit.process_inbound(text("ws", "agent here", sender="agent"))
        assert first.event is not None
        await kit.mark_read("r1", "ws", first.event.id)
        await kit.ensure_participant("r1", "ws", "agent", display_name="Agent")
        before = await snapshot(kit)

    async with new_kit(log, identity_resolver=resolver) as rebuilt:
        assert await snapshot(rebuilt) == before
        again = await rebuilt.process_inbound(
            text("sms", "hello", sender="+1555", idempotency_key="m1")
        )
        assert again.blocked and again.reason == "duplicate"
        assert again.event is not None and again.event.id == first.event.id
        assert await snapshot(rebuilt) == before


async def test_a_kit_used_without_async_with_reads_the_log_before_its_first_command(
    event_log: EventLog,
) -> None:
    """The 0.3.0 way: a kit made and used without ``async with``. On an existing log, its
    first call, a read included, rebuilds the read model; the next message of a conversation
    the log holds is routed to its room, not to a new one."""
    async with new_kit(event_log) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.process_inbound(text("sms", "hello", sender="+1555"))
        before = await snapshot(kit)
    for read in ("get_room", "get_timeline", "list_bindings", "route"):
        lazy = new_kit(event_log)
        try:
            if read == "get_room":
                assert (await lazy.get_room("r1")).id == "r1"
            elif read == "get_timeline":
                assert len(await lazy.get_timeline("r1")) == 2
            elif read == "list_bindings":
                assert [b.channel_id for b in await lazy.list_bindings("r1")] == ["sms"]
            else:
                again = await lazy.process_inbound(text("sms", "me again", sender="+1555"))
                assert again.event is not None and again.event.room_id == "r1"
                before["r1"] = (await snapshot(lazy))["r1"]
            assert await snapshot(lazy) == before
        finally:
            await lazy.close()


commands = st.lists(
    st.one_of(
        st.tuples(st.just("message"), st.sampled_from(["sms", "ws"]), st.integers(0, 5)),
        st.tuples(st.just("mute"), st.sampled_from(["sms", "ws", "ai"]), st.booleans()),
        st.tuples(st.just("metadata"), st.sampled_from(["a", "b"]), st.integers(0, 3)),
        st.tuples(st.just("read"), st.sampled_from(["sms", "ws"]), st.booleans()),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands, st.sampled_from([(0.0, 0.0), (1.0, 10.0)]))
async def test_live_state_equals_state_replayed_from_the_log(
    script: list[tuple[str, str, Any]], idle: tuple[float, float]
) -> None:
    log = MemoryEventLog()
    task_linger, rest_after = idle
    # Snapshots every 2 events: the rebuilt kit's room recovers from a snapshot + its tail.
    # With rest_after=0 the room rests (its models as JSON) whenever it goes idle.
    settings = {"snapshot_every": 2, "task_linger": task_linger, "rest_after": rest_after}
    async with new_kit(log, **settings) as kit:
        await kit.create_room(room_id="r1")
        for channel_id in ("sms", "ws", "ai"):
            await kit.attach_channel("r1", channel_id, category=category_of(channel_id))
        for kind, channel_id, arg in script:
            if kind == "message":
                await kit.process_inbound(
                    text(channel_id, f"m{arg}", idempotency_key=f"k{arg}"), room_id="r1"
                )
            elif kind == "mute":
                await (kit.mute if arg else kit.unmute)("r1", channel_id)
            elif kind == "metadata":
                await kit.update_room_metadata("r1", {channel_id: arg})
            elif arg:
                await kit.mark_all_read("r1", channel_id)
        live = await snapshot(kit)
        keys = [e["idempotency_key"] for e in live["r1"]["events"] if e["idempotency_key"]]
        assert len(keys) == len(set(keys))  # a duplicate is never appended twice
        await assert_consistent(kit)
    async with new_kit(log, snapshot_every=2) as rebuilt:
        assert await snapshot(rebuilt) == live
        await assert_consistent(rebuilt)  # actor state from snapshot + tail == full fold


async def assert_consistent(kit: RoomKit) -> None:
    """The room actors' live state, a fresh fold of the log and the store agree, room by room."""
    from roomkit.core._facts import fact_from_record
    from roomkit.core._room_ids import room_stream
    from roomkit.core._room_state import RoomState, evolve

    for info in await kit.log.streams():
        records = await kit.log.read(info.stream)
        folded = RoomState()
        for record in records:
            fact = fact_from_record(record)
            assert fact is not None, record.type
            evolve(folded, fact.domain, at=fact.timestamp)
        assert folded.room is not None
        room_id = folded.room.id  # the stream is named after it (roomkit/core/_room_ids.py)
        assert info.stream == room_stream(room_id)
        live = await kit._context(room_id)  # the actor's state (activates it if passivated)
        stored_room = await kit.store.get_room(room_id)
        assert folded.room == live.room == stored_room
        assert folded.event_count == live.room.event_count
        assert list(folded.bindings.values()) == live.bindings
        stored_bindings = {b.channel_id: b for b in await kit.store.list_bindings(room_id)}
        assert stored_bindings == folded.bindings
        assert list(folded.participants.values()) == live.participants
        stored_participants = {p.id: p for p in await kit.store.list_participants(room_id)}
        assert stored_participants == folded.participants
        assert list(folded.recent) == live.recent_events


async def test_the_store_can_be_rebuilt_from_the_log_while_the_kit_runs() -> None:
    log = MemoryEventLog()
    async with new_kit(log) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.process_inbound(text("sms", "before"))
        # An identity the application stored (no log record holds it) outlives the rebuild.
        await kit.ensure_participant("r1", "sms", "+1555")
        ana = await kit.store.create_identity(
            Identity(id="id-ana", channel_addresses={"sms": ["+1555"]})
        )
        before = await snapshot(kit)
        await kit.rebuild_store()
        assert await snapshot(kit) == before
        assert await kit.store.resolve_identity("sms", "+1555") == ana
        await kit.resolve_participant("r1", "+1555", "id-ana")
        await kit.process_inbound(text("sms", "after"))
        bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
        # 0.3.0's body names the identity's display name (here it has none).
        assert bodies[-3:] == ["before", "Participant +1555 identified as None", "after"]


class _Yielding(InMemoryStore):
    """A store whose writes wait, as any store's I/O does: a rebuild takes a while."""

    async def add_event_envelope(self, data: Any) -> Any:
        await anyio.sleep(0.001)
        return await super().add_event_envelope(data)


async def test_reads_through_kit_store_wait_for_a_rebuild_even_one_cut_short() -> None:
    # kit.store's reads answered from the store the rebuild was filling: rooms "not found",
    # a room's events missing, during the rebuild and after one its caller gave up on,
    # while the kit's own reads (get_room, get_timeline) waited for it.
    async with new_kit(MemoryEventLog(), store=_Yielding()) as kit:
        for n in range(5):
            await kit.create_room(room_id=f"r{n}")
            await kit.attach_channel(f"r{n}", "sms")
            for m in range(5):
                await kit.process_inbound(text("sms", f"m{m}"), room_id=f"r{n}")
        count = await kit.store.get_event_count("r4")
        seen: list[tuple[int, int]] = []

        async def read_meanwhile() -> None:
            for _ in range(20):
                rooms = await kit.store.list_rooms(limit=100)
                seen.append((len(rooms), await kit.store.get_event_count("r4")))
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as group:
            group.start_soon(read_meanwhile)
            await kit.rebuild_store()
        with anyio.move_on_after(0.01) as scope:
            await kit.rebuild_store()
        assert scope.cancelled_caught
        seen.append(
            (len(await kit.store.list_rooms(limit=100)), await kit.store.get_event_count("r4"))
        )
        assert set(seen) == {(5, count)}


class _Signed(TextContent):
    """An app's own content, with a field the log does not hold."""

    signature: str = ""


class _Tagged(RoomEvent):
    """An app's own event, with a field the log does not hold."""

    tenant: str = ""


class _SigningChannel(SimpleChannel):
    """Gives its messages with metadata JSON gives back otherwise (a tuple), and "one" as the
    app's own event and content classes."""

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        body = getattr(message.content, "body", "")
        content = _Signed(body=body, signature=f"sig-{body}")
        if body != "one":
            return event.model_copy(update={"metadata": {"pair": (1, 2)}})
        fields = dict(event) | {"content": content, "metadata": {"pair": (1, 2)}}
        return _Tagged(**fields, tenant="acme")


async def test_hooks_see_the_recent_events_a_replay_gives_back(event_log: EventLog) -> None:
    # The room kept an app's own event and content classes as the channel made them, with
    # fields the log does not hold: its hooks saw what no replay, nor the room once it
    # rested, gives back.
    seen: list[list[tuple[str, str, str | None, object]]] = []

    async def look(event: RoomEvent, context: RoomContext) -> None:
        seen.append(
            [
                (
                    type(e).__name__,
                    type(e.content).__name__,
                    getattr(e.content, "signature", None),
                    e.metadata.get("pair"),
                )
                for e in context.recent_events
                if e.type == "message"
            ]
        )

    for rebuilt in (False, True):  # live, then a kit rebuilt from the log
        async with new_kit(event_log) as kit:
            kit.register_channel(_SigningChannel("signing"))
            kit.hook(HookTrigger.BEFORE_BROADCAST)(look)
            if not rebuilt:
                await kit.create_room(room_id="r1")
                await kit.attach_channel("r1", "signing")
                for body in ("one", "two"):
                    await kit.process_inbound(text("signing", body), room_id="r1")
            await kit.process_inbound(text("signing", "three"), room_id="r1")
    plain = ("RoomEvent", "TextContent", None, [1, 2])
    assert seen == [[], [plain], [plain, plain], [plain, plain, plain]]


async def test_the_read_model_keeps_a_bounded_memory_of_rooms_and_applies_each_record_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It kept the last version of every room it ever saw (~90 bytes each, for good): a
    # service running for days on JetStream and PostgreSQL grew by each room.
    monkeypatch.setattr(_store_projection, "_VERSIONS_KEPT", 3)
    async with MemoryEventLog() as log, RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        for n in range(6):
            await kit.create_room(room_id=f"r{n}")
            await kit.attach_channel(f"r{n}", "sms")
        projection = kit._runtime.projection
        assert len(projection._versions) == 3
        counted = (await kit.get_room("r0")).event_count
        # A record of a room no longer remembered, delivered again (a subscription taken up
        # again from the checkpoint): applied once all the same.
        for record in await log.read("r0"):
            await projection.apply(record)
        assert (await kit.get_room("r0")).event_count == counted
        await kit.process_inbound(text("sms", "still counted"), room_id="r0")
        assert (await kit.get_room("r0")).event_count == counted + 1


async def test_a_room_no_longer_remembered_reads_another_process_s_records_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The read model said version 0 for it: a command writing nothing answered from the
    # room's actor as it was before another process's records (a closed room said active).
    monkeypatch.setattr(_store_projection, "_VERSIONS_KEPT", 2)
    async with MemoryEventLog() as log, RoomKit(log=log) as a, RoomKit(log=log) as b:
        await a.create_room(room_id="r")
        await b.close_room("r")  # another process's
        for n in range(3):  # and records of other rooms, which push r out
            await b.create_room(room_id=f"other-{n}")
        await a._runtime.projection.wait(await log.last_position())
        assert "r" not in a._runtime.projection._versions
        assert (await a.check_room_timers("r")).status == RoomStatus.CLOSED


class _StoreOfItsOwnJson(InMemoryStore):
    """An ``InMemoryStore`` whose rooms and bindings come through the methods 0.3.0 called
    (an app's override): the projection then hands it models, and it keeps JSON of its own."""

    async def create_room(self, room: Room) -> Room:
        return await super().create_room(room)


async def test_the_memory_store_sharing_the_logs_payloads_reads_as_one_keeping_its_own() -> None:
    """With the in-process log, the in-memory store keeps the log's payload of each room and
    binding instead of JSON of its own: every read gives what a store keeping its own JSON
    gives, after updates of the room and of its bindings, and after events counted."""
    log = MemoryEventLog()
    async with new_kit(log) as kit:
        await kit.create_room(
            room_id="r1",
            metadata={"topic": "x", "n": [1, 2]},
            timers=RoomTimers(inactive_after_seconds=60),
            organization_id="org",
        )
        await kit.create_room(room_id="r2")
        await kit.attach_channel("r1", "sms", participant_id="ana", metadata={"k": "v"})
        await kit.attach_channel("r1", "ws")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        await kit.attach_channel("r2", "sms")
        await kit.process_inbound(text("sms", "hello", sender="+1555"), room_id="r1")
        await kit.mute("r1", "ai")
        await kit.update_binding_metadata("r1", "ws", {"w": 1})
        await kit.update_room_metadata("r1", {"topic": "y"})
        await kit.process_inbound(text("ws", "agent here", sender="agent"), room_id="r1")
        await kit.close_room("r2")
        store = kit._store
        assert isinstance(store, InMemoryStore) and type(store) is InMemoryStore
        # The log's payloads are what the store keeps.
        assert store._data["r1"].room is not None and store._data["r1"].room.startswith(
            b'{"room":'
        )
        bindings = store._data["r1"].bindings
        assert bindings is not None
        assert all(b.json.startswith(b'{"binding":') for b in bindings.values())
        shared = await _reads(kit)

    async with new_kit(log, store=_StoreOfItsOwnJson()) as own:
        store = own._store
        assert isinstance(store, _StoreOfItsOwnJson)
        assert store._data["r1"].room is not None
        assert not store._data["r1"].room.startswith(b'{"room":')
        assert await _reads(own) == shared


async def _reads(kit: RoomKit) -> dict[str, Any]:
    store = kit.store
    reads: dict[str, Any] = {"snapshot": await snapshot(kit)}
    for room_id in ("r1", "r2"):
        room = await store.get_room(room_id)
        assert room is not None
        reads[room_id] = (room, room.model_fields_set, room.timers.model_fields_set)
        reads[f"{room_id} bindings"] = [
            (b, b.model_fields_set) for b in await store.list_bindings(room_id)
        ]
        reads[f"{room_id} sms"] = await store.get_binding(room_id, "sms")
        reads[f"{room_id} internal"] = await store.list_events(
            room_id, visibility_filter="internal"
        )
    reads["latest"] = await store.find_latest_room("ana")
    reads["latest sms"] = await store.find_latest_room("ana", channel_type="sms")
    reads["by channel"] = [
        await store.find_room_id_by_channel("sms", status=status)
        for status in (None, RoomStatus.ACTIVE, RoomStatus.CLOSED)
    ]
    reads["found"] = await store.find_rooms(organization_id="org")
    reads["closed"] = await store.find_rooms(status=RoomStatus.CLOSED)
    reads["rooms"] = await store.list_rooms()
    return reads
