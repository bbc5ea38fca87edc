"""``InMemoryStore``: the default ``ConversationStore``, in dicts and lists of JSON bytes.

It sits on the hot path (the store projection adds every committed event and counts it in its
room), so adding an event and counting it are O(1) and touch no model.

Everything a room holds is kept as JSON (bytes) and validated again on read, so a reader always
gets a model of its own: an idle room then costs some 1 KB instead of some 4 KB of pydantic
models, and the garbage collector has little to scan. What the indexes and filters read is kept
beside the JSON as plain values, so that no index ever validates a model:

- **Rooms**: the JSON with the fields equal to their fixed defaults left out (``compact_json``,
  the event log's format: ids and timestamps are always written); the status (for the
  channel index and ``find_rooms``) and the creation order. The counters that every message
  changes (``event_count``, ``latest_index``, ``timers.last_activity_at``) are not in the JSON:
  they are plain values that ``count_event`` changes in O(1) and that a read puts back in the
  model; ``create_room``/``update_room`` take them from the room given.
- **Rooms and bindings from the in-process log**: the store projection hands them over with the
  log's payload (``_put_logged``), and the store keeps those very bytes instead of JSON of its
  own (the payload's counters are those of its time: the plain values win), so that with
  ``MemoryEventLog`` a room's and its bindings' JSON is held once for both; a read takes the
  model's JSON out of the payload.
- **Bindings**: the JSON without its key (``room_id``, ``channel_id``), without
  ``channel_type`` and ``participant_id`` (plain values beside it) and without
  ``capabilities``: that 25-field model, equal in every binding of a channel, is kept once per
  distinct value and handed to every binding read, as ``model_copy()`` used to hand out the
  stored one, as a copy of its own. (Containers nested in a returned model may be shared and
  must not be mutated in place; see ``roomkit.store.base``.)
- **Participants**, **tasks** and **observations**: the JSON, with a participant's
  ``channel_id`` and a task's room and status beside it.
- **Events**: the JSON inside an envelope, ``{"event": <the event's JSON>, ...}``, the shape of
  the log's ``message.recorded`` payload: ``add_event_envelope`` keeps the log's own bytes, so
  with the in-process log an event's JSON is held once for both, and the store projection never
  builds a model at all. A timeline of a million events holds a million byte strings instead of
  some ten million small objects. Their visibilities (for ``list_events``' filter) are read
  from the JSON by a room's first filtered listing and kept up to date from then on.

So the models a store is given must serialise to JSON, and read back as their JSON validates:
a tuple in ``metadata`` comes back as a list (as it does from the event log).

A room's containers (events, bindings, idempotency keys, read markers ...) are created on first
use: an empty ``set`` costs 216 bytes, and most rooms never have an idempotency key.

Complexities: ``add_event``, ``get_event``, ``get_event_count``, ``check_idempotency``,
``get_unread_count``, ``mark_read``, ``count_event`` and every lookup by key are O(1);
``list_events`` is O(limit) without a visibility filter; ``find_room_id_by_channel`` is O(1) with
a status (O(number of statuses) without) thanks to an index ``channel_id -> status -> rooms
sorted by creation`` (kept sorted by bisection); ``find_latest_room`` looks only at the rooms
the participant is in (and reads the ``created_at`` of those that qualify). ``find_rooms`` scans
every room, validating those of the wanted status. Writes of rooms, bindings, participants,
tasks and observations serialise the model (a few µs), reads validate it (2 to 4 µs).

No method awaits, so each call is atomic with respect to other tasks: no lock is needed.
"""

from __future__ import annotations

import bisect
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import islice
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
from pydantic import BaseModel

from roomkit.models._capabilities import CapabilitiesInterner, binding_from_json
from roomkit.models._json import (
    DEFAULT_VISIBILITY,
    compact_json,
    enveloped_event_fields,
    event_json,
    model_json,
)
from roomkit.models.channel import ChannelBinding, ChannelCapabilities
from roomkit.models.event import RoomEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store._arguments import check_identity, check_link
from roomkit.store._stored_events import stored_event
from roomkit.store.base import ConversationStore, page_size

__all__ = ["InMemoryStore"]

logger = logging.getLogger("roomkit.store.memory")


# An event's location packs its room's number and its position in that room's timeline into one
# int (a third of the memory of a tuple), for the index of every stored event.
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1

