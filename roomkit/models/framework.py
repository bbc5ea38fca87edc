"""``FrameworkEvent``: a notification emitted by the kit to ``kit.on(type)`` handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from roomkit.models._defaults import utcnow

__all__ = ["FrameworkEvent"]


class FrameworkEvent(BaseModel):
    """Something the kit did (``room_created``, ``event_blocked``, ``delivery_failed``, ...)."""

    type: str
    room_id: str | None = None
    channel_id: str | None = None
    event_id: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)
