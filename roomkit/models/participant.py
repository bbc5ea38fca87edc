"""``Participant``: someone (or something) taking part in a room."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from roomkit.models._defaults import new_id, utcnow
from roomkit.models.enums import IdentificationStatus, ParticipantRole, ParticipantStatus

__all__ = ["Participant"]


class Participant(BaseModel):
    """A member of a room, with the state of its identification."""

    id: str = Field(default_factory=new_id)
    room_id: str
    channel_id: str
    display_name: str | None = None
    role: ParticipantRole = ParticipantRole.MEMBER
    status: ParticipantStatus = ParticipantStatus.ACTIVE
    identification: IdentificationStatus = IdentificationStatus.PENDING
    identity_id: str | None = None
    candidates: list[str] | None = None
    connected_via: list[str] = Field(default_factory=list)
    external_id: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    joined_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)
