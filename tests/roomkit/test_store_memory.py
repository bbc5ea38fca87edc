"""InMemoryStore passes the shared ConversationStore contract; the ABC has the 0.3.0 shape."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import roomkit.store
from roomkit.core._domain import (
    ChannelAttached,
    ChannelUpdated,
    RoomCreated,
    RoomUpdated,
    dump,
    encode_payload,
)
from roomkit.models.channel import ChannelBinding, ChannelCapabilities
from roomkit.models.enums import RoomStatus
from roomkit.models.room import Room, RoomTimers
from roomkit.store import ConversationStore, InMemoryStore
from roomkit.store.testing import (
    T0,
    ConversationStoreContract,
    make_binding,
    make_event,
    make_room,
    some,
)

ABSTRACT_METHODS = {
    # rooms
    "create_room",
    "get_room",
    "update_room",
    "delete_room",
    "list_rooms",
    "find_rooms",
    "find_latest_room",
    "find_room_id_by_channel",
    # events
    "add_event",
    "get_event",
    "list_events",
    "check_idempotency",
    "get_event_count",
    # bindings
    "add_binding",
    "get_binding",
    "update_binding",
    "remove_binding",
    "list_bindings",
    # participants
    "add_participant",
    "get_participant",
    "update_participant",
    "list_participants",
    # identities
    "create_identity",
    "get_identity",
    "resolve_identity",
    "link_address",
    # tasks
    "add_task",
    "get_task",
    "list_tasks",
    "update_task",
    # observations
    "add_observation",
    "list_observations",
    # read tracking
    "mark_read",
    "mark_all_read",
    "get_unread_count",
}


class TestInMemoryStore(ConversationStoreContract):
    supports_clear = True

    @pytest.fixture
    def store(self) -> ConversationStore:
        return InMemoryStore()


class TestConversationStoreABC:
    def test_exports(self) -> None:
        assert roomkit.store.__all__ == ["ConversationStore", "InMemoryStore"]

    def test_the_35_abstract_methods(self) -> None:
        assert len(ABSTRACT_METHODS) == 35
        assert ConversationStore.__abstractmethods__ == frozenset(ABSTRACT_METHODS)
        for name in ABSTRACT_METHODS:
            method = getattr(ConversationStore, name)
            assert inspect.iscoroutinefunction(method), name
            assert method.__doc__, name

    @pytest.mark.parametrize(
        ("name", "params"),
        [
            ("list_rooms", ["offset=0", "limit=50"]),
            ("find_rooms", ["organization_id=None", "status=None", "metadata_filter=None"]),
            ("find_latest_room", ["participant_id", "channel_type=None", "status=None"]),
            ("find_room_id_by_channel", ["channel_id", "status=None"]),
            ("list_events", ["room_id", "offset=0", "limit=50", "visibility_filter=None"]),
            ("check_idempotency", ["room_id", "key"]),
            ("get_binding", ["room_id", "channel_id"]),
            ("get_participant", ["room_id", "participant_id"]),
            ("resolve_identity", ["channel_type", "address"]),
            ("link_address", ["identity_id", "channel_type", "address"]),
            ("list_tasks", ["room_id", "status=None"]),
            ("mark_read", ["room_id", "channel_id", "event_id"]),
            ("list_recent_events", ["room_id", "limit=50"]),
            ("count_event", ["room_id", "index", "activity_at"]),
        ],
    )
    def test_signatures(self, name: str, params: list[str]) -> None:
        for cls in (ConversationStore, InMemoryStore):
            signature = inspect.signature(getattr(cls, name))
            shown = [str(p).split(":")[0] + _default(p) for p in signature.parameters.values()]
            assert shown[1:] == params, (cls, name)

    def test_additions_are_not_abstract(self) -> None:
        assert "list_recent_events" not in ConversationStore.__abstractmethods__
        assert "count_event" not in ConversationStore.__abstractmethods__
        assert "clear" not in ConversationStore.__abstractmethods__

    def test_incomplete_store_cannot_be_built(self) -> None:
        class Partial(ConversationStore):
            async def get_room(self, room_id: str) -> Any:
                return None

        with pytest.raises(TypeError):
            Partial()  # type: ignore[abstract]

    async def test_default_clear_raises(self) -> None:
        with pytest.raises(NotImplementedError, match="InMemoryStore"):
            await ConversationStore.clear(InMemoryStore())


def _default(param: inspect.Parameter) -> str:
    return "" if param.default is inspect.Parameter.empty else f"={param.default!r}"


# -- the channel index against a brute-force model ---------------------------------------------

ROOMS = [f"r{i}" for i in range(4)]
CHANNELS = ["c0", "c1", "c2"]
STATUSES = [RoomStatus.ACTIVE, RoomStatus.PAUSED, RoomStatus.CLOSED]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(ROOMS), st.sampled_from(STATUSES)),
        st.tuples(st.just("update"), st.sampled_from(ROOMS), st.sampled_from(STATUSES)),
        st.tuples(st.just("delete"), st.sampled_from(ROOMS)),
        st.tuples(st.just("bind"), st.sampled_from(ROOMS), st.sampled_from(CHANNELS)),
        st.tuples(st.just("unbind"), st.sampled_from(ROOMS), st.sampled_from(CHANNELS)),
        st.tuples(st.just("event"), st.sampled_from(ROOMS)),
    ),
    max_size=40,
)


class _Model:
    """The obvious, slow semantics: scan rooms in creation order."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomStatus] = {}
        self.bindings: dict[str, dict[str, None]] = {}
        self.events: dict[str, int] = {}

    def apply(self, op: tuple[Any, ...]) -> None:
        match op:
            case ("create" | "update", room_id, status):
                self.rooms[room_id] = status
            case ("delete", room_id):
                if room_id in self.rooms:  # a room never created keeps what it holds
                    del self.rooms[room_id]
                    self.bindings.pop(room_id, None)
                    self.events.pop(room_id, None)
            case ("bind", room_id, channel_id):
                self.bindings.setdefault(room_id, {})[channel_id] = None
            case ("unbind", room_id, channel_id):
                self.bindings.get(room_id, {}).pop(channel_id, None)
            case ("event", room_id):
                self.events[room_id] = self.events.get(room_id, 0) + 1

    def find(self, channel_id: str, status: RoomStatus | None) -> str | None:
        for room_id, room_status in self.rooms.items():
            if channel_id in self.bindings.get(room_id, {}) and status in (None, room_status):
                return room_id
        return None


