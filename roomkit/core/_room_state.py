"""A room's state as its actor holds it, and ``evolve``: the fold of its domain events.

``evolve`` has no I/O and reads no clock: given the same events it builds the same state, which
is what lets a room be rebuilt from the log after a restart or a passivation. It updates the
state in place (the actor owns it exclusively) and returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    load,
)
from roomkit.core._recent import RecentEvents
from roomkit.models._copy import constructed, updated
from roomkit.models._json import EventFields, event_fields
from roomkit.models.channel import ChannelBinding
from roomkit.models.context import RoomContext
from roomkit.models.enums import EventStatus, EventType
from roomkit.models.event import RoomEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room

__all__ = ["RoomState", "evolve"]


@dataclass(slots=True)
class RoomState:
    """Everything the room actor needs to decide: the room, its bindings and participants,
    the idempotency keys already committed, and the tail of its timeline."""

    room: Room | None = None
    bindings: dict[str, ChannelBinding] = field(default_factory=dict)
    participants: dict[str, Participant] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    event_count: int = 0
    recent: RecentEvents = field(default_factory=RecentEvents)

    def context(self) -> RoomContext:
        """A ``RoomContext`` snapshot: the most recent events, oldest first (quirk 1 fixed)."""
        assert self.room is not None
        # Not validated: every part is already a validated model owned by this state.
        return constructed(
            RoomContext,
            {
                "room": self.room,
                "bindings": list(self.bindings.values()),
                "participants": list(self.participants.values()),
                "recent_events": self.recent.view(),
            },
        )


def evolve(state: RoomState, event: DomainEvent, model: BaseModel | None = None) -> RoomState:
    """Apply one domain event to ``state`` (in place) and return it.

    ``model`` is the decoded public model the event carries, when the caller already has it
    (the actor that just decided the event): it saves decoding the JSON again.
    """
    match event:
        case MessageRecorded():
            assert model is None or isinstance(model, RoomEvent)
            _record_message(state, event.event, model, event.activity)
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
    state: RoomState, raw: msgspec.Raw, model: RoomEvent | None, activity: bool
) -> None:
    # Replaying, nothing here needs the validated event: its JSON goes to the recent events,
    # and the few fields the state keeps are read from it directly.
    event: RoomEvent | EventFields = model if model is not None else event_fields(raw)
    state.event_count += 1
    if event.idempotency_key:
        state.idempotency[event.idempotency_key] = event.id
    state.recent.append(raw, model)
    room = state.room
    if room is None:
        return
    updates: dict[str, object] = {"event_count": state.event_count, "latest_index": event.index}
    if activity and event.type == EventType.MESSAGE and event.status == EventStatus.DELIVERED:
        updates["timers"] = updated(room.timers, {"last_activity_at": event.created_at})
    state.room = updated(room, updates)
