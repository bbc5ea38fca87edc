"""``ConversationStore``: the read model of rooms, timelines, bindings, participants and more.

In RoomKit the store is not the source of truth: the event log is. The store projection applies
every committed domain event to a store, so the store can be emptied (``clear``) and rebuilt by
replaying the log. Queries such as ``RoomKit.get_room`` or ``get_timeline`` read from it.
Identities are the exception: the application creates them in the store (``create_identity``),
no log record holds them, and ``clear`` keeps them.

Rules shared by every method (and tested by ``roomkit.store.testing.ConversationStoreContract``):

- **Ownership.** A write method may keep the model it is given; the caller must not mutate it
  afterwards. Reads return models the caller owns: assigning a field of a returned model never
  changes the store. Backends may share nested containers (``metadata`` dicts, lists) between
  the store and the copy they return, so change those through ``model_copy(update=...)``, never
  in place.
- **Upserts.** ``add_*``, ``create_*`` and ``update_*`` store the model under its key and replace
  any previous version, so applying the same event twice leaves the same state (the projection
  relies on it). Child records (events, bindings, ...) do not require their room to exist.
- **Missing things.** Lookups of an unknown id return ``None``; removals return ``False``;
  listings and counts of an unknown room return ``[]`` / ``0``.
- **Order.** Rooms list in creation order, events in the order they were added, bindings,
  participants, tasks and observations in the order they were first added.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from actors import check_count
from roomkit.models._json import event_json
from roomkit.models.channel import ChannelBinding
from roomkit.models.event import RoomEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store._stored_events import stored_event

__all__ = ["ConversationStore", "StorePositionLost"]


def page_size(name: str, value: object) -> int:
    """An ``offset`` or ``limit`` as a store takes it: an int >= 0.

    Raises:
        TypeError: it is not an integer (None, a float, a bool): the stores answered those
            differently (an error deep inside, or a page of another size).
        ValueError: it is negative. Taken as 0, it gave another page with no word (0.3.0's
            in-memory store sliced with it: ``offset=-2`` was the last two events), and
            ``kit.get_timeline`` refused it already.
    """
    size = check_count(name, value)
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {size}")
    return size


class StorePositionLost(Exception):  # noqa: N818 - says what happened, as LogUnavailable
    """Raised by ``apply_record`` of a store that keeps its log position when it holds less
    of the log than the kit saw it hold (its database failed over to a replica behind it, or
    lost its last commits). ``position`` is what it holds now: the kit applies the records
    after it again."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the store holds the log up to position {position} only")
        self.position = position


