"""``Room`` and its inactivity/close timers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from roomkit.models._defaults import new_id, utcnow
from roomkit.models.enums import RoomStatus

__all__ = ["Room", "RoomTimers"]


class RoomTimers(BaseModel):
    """When an idle room is paused and then closed (seconds since ``last_activity_at``)."""

    inactive_after_seconds: int | None = Field(default=None, ge=0)
    closed_after_seconds: int | None = Field(default=None, ge=0)
    last_activity_at: datetime | None = None


class Room(BaseModel):
    """A conversation that joins channels; its id names its stream in the event log."""

    id: str = Field(default_factory=new_id)
    organization_id: str | None = None
    status: RoomStatus = RoomStatus.ACTIVE
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    timers: RoomTimers = Field(default_factory=RoomTimers)
    metadata: dict[str, Any] = Field(default_factory=dict)
    event_count: int = Field(default=0, ge=0)
    latest_index: int = Field(default=0, ge=0)
