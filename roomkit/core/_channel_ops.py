"""Channels: registration, attaching to rooms, and binding changes."""

from __future__ import annotations

import logging
from typing import Any

import pydantic_core

from roomkit.channels.base import Channel, check_channel_id
from roomkit.core._commands import AttachChannel, DetachChannel, UpdateBinding
from roomkit.core._helpers import (
    HelpersMixin,
    attached_data,
    check_metadata,
    check_part,
    check_str,
    utcnow,
)
from roomkit.core._room_ids import check_read_room_id
from roomkit.errors import (
    ChannelNotFoundError,
    ChannelNotRegisteredError,
    EventRefusedError,
    RoomNotFoundError,
)
from roomkit.models._capabilities import CapabilitiesInterner
from roomkit.models._copy import handed_out
from roomkit.models.channel import ChannelBinding, ChannelCapabilities
from roomkit.models.enums import Access, ChannelCategory, ChannelType

__all__ = ["ChannelOpsMixin"]

logger = logging.getLogger("roomkit.framework")


class ChannelOpsMixin(HelpersMixin):
    """Channel operations of ``RoomKit``."""

    def register_channel(self, channel: Channel) -> None:
        """Make ``channel`` available to rooms (replaces a channel with the same id).

        Circuit breakers and rate limits of the channel id survive re-registration
        (quirk 14 fixed).

        Raises:
            TypeError: ``channel`` is not a channel (nor shaped like one), or its
                ``channel_id`` is not a string.
            ValueError: its ``channel_id`` is empty.
        """
        check_part("channel", channel, Channel)
        check_channel_id(getattr(channel, "channel_id", None))
        self._channels[channel.channel_id] = channel
        set_framework = getattr(channel, "set_framework", None)
        if callable(set_framework):
            set_framework(self)

    def get_channel(self, channel_id: str) -> Channel | None:
        """Return the registered channel, or ``None``.

        Raises:
            TypeError: ``channel_id`` is not a string.
        """
        check_str("channel_id", channel_id)
        return self._channels.get(channel_id)

    def list_channels(self) -> list[Channel]:
        """Return every registered channel."""
        return list(self._channels.values())

    async def attach_channel(
        self,
        room_id: str,
        channel_id: str,
        channel_type: ChannelType | None = None,
        category: ChannelCategory = ChannelCategory.TRANSPORT,
        access: Access = Access.READ_WRITE,
        visibility: str = "all",
        **kwargs: Any,
    ) -> ChannelBinding:
        """Bind a registered channel to a room and fire ON_CHANNEL_ATTACHED.

        ``category`` defaults to TRANSPORT whatever the channel, as in 0.3.0: attach an
        ``AIChannel`` with ``category=ChannelCategory.INTELLIGENCE`` for the router to treat
        it as one (visibility ``"intelligence"`` reaches it, ``deliver`` is not called).
        Extra keyword arguments go to the ``ChannelBinding`` (metadata, direction, muted,
        rate_limit, retry_policy, participant_id, ...).

        Raises:
            RoomNotFoundError: no such room.
            ChannelNotRegisteredError: ``channel_id`` was not registered.
            InvalidRoomIdError: ``room_id`` is not a string (the binding's ValidationError
                said it, where every other binding operation raises this).
            TypeError: ``channel_id`` is not a string.
        """
        check_read_room_id(room_id)
        check_str("channel_id", channel_id)
        channel = self._channels.get(channel_id)
        if channel is None:
            await self._context(room_id)  # as 0.3.0: a missing room is reported first
            raise ChannelNotRegisteredError(f"Channel {channel_id} not registered")
        declared = _category_of(channel)
        if category == ChannelCategory.TRANSPORT and declared is not ChannelCategory.TRANSPORT:
            logger.info(
                "channel %s (%s) attached to room %s as TRANSPORT, the default as in 0.3.0; "
                "pass category=ChannelCategory.%s to attach it as one",
                channel_id,
                type(channel).__name__,
                room_id,
                declared.name,
            )
        binding = self._new_binding(
            room_id, channel, channel_type, category, access, visibility, **kwargs
        )
        outcome = await self._command(room_id, AttachChannel(binding, utcnow()))
        attached: ChannelBinding = outcome.value
        await self._emit_framework_event(
            "room_channel_attached",
            room_id=room_id,
            channel_id=channel_id,
            data=attached_data(attached),
        )
        return handed_out(attached)

    _capabilities: CapabilitiesInterner

    def _new_binding(
        self,
        room_id: str,
        channel: Channel,
        channel_type: ChannelType | None = None,
        category: ChannelCategory = ChannelCategory.TRANSPORT,
        access: Access = Access.READ_WRITE,
        visibility: str = "all",
        **kwargs: Any,
    ) -> ChannelBinding:
        return ChannelBinding(
            channel_id=channel.channel_id,
            room_id=room_id,
            channel_type=channel_type or channel.channel_type,
            category=category,
            access=access,
            visibility=visibility,
            capabilities=self._capabilities_of(channel),
            **kwargs,
        )

    def _capabilities_of(self, channel: Channel) -> ChannelCapabilities:
        """The channel's capabilities, as the kit shares them between bindings.

        Raises:
            pydantic.ValidationError: they are not capabilities (0.3.0 validated them as a
                binding's field: a dict of them is taken).
            EventRefusedError: JSON cannot write them (an object in ``custom``).
        """
        capabilities = channel.capabilities()
        if not isinstance(capabilities, ChannelCapabilities):
            capabilities = ChannelCapabilities.model_validate(capabilities)
        try:
            return self._capabilities.capabilities(capabilities)
        except pydantic_core.PydanticSerializationError as exc:
            raise EventRefusedError(
                f"channel {channel.channel_id}: its capabilities cannot be stored ({exc})"
            ) from exc

    async def detach_channel(self, room_id: str, channel_id: str) -> bool:
        """Remove a channel's binding; ``False`` if it was not attached (or there is no such
        room: 0.3.0 asked the store to remove a binding it did not have)."""
        check_str("channel_id", channel_id)
        try:
            outcome = await self._command(room_id, DetachChannel(channel_id, utcnow()))
        except RoomNotFoundError:
            return False
        if outcome.value:
            await self._emit_framework_event(
                "room_channel_detached", room_id=room_id, channel_id=channel_id
            )
        return bool(outcome.value)

    async def _update_binding(
        self, room_id: str, channel_id: str, change: str, updates: dict[str, Any]
    ) -> ChannelBinding:
        """Apply a binding change (mute, unmute, visibility, access, metadata).

        Raises:
            ChannelNotFoundError: the channel is not attached to the room, or there is no
                such room (as in 0.3.0).
        """
        check_str("channel_id", channel_id)
        try:
            outcome = await self._command(
                room_id, UpdateBinding(channel_id, change, updates, utcnow())
            )
        except RoomNotFoundError:
            # 0.3.0 looked the binding up by room and channel: no room, no binding.
            raise ChannelNotFoundError(f"Channel {channel_id} not in room {room_id}") from None
        binding: ChannelBinding = outcome.value
        return handed_out(binding)

    async def mute(self, room_id: str, channel_id: str) -> ChannelBinding:
        """Mute a channel in a room (its AI replies are suppressed) and fire ON_CHANNEL_MUTED."""
        return await self._update_binding(room_id, channel_id, "muted", {"muted": True})

    async def unmute(self, room_id: str, channel_id: str) -> ChannelBinding:
        """Unmute a channel and fire ON_CHANNEL_UNMUTED."""
        return await self._update_binding(room_id, channel_id, "unmuted", {"muted": False})

    async def set_visibility(
        self, room_id: str, channel_id: str, visibility: str
    ) -> ChannelBinding:
        """Set which channels see what this channel sends."""
        return await self._update_binding(
            room_id, channel_id, "visibility", {"visibility": visibility}
        )

    async def set_access(self, room_id: str, channel_id: str, access: Access) -> ChannelBinding:
        """Set whether the channel may read and/or write in the room."""
        return await self._update_binding(room_id, channel_id, "access", {"access": access})

    async def update_binding_metadata(
        self, room_id: str, channel_id: str, metadata: dict[str, Any]
    ) -> ChannelBinding:
        """Merge ``metadata`` into the binding's metadata."""
        check_metadata(metadata)
        return await self._update_binding(room_id, channel_id, "metadata", {"metadata": metadata})

    async def get_binding(self, room_id: str, channel_id: str) -> ChannelBinding:
        """Return the binding. Raises ChannelNotFoundError."""
        check_read_room_id(room_id)
        check_str("channel_id", channel_id)
        binding = await (await self._read_model()).get_binding(room_id, channel_id)
        if binding is None:
            raise ChannelNotFoundError(f"Channel {channel_id} not in room {room_id}")
        return binding

    async def list_bindings(self, room_id: str) -> list[ChannelBinding]:
        """Return the room's bindings."""
        return await (await self._read_model()).list_bindings(check_read_room_id(room_id))


def _category_of(channel: Channel) -> ChannelCategory:
    """The category the channel's class declares (TRANSPORT if none)."""
    return ChannelCategory(getattr(channel, "category", ChannelCategory.TRANSPORT))