async def _apply(store: InMemoryStore, op: tuple[Any, ...]) -> None:
    match op:
        case ("create", room_id, status):
            await store.create_room(make_room(room_id, status=status))
        case ("update", room_id, status):
            await store.update_room(make_room(room_id, status=status))
        case ("delete", room_id):
            await store.delete_room(room_id)
        case ("bind", room_id, channel_id):
            await store.add_binding(make_binding(room_id, channel_id))
        case ("unbind", room_id, channel_id):
            await store.remove_binding(room_id, channel_id)
        case ("event", room_id):
            await store.add_event(make_event(room_id))


@settings(max_examples=200, deadline=None)
@given(ops=operations)
async def test_indexes_agree_with_a_scan(ops: list[tuple[Any, ...]]) -> None:
    store = InMemoryStore()
    model = _Model()
    for op in ops:
        await _apply(store, op)
        model.apply(op)
        for channel_id in CHANNELS:
            for status in [None, *STATUSES]:
                found = await store.find_room_id_by_channel(channel_id, status=status)
                assert found == model.find(channel_id, status), (channel_id, status)
    assert [r.id for r in await store.list_rooms(limit=100)] == list(model.rooms)
    for room_id in ROOMS:
        assert await store.get_event_count(room_id) == model.events.get(room_id, 0)
        assert [b.channel_id for b in await store.list_bindings(room_id)] == list(
            model.bindings.get(room_id, {})
        )


# -- InMemoryStore's representation (see its module docstring) ----------------------------------


