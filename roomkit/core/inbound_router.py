"""Routing of inbound messages to rooms: the ``InboundRoomRouter`` interface and its default."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from roomkit.models.enums import ChannelType
from roomkit.store.base import ConversationStore

__all__ = ["DefaultInboundRoomRouter", "InboundRoomRouter"]


class InboundRoomRouter(ABC):
    """Chooses the room an inbound message belongs to."""

    @abstractmethod
    async def route(
        self,
        channel_id: str,
        channel_type: ChannelType,
        participant_id: str | None = None,
        channel_data: dict[str, Any] | None = None,
    ) -> str | None:
        """Return the id of the room for this message, or ``None`` to create a new room."""


class DefaultInboundRoomRouter(InboundRoomRouter):
    """RoomKit 0.3.0's routing: the first active room bound to the channel, else the
    participant's latest active room on that channel type, else ``None`` (auto-create)."""

    def __init__(self, store: ConversationStore) -> None:
        self._store = store

    async def route(
        self,
        channel_id: str,
        channel_type: ChannelType,
        participant_id: str | None = None,
        channel_data: dict[str, Any] | None = None,
    ) -> str | None:
        room_id = await self._store.find_room_id_by_channel(channel_id, status="active")
        if room_id is not None:
            return room_id
        if participant_id is not None:
            room = await self._store.find_latest_room(
                participant_id, channel_type=channel_type, status="active"
            )
            if room is not None:
                return room.id
        return None
