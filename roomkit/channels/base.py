"""The channel contract: how messages enter a room and leave it."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import ChannelCategory, ChannelDirection, ChannelMediaType, ChannelType
from roomkit.models.event import ChannelData, EventSource, RoomEvent, TextContent

__all__ = ["Channel"]


def check_channel_id(channel_id: object) -> None:
    """Refuse an id no room can name: not a string, or ``""`` (registered, attached and
    routed, a channel of no name: a message's channel_id left empty reached it). Checked
    when a transport channel is made and when any channel is registered.

    Raises:
        TypeError: ``channel_id`` is not a string.
        ValueError: it is empty.
    """
    if not isinstance(channel_id, str):
        raise TypeError(f"channel_id must be a string, got {channel_id!r}")
    if not channel_id:
        raise ValueError("channel_id must not be empty")


class Channel(ABC):
    """A way in and out of rooms: SMS, email, WebSocket, an AI, ...

    The router calls :meth:`on_event` for every target of a broadcast (so an intelligence channel
    can react) and :meth:`deliver` for transport targets (to send the event out). The class
    attributes describe the channel. ``category`` is not the binding's: as in 0.3.0,
    ``attach_channel`` makes a TRANSPORT binding unless told otherwise (an AI channel is
    attached with ``category=ChannelCategory.INTELLIGENCE``).

    Args:
        channel_id: Unique id of this channel in the kit.
    """

    channel_type: ChannelType
    category: ClassVar[ChannelCategory] = ChannelCategory.TRANSPORT
    direction: ClassVar[ChannelDirection] = ChannelDirection.BIDIRECTIONAL

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        # Anything with an ``async close()``; closed with the channel.
        self._provider: Any = None

    @abstractmethod
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        """Turn a received message into a room event (not yet committed).

        Args:
            message: What the channel received.
            context: The room the message was routed to.

        Returns:
            The event to process.
        """

    @abstractmethod
    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """Send a committed event out through this channel.

        Args:
            event: The event, already transcoded for this channel.
            binding: This channel's binding in the event's room.
            context: The room, including the event.

        Returns:
            What happened (``provider_result`` for transports).
        """

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """React to a committed event of the room (nothing by default).

        Args:
            event: The event, already transcoded for this channel.
            binding: This channel's binding in the event's room.
            context: The room, including the event.

        Returns:
            Responses, tasks and observations to feed back into the room.
        """
        return ChannelOutput.empty()

    def capabilities(self) -> ChannelCapabilities:
        """What this channel can render (text only by default)."""
        return ChannelCapabilities(media_types=[ChannelMediaType.TEXT])

    @property
    def info(self) -> dict[str, Any]:
        """Channel-specific facts for introspection (none by default)."""
        return {}

    async def close(self) -> None:
        """Close the channel's provider, if it has one and it can be closed.

        A provider shaped like one (a ``send`` coroutine only, as ``TransportChannel`` takes)
        has nothing to close, and a plain ``def close`` has closed it when it returns: each
        made closing the kit log an error.
        """
        close = getattr(self._provider, "close", None)
        if close is not None:
            closed = close()
            if inspect.isawaitable(closed):
                await closed

    @staticmethod
    def extract_text(event: RoomEvent) -> str:
        """The body of a text event, or ``""`` for any other content."""
        if isinstance(event.content, TextContent):
            return event.content.body
        return ""

    def _inbound_event(
        self,
        message: InboundMessage,
        context: RoomContext,
        channel_type: ChannelType,
        provider: str | None = None,
    ) -> RoomEvent:
        """Build the room event for ``message`` arriving through this channel."""
        return RoomEvent(
            room_id=context.room.id,
            source=EventSource(
                channel_id=self.channel_id,
                channel_type=channel_type,
                direction=ChannelDirection.INBOUND,
                participant_id=message.sender_id or None,
                external_id=message.external_id,
                provider=provider,
                provider_message_id=message.external_id,
            ),
            content=message.content,
            idempotency_key=message.idempotency_key,
            # A copy: the event must not share a mutable dict with the caller's message.
            metadata=dict(message.metadata),
            channel_data=ChannelData(
                provider=provider, external_id=message.external_id, thread_id=message.thread_id
            ),
        )