async def test_models_are_snapshotted_when_stored() -> None:
    # The store keeps JSON, not the models it is given: changing one in place afterwards (which
    # the contract forbids) does not reach the store.
    store = InMemoryStore()
    room = make_room("r1")
    binding = make_binding("r1", "sms1")
    await store.create_room(room)
    await store.add_binding(binding)
    room.metadata["k"] = "v"
    binding.metadata["k"] = "v"
    assert some(await store.get_room("r1")).metadata == {}
    assert some(await store.get_binding("r1", "sms1")).metadata == {}


async def test_bindings_share_equal_capabilities() -> None:
    store = InMemoryStore()
    for room_id in ("r1", "r2"):
        capabilities = ChannelCapabilities(max_length=160, supports_media=True)
        await store.add_binding(make_binding(room_id, "sms1", capabilities=capabilities))
    await store.add_binding(
        make_binding("r3", "sms1", capabilities=ChannelCapabilities(max_length=70))
    )
    first, second, third = [
        some(await store.get_binding(room_id, "sms1")) for room_id in ("r1", "r2", "r3")
    ]
    kept = [store._data[room_id].bindings["sms1"].capabilities for room_id in ("r1", "r2")]  # type: ignore[index]
    assert kept[0] is kept[1]  # held once
    assert first.capabilities == ChannelCapabilities(max_length=160, supports_media=True)
    assert third.capabilities == ChannelCapabilities(max_length=70)
    # Each read hands out a copy of its own: a field assigned in one changed every room's.
    first.capabilities.max_length = 3
    [listed] = await store.list_bindings("r2")
    assert (second.capabilities.max_length, listed.capabilities.max_length) == (160, 160)


counter_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("count"),
            st.sampled_from(ROOMS),
            st.integers(0, 20),
            st.sampled_from([None, T0, T0 + timedelta(minutes=1)]),
        ),
        st.tuples(
            st.sampled_from(["create", "update"]),
            st.sampled_from(ROOMS),
            st.integers(0, 5),
            st.integers(0, 5),
            st.sampled_from([None, T0]),
        ),
        st.tuples(st.just("delete"), st.sampled_from(ROOMS)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops=counter_operations)
async def test_count_event_agrees_with_the_default(ops: list[tuple[Any, ...]]) -> None:
    # One store counts with its own count_event, the other with the ABC's get_room/update_room.
    own, default = InMemoryStore(), InMemoryStore()
    for op in ops:
        for store in (own, default):
            match op:
                case ("count", room_id, index, activity_at):
                    if store is own:
                        await store.count_event(room_id, index, activity_at)
                    else:
                        await ConversationStore.count_event(store, room_id, index, activity_at)
                case ("create" | "update", room_id, count, latest, activity_at):
                    room = make_room(
                        room_id,
                        created_at=T0,
                        updated_at=T0,
                        event_count=count,
                        latest_index=latest,
                        timers=RoomTimers(last_activity_at=activity_at),
                    )
                    if op[0] == "create":
                        await store.create_room(room)
                    else:
                        await store.update_room(room)
                case ("delete", room_id):
                    await store.delete_room(room_id)
        for room_id in ROOMS:
            assert await own.get_room(room_id) == await default.get_room(room_id)
    assert await own.list_rooms() == await default.list_rooms()


async def test_visibilities_are_read_at_the_first_filtered_listing_and_kept() -> None:
    """A room's visibilities are built by its first listing with a filter (most rooms never
    have one), then kept up to date by every event added or replaced."""
    store = InMemoryStore()
    events = [make_event("r1", str(i), visibility=v) for i, v in enumerate(["all", "internal"])]
    for event in events:
        await store.add_event(event)
    await store.add_event_json(
        make_event("r1", "2", visibility="internal").model_dump_json().encode()
    )
    assert store._data["r1"].visibility is None
    assert await store.list_events("r1") != []
    assert store._data["r1"].visibility is None
    internal = await store.list_events("r1", visibility_filter="internal")
    assert [e.content.body for e in internal] == ["1", "2"]  # type: ignore[union-attr]
    assert store._data["r1"].visibility == ["all", "internal", "internal"]
    await store.add_event(make_event("r1", "3", visibility="internal"))
    await store.add_event(events[1].model_copy(update={"visibility": "transport"}))  # replaced
    internal = await store.list_events("r1", visibility_filter="internal")
    assert [e.content.body for e in internal] == ["2", "3"]  # type: ignore[union-attr]
    transport = await store.list_events("r1", visibility_filter="transport")
    assert [e.content.body for e in transport] == ["1"]  # type: ignore[union-attr]
    assert await store.list_events("r2", visibility_filter="all") == []


