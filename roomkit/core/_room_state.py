"""A room's state as its actor holds it, and ``evolve``: the fold of its domain events.

``evolve`` has no I/O and reads no clock: given the same events it builds the same state, which
is what lets a room be rebuilt from the log after a restart or a passivation. It updates the
state in place (the actor owns it exclusively) and returns it.

An idle room's state rests (``RoomState.rest``): its models (room, bindings, participants,
recent events) are most of what its actor holds, so it keeps them as JSON until the next
command reads them again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel

from roomkit.core._domain import (
    ChannelAttached,
    ChannelDetached,
    ChannelUpdated,
    DeliveryRecorded,
    DomainEvent,
    MessageRecorded,
    ObservationRecorded,
    ParticipantJoined,
    ParticipantUpdated,
    ReadMarked,
    RoomCreated,
    RoomUpdated,
    TaskRecorded,
    is_activity,
    load,
)
from roomkit.core._recent import RecentEvents
from roomkit.models._capabilities import binding_from_json, binding_json
from roomkit.models._copy import constructed, updated
from roomkit.models._json import EventFields, compact_json, event_fields
from roomkit.models.channel import ChannelBinding, ChannelCapabilities
from roomkit.models.context import RoomContext
from roomkit.models.event import RoomEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room

__all__ = ["RoomState", "evolve"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class _AtRest:
    """A resting room's models as JSON; a binding's capabilities stay the instance it had
    (the kit shares one per value).

    Tuples side by side, not a list of pairs: a list and a tuple per binding cost ~90 bytes
    more for two bindings, and no participants is the shared empty tuple, not a 56-byte list.
    """

    room: bytes
    bindings: tuple[bytes, ...]
    capabilities: tuple[ChannelCapabilities, ...]  # of each binding, in the same order
    participants: tuple[bytes, ...]


# What a resting state holds instead of its dicts of models (and an empty idempotency window):
# three empty dicts per idle room cost 192 bytes. Never written: a state is woken (and given
# dicts of its own) before anything reads or changes its models, and an idempotency key is
# recorded into a dict of the room's own (see _record_message).
_RESTING: dict[Any, Any] = {}


IDEMPOTENCY_WINDOW = 1000
"""How many of a room's latest idempotency keys its actor keeps (key -> event id), in memory and
in its snapshots. Older keys are looked up in the read model (``ConversationStore``): a room
that kept every key grew without end, its snapshot past JetStream's largest payload after
~15,000 keyed messages. Most duplicates (a provider's webhook retries) come within seconds."""


class RoomState:
    """Everything the room actor needs to decide: the room, its bindings and participants,
    the idempotency keys already committed, and the tail of its timeline."""

    __slots__ = (
        "_at_rest",
        "_bindings",
        "_json_of",
        "_key_mark_due",
        "_key_marks",
        "_participants",
        "_room",
        "event_count",
        "idempotency",
        "keys_recorded",
        "recent",
    )

    def __init__(
        self,
        room: Room | None = None,
        bindings: dict[str, ChannelBinding] | None = None,
        participants: dict[str, Participant] | None = None,
        idempotency: dict[str, str] | None = None,
        event_count: int = 0,
        recent: RecentEvents | None = None,
    ) -> None:
        self._room = room
        self._bindings = {} if bindings is None else bindings
        self._participants = {} if participants is None else participants
        self._at_rest: _AtRest | None = None
        # The JSON each binding and participant was woken from, by the model's id (the model
        # is kept with it, so the id stays its own): one that did not change since is not
        # serialised again when the room next rests.
        self._json_of: dict[int, tuple[BaseModel, bytes]] = {}
        self.idempotency = {} if idempotency is None else idempotency
        # Keys recorded since this state was built, and marks of the log position holding
        # them: see `mark_keys`. Neither is logged nor compared; a rebuilt state starts again.
        # A state built with a full window (a snapshot) counts one more: keys were evicted
        # before it, which only a mark it makes itself can cover.
        self.keys_recorded = len(self.idempotency)
        if self.keys_recorded >= IDEMPOTENCY_WINDOW:
            self.keys_recorded += 1
        self._key_marks: deque[tuple[int, int]] | None = None
        self._key_mark_due = 0
        self.event_count = event_count
        self.recent = RecentEvents() if recent is None else recent

    def __repr__(self) -> str:
        if self._at_rest is not None:  # not woken for a repr
            return f"RoomState(<at rest>, event_count={self.event_count})"
        return (
            f"RoomState(room={self._room!r}, bindings={self._bindings!r}, "
            f"participants={self._participants!r}, {len(self.idempotency)} idempotency keys, "
            f"event_count={self.event_count}, {len(self.recent)} recent events)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoomState):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def _fields(self) -> tuple[object, ...]:
        return (
            self.room,
            self.bindings,
            self.participants,
            self.idempotency,
            self.event_count,
            self.recent,
        )

    @property
    def room(self) -> Room | None:
        if self._at_rest is not None:
            self._wake()
        return self._room

    @room.setter
    def room(self, room: Room | None) -> None:
        if self._at_rest is not None:
            self._wake()
        self._room = room

    @property
    def bindings(self) -> dict[str, ChannelBinding]:
        """The room's bindings by channel id (change it in place)."""
        if self._at_rest is not None:
            self._wake()
        return self._bindings

    @property
    def participants(self) -> dict[str, Participant]:
        """The room's participants by id (change it in place)."""
        if self._at_rest is not None:
            self._wake()
        return self._participants

    def rest(self) -> None:
        """Keep the models as JSON only, until something reads them again (an idle room).

        A room with two bindings holds some 4 KB of models, against 0.5 KB of JSON. Resting
        and waking again cost some 15-20 µs, most of it validating the models again.
        """
        self.recent.forget_models()
        if self._at_rest is not None or self._room is None:
            return
        bindings = self._bindings.values()
        self._at_rest = _AtRest(
            room=compact_json(self._room),  # its counters change with every message
            bindings=tuple(self._json(b, binding_json) for b in bindings),
            capabilities=tuple(b.capabilities for b in bindings),
            participants=tuple(self._json(p, compact_json) for p in self._participants.values()),
        )
        self._room = None
        self._bindings = self._participants = self._json_of = _RESTING
        if not self.idempotency:
            self.idempotency = _RESTING

    def _json(self, model: M, to_json: Callable[[M], bytes]) -> bytes:
        """The model's JSON: the one it was woken from if it is that very model."""
        known = self._json_of.get(id(model))
        return known[1] if known is not None and known[0] is model else to_json(model)

    @property
    def resting(self) -> bool:
        """Whether the models are kept as JSON (see `rest`)."""
        return self._at_rest is not None

    def wake(self) -> None:
        """Validate the models again if the state rests; all of them or none.

        Raises:
            pydantic.ValidationError: a model no longer validates; the state still rests. The
                JSON came from the state's own models, so one of them was changed in place
                after it was validated (through a context handed to a hook, say).
        """
        if self._at_rest is not None:
            self._wake()

    def _wake(self) -> None:
        at_rest = self._at_rest
        assert at_rest is not None
        room = Room.model_validate_json(at_rest.room)
        bindings = [
            (binding_from_json(j, c), j)
            for j, c in zip(at_rest.bindings, at_rest.capabilities, strict=True)
        ]
        participants = [(Participant.model_validate_json(j), j) for j in at_rest.participants]
        self._at_rest = None
        self._room = room
        self._bindings = {}
        self._participants = {}
        json_of: dict[int, tuple[BaseModel, bytes]] = {}
        self._json_of = json_of
        for binding, json in bindings:
            self._bindings[binding.channel_id] = binding
            json_of[id(binding)] = (binding, json)
        for participant, json in participants:
            self._participants[participant.id] = participant
            json_of[id(participant)] = (participant, json)

    def mark_keys(self, position: int, *, now: bool = False) -> None:
        """Note that the log up to ``position`` holds every key recorded so far: after a
        commit, once a tenth of the window more keys came (``now``: at once, a recovered state).

        The marks let a key older than the window be looked up in the read model as soon as
        that model holds the evicted keys, instead of everything the room committed: the
        room's latest commits, a few records back, are what it may not hold yet.
        """
        if not now and self.keys_recorded < self._key_mark_due:
            return
        every = max(1, IDEMPOTENCY_WINDOW // 10)
        marks = self._key_marks
        if marks is None:
            # Marks older than the window's keys are of no use: keep a window's worth.
            self._key_marks = marks = deque(maxlen=IDEMPOTENCY_WINDOW // every + 2)
        marks.append((self.keys_recorded, position))
        self._key_mark_due = self.keys_recorded + every

    def evicted_keys_position(self) -> int | None:
        """A log position up to which the log holds every key the window no longer keeps (0
        if it keeps every key the room had), None if no mark says (none since the state was
        built)."""
        # Keys leave the window oldest first, so those gone are the first ``evicted`` recorded
        # (a key recorded twice counts twice, which only makes the answer later).
        evicted = self.keys_recorded - len(self.idempotency)
        if evicted <= 0:
            return 0
        for keys, position in self._key_marks or ():
            if keys >= evicted:
                return position
        return None

    def context(self, leave_out: int = 0) -> RoomContext:
        """A ``RoomContext`` snapshot: the most recent events, oldest first (quirk 1 fixed);
        without the last ``leave_out`` of them (the history as an earlier event saw it)."""
        # Woken once, then read past the properties (a call each; twice per message).
        if self._at_rest is not None:
            self._wake()
        room = self._room
        assert room is not None
        # Not validated: every part is already a validated model owned by this state.
        return constructed(
            RoomContext,
            {
                "room": room,
                "bindings": list(self._bindings.values()),
                "participants": list(self._participants.values()),
                "recent_events": self.recent.view(leave_out),
            },
        )


def evolve(
    state: RoomState, event: DomainEvent, model: BaseModel | None = None, *, at: float
) -> RoomState:
    """Apply one domain event, recorded at ``at`` (its record's timestamp), to ``state`` (in
    place) and return it.

    ``model`` is the decoded public model the event carries, when the caller already has it
    (the actor that just decided the event): it saves decoding the JSON again.

    Raises:
        UnreadableModel: the room, a binding or a participant the event embeds does not
            validate (a record another writer appended); nothing of the event is applied.
        msgspec.DecodeError: a message's few fields do not decode.
    """
    match event:
        case MessageRecorded():
            # A message is folded from its few fields, never validated: the kit records an
            # event as its channel or a hook left it (changed in place, not checked again on
            # the hot path), and one that an earlier version validated may not validate in
            # this one. Refused here, the kit's own record made its room unavailable for
            # good. The store's reads of that event name it (StoredEventError).
            assert model is None or isinstance(model, RoomEvent)
            _record_message(state, event.event, model, event.activity, at)
        case RoomCreated() | RoomUpdated():
            room = model if model is not None else load(Room, event.room)
            assert isinstance(room, Room)
            state.room = room
        case ChannelAttached() | ChannelUpdated():
            binding = model if model is not None else load(ChannelBinding, event.binding)
            assert isinstance(binding, ChannelBinding)
            state.bindings[binding.channel_id] = binding
        case ChannelDetached():
            state.bindings.pop(event.channel_id, None)
        case ParticipantJoined() | ParticipantUpdated():
            participant = model if model is not None else load(Participant, event.participant)
            assert isinstance(participant, Participant)
            state.participants[participant.id] = participant
        case TaskRecorded() | ObservationRecorded() | DeliveryRecorded() | ReadMarked():
            pass  # read-model only: the actor decides nothing from them
    return state


def _record_message(
    state: RoomState,
    raw: msgspec.Raw,
    model: RoomEvent | None,
    activity: bool | None,
    at: float,
) -> None:
    # Replaying, nothing here needs the validated event: its JSON goes to the recent events,
    # and the few fields the state keeps are read from it directly.
    event: RoomEvent | EventFields = model if model is not None else event_fields(raw)
    state.event_count += 1
    key = event.idempotency_key
    # The first event recorded under a key answers for it: a log written before copies of a
    # message (an injected auto-reply, a reply) were recorded without its key holds two, and
    # the later one answered the provider's retry.
    if key and key not in state.idempotency:
        keys = state.idempotency
        if keys is _RESTING:  # a resting room's empty window, shared: the room gets its own
            keys = state.idempotency = {}
        keys[key] = event.id
        state.keys_recorded += 1
        if len(keys) > IDEMPOTENCY_WINDOW:
            del keys[next(iter(keys))]  # the oldest: the read model answers for it now
    state.recent.append(raw)
    room = state.room
    if room is None:
        return
    # The highest index, as the read model keeps it: history imported through the store may
    # come with lower ones.
    latest = max(room.latest_index, event.index)
    updates: dict[str, object] = {"event_count": state.event_count, "latest_index": latest}
    if is_activity(activity, event.type, event.status):
        # When it was recorded, as 0.3.0 took the time it processed it: the event's own
        # created_at is its channel's to set (a provider's time, hours old or ahead).
        active_at = datetime.fromtimestamp(at, UTC)
        updates["timers"] = updated(room.timers, {"last_activity_at": active_at})
    state.room = updated(room, updates)