# The room's counters live beside its JSON (see the module docstring), never in it.
_ROOM_COUNTERS: Mapping[str, bool | set[str]] = {
    "event_count": True,
    "latest_index": True,
    "timers": {"last_activity_at"},
}
# What a binding's JSON leaves out: its key, what the indexes read, and the capabilities
# (kept once per distinct value); _load_binding puts them back.
_BINDING_APART: Mapping[str, bool | set[str]] = {
    "room_id": True,
    "channel_id": True,
    "channel_type": True,
    "participant_id": True,
    "capabilities": True,
}
_NOTHING: Mapping[str, Any] = {}


_HEX_DIGITS = "0123456789abcdef"


def _loc_key(event_id: str) -> int | str | tuple[object]:
    """The key of ``event_id`` in ``InMemoryStore._event_loc``: the kit's ids (``new_id``: 32
    lowercase hex characters) as the 128-bit int they spell, 44 bytes instead of the string's
    81 (the id itself stays in the event's JSON); any other id as it is.

    Only canonical lowercase hex becomes an int (``int()`` would also take ``0x``, ``_``,
    capitals, spaces and non-ASCII digits), so two ids never share a key, and an int key never
    equals a str key. Something else than a str (a caller's mistake) is wrapped in a tuple,
    so that an int given as an id finds nothing, as before.
    """
    if not isinstance(event_id, str):
        return (event_id,)
    if len(event_id) == 32 and not event_id.strip(_HEX_DIGITS):
        return int(event_id, 16)
    return event_id


class _LoggedRoom(msgspec.Struct):
    """A ``room.created`` / ``room.updated`` payload of the log: the room's JSON (the other
    fields, such as ``reason``, are ignored)."""

    room: msgspec.Raw


class _LoggedBinding(msgspec.Struct):
    """A ``channel.attached`` / ``channel.updated`` payload of the log: the binding's fields."""

    binding: dict[str, Any]


_logged_room = msgspec.json.Decoder(_LoggedRoom)
_logged_binding = msgspec.json.Decoder(_LoggedBinding)
# What the log's payloads start with (msgspec writes a struct's fields in order, the model's
# first): no field of a Room or a ChannelBinding has these names, so no JSON the store writes
# itself starts so.
_ROOM_PAYLOAD = b'{"room":'
_BINDING_PAYLOAD = b'{"binding":'


def _room_json(stored: bytes) -> bytes:
    """A room's JSON from what the store keeps: its own JSON, or the log's payload."""
    if stored.startswith(_ROOM_PAYLOAD):
        return bytes(_logged_room.decode(stored).room)
    return stored


def _event(envelope: bytes) -> RoomEvent:
    """The event of an envelope, validated (see ``stored_event``).

    Raises:
        StoredEventError: it does not validate (its record was another writer's).
    """
    return stored_event(event_json(envelope))


def _visibility(envelope: bytes) -> str:
    """An event's visibility, read from its envelope as ``add_event_envelope`` reads it."""
    visibility = enveloped_event_fields(envelope).visibility
    if visibility is not DEFAULT_VISIBILITY and type(visibility) is str:
        visibility = sys.intern(visibility)
    return visibility


def _envelope(event_json: bytes) -> bytes:
    return b'{"event":' + event_json + b"}"


def _intern(name: str) -> str:
    """One string object for every equal name (a channel's id repeats in every room it is in).

    ``sys.intern`` refuses subclasses of ``str`` (a ``StrEnum`` assigned to a field after
    validation); those are kept as they are.
    """
    return sys.intern(name) if type(name) is str else name


class _CreatedAt(BaseModel):
    """The one field of a room's JSON that ``find_latest_room`` compares (parsed as ``Room``
    parses it; the other fields are ignored)."""

    created_at: datetime


class _Binding(NamedTuple):
    """A stored binding: its JSON without the fields kept apart (see ``_BINDING_APART``)."""

    json: bytes
    capabilities: ChannelCapabilities  # the store's shared instance for this value
    channel_type: str
    participant_id: str | None


class _Participant(NamedTuple):
    json: bytes
    channel_id: str  # for find_latest_room(channel_type=...)


class _Task(NamedTuple):
    json: bytes
    room_id: str
    status: str


