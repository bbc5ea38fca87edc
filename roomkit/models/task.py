"""``Task`` and ``Observation``: side effects that hooks and channels raise."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from roomkit.models._defaults import new_id, utcnow
from roomkit.models.enums import TaskStatus

__all__ = ["Observation", "Task"]


class Task(BaseModel):
    """A piece of work for a person or a system, raised from a room."""

    id: str = Field(default_factory=new_id)
    room_id: str
    title: str
    description: str | None = None
    assigned_to: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Observation(BaseModel):
    """Something noticed about a room (sentiment, intent, a limit reached, ...)."""

    id: str = Field(default_factory=new_id)
    room_id: str
    channel_id: str
    content: str
    category: str | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)
