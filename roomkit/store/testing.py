"""The contract suite every ``ConversationStore`` backend passes.

Subclass ``ConversationStoreContract`` in a test module and provide a ``store`` fixture that
returns (or yields) a fresh, empty store::

    class TestMyStore(ConversationStoreContract):
        supports_clear = True

        @pytest.fixture
        async def store(self) -> AsyncIterator[ConversationStore]:
            async with MyStore(...) as store:
                yield store

Capability flags switch optional parts on. The suite checks only what ``roomkit.store.base``
promises; in particular it never mutates nested containers of returned models, which backends
may share.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from roomkit.errors import StoredEventError
from roomkit.models.channel import ChannelBinding
from roomkit.models.enums import ChannelType, EventStatus, RoomStatus, TaskStatus
from roomkit.models.event import EventSource, RoomEvent, TextContent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room, RoomTimers
from roomkit.models.task import Observation, Task
from roomkit.store.base import ConversationStore

__all__ = [
    "ConversationStoreContract",
    "make_binding",
    "make_event",
    "make_participant",
    "make_room",
]

T = TypeVar("T")

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_room(room_id: str, **fields: Any) -> Room:
    """A room with a fixed id."""
    return Room(id=room_id, **fields)


def make_event(room_id: str, body: str = "hi", **fields: Any) -> RoomEvent:
    """A text message in ``room_id`` from an SMS channel ``sms1``."""
    source = EventSource(channel_id=fields.pop("channel_id", "sms1"), channel_type=ChannelType.SMS)
    return RoomEvent(room_id=room_id, source=source, content=TextContent(body=body), **fields)


def make_binding(room_id: str, channel_id: str, **fields: Any) -> ChannelBinding:
    """A binding of ``channel_id`` (SMS unless ``channel_type`` is given) to ``room_id``."""
    fields.setdefault("channel_type", ChannelType.SMS)
    return ChannelBinding(room_id=room_id, channel_id=channel_id, **fields)


def make_participant(room_id: str, participant_id: str, **fields: Any) -> Participant:
    """A participant of ``room_id`` connected through ``sms1`` unless told otherwise."""
    fields.setdefault("channel_id", "sms1")
    return Participant(id=participant_id, room_id=room_id, **fields)


def some(value: T | None) -> T:
    """``value``, asserting that it is not ``None``."""
    assert value is not None
    return value


def bodies(events: list[RoomEvent]) -> list[str]:
    """The text bodies of ``events``, in order."""
    contents = [e.content for e in events]
    assert all(isinstance(c, TextContent) for c in contents)
    return [c.body for c in contents if isinstance(c, TextContent)]


async def add_events(store: ConversationStore, room_id: str, n: int) -> list[RoomEvent]:
    """Add ``n`` events with bodies ``"0"`` .. ``str(n - 1)`` to the room."""
    return [await store.add_event(make_event(room_id, str(i))) for i in range(n)]


class ConversationStoreContract:
    """Tests of the ``ConversationStore`` contract; subclass with a ``store`` fixture."""

    #: The backend implements ``clear()``.
    supports_clear: bool = False
    #: The backend keeps the log position it holds (``applied_position``, ``apply_record``,
    #: transactional: a record's writes and its position land together or not at all).
    keeps_position: bool = False

    @pytest.fixture
    def store(self) -> ConversationStore:  # pragma: no cover - always overridden
        raise NotImplementedError("subclasses provide a fresh, empty store")

    # -- rooms -----------------------------------------------------------------------------------

    async def test_create_and_get_room(self, store: ConversationStore) -> None:
        room = make_room("r1", organization_id="org", metadata={"k": "v"})
        created = await store.create_room(room)
        assert created == room
        assert await store.get_room("r1") == room

    async def test_get_unknown_room_is_none(self, store: ConversationStore) -> None:
        assert await store.get_room("nope") is None

    async def test_returned_room_is_a_copy(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        first = await store.get_room("r1")
        assert first is not None
        first.status = RoomStatus.CLOSED
        first.metadata = {"changed": True}
        again = await store.get_room("r1")
        assert again is not None
        assert again is not first
        assert again.status == RoomStatus.ACTIVE
        assert again.metadata == {}

    async def test_update_room_replaces(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        updated = make_room("r1", status=RoomStatus.PAUSED, metadata={"a": 1}, event_count=3)
        assert await store.update_room(updated) == updated
        assert await store.get_room("r1") == updated

    async def test_update_unknown_room_inserts(self, store: ConversationStore) -> None:
        room = make_room("r1", status=RoomStatus.PAUSED)
        await store.update_room(room)
        assert await store.get_room("r1") == room

    async def test_create_room_again_keeps_order_and_content(
        self, store: ConversationStore
    ) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
        await store.add_event(make_event("r1"))
        await store.add_binding(make_binding("r1", "sms1"))
        await store.create_room(make_room("r1", metadata={"v": 2}))
        assert [r.id for r in await store.list_rooms()] == ["r1", "r2"]
        assert some(await store.get_room("r1")).metadata == {"v": 2}
        assert await store.get_event_count("r1") == 1
        assert await store.get_binding("r1", "sms1") is not None

    async def test_list_rooms_in_creation_order_with_pages(self, store: ConversationStore) -> None:
        for i in range(5):
            await store.create_room(make_room(f"r{i}"))
        assert [r.id for r in await store.list_rooms()] == [f"r{i}" for i in range(5)]
        assert [r.id for r in await store.list_rooms(offset=1, limit=2)] == ["r1", "r2"]
        assert [r.id for r in await store.list_rooms(offset=4, limit=10)] == ["r4"]
        assert await store.list_rooms(offset=5) == []
        assert await store.list_rooms(limit=0) == []
        # Pages past any length are valid pages: the end, or nothing.
        huge = sys.maxsize
        assert [r.id for r in await store.list_rooms(offset=3, limit=huge)] == ["r3", "r4"]
        assert await store.list_rooms(offset=10**30) == []

    async def test_list_rooms_returns_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        [room] = await store.list_rooms()
        room.status = RoomStatus.CLOSED
        assert some(await store.get_room("r1")).status == RoomStatus.ACTIVE

    async def test_delete_room(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        assert await store.delete_room("r1") is True
        assert await store.get_room("r1") is None
        assert await store.list_rooms() == []
        assert await store.delete_room("r1") is False
        assert await store.delete_room("never") is False

    async def test_deleting_a_room_never_created_removes_nothing(
        self, store: ConversationStore
    ) -> None:
        # It answered False and removed what was stored in it all the same (0.3.0 kept it).
        event = await store.add_event(make_event("never"))
        await store.add_binding(make_binding("never", "sms1"))
        assert await store.delete_room("never") is False
        assert await store.get_event(event.id) is not None
        assert await store.get_binding("never", "sms1") is not None

    async def test_delete_room_cascades(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
            await store.add_binding(make_binding(room_id, "sms1", participant_id="p1"))
            await store.add_participant(make_participant(room_id, "p1"))
            await store.add_task(Task(id=f"t-{room_id}", room_id=room_id, title="t"))
            await store.add_observation(
                Observation(room_id=room_id, channel_id="sms1", content="o")
            )
        doomed = await store.add_event(make_event("r1", idempotency_key="k1"))
        await store.add_event(make_event("r1"))
        await store.mark_read("r1", "sms1", doomed.id)
        kept = await store.add_event(make_event("r2", idempotency_key="k1"))
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))

        assert await store.delete_room("r1") is True

        assert await store.list_events("r1") == []
        assert await store.get_event_count("r1") == 0
        assert await store.get_event(doomed.id) is None
        assert await store.check_idempotency("r1", "k1") is False
        assert await store.list_bindings("r1") == []
        assert await store.get_binding("r1", "sms1") is None
        assert await store.list_participants("r1") == []
        assert await store.get_task("t-r1") is None
        assert await store.list_tasks("r1") == []
        assert await store.list_observations("r1") == []
        assert await store.get_unread_count("r1", "sms1") == 0
        # The other room and the identities are untouched.
        assert await store.get_event(kept.id) == kept
        assert await store.check_idempotency("r2", "k1") is True
        assert len(await store.list_bindings("r2")) == 1
        assert len(await store.list_participants("r2")) == 1
        assert await store.get_task("t-r2") is not None
        assert len(await store.list_observations("r2")) == 1
        assert await store.find_room_id_by_channel("sms1") == "r2"
        assert some(await store.find_latest_room("p1")).id == "r2"
        assert await store.resolve_identity("sms", "+1") is not None

    async def test_deleted_room_id_can_be_reused(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await add_events(store, "r1", 2)
        await store.add_binding(make_binding("r1", "sms1"))
        await store.delete_room("r1")
        await store.create_room(make_room("r1"))
        assert await store.get_event_count("r1") == 0
        assert await store.list_bindings("r1") == []
        assert await store.find_room_id_by_channel("sms1") is None

    # -- find_rooms ------------------------------------------------------------------------------

    async def test_find_rooms_filters(self, store: ConversationStore) -> None:
        await store.create_room(make_room("a", organization_id="o1", metadata={"tier": "gold"}))
        await store.create_room(
            make_room("b", organization_id="o1", status=RoomStatus.CLOSED, metadata={"x": 1})
        )
        await store.create_room(make_room("c", organization_id="o2", metadata={"tier": "gold"}))
        await store.create_room(make_room("d", metadata={"tier": None}))

        async def ids(**filters: Any) -> list[str]:
            return [r.id for r in await store.find_rooms(**filters)]

        assert await ids() == ["a", "b", "c", "d"]
        assert await ids(organization_id="o1") == ["a", "b"]
        assert await ids(status=RoomStatus.ACTIVE) == ["a", "c", "d"]
        assert await ids(status="closed") == ["b"]
        assert await ids(metadata_filter={"tier": "gold"}) == ["a", "c"]
        assert await ids(metadata_filter={"tier": None}) == ["d"]
        assert await ids(metadata_filter={}) == ["a", "b", "c", "d"]
        assert await ids(organization_id="o1", metadata_filter={"tier": "gold"}) == ["a"]
        assert await ids(organization_id="o1", status="closed", metadata_filter={"x": 1}) == ["b"]
        assert await ids(organization_id="nobody") == []
        assert await ids(metadata_filter={"tier": "gold", "x": 1}) == []

    async def test_find_rooms_sees_updates_and_returns_copies(
        self, store: ConversationStore
    ) -> None:
        await store.create_room(make_room("a"))
        await store.update_room(make_room("a", status=RoomStatus.PAUSED))
        assert await store.find_rooms(status="active") == []
        [room] = await store.find_rooms(status="paused")
        room.status = RoomStatus.CLOSED
        assert [r.id for r in await store.find_rooms(status="paused")] == ["a"]

    # -- find_latest_room ------------------------------------------------------------------------

    async def test_find_latest_room_by_participant(self, store: ConversationStore) -> None:
        # Created in one order, dated in the other: created_at decides.
        await store.create_room(make_room("newer", created_at=T0 + timedelta(hours=1)))
        await store.create_room(make_room("older", created_at=T0))
        await store.create_room(make_room("other", created_at=T0 + timedelta(hours=2)))
        await store.add_participant(make_participant("older", "p1"))
        await store.add_participant(make_participant("newer", "p1"))
        await store.add_participant(make_participant("other", "p2"))
        found = await store.find_latest_room("p1")
        assert found is not None
        assert found.id == "newer"
        assert await store.find_latest_room("nobody") is None

    async def test_find_latest_room_by_binding(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1", created_at=T0))
        await store.create_room(make_room("r2", created_at=T0 + timedelta(hours=1)))
        await store.add_binding(make_binding("r1", "sms1", participant_id="p1"))
        await store.add_participant(make_participant("r2", "p2"))
        assert some(await store.find_latest_room("p1")).id == "r1"

    async def test_find_latest_room_mixes_participants_and_bindings(
        self, store: ConversationStore
    ) -> None:
        await store.create_room(make_room("via-participant", created_at=T0))
        await store.create_room(make_room("via-binding", created_at=T0 + timedelta(hours=1)))
        await store.add_participant(make_participant("via-participant", "p1"))
        await store.add_binding(make_binding("via-binding", "sms1", participant_id="p1"))
        assert some(await store.find_latest_room("p1")).id == "via-binding"

    async def test_find_latest_room_filters_by_status(self, store: ConversationStore) -> None:
        await store.create_room(make_room("old", created_at=T0))
        await store.create_room(
            make_room("new", created_at=T0 + timedelta(hours=1), status=RoomStatus.CLOSED)
        )
        for room_id in ("old", "new"):
            await store.add_participant(make_participant(room_id, "p1"))
        assert some(await store.find_latest_room("p1", status="active")).id == "old"
        assert some(await store.find_latest_room("p1", status=RoomStatus.CLOSED)).id == "new"
        assert some(await store.find_latest_room("p1")).id == "new"
        assert await store.find_latest_room("p1", status="archived") is None

    async def test_find_latest_room_filters_bindings_by_channel_type(
        self, store: ConversationStore
    ) -> None:
        # A participant counts whatever their channel (0.3.0); a binding only of that type.
        await store.create_room(make_room("sms-room", created_at=T0))
        await store.create_room(make_room("email-room", created_at=T0 + timedelta(hours=1)))
        await store.create_room(make_room("bound-room", created_at=T0 + timedelta(hours=2)))
        await store.add_binding(make_binding("sms-room", "sms1"))
        await store.add_participant(make_participant("sms-room", "p1", channel_id="sms1"))
        await store.add_binding(make_binding("email-room", "mail", channel_type="email"))
        await store.add_participant(make_participant("email-room", "p1", channel_id="mail"))
        await store.add_binding(
            make_binding(
                "bound-room", "wa", channel_type=ChannelType.WHATSAPP, participant_id="p1"
            )
        )

        async def latest(channel_type: str | None) -> str | None:
            room = await store.find_latest_room("p1", channel_type=channel_type)
            return None if room is None else room.id

        assert await latest(None) == "bound-room"
        assert await latest("sms") == "email-room"
        assert await latest(ChannelType.EMAIL) == "email-room"
        assert await latest("whatsapp") == "bound-room"
        assert await latest("teams") == "email-room"
        await store.create_room(make_room("bound-only", created_at=T0))
        await store.add_binding(make_binding("bound-only", "wa2", participant_id="p9"))
        assert await store.find_latest_room("p9", channel_type="teams") is None
        assert some(await store.find_latest_room("p9", channel_type="sms")).id == "bound-only"

    async def test_find_latest_room_follows_binding_changes(
        self, store: ConversationStore
    ) -> None:
        await store.create_room(make_room("r1"))
        await store.add_binding(make_binding("r1", "sms1", participant_id="p1"))
        await store.update_binding(make_binding("r1", "sms1", participant_id="p2"))
        assert await store.find_latest_room("p1") is None
        assert some(await store.find_latest_room("p2")).id == "r1"
        await store.remove_binding("r1", "sms1")
        assert await store.find_latest_room("p2") is None

    async def test_find_latest_room_reads_a_naive_created_at_as_utc(
        self, store: ConversationStore
    ) -> None:
        await store.create_room(make_room("aware", created_at=T0 + timedelta(hours=1)))
        naive = (T0 + timedelta(hours=2)).replace(tzinfo=None)
        await store.create_room(make_room("naive", created_at=naive))
        for room_id in ("aware", "naive"):
            await store.add_participant(make_participant(room_id, "p1"))
        assert some(await store.find_latest_room("p1")).id == "naive"

    async def test_find_latest_room_returns_a_copy(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_participant(make_participant("r1", "p1"))
        room = await store.find_latest_room("p1")
        assert room is not None
        room.status = RoomStatus.CLOSED
        assert some(await store.get_room("r1")).status == RoomStatus.ACTIVE

    # -- find_room_id_by_channel -----------------------------------------------------------------

    async def test_find_room_id_by_channel_first_in_creation_order(
        self, store: ConversationStore
    ) -> None:
        for room_id in ("r1", "r2", "r3"):
            await store.create_room(make_room(room_id))
        # Bound in reverse order: room creation order still decides.
        await store.add_binding(make_binding("r3", "sms1"))
        await store.add_binding(make_binding("r2", "sms1"))
        await store.add_binding(make_binding("r1", "web"))
        assert await store.find_room_id_by_channel("sms1") == "r2"
        assert await store.find_room_id_by_channel("web") == "r1"
        assert await store.find_room_id_by_channel("nobody") is None

    async def test_find_room_id_by_channel_with_status(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2", "r3"):
            await store.create_room(make_room(room_id))
            await store.add_binding(make_binding(room_id, "sms1"))
        await store.update_room(make_room("r1", status=RoomStatus.CLOSED))
        assert await store.find_room_id_by_channel("sms1") == "r1"
        assert await store.find_room_id_by_channel("sms1", status="active") == "r2"
        assert await store.find_room_id_by_channel("sms1", status=RoomStatus.ACTIVE) == "r2"
        assert await store.find_room_id_by_channel("sms1", status="closed") == "r1"
        assert await store.find_room_id_by_channel("sms1", status="paused") is None
        await store.update_room(make_room("r1"))
        assert await store.find_room_id_by_channel("sms1", status="active") == "r1"

    async def test_find_room_id_by_channel_after_detach_and_delete(
        self, store: ConversationStore
    ) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
            await store.add_binding(make_binding(room_id, "sms1"))
        assert await store.remove_binding("r1", "sms1") is True
        assert await store.find_room_id_by_channel("sms1") == "r2"
        await store.update_binding(make_binding("r2", "sms1", muted=True))
        assert await store.find_room_id_by_channel("sms1") == "r2"
        await store.delete_room("r2")
        assert await store.find_room_id_by_channel("sms1") is None

    async def test_find_room_id_by_channel_needs_the_room(self, store: ConversationStore) -> None:
        # A binding stored before its room is found once the room exists.
        await store.add_binding(make_binding("late", "sms1"))
        assert await store.find_room_id_by_channel("sms1") is None
        await store.create_room(make_room("late"))
        assert await store.find_room_id_by_channel("sms1") == "late"

    # -- values a database may not hold as they are -----------------------------------------------

    async def test_ids_and_keys_with_nul_surrogates_and_backslashes(
        self, store: ConversationStore
    ) -> None:
        # A NUL, or a backslash that could pass for an escape of one: distinct ids, all kept.
        rooms = ["r\x00", "r\\u0000", "r\\"]
        for room_id in rooms:
            await store.create_room(make_room(room_id))
            await store.add_binding(make_binding(room_id, "sms\x00"))
            await store.add_event(make_event(room_id, idempotency_key="k\x00"))
        assert [r.id for r in await store.list_rooms()] == rooms
        for room_id in rooms:
            assert some(await store.get_room(room_id)).id == room_id
            assert await store.check_idempotency(room_id, "k\x00")
            assert not await store.check_idempotency(room_id, "k\\u0000")
            assert [b.channel_id for b in await store.list_bindings(room_id)] == ["sms\x00"]
        assert await store.find_room_id_by_channel("sms\x00") == rooms[0]
        event = await store.add_event(make_event("r\x00", idempotency_key="k2\x00"))
        assert await store.idempotent_event_id("r\x00", "k2\x00") in (event.id, "")
        # A lone surrogate cannot be stored in a model (pydantic refuses it), but it can be
        # looked up: nothing has it.
        assert await store.get_room("r\ud800") is None
        assert await store.get_event_count("r\ud800") == 0

    async def test_ids_and_keys_given_as_str_subclasses_find_what_plain_ones_do(
        self, store: ConversationStore
    ) -> None:
        # An app's own id type, or a StrEnum: PostgresStore sent it unescaped, and missed the
        # rows of an id with a backslash or past the length it holds by digest.
        class RoomId(str):
            __slots__ = ()

        rooms = ["r\\1", "r" * 1200, "r\x00"]
        for room_id in rooms:
            await store.create_room(make_room(RoomId(room_id)))
            await store.add_event(make_event(room_id, idempotency_key=RoomId("k\\")))
        for room_id in rooms:
            assert some(await store.get_room(RoomId(room_id))).id == room_id
            assert some(await store.get_room(room_id)).id == room_id
            assert await store.check_idempotency(RoomId(room_id), RoomId("k\\"))
            assert await store.get_event_count(RoomId(room_id)) == 1

    async def test_rooms_created_at_the_edges_of_time_are_kept(
        self, store: ConversationStore
    ) -> None:
        # Times a UTC datetime cannot hold (PostgreSQL's driver refused them: the room was
        # missing from the tables), sorted as the last and the first.
        late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
        early = datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=14)))
        await store.create_room(make_room("late", created_at=late))
        await store.create_room(make_room("early", created_at=early))
        assert some(await store.get_room("late")).created_at == late
        assert some(await store.get_room("early")).created_at == early
        assert {r.id for r in await store.list_rooms()} == {"late", "early"}

    async def test_idempotency_keys_of_any_length_are_kept(self, store: ConversationStore) -> None:
        # Keys come from outside (a webhook's message id): PostgreSQL's index refused one of
        # some 2,700 bytes, and its message was missing from the tables.
        await store.create_room(make_room("r1"))
        # Random, so that no compression makes it short; two that differ at their end only.
        key = "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(3000))
        other = key[:-1] + "!"
        event = await store.add_event(make_event("r1", idempotency_key=key))
        assert await store.check_idempotency("r1", key)
        assert await store.idempotent_event_id("r1", key) in (event.id, "")
        assert not await store.check_idempotency("r1", other)
        assert not await store.check_idempotency("r1", key[:1000])
        # Nor a key crafted like the form a store may hold a long one in (its digest).
        digest = hashlib.sha256(key.encode()).hexdigest()
        for crafted in ("\x00sha256:" + digest, "\\sha256:" + digest):
            assert not await store.check_idempotency("r1", crafted)
        assert [e.id for e in await store.list_events("r1")] == [event.id]

    async def test_ids_of_any_length_are_kept(self, store: ConversationStore) -> None:
        # Ids come from outside too (a sender's address, a hook's event id): past some 2,700
        # bytes PostgreSQL's index refused them, and the record's writes were lost.
        def long(tag: str) -> str:
            return tag + "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(1000))

        room_id, channel_id, sender = long("room"), long("channel"), long("sender")
        await store.create_room(make_room(room_id))
        await store.add_binding(make_binding(room_id, channel_id, participant_id=sender))
        assert await store.find_room_id_by_channel(channel_id) == room_id
        assert some(await store.find_latest_room(sender)).id == room_id
        await store.add_participant(make_participant(room_id, sender, channel_id=channel_id))
        assert [p.id for p in await store.list_participants(room_id)] == [sender]
        assert some(await store.get_participant(room_id, sender)).channel_id == channel_id

        event = await store.add_event(
            make_event(room_id, id=long("event"), channel_id=channel_id, idempotency_key="k")
        )
        assert some(await store.get_event(event.id)) == event
        assert await store.idempotent_event_id(room_id, "k") in (event.id, "")
        with pytest.raises(ValueError, match="already stored in room"):
            await store.add_event(make_event("elsewhere", id=event.id))
        # An event of a room with no row of its own: the error names that room, not a form
        # a store holds its id in.
        orphan = await store.add_event(make_event(long("orphan")))
        with pytest.raises(ValueError, match="already stored in room") as refused:
            await store.add_event(make_event("elsewhere", id=orphan.id))
        assert repr(orphan.room_id) in str(refused.value)
        await store.mark_read(room_id, channel_id, event.id)
        assert await store.get_unread_count(room_id, channel_id) == 0

        task = await store.add_task(Task(id=long("task"), room_id=room_id, title="t"))
        assert some(await store.get_task(task.id)) == task
        seen = Observation(id=long("obs"), room_id=room_id, channel_id=channel_id, content="o")
        await store.add_observation(seen)
        assert await store.list_observations(room_id) == [seen]

        first, second = long("identity-1"), long("identity-2")
        await store.create_identity(Identity(id=first, channel_addresses={"sms": [sender]}))
        assert some(await store.resolve_identity("sms", sender)).id == first
        await store.link_address(second, "sms", sender)  # unknown: nothing changes
        await store.create_identity(Identity(id=second))
        await store.link_address(second, "sms", sender)  # moves it from the first
        assert some(await store.resolve_identity("sms", sender)).id == second
        assert some(await store.get_identity(first)).channel_addresses == {}

        # Two long ids alike but for their last character stay two.
        twin = channel_id[:-1] + "!"
        assert await store.find_room_id_by_channel(twin) is None
        assert await store.get_participant(room_id, sender[:-1] + "!") is None
        assert await store.delete_room(room_id)
        assert await store.get_room(room_id) is None

    async def test_metadata_numbers_are_kept_as_they_are(self, store: ConversationStore) -> None:
        metadata = {"big": 1.5e300, "float": 1e16, "zero": -0.0, "int": 10**30, "b": 1, "a": 2}
        await store.create_room(make_room("r1", metadata=metadata))
        await store.count_event("r1", 1, T0)
        room = some(await store.get_room("r1"))
        assert room.metadata == metadata
        assert [type(v) for v in room.metadata.values()] == [type(v) for v in metadata.values()]
        assert str(room.metadata["zero"]) == "-0.0"
        assert [r.id for r in await store.find_rooms(metadata_filter={"big": 1.5e300})] == ["r1"]

    async def test_count_event_with_an_index_past_64_bits(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.count_event("r1", 2**64, None)
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index) == (1, 2**64)

    # -- counters (count_event) ------------------------------------------------------------------

    async def test_count_event(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1", timers=RoomTimers(inactive_after_seconds=60)))
        other = make_room("r2")
        await store.create_room(other)
        for index in (0, 5, 2):
            await store.count_event("r1", index, None)
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index) == (3, 5)
        assert room.timers.last_activity_at is None
        await store.count_event("r1", 4, T0)
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index) == (4, 5)
        assert room.timers == RoomTimers(inactive_after_seconds=60, last_activity_at=T0)
        await store.count_event("r1", 6, None)  # no activity: the last one stays
        assert some(await store.get_room("r1")).timers.last_activity_at == T0
        # The other room is untouched.
        assert await store.get_room("r2") == other

    async def test_count_event_ignores_unknown_rooms(self, store: ConversationStore) -> None:
        await store.count_event("nope", 3, T0)
        assert await store.get_room("nope") is None
        assert await store.list_rooms() == []
        # A room with events but not created yet is unknown too.
        await store.add_event(make_event("late"))
        await store.count_event("late", 0, None)
        assert await store.get_room("late") is None
        assert await store.get_event_count("late") == 1

    async def test_counters_show_in_every_room_read(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1", created_at=T0))
        await store.add_participant(make_participant("r1", "p1"))
        await store.count_event("r1", 7, T0)
        await store.count_event("r1", 8, None)

        def counted(room: Room | None) -> tuple[str, int, int, datetime | None]:
            assert room is not None
            return room.id, room.event_count, room.latest_index, room.timers.last_activity_at

        expected = ("r1", 2, 8, T0)
        assert counted(await store.get_room("r1")) == expected
        assert [counted(r) for r in await store.list_rooms()] == [expected]
        assert [counted(r) for r in await store.find_rooms(status="active")] == [expected]
        assert [counted(r) for r in await store.find_rooms(metadata_filter={})] == [expected]
        assert counted(await store.find_latest_room("p1")) == expected

    async def test_update_room_sets_the_counters(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.count_event("r1", 3, T0)
        # A room read and written back keeps its counters, and counting goes on from them.
        room = some(await store.get_room("r1"))
        await store.update_room(room.model_copy(update={"metadata": {"k": "v"}}))
        await store.count_event("r1", 1, None)
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index, room.metadata) == (2, 3, {"k": "v"})
        assert room.timers.last_activity_at == T0
        # A room given with other counters replaces them.
        later = T0 + timedelta(hours=1)
        timers = RoomTimers(last_activity_at=later)
        reset = make_room("r1", event_count=10, latest_index=9, timers=timers)
        await store.update_room(reset)
        assert await store.get_room("r1") == reset
        await store.count_event("r1", 4, None)
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index) == (11, 9)
        assert room.timers.last_activity_at == later
        await store.create_room(make_room("r1"))
        room = some(await store.get_room("r1"))
        assert (room.event_count, room.latest_index, room.timers) == (0, 0, RoomTimers())

    async def test_counted_room_reads_are_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.count_event("r1", 1, T0)
        room = some(await store.get_room("r1"))
        room.event_count = 100
        room.timers = RoomTimers()
        [listed] = await store.list_rooms()
        assert (listed.event_count, listed.timers.last_activity_at) == (1, T0)

    async def test_default_count_event_agrees(self, store: ConversationStore) -> None:
        # The ABC's fallback (get_room + update_room) leaves the same room behind.
        for room_id in ("own", "default"):
            await store.create_room(make_room(room_id, created_at=T0, updated_at=T0))
        for index, activity_at in [(0, None), (4, T0), (2, None), (9, T0 + timedelta(days=1))]:
            await store.count_event("own", index, activity_at)
            await ConversationStore.count_event(store, "default", index, activity_at)
        own = some(await store.get_room("own"))
        default = some(await store.get_room("default"))
        assert default == own.model_copy(update={"id": "default"})
        await ConversationStore.count_event(store, "nope", 1, T0)
        assert await store.get_room("nope") is None

    # -- events ----------------------------------------------------------------------------------

    async def test_add_and_get_event(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        event = make_event("r1", metadata={"m": 1})
        assert await store.add_event(event) == event
        assert await store.get_event(event.id) == event
        assert await store.get_event("nope") is None

    async def test_add_event_envelope(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        first = make_event("r1", "first", idempotency_key="k1", visibility="transport")
        second = make_event("r1", "second", metadata={"m": [1, 2]})
        for event, envelope in [
            (first, b'{"event":%s,"deliver":true}'),
            (second, b'{"deliver":false,"event":%s,"other":{"event":{"id":"x"}}}'),
        ]:
            await store.add_event_envelope(envelope % event.model_dump_json().encode())
        assert await store.get_event(first.id) == first
        assert await store.get_event(second.id) == second
        assert await store.get_event("x") is None
        assert await store.list_events("r1") == [first, second]
        assert await store.list_events("r1", visibility_filter="transport") == [first]
        assert await store.list_recent_events("r1", limit=1) == [second]
        assert await store.get_event_count("r1") == 2
        assert await store.check_idempotency("r1", "k1") is True

    async def test_add_event_json(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        event = make_event("r1", idempotency_key="k1")
        await store.add_event_json(event.model_dump_json().encode())
        assert await store.get_event(event.id) == event
        assert await store.list_events("r1") == [event]
        assert await store.check_idempotency("r1", "k1") is True

    async def test_an_event_that_does_not_validate_is_refused_or_named_when_read(
        self, store: ConversationStore
    ) -> None:
        # A log record another writer (or a newer RoomKit) appended may hold an event this
        # version does not validate (a content type it does not know). A store that keeps
        # events as their JSON raised pydantic's ValidationError from its reads: no
        # RoomKitError, naming neither the room nor the event.
        await store.create_room(make_room("r1"))
        await store.create_room(make_room("r2"))
        before = await store.add_event(make_event("r1", "before"))
        other = await store.add_event(make_event("r2", "other room"))
        foreign = make_event("r1", "x").model_dump(mode="json")
        foreign.update(id="e-foreign", content={"type": "hologram"})
        try:
            await store.add_event_envelope(b'{"event":%s}' % json.dumps(foreign).encode())
        except ValueError:
            return  # refused when added: the store validates what it keeps
        reads = (
            lambda: store.get_event("e-foreign"),
            lambda: store.list_events("r1"),
            lambda: store.list_recent_events("r1", limit=1),
        )
        for read in reads:
            with pytest.raises(StoredEventError) as raised:
                await read()
            assert (raised.value.room_id, raised.value.event_id) == ("r1", "e-foreign")
        # Its room's other events, and other rooms, still read.
        assert await store.get_event(before.id) == before
        assert await store.list_events("r1", limit=1) == [before]
        assert await store.list_events("r2") == [other]

    async def test_envelope_with_a_stored_id_replaces_it(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        first, second = await add_events(store, "r1", 2)
        replaced = first.model_copy(update={"status": EventStatus.DELIVERED})
        await store.add_event_envelope(b'{"event":%s}' % replaced.model_dump_json().encode())
        assert await store.list_events("r1") == [replaced, second]

    async def test_returned_events_are_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        event = await store.add_event(make_event("r1"))
        got = await store.get_event(event.id)
        assert got is not None
        got.status = EventStatus.FAILED
        [listed] = await store.list_events("r1")
        assert listed.status == EventStatus.PENDING
        listed.status = EventStatus.FAILED
        [recent] = await store.list_recent_events("r1")
        assert recent.status == EventStatus.PENDING
        recent.status = EventStatus.FAILED
        assert some(await store.get_event(event.id)).status == EventStatus.PENDING

    async def test_events_list_in_insertion_order(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.create_room(make_room("r2"))
        # created_at runs backwards: insertion order, not time, orders the timeline.
        for i in range(3):
            await store.add_event(make_event("r1", str(i), created_at=T0 - timedelta(seconds=i)))
            await store.add_event(make_event("r2", f"other{i}"))
        assert bodies(await store.list_events("r1")) == ["0", "1", "2"]
        assert await store.list_events("unknown") == []

    async def test_list_events_pagination(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await add_events(store, "r1", 120)
        assert bodies(await store.list_events("r1")) == [str(i) for i in range(50)]
        assert bodies(await store.list_events("r1", offset=50, limit=3)) == ["50", "51", "52"]
        assert bodies(await store.list_events("r1", offset=118)) == ["118", "119"]
        assert await store.list_events("r1", offset=120) == []
        assert await store.list_events("r1", limit=0) == []
        assert len(await store.list_events("r1", limit=1000)) == 120

    async def test_a_page_is_counted_in_integers(self, store: ConversationStore) -> None:
        # InMemoryStore refused 1.5 and PostgreSQL took it as 1; None failed deep inside each.
        await store.create_room(make_room("r1"))
        await add_events(store, "r1", 3)
        for bad in (None, 1.5, "1", True):
            with pytest.raises(TypeError, match="limit"):
                await store.list_events("r1", limit=bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="offset"):
                await store.list_events("r1", offset=bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="limit"):
                await store.list_rooms(limit=bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="limit"):
                await store.list_recent_events("r1", limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit must be >= 0"):
            await store.list_recent_events("r1", limit=-1)
        with pytest.raises(ValueError, match="offset must be >= 0"):
            await store.list_events("r1", offset=-5, limit=2)
        with pytest.raises(ValueError, match="offset must be >= 0"):
            await store.list_rooms(-2, 2)

    async def test_list_events_visibility_filter(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        for i in range(6):
            visibility = "all" if i % 2 == 0 else "transport"
            await store.add_event(make_event("r1", str(i), visibility=visibility))
        assert bodies(await store.list_events("r1", visibility_filter="transport")) == [
            "1",
            "3",
            "5",
        ]
        assert bodies(
            await store.list_events("r1", offset=1, limit=1, visibility_filter="transport")
        ) == ["3"]
        assert bodies(await store.list_events("r1", visibility_filter="all")) == ["0", "2", "4"]
        assert await store.list_events("r1", visibility_filter="none") == []
        assert len(await store.list_events("r1")) == 6
        for offset, limit in ((1, sys.maxsize), (10**30, 5), (0, 10**30)):
            page = await store.list_events(
                "r1", offset=offset, limit=limit, visibility_filter="transport"
            )
            assert bodies(page) == ["1", "3", "5"][offset:]

    async def test_add_event_with_a_stored_id_replaces_it(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        first, second = await add_events(store, "r1", 2)
        replaced = first.model_copy(update={"status": EventStatus.DELIVERED})
        await store.add_event(replaced)
        assert await store.get_event_count("r1") == 2
        assert [e.id for e in await store.list_events("r1")] == [first.id, second.id]
        assert some(await store.get_event(first.id)).status == EventStatus.DELIVERED

    async def test_get_event_count(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        assert await store.get_event_count("r1") == 0
        assert await store.get_event_count("unknown") == 0
        await add_events(store, "r1", 3)
        await store.add_event(make_event("r1", status=EventStatus.BLOCKED, blocked_by="hook"))
        assert await store.get_event_count("r1") == 4

    async def test_check_idempotency(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.create_room(make_room("r2"))
        assert await store.check_idempotency("r1", "k1") is False
        await store.add_event(make_event("r1", idempotency_key="k1"))
        await store.add_event(make_event("r1"))
        assert await store.check_idempotency("r1", "k1") is True
        assert await store.check_idempotency("r1", "k2") is False
        assert await store.check_idempotency("r2", "k1") is False
        assert await store.check_idempotency("unknown", "k1") is False

    async def test_idempotent_event_id(self, store: ConversationStore) -> None:
        # The id of the event added with the key ("" from a store that cannot say which).
        await store.create_room(make_room("r1"))
        event = await store.add_event(make_event("r1", idempotency_key="k1"))
        assert await store.idempotent_event_id("r1", "k1") in (event.id, "")
        assert await store.idempotent_event_id("r1", "k2") is None
        assert await store.idempotent_event_id("unknown", "k1") is None

    async def test_a_key_stays_with_the_first_event_added_with_it(
        self, store: ConversationStore
    ) -> None:
        # As the room's own window answers: the first event recorded under a key is the
        # message a provider's retry repeats (a log written before copies of a message were
        # recorded without its key holds the copy after it; the latest answered, past the
        # window, with the copy).
        await store.create_room(make_room("r1"))
        first = await store.add_event(make_event("r1", idempotency_key="k"))
        # Replaced by a version without the key: the key still says it was seen.
        await store.add_event(first.model_copy(update={"idempotency_key": None}))
        assert await store.check_idempotency("r1", "k") is True
        await store.add_event(make_event("r1", idempotency_key="k"))
        assert await store.idempotent_event_id("r1", "k") in (first.id, "")

    async def test_blocked_events_record_idempotency(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_event(
            make_event("r1", idempotency_key="k1", status=EventStatus.BLOCKED, blocked_by="spam")
        )
        assert await store.check_idempotency("r1", "k1") is True

    async def test_list_recent_events(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        assert await store.list_recent_events("r1") == []
        await add_events(store, "r1", 60)
        assert bodies(await store.list_recent_events("r1")) == [str(i) for i in range(10, 60)]
        assert bodies(await store.list_recent_events("r1", limit=3)) == ["57", "58", "59"]
        assert len(await store.list_recent_events("r1", limit=100)) == 60
        assert await store.list_recent_events("r1", limit=0) == []
        assert await store.list_recent_events("unknown") == []

    async def test_default_list_recent_events_agrees(self, store: ConversationStore) -> None:
        # The ABC's fallback, built on the abstract methods, gives the same answer.
        await store.create_room(make_room("r1"))
        await add_events(store, "r1", 7)
        for limit in (0, 1, 5, 7, 50):
            expected = await store.list_recent_events("r1", limit=limit)
            assert await ConversationStore.list_recent_events(store, "r1", limit) == expected

    # -- bindings --------------------------------------------------------------------------------

    async def test_add_get_update_binding(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        binding = make_binding("r1", "sms1", metadata={"phone_number": "+1"})
        assert await store.add_binding(binding) == binding
        assert await store.get_binding("r1", "sms1") == binding
        assert await store.get_binding("r1", "nope") is None
        assert await store.get_binding("unknown", "sms1") is None
        muted = binding.model_copy(update={"muted": True})
        assert await store.update_binding(muted) == muted
        assert await store.get_binding("r1", "sms1") == muted

    async def test_returned_bindings_are_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_binding(make_binding("r1", "sms1"))
        got = await store.get_binding("r1", "sms1")
        assert got is not None
        got.muted = True
        [listed] = await store.list_bindings("r1")
        assert listed.muted is False
        listed.muted = True
        assert some(await store.get_binding("r1", "sms1")).muted is False

    async def test_remove_binding(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_binding(make_binding("r1", "sms1"))
        assert await store.remove_binding("r1", "sms1") is True
        assert await store.get_binding("r1", "sms1") is None
        assert await store.remove_binding("r1", "sms1") is False
        assert await store.remove_binding("unknown", "sms1") is False

    async def test_list_bindings_order(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        for channel_id in ("c", "a", "b"):
            await store.add_binding(make_binding("r1", channel_id))
        await store.update_binding(make_binding("r1", "c", muted=True))
        assert [b.channel_id for b in await store.list_bindings("r1")] == ["c", "a", "b"]
        assert await store.list_bindings("unknown") == []

    # -- participants ----------------------------------------------------------------------------

    async def test_participants(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
        p1 = make_participant("r1", "p1", display_name="Ann")
        assert await store.add_participant(p1) == p1
        await store.add_participant(make_participant("r1", "p2"))
        await store.add_participant(make_participant("r2", "p1", display_name="Ann in r2"))
        assert await store.get_participant("r1", "p1") == p1
        assert some(await store.get_participant("r2", "p1")).display_name == "Ann in r2"
        assert await store.get_participant("r1", "nope") is None
        assert await store.get_participant("unknown", "p1") is None
        assert [p.id for p in await store.list_participants("r1")] == ["p1", "p2"]
        assert await store.list_participants("unknown") == []

        renamed = p1.model_copy(update={"display_name": "Anne"})
        assert await store.update_participant(renamed) == renamed
        assert await store.get_participant("r1", "p1") == renamed
        assert [p.id for p in await store.list_participants("r1")] == ["p1", "p2"]

    async def test_returned_participants_are_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_participant(make_participant("r1", "p1"))
        got = await store.get_participant("r1", "p1")
        assert got is not None
        got.display_name = "changed"
        [listed] = await store.list_participants("r1")
        assert listed.display_name is None
        listed.display_name = "changed"
        assert some(await store.get_participant("r1", "p1")).display_name is None

    # -- identities ------------------------------------------------------------------------------

    async def test_create_get_resolve_identity(self, store: ConversationStore) -> None:
        identity = Identity(
            id="i1", display_name="Ann", channel_addresses={"sms": ["+1", "+2"], "email": ["a@x"]}
        )
        assert await store.create_identity(identity) == identity
        assert await store.get_identity("i1") == identity
        assert await store.get_identity("nope") is None
        assert (await store.resolve_identity("sms", "+2")) == identity
        assert (await store.resolve_identity(ChannelType.EMAIL, "a@x")) == identity
        assert await store.resolve_identity("email", "+1") is None
        assert await store.resolve_identity("sms", "+3") is None

    async def test_returned_identities_are_copies(self, store: ConversationStore) -> None:
        await store.create_identity(Identity(id="i1", display_name="Ann"))
        got = await store.get_identity("i1")
        assert got is not None
        got.display_name = "changed"
        assert some(await store.get_identity("i1")).display_name == "Ann"

    async def test_link_address(self, store: ConversationStore) -> None:
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))
        before = await store.get_identity("i1")
        await store.link_address("i1", "sms", "+2")
        await store.link_address("i1", ChannelType.WHATSAPP, "+1")
        await store.link_address("i1", "sms", "+2")  # idempotent
        identity = await store.get_identity("i1")
        assert identity is not None
        assert identity.channel_addresses == {"sms": ["+1", "+2"], "whatsapp": ["+1"]}
        assert some(await store.resolve_identity("sms", "+2")).id == "i1"
        assert some(await store.resolve_identity("whatsapp", "+1")).id == "i1"
        # A copy read before the link is not changed behind the caller's back.
        assert before is not None
        assert before.channel_addresses == {"sms": ["+1"]}

    async def test_identity_writes_refuse_what_is_not_a_string_or_an_identity(
        self, store: ConversationStore
    ) -> None:
        # InMemoryStore kept an address None (and a channel type "None"), and the identity
        # no longer validated; PostgreSQL raised its driver's errors.
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))
        for args in (("i1", "sms", None), ("i1", "sms", 5), ("i1", None, "+2"), (1, "sms", "+2")):
            with pytest.raises(TypeError, match="must be a string"):
                await store.link_address(*args)
        with pytest.raises(TypeError, match="takes an Identity"):
            await store.create_identity("i2")  # type: ignore[arg-type]
        identity = some(await store.get_identity("i1"))
        assert identity.channel_addresses == {"sms": ["+1"]}
        assert Identity.model_validate(identity.model_dump()) == identity

    async def test_link_address_moves_it_between_identities(
        self, store: ConversationStore
    ) -> None:
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1", "+2"]}))
        await store.create_identity(Identity(id="i2"))
        await store.link_address("i2", "sms", "+1")
        assert some(await store.resolve_identity("sms", "+1")).id == "i2"
        assert some(await store.get_identity("i1")).channel_addresses == {"sms": ["+2"]}
        assert some(await store.get_identity("i2")).channel_addresses == {"sms": ["+1"]}

    async def test_create_identity_claims_addresses(self, store: ConversationStore) -> None:
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))
        await store.create_identity(Identity(id="i2", channel_addresses={"sms": ["+1"]}))
        assert some(await store.resolve_identity("sms", "+1")).id == "i2"
        assert some(await store.get_identity("i1")).channel_addresses == {}

    async def test_create_identity_again_replaces_addresses(
        self, store: ConversationStore
    ) -> None:
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+2"]}))
        assert await store.resolve_identity("sms", "+1") is None
        assert some(await store.resolve_identity("sms", "+2")).id == "i1"

    async def test_link_address_to_unknown_identity(self, store: ConversationStore) -> None:
        """Nothing happens and nothing is raised (0.3.0), even for an identity created later."""
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+2"]}))
        await store.link_address("nope", "sms", "+1")  # no KeyError
        await store.link_address("nope", "sms", "+2")
        assert await store.resolve_identity("sms", "+1") is None
        assert some(await store.resolve_identity("sms", "+2")).id == "i1"
        assert some(await store.get_identity("i1")).channel_addresses == {"sms": ["+2"]}
        await store.create_identity(Identity(id="nope"))
        assert await store.resolve_identity("sms", "+1") is None
        assert some(await store.get_identity("nope")).channel_addresses == {}

    # -- tasks -----------------------------------------------------------------------------------

    async def test_tasks(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
        t1 = Task(id="t1", room_id="r1", title="call back")
        assert await store.add_task(t1) == t1
        await store.add_task(Task(id="t2", room_id="r1", title="b", status=TaskStatus.COMPLETED))
        await store.add_task(Task(id="t3", room_id="r2", title="c"))
        assert await store.get_task("t1") == t1
        assert await store.get_task("nope") is None
        assert [t.id for t in await store.list_tasks("r1")] == ["t1", "t2"]
        assert [t.id for t in await store.list_tasks("r1", status="completed")] == ["t2"]
        assert [t.id for t in await store.list_tasks("r1", status=TaskStatus.PENDING)] == ["t1"]
        assert await store.list_tasks("r1", status="failed") == []
        assert await store.list_tasks("unknown") == []

        done = t1.model_copy(update={"status": TaskStatus.COMPLETED})
        assert await store.update_task(done) == done
        assert await store.get_task("t1") == done
        assert [t.id for t in await store.list_tasks("r1", status="completed")] == ["t1", "t2"]

    async def test_returned_tasks_are_copies(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.add_task(Task(id="t1", room_id="r1", title="a"))
        got = await store.get_task("t1")
        assert got is not None
        got.status = TaskStatus.FAILED
        [listed] = await store.list_tasks("r1")
        assert listed.status == TaskStatus.PENDING
        listed.status = TaskStatus.FAILED
        assert some(await store.get_task("t1")).status == TaskStatus.PENDING

    async def test_a_task_added_under_another_room_moves_there(
        self, store: ConversationStore
    ) -> None:
        for room_id in ("a", "b"):
            await store.create_room(make_room(room_id))
        moved = await store.add_task(Task(room_id="a", title="t1"))
        await store.add_task(Task(room_id="b", title="t2"))
        await store.update_task(moved.model_copy(update={"room_id": "b"}))
        assert await store.list_tasks("a") == []
        assert [t.title for t in await store.list_tasks("b")] == ["t2", "t1"]

    # -- observations ----------------------------------------------------------------------------

    async def test_observations(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
        first = Observation(room_id="r1", channel_id="ai", content="angry", category="sentiment")
        assert await store.add_observation(first) == first
        await store.add_observation(Observation(room_id="r1", channel_id="ai", content="second"))
        await store.add_observation(Observation(room_id="r2", channel_id="ai", content="other"))
        listed = await store.list_observations("r1")
        assert [o.content for o in listed] == ["angry", "second"]
        assert listed[0] == first
        assert await store.list_observations("unknown") == []
        listed[0].content = "changed"
        assert (await store.list_observations("r1"))[0].content == "angry"

    async def test_an_observation_added_under_another_room_moves_there(
        self, store: ConversationStore
    ) -> None:
        for room_id in ("a", "b"):
            await store.create_room(make_room(room_id))
        moved = await store.add_observation(Observation(room_id="a", channel_id="ai", content="1"))
        await store.add_observation(Observation(room_id="b", channel_id="ai", content="2"))
        await store.add_observation(moved.model_copy(update={"room_id": "b", "content": "1b"}))
        assert await store.list_observations("a") == []
        assert [o.content for o in await store.list_observations("b")] == ["2", "1b"]
        await store.delete_room("b")
        await store.add_observation(moved)  # its old room's deletion took it: added anew
        assert [o.content for o in await store.list_observations("a")] == ["1"]

    # -- read tracking ---------------------------------------------------------------------------

    async def test_unread_without_marker_counts_everything(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        assert await store.get_unread_count("r1", "sms1") == 0
        await add_events(store, "r1", 3)
        assert await store.get_unread_count("r1", "sms1") == 3
        assert await store.get_unread_count("unknown", "sms1") == 0

    async def test_mark_read(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        events = await add_events(store, "r1", 5)
        await store.mark_read("r1", "sms1", events[1].id)
        assert await store.get_unread_count("r1", "sms1") == 3
        assert await store.get_unread_count("r1", "web") == 5  # markers are per channel
        await store.add_event(make_event("r1"))
        assert await store.get_unread_count("r1", "sms1") == 4
        await store.mark_read("r1", "sms1", events[4].id)
        assert await store.get_unread_count("r1", "sms1") == 1
        await store.mark_read("r1", "sms1", events[0].id)  # a marker may move back
        assert await store.get_unread_count("r1", "sms1") == 5

    async def test_mark_read_ignores_foreign_events(self, store: ConversationStore) -> None:
        for room_id in ("r1", "r2"):
            await store.create_room(make_room(room_id))
        events = await add_events(store, "r1", 3)
        other = await store.add_event(make_event("r2"))
        await store.mark_read("r1", "sms1", events[0].id)
        await store.mark_read("r1", "sms1", "no-such-event")
        await store.mark_read("r1", "sms1", other.id)
        assert await store.get_unread_count("r1", "sms1") == 2
        await store.mark_read("r2", "sms1", "no-such-event")
        assert await store.get_unread_count("r2", "sms1") == 1

    async def test_mark_all_read(self, store: ConversationStore) -> None:
        await store.create_room(make_room("r1"))
        await store.mark_all_read("r1", "sms1")  # nothing to read yet
        await add_events(store, "r1", 3)
        assert await store.get_unread_count("r1", "sms1") == 3
        await store.mark_all_read("r1", "sms1")
        assert await store.get_unread_count("r1", "sms1") == 0
        assert await store.get_unread_count("r1", "web") == 3
        await add_events(store, "r1", 2)
        assert await store.get_unread_count("r1", "sms1") == 2
        await store.mark_all_read("unknown", "sms1")
        assert await store.get_unread_count("unknown", "sms1") == 0

    # -- the log's position (optional) -----------------------------------------------------------

    async def test_a_store_that_keeps_no_position_applies_every_record(
        self, store: ConversationStore
    ) -> None:
        if self.keeps_position:
            pytest.skip("backend keeps its position")

        async def create(room_id: str) -> None:
            await store.create_room(make_room(room_id))

        assert await store.applied_position() == 0
        assert await store.apply_record(2, lambda: create("r2"))
        assert await store.apply_record(1, lambda: create("r1"))  # no position: applied too
        assert [r.id for r in await store.list_rooms()] == ["r2", "r1"]
        assert await store.applied_position() == 0

    async def test_records_go_in_with_the_position_once(self, store: ConversationStore) -> None:
        if not self.keeps_position:
            pytest.skip("backend keeps no position")

        async def create(room_id: str) -> None:
            await store.create_room(make_room(room_id))

        async def half_then_fail() -> None:
            await store.create_room(make_room("half"))
            raise RuntimeError("the projection failed on this record")

        assert await store.applied_position() == 0
        assert await store.apply_record(3, lambda: create("r3"))
        with pytest.raises(RuntimeError):
            await store.apply_record(4, half_then_fail)
        assert await store.get_room("half") is None  # undone with the record
        assert await store.applied_position() == 3
        assert not await store.apply_record(3, lambda: create("again"))  # applied before
        assert not await store.apply_record(2, lambda: create("older"))
        assert await store.get_room("again") is None and await store.get_room("older") is None
        assert await store.apply_record(5, lambda: create("r5"))
        assert await store.applied_position() == 5
        if self.supports_clear:
            await store.clear()
            assert await store.applied_position() == 0
            assert await store.apply_record(1, lambda: create("r1"))

    async def test_a_rebuild_is_one_piece(self, store: ConversationStore) -> None:
        if not (self.keeps_position and self.supports_clear):
            pytest.skip("backend keeps no position or cannot be cleared")

        async def create(room_id: str) -> None:
            await store.create_room(make_room(room_id))

        await store.create_room(make_room("before"))
        assert await store.apply_record(7, lambda: create("r7"))
        with pytest.raises(RuntimeError):
            async with store.rebuilding():
                await store.clear()
                await store.apply_record(1, lambda: create("r1"))
                raise RuntimeError("the rebuild failed half way")
        # Nothing of it stays: the store is as it was, position included.
        assert [r.id for r in await store.list_rooms()] == ["before", "r7"]
        assert await store.applied_position() == 7

    # -- clear (optional) ------------------------------------------------------------------------

    async def test_clear(self, store: ConversationStore) -> None:
        if not self.supports_clear:
            pytest.skip("backend does not support clear()")
        await store.create_room(make_room("r1"))
        event = await store.add_event(make_event("r1", idempotency_key="k"))
        await store.add_binding(make_binding("r1", "sms1", participant_id="p1"))
        await store.add_participant(make_participant("r1", "p1"))
        await store.add_task(Task(id="t1", room_id="r1", title="t"))
        await store.add_observation(Observation(room_id="r1", channel_id="ai", content="o"))
        await store.create_identity(Identity(id="i1", channel_addresses={"sms": ["+1"]}))
        await store.mark_all_read("r1", "sms1")

        await store.clear()

        assert await store.list_rooms() == []
        assert await store.get_event(event.id) is None
        assert await store.get_event_count("r1") == 0
        assert await store.check_idempotency("r1", "k") is False
        assert await store.list_bindings("r1") == []
        assert await store.find_room_id_by_channel("sms1") is None
        assert await store.find_latest_room("p1") is None
        assert await store.list_participants("r1") == []
        assert await store.get_task("t1") is None
        assert await store.list_observations("r1") == []
        # Identities are the application's, not the log's (nothing rebuilds them): kept.
        assert await store.get_identity("i1") == Identity(
            id="i1", channel_addresses={"sms": ["+1"]}
        )
        assert await store.resolve_identity("sms", "+1") == await store.get_identity("i1")
        # Still usable afterwards, with fresh read markers.
        await store.create_room(make_room("r1"))
        await add_events(store, "r1", 2)
        assert await store.get_unread_count("r1", "sms1") == 2
        assert await store.find_room_id_by_channel("sms1") is None