def _logged(model: Room | ChannelBinding, *, update: bool = False) -> bytes:
    """The log's payload of ``model``, as the room actor writes it."""
    raw = dump(model)
    if isinstance(model, Room):
        return encode_payload(
            RoomUpdated(room=raw, reason="updated") if update else RoomCreated(room=raw)
        )
    return encode_payload(
        ChannelUpdated(binding=raw, change="muted") if update else ChannelAttached(binding=raw)
    )


@settings(max_examples=200, deadline=None)
@given(ops=counter_operations)
async def test_a_room_kept_as_the_logs_payload_reads_as_one_kept_as_json(
    ops: list[tuple[Any, ...]],
) -> None:
    """``_put_logged`` (the store projection's, with the in-process log) keeps the payload; the
    counters it holds are those of its time, the store's own win."""
    logged, own = InMemoryStore(), InMemoryStore()
    for op in ops:
        match op:
            case ("count", room_id, index, activity_at):
                for store in (logged, own):
                    await store.count_event(room_id, index, activity_at)
            case ("create" | "update", room_id, count, latest, activity_at):
                room = make_room(
                    room_id,
                    created_at=T0,
                    updated_at=T0,
                    event_count=count,
                    latest_index=latest,
                    metadata={"m": count},
                    timers=RoomTimers(last_activity_at=activity_at, inactive_after_seconds=9),
                )
                await logged._put_logged(room, _logged(room, update=op[0] == "update"))
                await own.update_room(room)
            case ("delete", room_id):
                for store in (logged, own):
                    await store.delete_room(room_id)
        for room_id in ROOMS:
            kept, read = await logged.get_room(room_id), await own.get_room(room_id)
            assert kept == read
            if kept is not None and read is not None:
                assert kept.timers.last_activity_at == read.timers.last_activity_at
    assert await logged.list_rooms() == await own.list_rooms()


async def test_a_binding_kept_as_the_logs_payload_reads_as_one_kept_as_json() -> None:
    logged, own = InMemoryStore(), InMemoryStore()
    capabilities = ChannelCapabilities(max_length=160, supports_media=True)
    bindings = [
        make_binding("r1", "sms1", capabilities=capabilities, participant_id="ana"),
        make_binding("r1", "ws1", channel_type="websocket", metadata={"a": [1]}),
        make_binding("r1", "sms1", capabilities=capabilities, participant_id="ana", muted=True),
    ]
    room = make_room("r1", created_at=T0, updated_at=T0)
    for store in (logged, own):
        await store.create_room(room)
    for n, binding in enumerate(bindings):
        await logged._put_logged(binding, _logged(binding, update=n == 2))
        await own.add_binding(binding)
    kept = logged._data["r1"].bindings
    assert kept is not None and kept["sms1"].json.startswith(b'{"binding":')
    assert (
        await logged.list_bindings("r1")
        == await own.list_bindings("r1")
        == [
            bindings[2],
            bindings[1],
        ]
    )
    assert await logged.get_binding("r1", "sms1") == bindings[2]
    assert await logged.find_latest_room("ana", channel_type="sms") == await own.get_room("r1")
    assert await logged.find_room_id_by_channel("ws1") == "r1"
    # A payload of another shape (another version's log) is not kept: JSON of its own then.
    await logged._put_logged(bindings[1], b'{"other":1,"binding":{}}')
    assert not kept["ws1"].json.startswith(b'{"other"')
    assert await logged.get_binding("r1", "ws1") == bindings[1]