class ConversationStore(ABC):
    """Storage for rooms and everything in them; see the module docstring for shared rules.

    The 35 abstract methods are the RoomKit 0.3.0 interface. ``list_recent_events``,
    ``count_event``, ``clear``, ``applied_position``, ``applied_record``, ``apply_record`` and
    ``rebuilding`` (among others) are additions with default implementations, so stores
    written for 0.3.0 still work; backends override them when they can do better. One rule is
    new: the kit replays the log into the store when it starts, so a store that outlives the
    process must take the same record twice as once (``add_event`` and ``add_observation``
    replace by id, see Upserts), or be empty at start, or keep the log position it holds
    (``applied_position``, ``applied_record`` and ``apply_record``). Several processes sharing
    a store need the position anyway: each one's kit follows the whole log.
    """

    # -- rooms -----------------------------------------------------------------------------------

    @abstractmethod
    async def create_room(self, room: Room) -> Room:
        """Store a new room and return it.

        Creating a room whose id is already stored replaces the room's fields but keeps its
        place in creation order and everything stored in it.
        """

    @abstractmethod
    async def get_room(self, room_id: str) -> Room | None:
        """Return the room with this id, or ``None`` if there is none."""

    @abstractmethod
    async def update_room(self, room: Room) -> Room:
        """Replace the stored room that has ``room.id`` and return it (an upsert)."""

    @abstractmethod
    async def delete_room(self, room_id: str) -> bool:
        """Delete a room and everything stored in it; return whether the room existed.

        The cascade removes its events (and their idempotency keys), bindings, participants,
        tasks, observations and read markers. Identities are not per room and are kept.
        """

    @abstractmethod
    async def list_rooms(self, offset: int = 0, limit: int = 50) -> list[Room]:
        """Return one page of rooms, in creation order."""

    @abstractmethod
    async def find_rooms(
        self,
        organization_id: str | None = None,
        status: str | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[Room]:
        """Return the rooms that match every given filter, in creation order.

        Args:
            organization_id: Keep rooms of this organization (``None``: any).
            status: Keep rooms with this ``RoomStatus`` (``None``: any).
            metadata_filter: Keep rooms whose metadata has each of these keys with an equal
                value (``None`` or empty: any).
        """

    @abstractmethod
    async def find_latest_room(
        self,
        participant_id: str,
        channel_type: str | None = None,
        status: str | None = None,
    ) -> Room | None:
        """Return the newest room (by ``created_at``) that ``participant_id`` takes part in.

        A room qualifies if it has a participant with that id, whatever their channel, or,
        failing that, a binding whose ``participant_id`` is that id and, with ``channel_type``,
        whose type it is (RoomKit 0.3.0's rule: someone who joined through email is found for
        their SMS). With ``status``, the room must have it. Returns ``None`` when no room
        qualifies.
        """

    @abstractmethod
    async def find_room_id_by_channel(
        self, channel_id: str, status: str | None = None
    ) -> str | None:
        """Return the id of the first room, in creation order, that has ``channel_id`` bound.

        With ``status``, only rooms with that status count. Returns ``None`` when no room
        qualifies. The default inbound router calls this for every message without a room.
        """

    # -- events ----------------------------------------------------------------------------------

    @abstractmethod
    async def add_event(self, event: RoomEvent) -> RoomEvent:
        """Append an event to its room's timeline and return it.

        The event's ``idempotency_key``, if any, is recorded for ``check_idempotency`` whatever
        the event's status (BLOCKED events count too). Adding an event id that is already
        stored replaces that event in place (no second timeline entry).
        """

    async def add_event_json(self, data: bytes) -> None:
        """Append an event given as its JSON (the form the event log holds it in).

        Same contract as ``add_event``. The default validates the JSON into a ``RoomEvent`` and
        calls ``add_event``; a backend that keeps events serialised overrides it to skip that.

        Raises:
            StoredEventError: the default's, when the JSON does not validate as a
                ``RoomEvent`` (an event its channel changed in place, another writer's),
                naming the room and the event, not its content: ``add_event`` cannot take it.
        """
        await self.add_event(stored_event(data))

    async def add_event_envelope(self, data: bytes) -> None:
        """Append an event given as a JSON object whose ``event`` member is the event's JSON
        (the log's ``message.recorded`` payload; other members are ignored).

        Same contract as ``add_event``. A backend that keeps events serialised can keep these
        bytes as they are; the default extracts the event and calls ``add_event_json``.
        """
        await self.add_event_json(event_json(data))

    @abstractmethod
    async def get_event(self, event_id: str) -> RoomEvent | None:
        """Return the event with this id (in any room), or ``None``.

        Raises:
            StoredEventError: (the in-memory and PostgreSQL stores) the event held does not
                validate: its log record was another writer's, another RoomKit version's,
                or an event changed in place before the kit recorded it.
        """

    @abstractmethod
    async def list_events(
        self,
        room_id: str,
        offset: int = 0,
        limit: int = 50,
        visibility_filter: str | None = None,
    ) -> list[RoomEvent]:
        """Return one page of a room's timeline, oldest first.

        Args:
            room_id: The room.
            offset: How many (matching) events to skip from the oldest.
            limit: The most events to return.
            visibility_filter: Keep only events whose ``visibility`` equals this value; the
                page is taken from the filtered timeline.

        Raises:
            StoredEventError: (the in-memory and PostgreSQL stores) an event of the page does
                not validate (see ``get_event``); the room's other pages still read.
        """

    @abstractmethod
    async def check_idempotency(self, room_id: str, key: str) -> bool:
        """Return whether an event of this room was added with this idempotency key."""

    async def idempotent_event_id(self, room_id: str, key: str) -> str | None:
        """The id of the room's event added with idempotency ``key``; ``""`` when there is
        one but the store cannot say which; None when there is none.

        Not in RoomKit 0.3.0's interface: the kit asks it for a duplicate of a key older than
        the window a room's actor keeps, to answer with the original event. This default
        answers from ``check_idempotency`` (so without the id); a store that can find the
        event overrides it.
        """
        return "" if await self.check_idempotency(room_id, key) else None

    @abstractmethod
    async def get_event_count(self, room_id: str) -> int:
        """Return how many events the room's timeline holds (system and blocked included)."""

    # -- bindings --------------------------------------------------------------------------------

    @abstractmethod
    async def add_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Store a channel binding under ``(binding.room_id, binding.channel_id)``."""

    @abstractmethod
    async def get_binding(self, room_id: str, channel_id: str) -> ChannelBinding | None:
        """Return the binding of ``channel_id`` in the room, or ``None``."""

    @abstractmethod
    async def update_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Replace the binding under ``(binding.room_id, binding.channel_id)`` (an upsert)."""

    @abstractmethod
    async def remove_binding(self, room_id: str, channel_id: str) -> bool:
        """Remove the binding of ``channel_id`` from the room; return whether it existed."""

    @abstractmethod
    async def list_bindings(self, room_id: str) -> list[ChannelBinding]:
        """Return the room's bindings, in the order they were first added."""

    # -- participants ----------------------------------------------------------------------------

    @abstractmethod
    async def add_participant(self, participant: Participant) -> Participant:
        """Store a participant under ``(participant.room_id, participant.id)``."""

    @abstractmethod
    async def get_participant(self, room_id: str, participant_id: str) -> Participant | None:
        """Return the participant of the room with this id, or ``None``."""

    @abstractmethod
    async def update_participant(self, participant: Participant) -> Participant:
        """Replace the participant under ``(participant.room_id, participant.id)`` (an upsert)."""

    @abstractmethod
    async def list_participants(self, room_id: str) -> list[Participant]:
        """Return the room's participants, in the order they were first added."""

    # -- identities ------------------------------------------------------------------------------

    @abstractmethod
    async def create_identity(self, identity: Identity) -> Identity:
        """Store an identity and index every address in its ``channel_addresses``.

        An address belongs to one identity: an address already linked to another identity
        moves to this one (and leaves the other's ``channel_addresses``).
        """

    @abstractmethod
    async def get_identity(self, identity_id: str) -> Identity | None:
        """Return the identity with this id, or ``None``."""

    @abstractmethod
    async def resolve_identity(self, channel_type: str, address: str) -> Identity | None:
        """Return the identity that owns ``address`` on ``channel_type``, or ``None``."""

    @abstractmethod
    async def link_address(self, identity_id: str, channel_type: str, address: str) -> None:
        """Add ``address`` to the identity's ``channel_addresses[channel_type]``.

        Linking is idempotent; an address owned by another identity moves to this one. When no
        identity has ``identity_id`` nothing changes and nothing is raised (as in RoomKit
        0.3.0): the address stays unlinked, also for an identity created later with that id.
        """

    # -- tasks -----------------------------------------------------------------------------------

    @abstractmethod
    async def add_task(self, task: Task) -> Task:
        """Store a task under ``task.id``."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task | None:
        """Return the task with this id, or ``None``."""

    @abstractmethod
    async def list_tasks(self, room_id: str, status: str | None = None) -> list[Task]:
        """Return the room's tasks (only those with ``status`` if given), oldest first."""

    @abstractmethod
    async def update_task(self, task: Task) -> Task:
        """Replace the task under ``task.id`` (an upsert)."""

    # -- observations ----------------------------------------------------------------------------

    @abstractmethod
    async def add_observation(self, observation: Observation) -> Observation:
        """Store an observation of its room."""

    @abstractmethod
    async def list_observations(self, room_id: str) -> list[Observation]:
        """Return the room's observations, oldest first."""

    # -- read tracking ---------------------------------------------------------------------------

    @abstractmethod
    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """Set the channel's read marker in the room to ``event_id``.

        The marker may move backwards. An event id that is not in the room's timeline leaves
        the marker unchanged.
        """

    @abstractmethod
    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """Set the channel's read marker to the room's latest event (no-op on an empty room)."""

    @abstractmethod
    async def get_unread_count(self, room_id: str, channel_id: str) -> int:
        """Return how many of the room's events come after the channel's read marker.

        Without a marker, every event of the room is unread.
        """

    # -- additions (not in 0.3.0; defaults keep third-party stores working) ----------------------

    async def list_recent_events(self, room_id: str, limit: int = 50) -> list[RoomEvent]:
        """Return the room's ``limit`` most recent events, oldest first.

        The default asks ``get_event_count`` then ``list_events`` for the last page; between
        the two calls another writer may add events, so backends should override it with one
        query when they can.
        """
        limit = page_size("limit", limit)
        if not limit:
            return []
        count = await self.get_event_count(room_id)
        return await self.list_events(room_id, offset=max(0, count - limit), limit=limit)

    async def count_event(self, room_id: str, index: int, activity_at: datetime | None) -> None:
        """One more event in the room's timeline: ``event_count`` + 1, ``latest_index`` =
        max(latest_index, index), and ``timers.last_activity_at`` = ``activity_at`` when given.
        Unknown rooms are ignored.

        The store projection calls it once per recorded message. The default reads the room
        and writes it back (``get_room`` then ``update_room``: not atomic if another writer
        updates the room in between); backends override it with one cheap update.
        """
        room = await self.get_room(room_id)
        if room is None:
            return
        # The room read is ours to change, but its nested timers may be shared: replace them.
        room.event_count += 1
        room.latest_index = max(room.latest_index, index)
        if activity_at is not None:
            room.timers = room.timers.model_copy(update={"last_activity_at": activity_at})
        await self.update_room(room)

    async def applied_position(self) -> int:
        """The log position up to which the store holds every record the kit applied to it,
        for a store that keeps one (``apply_record``); 0 (the default) when it keeps none.

        A kit starting on a store that keeps its position replays only the log after it,
        instead of the whole log.
        """
        return 0

    async def applied_record(self) -> tuple[int, float | None]:
        """``applied_position``, and the timestamp of the log record at it as ``apply_record``
        was given it (``None``, the default: the store keeps none, or it is not known).

        A kit starting checks that its log holds that record: a log made anew (a stream
        deleted and made again, or purged: JetStream goes on counting) can reach the store's
        position with records of its own, or none there, and the store then holds another
        log's rooms. Without the timestamp, only whether the log holds a record there is
        checked.
        """
        return await self.applied_position(), None

    async def apply_record(
        self,
        position: int,
        apply: Callable[[], Awaitable[None]],
        *,
        after: int = 0,
        timestamp: float | None = None,
    ) -> bool:
        """Apply the log record at ``position``: await ``apply``, which makes the store calls
        the record needs; return whether it did. ``after`` is the position of the record
        before it that the kit saw the store hold (0 for none); ``timestamp`` is the record's,
        which a store keeping its position keeps with it (see ``applied_record``). A store
        whose ``apply_record`` takes no ``timestamp`` (written before it was given) is
        called without it.

        The default awaits it. A store that outlives the process or that several processes
        share should run ``apply`` and keep ``position`` atomically (one transaction), and
        skip a record at or below the position it keeps (return False): another process's kit,
        which follows the same log, applied it already, and applying a message twice would
        count it twice (``count_event``). Records reach it in log order. Such a store
        raises ``StorePositionLost`` if it keeps a position below ``after``: it lost records
        it held (its database failed over to a replica behind it, say).
        """
        await apply()
        return True

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[None]:
        """Wraps a rebuild of the store from the log: ``clear`` and every record again.

        The default does nothing. A store that several processes share should make the
        rebuild one transaction, so that their kits neither read the tables half filled nor
        apply records into them meanwhile (a record applied then would move the position the
        rebuild relies on).
        """
        yield

    async def clear(self) -> None:
        """Remove everything the log rebuilds (rooms, events, bindings, participants, tasks,
        observations, read markers), to rebuild it from the log. Identities and their
        addresses stay: the application stores them here, and no log record holds them.

        Raises:
            NotImplementedError: The backend cannot clear itself (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support clear()")
