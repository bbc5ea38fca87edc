"""``InMemoryStore``: the default ``ConversationStore``, in dicts and lists.

It sits on the hot path (the store projection adds every committed event and updates the room's
counters), so writes are O(1) and take ownership of the model they are given, and reads copy only
what they return: ``model_copy()`` is shallow, so assigning a field of a returned model never
reaches the store, while nested containers (``metadata`` ...) are shared and must not be mutated
in place. A deep copy would cost some 20 times more per model.

Complexities: ``add_event``, ``get_event``, ``get_event_count``, ``check_idempotency``,
``get_unread_count``, ``mark_read`` are O(1); ``list_events`` is O(limit) without a visibility
filter; ``find_room_id_by_channel`` is O(1) with a status (O(number of statuses) without) thanks
to an index ``channel_id -> status -> rooms sorted by creation``; ``find_latest_room`` looks only
at the rooms the participant is in. ``find_rooms`` scans every room.

Events are kept as JSON (bytes) and validated again on read: a timeline of a million events
then holds a million byte strings instead of some ten million small objects, which costs a third
of the memory and gives the garbage collector nothing to scan. Each is kept inside an envelope,
``{"event": <the event's JSON>, ...}``, the shape of the log's ``message.recorded`` payload:
``add_event_envelope`` keeps the log's own bytes, so with the in-process log an event's JSON is
held once for both, and the store projection never builds a model at all.

No method awaits, so each call is atomic with respect to other tasks: no lock is needed.
"""

from __future__ import annotations

import bisect
import logging
from itertools import islice
from typing import Any

import msgspec

from roomkit.models.channel import ChannelBinding
from roomkit.models.event import RoomEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store.base import ConversationStore

__all__ = ["InMemoryStore"]

logger = logging.getLogger("roomkit.store.memory")


class _EventKeys(msgspec.Struct):
    """The fields of an event's JSON the store indexes (msgspec skips the rest)."""

    id: str
    room_id: str
    idempotency_key: str | None = None
    visibility: str = "all"


class _EnvelopeKeys(msgspec.Struct):
    event: _EventKeys


class _Envelope(msgspec.Struct):
    event: msgspec.Raw


_keys_decoder = msgspec.json.Decoder(_EnvelopeKeys)
_envelope_decoder = msgspec.json.Decoder(_Envelope)

# An event's location packs its room's number and its position in that room's timeline into one
# int (a third of the memory of a tuple), for the index of every stored event.
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1


def _event(envelope: bytes) -> RoomEvent:
    return RoomEvent.model_validate_json(bytes(_envelope_decoder.decode(envelope).event))


def _envelope(event_json: bytes) -> bytes:
    return b'{"event":' + event_json + b"}"


class _RoomData:
    """Everything stored in one room besides the ``Room`` itself."""

    __slots__ = (
        "bindings",
        "events",
        "keys",
        "number",
        "observations",
        "participants",
        "read_markers",
        "room_id",
        "tasks",
        "visibility",
    )

    def __init__(self, room_id: str, number: int) -> None:
        self.room_id = room_id
        self.number = number  # its index in InMemoryStore._numbered
        # Each event as its JSON envelope, with its visibility alongside for filtered listings.
        self.events: list[bytes] = []
        self.visibility: list[str] = []
        self.keys: set[str] = set()
        self.bindings: dict[str, ChannelBinding] = {}
        self.participants: dict[str, Participant] = {}
        # Ordered set of task ids (the tasks themselves live in InMemoryStore._tasks).
        self.tasks: dict[str, None] = {}
        self.observations: dict[str, Observation] = {}
        # channel_id -> position in ``events`` of the last event read.
        self.read_markers: dict[str, int] = {}


