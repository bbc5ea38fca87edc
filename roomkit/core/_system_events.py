"""Builders for the room's system events: stored audit events and synthetic lifecycle events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from roomkit.models.enums import ChannelType, EventStatus, EventType
from roomkit.models.event import EventSource, RoomEvent, SystemContent

__all__ = ["audit_event", "lifecycle_event"]


def lifecycle_event(
    room_id: str,
    type: EventType,
    code: str,
    body: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> RoomEvent:
    """The synthetic, never stored event that lifecycle hooks receive (as in RoomKit 0.3.0:
    source ``"system"``/SYSTEM, SystemContent, status DELIVERED, visibility ``"internal"``)."""
    return RoomEvent(
        room_id=room_id,
        type=type,
        source=EventSource(channel_id="system", channel_type=ChannelType.SYSTEM),
        content=SystemContent(body=body, code=code, data=data or {}),
        status=EventStatus.DELIVERED,
        visibility="internal",
        created_at=now,
    )


def audit_event(
    room_id: str,
    type: EventType,
    code: str,
    body: str,
    now: datetime,
    index: int,
    channel_id: str = "system",
    data: dict[str, Any] | None = None,
) -> RoomEvent:
    """A system event stored in the timeline (channel attached, participant joined, ...)."""
    return RoomEvent(
        room_id=room_id,
        type=type,
        source=EventSource(channel_id=channel_id, channel_type=ChannelType.SYSTEM),
        content=SystemContent(body=body, code=code, data=data or {}),
        status=EventStatus.DELIVERED,
        visibility="internal",
        index=index,
        created_at=now,
    )