class _RoomData:
    """One room: the room itself (if created) and everything stored in it.

    Containers stay ``None`` until first used: most rooms never get an idempotency key, a
    participant, a task, an observation or a read marker.
    """

    __slots__ = (
        "activity",
        "bindings",
        "event_count",
        "events",
        "keys",
        "latest_index",
        "number",
        "observations",
        "order",
        "participants",
        "read_markers",
        "room",
        "room_id",
        "status",
        "tasks",
        "visibility",
    )

    def __init__(self, room_id: str, number: int) -> None:
        self.room_id = room_id
        self.number = number  # its index in InMemoryStore._numbered
        # The Room's JSON without its counters, or the log's payload that holds it (with the
        # counters it had then: the plain values below win); None until the room is created.
        self.room: bytes | None = None
        self.status = ""
        # Creation order of the room (what find_room_id_by_channel honours), drawn from the
        # same sequence as ``number``: it is ``number`` itself, the same int object, unless the
        # room was created after something was stored in it (see InMemoryStore._put_room).
        self.order = number
        self.event_count = 0
        self.latest_index = 0
        self.activity: datetime | None = None  # timers.last_activity_at
        # Each event as its JSON envelope; their visibilities alongside, built by the first
        # listing with a visibility filter (most rooms never have one) and kept from then on.
        self.events: list[bytes] | None = None
        self.visibility: list[str] | None = None
        self.keys: dict[str, str] | None = None  # idempotency key -> event id
        self.bindings: dict[str, _Binding] | None = None
        self.participants: dict[str, _Participant] | None = None
        # Ordered set of task ids (the tasks themselves live in InMemoryStore._tasks).
        self.tasks: dict[str, None] | None = None
        self.observations: dict[str, bytes] | None = None
        # channel_id -> position in ``events`` of the last event read.
        self.read_markers: dict[str, int] | None = None


_by_order = attrgetter("order")


def _load_room(data: _RoomData) -> Room:
    """A new ``Room`` from the stored JSON, with the counters put back."""
    assert data.room is not None
    room = Room.model_validate_json(_room_json(data.room))
    # The store's own JSON has no counters (0); the log's payload has those of its time.
    if room.event_count != data.event_count:
        room.event_count = data.event_count
    if room.latest_index != data.latest_index:
        room.latest_index = data.latest_index
    if data.activity is not None and room.timers.last_activity_at != data.activity:
        room.timers.last_activity_at = data.activity  # the model is new: nothing shares it
    return room


def _load_binding(room_id: str, channel_id: str, binding: _Binding) -> ChannelBinding:
    """A new ``ChannelBinding`` from the stored JSON and the fields kept apart."""
    apart = {"room_id": room_id, "channel_id": channel_id, "channel_type": binding.channel_type}
    if binding.participant_id is not None:
        apart["participant_id"] = binding.participant_id
    # A copy of the capabilities kept once: a field assigned in one a caller read changed the
    # bindings of every room with those capabilities.
    capabilities = binding.capabilities.model_copy()
    if binding.json.startswith(_BINDING_PAYLOAD):  # the log's payload (see _put_binding)
        fields = _logged_binding.decode(binding.json).binding
        fields.update(apart)
        fields["capabilities"] = capabilities
        return ChannelBinding.model_validate(fields)
    return binding_from_json(binding.json, capabilities, **apart)


def _page(offset: int, limit: int) -> tuple[int, int]:
    """``islice`` bounds for a page: negative values as 0, huge ones (past ``sys.maxsize``,
    which ``islice`` refuses) as the end.

    Raises:
        TypeError: either is not an integer.
    """
    start = min(page_size("offset", offset), sys.maxsize)
    return start, min(start + page_size("limit", limit), sys.maxsize)


