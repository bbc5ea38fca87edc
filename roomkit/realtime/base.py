"""Ephemeral realtime events (typing, presence, read receipts, reactions) and their backend ABC.

Ephemeral events are never written to the event log: they are fanned out to whoever is
subscribed right now and forgotten.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from roomkit.models._defaults import new_id, utcnow

__all__ = [
    "EphemeralCallback",
    "EphemeralEvent",
    "EphemeralEventType",
    "RealtimeBackend",
    "subscription_id_of",
]


def subscription_id_of(subscription_id: str | None, sub_id: str | None) -> str:
    """The subscription id an ``unsubscribe`` was given, under either name: 0.3.0 named the
    parameter ``subscription_id``, its reference ``sub_id``, and code written to either works.

    Raises:
        TypeError: neither or both were given.
    """
    if sub_id is None and subscription_id is not None:
        return subscription_id
    if subscription_id is None and sub_id is not None:
        return sub_id
    raise TypeError("give the subscription id once: subscription_id=... (or sub_id=...)")


class EphemeralEventType(StrEnum):
    """Kind of ephemeral event."""

    TYPING_START = "typing_start"
    TYPING_STOP = "typing_stop"
    PRESENCE_ONLINE = "presence_online"
    PRESENCE_AWAY = "presence_away"
    PRESENCE_OFFLINE = "presence_offline"
    READ_RECEIPT = "read_receipt"
    REACTION = "reaction"
    CUSTOM = "custom"


@dataclass
class EphemeralEvent:
    """A short-lived event about a user in a room; never stored."""

    room_id: str
    type: EphemeralEventType
    user_id: str
    id: str = field(default_factory=new_id)
    channel_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (``type`` as its value, ``timestamp`` in ISO 8601)."""
        return {
            "id": self.id,
            "room_id": self.room_id,
            "type": str(self.type),
            "user_id": self.user_id,
            "channel_id": self.channel_id,
            "data": self.data,
            "timestamp": self.timestamp.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EphemeralEvent:
        """Build an event from the output of ``to_dict``; missing optional keys get defaults.

        Raises:
            KeyError: If ``room_id``, ``type`` or ``user_id`` is missing.
            ValueError: If ``type`` is not an ``EphemeralEventType`` or the timestamp is invalid.
        """
        timestamp = data.get("timestamp")
        if isinstance(timestamp, str):
            timestamp = datetime.fromisoformat(timestamp)
        return cls(
            room_id=data["room_id"],
            type=EphemeralEventType(data["type"]),
            user_id=data["user_id"],
            id=data.get("id") or new_id(),
            channel_id=data.get("channel_id"),
            data=dict(data.get("data") or {}),
            timestamp=timestamp if isinstance(timestamp, datetime) else utcnow(),
        )


EphemeralCallback = Callable[[EphemeralEvent], Awaitable[None]]
"""An async function called with each event of a subscription."""


class RealtimeBackend(abc.ABC):
    """Publish/subscribe transport for ephemeral events, by channel name.

    Rooms use the channel name ``room:{room_id}`` (see ``publish_to_room``). A backend delivers
    the events of one subscription in publish order and never raises a subscriber's error to
    the publisher. It can be used as an async context manager; leaving it calls ``close``.
    """

    @abc.abstractmethod
    async def publish(self, channel: str, event: EphemeralEvent) -> None:
        """Send ``event`` to every current subscriber of ``channel`` without waiting for them."""

    @abc.abstractmethod
    async def subscribe(self, channel: str, callback: EphemeralCallback) -> str:
        """Call ``callback`` for every event published on ``channel`` from now on.

        Returns:
            A subscription id for ``unsubscribe``.
        """

    @abc.abstractmethod
    async def unsubscribe(self, subscription_id: str) -> bool:
        """Stop a subscription (the kit passes its id positionally).

        Returns:
            ``True`` if it existed, ``False`` otherwise.
        """

    async def publish_to_room(self, room_id: str, event: EphemeralEvent) -> None:
        """Publish on the room's channel ``room:{room_id}``."""
        await self.publish(f"room:{room_id}", event)

    async def subscribe_to_room(self, room_id: str, callback: EphemeralCallback) -> str:
        """Subscribe to the room's channel ``room:{room_id}``."""
        return await self.subscribe(f"room:{room_id}", callback)

    async def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release the backend's resources; the default does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
