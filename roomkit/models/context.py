"""``RoomContext``: the snapshot of a room that hooks and channels receive."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_serializer

from roomkit.models.channel import ChannelBinding
from roomkit.models.enums import ChannelType
from roomkit.models.event import RoomEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room

__all__ = ["RoomContext"]


class RoomContext(BaseModel):
    """A room with its bindings, participants and most recent events (oldest first)."""

    room: Room
    bindings: list[ChannelBinding] = Field(default_factory=list)
    participants: list[Participant] = Field(default_factory=list)
    recent_events: list[RoomEvent] = Field(default_factory=list)

    @field_serializer("recent_events")
    def _serialize_recent_events(self, events: list[RoomEvent]) -> list[RoomEvent]:
        # A kit's contexts carry their recent events as a sequence that loads them on first use
        # (roomkit.core._recent): hand pydantic a plain list, serialised as the field would be.
        return list(events)

    def other_channels(self, exclude_channel_id: str) -> list[ChannelBinding]:
        """Return the bindings of every channel except ``exclude_channel_id``."""
        return [b for b in self.bindings if b.channel_id != exclude_channel_id]

    def channels_by_type(self, channel_type: ChannelType) -> list[ChannelBinding]:
        """Return the bindings whose channel type is ``channel_type``."""
        return [b for b in self.bindings if b.channel_type == channel_type]

    def get_binding(self, channel_id: str) -> ChannelBinding | None:
        """Return the binding of ``channel_id``, or ``None`` if it is not attached."""
        for binding in self.bindings:
            if binding.channel_id == channel_id:
                return binding
        return None