class InMemoryStore(ConversationStore):
    """A ``ConversationStore`` held in process memory; see the module docstring."""

    def __init__(self) -> None:
        self._init()

    def _init(self) -> None:
        self._rooms: dict[str, Room] = {}
        # room_id -> creation sequence number: the order ``find_room_id_by_channel`` honours.
        self._order: dict[str, int] = {}
        self._next_order = 0
        self._data: dict[str, _RoomData] = {}
        self._numbered: list[_RoomData | None] = []  # by _RoomData.number
        # event_id -> room number << _POSITION_BITS | position in that room's events.
        self._event_loc: dict[str, int] = {}
        # channel_id -> room status -> sorted [(creation order, room_id)] of existing rooms.
        self._by_channel: dict[str, dict[str, list[tuple[int, str]]]] = {}
        # participant id -> rooms with a participant of that id / bindings naming it.
        self._participant_rooms: dict[str, dict[str, None]] = {}
        self._binding_participants: dict[str, dict[tuple[str, str], None]] = {}
        self._tasks: dict[str, Task] = {}
        self._identities: dict[str, Identity] = {}
        # (channel_type, address) -> identity_id
        self._addresses: dict[tuple[str, str], str] = {}

    async def clear(self) -> None:
        """Forget everything."""
        self._init()

    # -- internals -------------------------------------------------------------------------------

    def _room_data(self, room_id: str) -> _RoomData:
        data = self._data.get(room_id)
        if data is None:
            data = self._data[room_id] = _RoomData(room_id, len(self._numbered))
            self._numbered.append(data)
        return data

    def _locate(self, event_id: str) -> tuple[_RoomData, int] | None:
        loc = self._event_loc.get(event_id)
        if loc is None:
            return None
        data = self._numbered[loc >> _POSITION_BITS]
        assert data is not None
        return data, loc & _POSITION_MASK

    def _index_channel(self, room_id: str, channel_id: str, status: str) -> None:
        buckets = self._by_channel.setdefault(channel_id, {})
        bisect.insort(buckets.setdefault(status, []), (self._order[room_id], room_id))

    def _unindex_channel(self, room_id: str, channel_id: str, status: str) -> None:
        buckets = self._by_channel[channel_id]
        rooms = buckets[status]
        entry = (self._order[room_id], room_id)
        del rooms[bisect.bisect_left(rooms, entry)]
        if not rooms:
            del buckets[status]
            if not buckets:
                del self._by_channel[channel_id]

    def _link_binding_participant(self, binding: ChannelBinding) -> None:
        if binding.participant_id is not None:
            self._binding_participants.setdefault(binding.participant_id, {})[
                (binding.room_id, binding.channel_id)
            ] = None

    def _unlink_binding_participant(self, binding: ChannelBinding) -> None:
        if binding.participant_id is None:
            return
        links = self._binding_participants.get(binding.participant_id)
        if links is not None:
            links.pop((binding.room_id, binding.channel_id), None)
            if not links:
                del self._binding_participants[binding.participant_id]

    # -- rooms -----------------------------------------------------------------------------------

    async def create_room(self, room: Room) -> Room:
        """Store a room (replacing one with the same id); see ``ConversationStore``."""
        return self._put_room(room)

    async def get_room(self, room_id: str) -> Room | None:
        """Return a copy of the room, or ``None``."""
        room = self._rooms.get(room_id)
        return None if room is None else room.model_copy()

    async def update_room(self, room: Room) -> Room:
        """Replace the room (an upsert); see ``ConversationStore``."""
        return self._put_room(room)

    def _put_room(self, room: Room) -> Room:
        old = self._rooms.get(room.id)
        data = self._data.get(room.id)
        if old is None:
            self._order[room.id] = self._next_order
            self._next_order += 1
            self._rooms[room.id] = room
            # Bindings added before their room existed become findable now.
            if data is not None:
                for channel_id in data.bindings:
                    self._index_channel(room.id, channel_id, room.status)
            return room
        self._rooms[room.id] = room
        if old.status != room.status and data is not None:
            for channel_id in data.bindings:
                self._unindex_channel(room.id, channel_id, old.status)
                self._index_channel(room.id, channel_id, room.status)
        return room

    async def delete_room(self, room_id: str) -> bool:
        """Delete the room and everything in it; return whether the room existed."""
        room = self._rooms.pop(room_id, None)
        data = self._data.pop(room_id, None)
        if data is not None:
            self._numbered[data.number] = None
            for raw in data.events:
                # add_event refuses an id of another room, so every id here is this room's.
                del self._event_loc[_keys_decoder.decode(raw).event.id]
            for channel_id, binding in data.bindings.items():
                if room is not None:
                    self._unindex_channel(room_id, channel_id, room.status)
                self._unlink_binding_participant(binding)
            for participant_id in data.participants:
                rooms = self._participant_rooms[participant_id]
                del rooms[room_id]
                if not rooms:
                    del self._participant_rooms[participant_id]
            for task_id in data.tasks:
                del self._tasks[task_id]
        self._order.pop(room_id, None)
        return room is not None

    async def list_rooms(self, offset: int = 0, limit: int = 50) -> list[Room]:
        """Return copies of one page of rooms, in creation order."""
        start = max(0, offset)
        stop = start + max(0, limit)
        return [room.model_copy() for room in islice(self._rooms.values(), start, stop)]

    async def find_rooms(
        self,
        organization_id: str | None = None,
        status: str | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[Room]:
        """Return copies of the rooms matching every filter (a full scan)."""
        wanted = list(metadata_filter.items()) if metadata_filter else []
        found: list[Room] = []
        for room in self._rooms.values():
            if organization_id is not None and room.organization_id != organization_id:
                continue
            if status is not None and room.status != status:
                continue
            metadata = room.metadata
            if wanted and not all(k in metadata and metadata[k] == v for k, v in wanted):
                continue
            found.append(room.model_copy())
        return found

    async def find_latest_room(
        self,
        participant_id: str,
        channel_type: str | None = None,
        status: str | None = None,
    ) -> Room | None:
        """Return a copy of the newest room the participant is in; see ``ConversationStore``.

        Ties on ``created_at`` go to the room created last.
        """
        candidates = set(self._participant_rooms.get(participant_id, ()))
        candidates.update(
            room_id for room_id, _ in self._binding_participants.get(participant_id, ())
        )
        best: Room | None = None
        for room_id in sorted(
            (r for r in candidates if r in self._rooms), key=self._order.__getitem__
        ):
            room = self._rooms[room_id]
            if status is not None and room.status != status:
                continue
            if not self._takes_part(room_id, participant_id, channel_type):
                continue
            if best is None or room.created_at >= best.created_at:
                best = room
        return None if best is None else best.model_copy()

    def _takes_part(self, room_id: str, participant_id: str, channel_type: str | None) -> bool:
        data = self._data[room_id]
        participant = data.participants.get(participant_id)
        if participant is not None:
            if channel_type is None:
                return True
            binding = data.bindings.get(participant.channel_id)
            if binding is not None and binding.channel_type == channel_type:
                return True
        for bound_room, channel_id in self._binding_participants.get(participant_id, ()):
            if bound_room == room_id and (
                channel_type is None or data.bindings[channel_id].channel_type == channel_type
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
            return rooms[0][1] if rooms else None
        return min(rooms[0] for rooms in buckets.values())[1]

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
            _envelope(event.__pydantic_serializer__.to_json(event)),
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
        keys = _keys_decoder.decode(data).event
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
        found = self._locate(event_id)
        if found is None:
            self._event_loc[event_id] = room.number << _POSITION_BITS | len(room.events)
            room.events.append(data)
            room.visibility.append(visibility)
        elif found[0] is room:
            room.events[found[1]] = data
            room.visibility[found[1]] = visibility
        else:
            raise ValueError(f"event {event_id!r} is already stored in room {found[0].room_id!r}")
        if idempotency_key:
            room.keys.add(idempotency_key)

    async def get_event(self, event_id: str) -> RoomEvent | None:
        """Return the event (O(1)), or ``None``."""
        found = self._locate(event_id)
        if found is None:
            return None
        return _event(found[0].events[found[1]])

    async def list_events(
        self,
        room_id: str,
        offset: int = 0,
        limit: int = 50,
        visibility_filter: str | None = None,
    ) -> list[RoomEvent]:
        """Return one page of the timeline: O(limit), or a scan with a filter."""
        data = self._data.get(room_id)
        if data is None or limit <= 0:
            return []
        start = max(0, offset)
        if visibility_filter is None:
            return [_event(raw) for raw in data.events[start : start + limit]]
        matching = (
            raw
            for raw, visibility in zip(data.events, data.visibility, strict=True)
            if visibility == visibility_filter
        )
        return [_event(raw) for raw in islice(matching, start, start + limit)]

    async def list_recent_events(self, room_id: str, limit: int = 50) -> list[RoomEvent]:
        """Return the room's ``limit`` most recent events, oldest first: O(limit)."""
        data = self._data.get(room_id)
        if data is None or limit <= 0:
            return []
        return [_event(raw) for raw in data.events[-limit:]]

    async def check_idempotency(self, room_id: str, key: str) -> bool:
        """Return whether the room has an event with this idempotency key (O(1))."""
        data = self._data.get(room_id)
        return data is not None and key in data.keys

    async def get_event_count(self, room_id: str) -> int:
        """Return the number of events of the room (O(1))."""
        data = self._data.get(room_id)
        return 0 if data is None else len(data.events)

    # -- bindings --------------------------------------------------------------------------------

    async def add_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Store the binding (an upsert) and index it for ``find_room_id_by_channel``."""
        return self._put_binding(binding)

    async def get_binding(self, room_id: str, channel_id: str) -> ChannelBinding | None:
        """Return a copy of the binding, or ``None``."""
        data = self._data.get(room_id)
        binding = None if data is None else data.bindings.get(channel_id)
        return None if binding is None else binding.model_copy()

    async def update_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Replace the binding (an upsert)."""
        return self._put_binding(binding)

    def _put_binding(self, binding: ChannelBinding) -> ChannelBinding:
        data = self._room_data(binding.room_id)
        old = data.bindings.get(binding.channel_id)
        if old is not None:
            self._unlink_binding_participant(old)
        data.bindings[binding.channel_id] = binding
        self._link_binding_participant(binding)
        room = self._rooms.get(binding.room_id)
        if old is None and room is not None:
            self._index_channel(binding.room_id, binding.channel_id, room.status)
        return binding

    async def remove_binding(self, room_id: str, channel_id: str) -> bool:
        """Remove the binding; return whether it existed."""
        data = self._data.get(room_id)
        binding = None if data is None else data.bindings.pop(channel_id, None)
        if binding is None:
            return False
        self._unlink_binding_participant(binding)
        room = self._rooms.get(room_id)
        if room is not None:
            self._unindex_channel(room_id, channel_id, room.status)
        return True

    async def list_bindings(self, room_id: str) -> list[ChannelBinding]:
        """Return copies of the room's bindings, in the order they were first added."""
        data = self._data.get(room_id)
        return [] if data is None else [b.model_copy() for b in data.bindings.values()]

    # -- participants ----------------------------------------------------------------------------

    async def add_participant(self, participant: Participant) -> Participant:
        """Store the participant (an upsert)."""
        return self._put_participant(participant)

    async def get_participant(self, room_id: str, participant_id: str) -> Participant | None:
        """Return a copy of the participant, or ``None``."""
        data = self._data.get(room_id)
        participant = None if data is None else data.participants.get(participant_id)
        return None if participant is None else participant.model_copy()

    async def update_participant(self, participant: Participant) -> Participant:
        """Replace the participant (an upsert)."""
        return self._put_participant(participant)

    def _put_participant(self, participant: Participant) -> Participant:
        self._room_data(participant.room_id).participants[participant.id] = participant
        self._participant_rooms.setdefault(participant.id, {})[participant.room_id] = None
        return participant

    async def list_participants(self, room_id: str) -> list[Participant]:
        """Return copies of the room's participants, in the order they were first added."""
        data = self._data.get(room_id)
        return [] if data is None else [p.model_copy() for p in data.participants.values()]

    # -- identities ------------------------------------------------------------------------------

    async def create_identity(self, identity: Identity) -> Identity:
        """Store the identity and claim its addresses; see ``ConversationStore``."""
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
        """Give the address to the identity; see ``ConversationStore``.

        Raises:
            KeyError: No identity has this id.
        """
        identity = self._identities.get(identity_id)
        if identity is None:
            raise KeyError(f"no identity {identity_id!r}")
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
        """Return a copy of the task, or ``None``."""
        task = self._tasks.get(task_id)
        return None if task is None else task.model_copy()

    async def list_tasks(self, room_id: str, status: str | None = None) -> list[Task]:
        """Return copies of the room's tasks (with ``status`` if given), oldest first."""
        data = self._data.get(room_id)
        if data is None:
            return []
        tasks = (self._tasks[task_id] for task_id in data.tasks)
        return [t.model_copy() for t in tasks if status is None or t.status == status]

    async def update_task(self, task: Task) -> Task:
        """Replace the task (an upsert)."""
        return self._put_task(task)

    def _put_task(self, task: Task) -> Task:
        old = self._tasks.get(task.id)
        if old is not None and old.room_id != task.room_id:
            self._data[old.room_id].tasks.pop(task.id, None)
        self._tasks[task.id] = task
        self._room_data(task.room_id).tasks[task.id] = None
        return task

    # -- observations ----------------------------------------------------------------------------

    async def add_observation(self, observation: Observation) -> Observation:
        """Store the observation (an upsert by id)."""
        self._room_data(observation.room_id).observations[observation.id] = observation
        return observation

    async def list_observations(self, room_id: str) -> list[Observation]:
        """Return copies of the room's observations, oldest first."""
        data = self._data.get(room_id)
        return [] if data is None else [o.model_copy() for o in data.observations.values()]

    # -- read tracking ---------------------------------------------------------------------------

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """Move the channel's read marker to the event (O(1)); unknown events are ignored."""
        found = self._locate(event_id)
        if found is None or found[0].room_id != room_id:
            logger.debug("mark_read ignored: event %r is not in room %r", event_id, room_id)
            return
        found[0].read_markers[channel_id] = found[1]

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """Move the channel's read marker to the room's latest event."""
        data = self._data.get(room_id)
        if data is not None and data.events:
            data.read_markers[channel_id] = len(data.events) - 1

    async def get_unread_count(self, room_id: str, channel_id: str) -> int:
        """Return the number of events after the channel's read marker (O(1))."""
        data = self._data.get(room_id)
        if data is None:
            return 0
        marker = data.read_markers.get(channel_id)
        return len(data.events) if marker is None else len(data.events) - marker - 1