class InMemoryStore(ConversationStore):
    """A ``ConversationStore`` held in process memory; see the module docstring."""

    def __init__(self) -> None:
        self._init()
        self._init_identities()

    def _init(self) -> None:
        # Every room with something stored, and the existing rooms alone in creation order.
        self._data: dict[str, _RoomData] = {}
        self._rooms: dict[str, _RoomData] = {}
        # By _RoomData.number (None: deleted, or a number taken as a creation order).
        self._numbered: list[_RoomData | None] = []
        # _loc_key(event_id) -> room number << _POSITION_BITS | position in that room's events.
        self._event_loc: dict[int | str | tuple[object], int] = {}
        # channel_id -> room status -> existing rooms with the channel bound, by creation order.
        self._by_channel: dict[str, dict[str, list[_RoomData]]] = {}
        # participant id -> rooms with a participant of that id / bindings naming it.
        self._participant_rooms: dict[str, dict[str, None]] = {}
        self._binding_participants: dict[str, dict[tuple[str, str], None]] = {}
        # The one capabilities instance every binding with that value shares.
        self._capabilities = CapabilitiesInterner()
        self._tasks: dict[str, _Task] = {}
        # observation id -> its room (an observation added again under another room moves).
        self._observation_rooms: dict[str, str] = {}

    def _init_identities(self) -> None:
        # Not the log's: clear() keeps them.
        self._identities: dict[str, Identity] = {}
        # (channel_type, address) -> identity_id
        self._addresses: dict[tuple[str, str], str] = {}

    async def clear(self) -> None:
        """Forget everything the log rebuilds; identities stay (see ``ConversationStore``)."""
        self._init()

    # -- internals -------------------------------------------------------------------------------

    def _room_data(self, room_id: str) -> _RoomData:
        data = self._data.get(room_id)
        if data is None:
            data = self._data[room_id] = _RoomData(room_id, len(self._numbered))
            self._numbered.append(data)
        return data

    def _locate(self, event_id: str) -> tuple[_RoomData, int] | None:
        loc = self._event_loc.get(_loc_key(event_id))
        if loc is None:
            return None
        data = self._numbered[loc >> _POSITION_BITS]
        assert data is not None
        return data, loc & _POSITION_MASK

    def _index_channel(self, data: _RoomData, channel_id: str, status: str) -> None:
        buckets = self._by_channel.setdefault(channel_id, {})
        bisect.insort(buckets.setdefault(status, []), data, key=_by_order)

    def _unindex_channel(self, data: _RoomData, channel_id: str, status: str) -> None:
        buckets = self._by_channel[channel_id]
        rooms = buckets[status]
        del rooms[bisect.bisect_left(rooms, data.order, key=_by_order)]
        if not rooms:
            del buckets[status]
            if not buckets:
                del self._by_channel[channel_id]

    def _link_binding_participant(self, room_id: str, channel_id: str, binding: _Binding) -> None:
        if binding.participant_id is not None:
            links = self._binding_participants.setdefault(binding.participant_id, {})
            links[(room_id, channel_id)] = None

    def _unlink_binding_participant(
        self, room_id: str, channel_id: str, binding: _Binding
    ) -> None:
        if binding.participant_id is None:
            return
        links = self._binding_participants.get(binding.participant_id)
        if links is not None:
            links.pop((room_id, channel_id), None)
            if not links:
                del self._binding_participants[binding.participant_id]

    # -- rooms -----------------------------------------------------------------------------------

    async def create_room(self, room: Room) -> Room:
        """Store a room (replacing one with the same id); see ``ConversationStore``."""
        return self._put_room(room)

    async def get_room(self, room_id: str) -> Room | None:
        """Return the room (a new model), or ``None``."""
        data = self._rooms.get(room_id)
        return None if data is None else _load_room(data)

    async def update_room(self, room: Room) -> Room:
        """Replace the room (an upsert), counters included; see ``ConversationStore``."""
        return self._put_room(room)

    async def _put_logged(self, model: Room | ChannelBinding, payload: bytes) -> None:
        """Store a room or a binding that the log holds as ``payload`` (``{"room": ...}`` or
        ``{"binding": ...}``: a ``room.created``/``room.updated`` or a
        ``channel.attached``/``channel.updated`` payload), keeping those very bytes instead of
        JSON of its own, as ``add_event_envelope`` does for events: with the in-process log,
        the room's and the bindings' JSON is then held once for both. An upsert, as
        ``create_room``/``update_room`` and ``add_binding``/``update_binding`` are.

        The store projection calls it (with the in-process log only: the payload of another
        log is held by the store alone, and its own JSON is smaller); ``model`` is the
        payload's model, for the indexes and the counters.
        """
        # A payload of another shape (a log written by another version) is not kept: the
        # store's own JSON then.
        if isinstance(model, Room):
            self._put_room(model, payload if payload.startswith(_ROOM_PAYLOAD) else None)
        else:
            self._put_binding(model, payload if payload.startswith(_BINDING_PAYLOAD) else None)

    def _put_room(self, room: Room, payload: bytes | None = None) -> Room:
        data = self._data.get(room.id)
        if data is None:
            data = self._room_data(room.id)  # the newest number: its creation order too
        elif data.room is None:
            # Something was stored in it before the room existed: rooms created since come
            # first, so take a new number as its creation order (that slot stays empty).
            data.order = len(self._numbered)
            self._numbered.append(None)
        created = data.room is None
        old_status = data.status
        data.room = compact_json(room, _ROOM_COUNTERS) if payload is None else payload
        data.status = room.status
        data.event_count = room.event_count
        data.latest_index = room.latest_index
        data.activity = room.timers.last_activity_at
        if created:
            self._rooms[room.id] = data
            # Bindings added before their room existed become findable now.
            for channel_id in data.bindings or ():
                self._index_channel(data, channel_id, room.status)
        elif old_status != room.status:
            for channel_id in data.bindings or ():
                self._unindex_channel(data, channel_id, old_status)
                self._index_channel(data, channel_id, room.status)
        return room

    async def count_event(self, room_id: str, index: int, activity_at: datetime | None) -> None:
        """Count one more event in the room (O(1), no model); see ``ConversationStore``."""
        data = self._rooms.get(room_id)
        if data is None:
            return
        data.event_count += 1
        if index > data.latest_index:
            data.latest_index = index
        if activity_at is not None:
            data.activity = activity_at

    async def delete_room(self, room_id: str) -> bool:
        """Delete the room and everything in it; return whether the room existed (a room never
        created keeps what was stored in it, as in 0.3.0: a removal that removed nothing)."""
        if room_id not in self._rooms:
            return False
        data = self._data.pop(room_id)
        existed = self._rooms.pop(room_id, None) is not None
        self._numbered[data.number] = None
        for raw in data.events or ():
            # add_event refuses an id of another room, so every id here is this room's.
            del self._event_loc[_loc_key(enveloped_event_fields(raw).id)]
        for channel_id, binding in (data.bindings or _NOTHING).items():
            if existed:
                self._unindex_channel(data, channel_id, data.status)
            self._unlink_binding_participant(room_id, channel_id, binding)
        for participant_id in data.participants or ():
            rooms = self._participant_rooms[participant_id]
            del rooms[room_id]
            if not rooms:
                del self._participant_rooms[participant_id]
        for task_id in data.tasks or ():
            del self._tasks[task_id]
        for observation_id in data.observations or ():
            del self._observation_rooms[observation_id]
        return existed

    async def list_rooms(self, offset: int = 0, limit: int = 50) -> list[Room]:
        """Return one page of rooms (new models), in creation order."""
        start, stop = _page(offset, limit)
        return [_load_room(data) for data in islice(self._rooms.values(), start, stop)]

    async def find_rooms(
        self,
        organization_id: str | None = None,
        status: str | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[Room]:
        """Return the rooms matching every filter (a full scan; only rooms of the wanted status
        are validated)."""
        wanted = list(metadata_filter.items()) if metadata_filter else []
        found: list[Room] = []
        for data in self._rooms.values():
            if status is not None and data.status != status:
                continue
            room = _load_room(data)
            if organization_id is not None and room.organization_id != organization_id:
                continue
            metadata = room.metadata
            if wanted and not all(k in metadata and metadata[k] == v for k, v in wanted):
                continue
            found.append(room)
        return found

    async def find_latest_room(
        self,
        participant_id: str,
        channel_type: str | None = None,
        status: str | None = None,
    ) -> Room | None:
        """Return the newest room the participant is in (a new model); see
        ``ConversationStore``.

        Ties on ``created_at`` go to the room created last; a naive ``created_at`` is read as
        UTC.
        """
        candidates = set(self._participant_rooms.get(participant_id, ()))
        candidates.update(
            room_id for room_id, _ in self._binding_participants.get(participant_id, ())
        )
        rooms = self._rooms
        best: tuple[datetime, _RoomData] | None = None
        for data in sorted((rooms[r] for r in candidates if r in rooms), key=_by_order):
            if status is not None and data.status != status:
                continue
            if not self._takes_part(data, participant_id, channel_type):
                continue
            assert data.room is not None
            created_at = _CreatedAt.model_validate_json(_room_json(data.room)).created_at
            if created_at.tzinfo is None:  # naive: read as UTC, comparable with the rest
                created_at = created_at.replace(tzinfo=UTC)
            if best is None or created_at >= best[0]:
                best = (created_at, data)
        return None if best is None else _load_room(best[1])

    def _takes_part(self, data: _RoomData, participant_id: str, channel_type: str | None) -> bool:
        if participant_id in (data.participants or _NOTHING):
            return True  # whatever channel they joined through (see ConversationStore)
        bindings = data.bindings or _NOTHING
        for bound_room, channel_id in self._binding_participants.get(participant_id, ()):
            if bound_room == data.room_id and (
                channel_type is None or bindings[channel_id].channel_type == channel_type
            ):
                return True
        return False

    async def find_room_id_by_channel(
        self, channel_id: str, status: str | None = None
    ) -> str | None:
        """Return the first room (creation order) with the channel bound; O(1) per status."""
        buckets = self._by_channel.get(channel_id)
        if not buckets:
            return None
        if status is not None:
            rooms = buckets.get(status)
            return rooms[0].room_id if rooms else None
        first: _RoomData = min((rooms[0] for rooms in buckets.values()), key=_by_order)
        return first.room_id

    # -- events ----------------------------------------------------------------------------------

    async def add_event(self, event: RoomEvent) -> RoomEvent:
        """Append the event (O(1)) and record its idempotency key.

        Raises:
            ValueError: The event id is already stored in another room.
        """
        self._put_event(
            event.id,
            event.room_id,
            event.idempotency_key,
            event.visibility,
            _envelope(model_json(event)),
        )
        return event

    async def add_event_json(self, data: bytes) -> None:
        """Append an event given as JSON, without building a model (see the module docstring).

        Raises:
            ValueError: The event id is already stored in another room.
            msgspec.ValidationError: The JSON lacks an event's ``id`` or ``room_id``.
        """
        await self.add_event_envelope(_envelope(data))

    async def add_event_envelope(self, data: bytes) -> None:
        """Append an event given as ``{"event": <its JSON>, ...}`` and keep these very bytes.

        Raises:
            ValueError: The event id is already stored in another room.
            msgspec.ValidationError: The JSON has no ``event`` with an ``id`` and a ``room_id``.
        """
        keys = enveloped_event_fields(data)
        self._put_event(keys.id, keys.room_id, keys.idempotency_key, keys.visibility, data)

    def _put_event(
        self,
        event_id: str,
        room_id: str,
        idempotency_key: str | None,
        visibility: str,
        data: bytes,
    ) -> None:
        room = self._room_data(room_id)
        # Decoding makes a new string per event ("internal": 57 bytes a system event); share
        # one. The default (no "visibility" in the JSON, as for most messages) is shared
        # already: skip the lookup for it, this runs once per message.
        if visibility is not DEFAULT_VISIBILITY and type(visibility) is str:
            visibility = sys.intern(visibility)
        events, visibilities = room.events, room.visibility
        if events is None:
            events = room.events = []
        found = self._locate(event_id)
        if found is None:
            self._event_loc[_loc_key(event_id)] = room.number << _POSITION_BITS | len(events)
            events.append(data)
            if visibilities is not None:
                visibilities.append(visibility)
        elif found[0] is room:
            events[found[1]] = data
            if visibilities is not None:
                visibilities[found[1]] = visibility
        else:
            raise ValueError(f"event {event_id!r} is already stored in room {found[0].room_id!r}")
        if idempotency_key:
            if room.keys is None:
                room.keys = {}
            # The first event added with a key answers for it (see idempotent_event_id).
            room.keys.setdefault(idempotency_key, event_id)

    async def get_event(self, event_id: str) -> RoomEvent | None:
        """Return the event (O(1)), or ``None``."""
        found = self._locate(event_id)
        if found is None:
            return None
        events = found[0].events
        assert events is not None
        return _event(events[found[1]])

    async def list_events(
        self,
        room_id: str,
        offset: int = 0,
        limit: int = 50,
        visibility_filter: str | None = None,
    ) -> list[RoomEvent]:
        """Return one page of the timeline: O(limit), or a scan with a filter."""
        start, stop = _page(offset, limit)
        data = self._data.get(room_id)
        if data is None or data.events is None or start == stop:
            return []
        if visibility_filter is None:
            return [_event(raw) for raw in data.events[start:stop]]
        visibilities = data.visibility
        if visibilities is None:
            visibilities = data.visibility = [_visibility(raw) for raw in data.events]
        matching = (
            raw
            for raw, visibility in zip(data.events, visibilities, strict=True)
            if visibility == visibility_filter
        )
        return [_event(raw) for raw in islice(matching, start, stop)]

    async def list_recent_events(self, room_id: str, limit: int = 50) -> list[RoomEvent]:
        """Return the room's ``limit`` most recent events, oldest first: O(limit)."""
        limit = page_size("limit", limit)
        data = self._data.get(room_id)
        if data is None or data.events is None or not limit:
            return []
        return [_event(raw) for raw in data.events[-limit:]]

    async def check_idempotency(self, room_id: str, key: str) -> bool:
        """Return whether the room has an event with this idempotency key (O(1))."""
        data = self._data.get(room_id)
        return data is not None and data.keys is not None and key in data.keys

    async def idempotent_event_id(self, room_id: str, key: str) -> str | None:
        """The id of the room's event added with idempotency ``key``, or None (O(1)); see
        ``ConversationStore``."""
        data = self._data.get(room_id)
        return None if data is None or data.keys is None else data.keys.get(key)

    async def get_event_count(self, room_id: str) -> int:
        """Return the number of events of the room (O(1))."""
        data = self._data.get(room_id)
        return 0 if data is None or data.events is None else len(data.events)

    # -- bindings --------------------------------------------------------------------------------

    async def add_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Store the binding (an upsert) and index it for ``find_room_id_by_channel``."""
        return self._put_binding(binding)

    async def get_binding(self, room_id: str, channel_id: str) -> ChannelBinding | None:
        """Return the binding (a new model), or ``None``."""
        data = self._data.get(room_id)
        binding = None if data is None or data.bindings is None else data.bindings.get(channel_id)
        return None if binding is None else _load_binding(room_id, channel_id, binding)

    async def update_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Replace the binding (an upsert)."""
        return self._put_binding(binding)

    def _put_binding(
        self, binding: ChannelBinding, payload: bytes | None = None
    ) -> ChannelBinding:
        data = self._room_data(binding.room_id)
        bindings = data.bindings
        if bindings is None:
            bindings = data.bindings = {}
        channel_id = _intern(binding.channel_id)
        entry = _Binding(
            compact_json(binding, _BINDING_APART) if payload is None else payload,
            self._capabilities.capabilities(binding.capabilities),
            binding.channel_type,
            binding.participant_id,
        )
        old = bindings.get(channel_id)
        if old is not None:
            self._unlink_binding_participant(data.room_id, channel_id, old)
        bindings[channel_id] = entry
        self._link_binding_participant(data.room_id, channel_id, entry)
        if old is None and data.room is not None:
            self._index_channel(data, channel_id, data.status)
        return binding

    async def remove_binding(self, room_id: str, channel_id: str) -> bool:
        """Remove the binding; return whether it existed."""
        data = self._data.get(room_id)
        binding = (
            None if data is None or data.bindings is None else data.bindings.pop(channel_id, None)
        )
        if data is None or binding is None:
            return False
        self._unlink_binding_participant(room_id, channel_id, binding)
        if data.room is not None:
            self._unindex_channel(data, channel_id, data.status)
        return True

    async def list_bindings(self, room_id: str) -> list[ChannelBinding]:
        """Return the room's bindings (new models), in the order they were first added."""
        data = self._data.get(room_id)
        if data is None or data.bindings is None:
            return []
        return [_load_binding(room_id, c, b) for c, b in data.bindings.items()]

    # -- participants ----------------------------------------------------------------------------

    async def add_participant(self, participant: Participant) -> Participant:
        """Store the participant (an upsert)."""
        return self._put_participant(participant)

    async def get_participant(self, room_id: str, participant_id: str) -> Participant | None:
        """Return the participant (a new model), or ``None``."""
        data = self._data.get(room_id)
        participants = None if data is None else data.participants
        found = None if participants is None else participants.get(participant_id)
        return None if found is None else Participant.model_validate_json(found.json)

    async def update_participant(self, participant: Participant) -> Participant:
        """Replace the participant (an upsert)."""
        return self._put_participant(participant)

    def _put_participant(self, participant: Participant) -> Participant:
        data = self._room_data(participant.room_id)
        if data.participants is None:
            data.participants = {}
        entry = _Participant(compact_json(participant), _intern(participant.channel_id))
        data.participants[participant.id] = entry
        self._participant_rooms.setdefault(participant.id, {})[participant.room_id] = None
        return participant

    async def list_participants(self, room_id: str) -> list[Participant]:
        """Return the room's participants (new models), in the order they were first added."""
        data = self._data.get(room_id)
        if data is None or data.participants is None:
            return []
        return [Participant.model_validate_json(p.json) for p in data.participants.values()]

    # -- identities ------------------------------------------------------------------------------

    async def create_identity(self, identity: Identity) -> Identity:
        """Store the identity and claim its addresses; see ``ConversationStore``.

        Raises:
            TypeError: ``identity`` is not an ``Identity``.
        """
        check_identity("InMemoryStore", identity)
        old = self._identities.get(identity.id)
        if old is not None:
            for channel_type, addresses in old.channel_addresses.items():
                for address in addresses:
                    key = (str(channel_type), address)
                    if self._addresses.get(key) == identity.id:
                        del self._addresses[key]
        self._identities[identity.id] = identity
        for channel_type, addresses in identity.channel_addresses.items():
            for address in addresses:
                self._claim(identity.id, str(channel_type), address)
        return identity

    async def get_identity(self, identity_id: str) -> Identity | None:
        """Return a copy of the identity, or ``None``."""
        identity = self._identities.get(identity_id)
        return None if identity is None else identity.model_copy()

    async def resolve_identity(self, channel_type: str, address: str) -> Identity | None:
        """Return a copy of the identity owning the address (O(1)), or ``None``."""
        identity_id = self._addresses.get((str(channel_type), address))
        return None if identity_id is None else self._identities[identity_id].model_copy()

    async def link_address(self, identity_id: str, channel_type: str, address: str) -> None:
        """Give the address to the identity; see ``ConversationStore`` (an unknown identity id
        changes nothing).

        Raises:
            TypeError: an argument is not a string (kept, it broke the identity's model).
        """
        check_link("InMemoryStore", identity_id, channel_type, address)
        identity = self._identities.get(identity_id)
        if identity is None:
            # 0.3.0 returned quietly here; claiming the address for an identity that does not
            # exist would leave resolve_identity pointing at nothing.
            logger.debug(
                "link_address: no identity %r, address %r not linked", identity_id, address
            )
            return
        channel_type = str(channel_type)
        self._claim(identity_id, channel_type, address)
        addresses = identity.channel_addresses.get(channel_type, [])
        if address not in addresses:
            # Replace rather than append in place: earlier copies share the nested containers.
            channel_addresses = {**identity.channel_addresses, channel_type: [*addresses, address]}
            self._identities[identity_id] = identity.model_copy(
                update={"channel_addresses": channel_addresses}
            )

    def _claim(self, identity_id: str, channel_type: str, address: str) -> None:
        """Point ``(channel_type, address)`` at the identity, taking it from its old owner."""
        key = (channel_type, address)
        owner_id = self._addresses.get(key)
        self._addresses[key] = identity_id
        if owner_id is None or owner_id == identity_id:
            return
        owner = self._identities[owner_id]
        kept = [a for a in owner.channel_addresses.get(channel_type, []) if a != address]
        channel_addresses = dict(owner.channel_addresses)
        if kept:
            channel_addresses[channel_type] = kept
        else:
            channel_addresses.pop(channel_type, None)
        self._identities[owner_id] = owner.model_copy(
            update={"channel_addresses": channel_addresses}
        )

    # -- tasks -----------------------------------------------------------------------------------

    async def add_task(self, task: Task) -> Task:
        """Store the task (an upsert)."""
        return self._put_task(task)

    async def get_task(self, task_id: str) -> Task | None:
        """Return the task (a new model), or ``None``."""
        task = self._tasks.get(task_id)
        return None if task is None else Task.model_validate_json(task.json)

    async def list_tasks(self, room_id: str, status: str | None = None) -> list[Task]:
        """Return the room's tasks (with ``status`` if given; new models), oldest first."""
        data = self._data.get(room_id)
        if data is None or data.tasks is None:
            return []
        tasks = (self._tasks[task_id] for task_id in data.tasks)
        return [
            Task.model_validate_json(t.json) for t in tasks if status is None or t.status == status
        ]

    async def update_task(self, task: Task) -> Task:
        """Replace the task (an upsert)."""
        return self._put_task(task)

    def _put_task(self, task: Task) -> Task:
        old = self._tasks.get(task.id)
        if old is not None and old.room_id != task.room_id:
            old_tasks = self._data[old.room_id].tasks
            assert old_tasks is not None
            old_tasks.pop(task.id, None)
        self._tasks[task.id] = _Task(compact_json(task), task.room_id, task.status)
        data = self._room_data(task.room_id)
        if data.tasks is None:
            data.tasks = {}
        data.tasks[task.id] = None
        return task

    # -- observations ----------------------------------------------------------------------------

    async def add_observation(self, observation: Observation) -> Observation:
        """Store the observation (an upsert by id; added under another room, it moves there,
        last)."""
        old_room = self._observation_rooms.get(observation.id)
        if old_room is not None and old_room != observation.room_id:
            old = self._data[old_room].observations
            assert old is not None
            del old[observation.id]
        self._observation_rooms[observation.id] = observation.room_id
        data = self._room_data(observation.room_id)
        if data.observations is None:
            data.observations = {}
        data.observations[observation.id] = compact_json(observation)
        return observation

    async def list_observations(self, room_id: str) -> list[Observation]:
        """Return the room's observations (new models), oldest first."""
        data = self._data.get(room_id)
        if data is None or data.observations is None:
            return []
        return [Observation.model_validate_json(raw) for raw in data.observations.values()]

    # -- read tracking ---------------------------------------------------------------------------

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """Move the channel's read marker to the event (O(1)); unknown events are ignored."""
        found = self._locate(event_id)
        if found is None or found[0].room_id != room_id:
            logger.debug("mark_read ignored: event %r is not in room %r", event_id, room_id)
            return
        data = found[0]
        if data.read_markers is None:
            data.read_markers = {}
        data.read_markers[channel_id] = found[1]

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """Move the channel's read marker to the room's latest event."""
        data = self._data.get(room_id)
        if data is not None and data.events:
            if data.read_markers is None:
                data.read_markers = {}
            data.read_markers[channel_id] = len(data.events) - 1

    async def get_unread_count(self, room_id: str, channel_id: str) -> int:
        """Return the number of events after the channel's read marker (O(1))."""
        data = self._data.get(room_id)
        if data is None or data.events is None:
            return 0
        marker = None if data.read_markers is None else data.read_markers.get(channel_id)
        return len(data.events) if marker is None else len(data.events) - marker - 1
