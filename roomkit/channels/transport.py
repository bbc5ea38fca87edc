"""A channel that sends and receives through a messaging provider (SMS, email, ...)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from roomkit.channels.base import Channel, check_channel_id
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.enums import ChannelMediaType, ChannelType
from roomkit.models.event import (
    CompositeContent,
    EventContent,
    MediaContent,
    RoomEvent,
)

__all__ = ["TransportChannel"]

logger = logging.getLogger("roomkit.channels.transport")


def _has_media(content: EventContent) -> bool:
    """Whether ``content`` is a ``MediaContent`` or a composite with one among its own parts:
    0.3.0's rule for recording an SMS as MMS (audio, video or media nested deeper keep SMS,
    which hooks filtering on the channel type see)."""
    if isinstance(content, MediaContent):
        return True
    if isinstance(content, CompositeContent):
        return any(isinstance(part, MediaContent) for part in content.parts)
    return False


def _check_provider(provider: object) -> None:
    """Refuse, when the channel is made, a provider that cannot send: each delivery failed
    (``'str' object has no attribute 'send'``), as ``AIChannel`` refuses a provider that
    cannot generate. None (nothing sent) and any object with a ``send`` method (a provider
    shaped like one) are taken; a class, where an instance is due, only if its ``send`` is a
    static or class method (it sends, called on the class).

    Raises:
        TypeError: ``provider`` has no callable ``send``, or is a class whose ``send`` needs
            an instance.
    """
    if isinstance(provider, type) and not isinstance(
        inspect.getattr_static(provider, "send", None), staticmethod | classmethod
    ):
        got = f"the class {provider.__name__}"
    elif provider is not None and not callable(getattr(provider, "send", None)):
        got = type(provider).__name__
    else:
        return
    raise TypeError(f"provider must be a provider (with a send() method) or None, got {got}")


class TransportChannel(Channel):
    """A channel backed by a provider whose ``send(event, to=..., **kwargs)`` sends messages out.

    Args:
        channel_id: Unique id of this channel in the kit.
        channel_type: What kind of transport this is.
        provider: The provider that sends (anything with a ``send`` method); without one,
            :meth:`deliver` does nothing.
        capabilities: What the channel can render (text only when None).
        recipient_key: The binding metadata key that holds the recipient address.
        defaults: Extra keyword arguments for ``provider.send``. A value is passed as is; a
            ``None`` value is read from the binding's metadata under the same key at delivery.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` is neither None nor has a
            ``send`` method.
        ValueError: ``channel_id`` is empty.
    """

    def __init__(
        self,
        channel_id: str,
        channel_type: ChannelType,
        *,
        provider: Any = None,
        capabilities: ChannelCapabilities | None = None,
        recipient_key: str = "recipient_id",
        defaults: dict[str, Any] | None = None,
    ) -> None:
        check_channel_id(channel_id)
        _check_provider(provider)
        super().__init__(channel_id)
        # An instance attribute: one class serves every transport kind.
        self.channel_type = channel_type
        self._provider = provider
        self._capabilities = capabilities
        self._recipient_key = recipient_key
        self._defaults: dict[str, Any] = dict(defaults or {})

    @property
    def provider(self) -> Any:
        """The provider that sends for this channel (None when there is none)."""
        return self._provider

    @property
    def recipient_key(self) -> str:
        """The binding metadata key that holds the recipient address."""
        return self._recipient_key

    @property
    def defaults(self) -> dict[str, Any]:
        """A copy of the keyword arguments passed to ``provider.send``."""
        return dict(self._defaults)

    def capabilities(self) -> ChannelCapabilities:
        """What this channel can render (a copy: bindings snapshot it and may change it)."""
        if self._capabilities is None:
            return ChannelCapabilities(media_types=[ChannelMediaType.TEXT])
        return self._capabilities.model_copy(deep=True)

    @property
    def info(self) -> dict[str, Any]:
        """The defaults that have a fixed value."""
        return {key: value for key, value in self._defaults.items() if value is not None}

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        """Build the room event for a received message.

        An SMS that carries media is recorded as MMS. The sender becomes the source's
        participant id, the message's external id its external / provider message id, and the
        idempotency key and metadata are copied.

        Args:
            message: What the channel received.
            context: The room the message was routed to.

        Returns:
            The event to process.
        """
        channel_type = self.channel_type
        if channel_type == ChannelType.SMS and _has_media(message.content):
            channel_type = ChannelType.MMS
        provider = getattr(self._provider, "name", None)
        return self._inbound_event(
            message, context, channel_type, provider if isinstance(provider, str) else None
        )

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """Send ``event`` to the recipient named in the binding's metadata.

        Provider failures are returned in ``provider_result`` (not raised), so the router can count
        ``success=False`` as a failed delivery.

        Args:
            event: The event, already transcoded for this channel.
            binding: This channel's binding; its metadata holds the recipient and any
                per-room defaults.
            context: The room, including the event.

        Returns:
            ``ChannelOutput(provider_result=...)``, or an empty output when there is no provider.
        """
        if self._provider is None:
            logger.debug("channel %s has no provider; %s not sent", self.channel_id, event.id)
            return ChannelOutput.empty()
        to = binding.metadata.get(self._recipient_key, "")
        kwargs = {
            key: binding.metadata.get(key) if value is None else value
            for key, value in self._defaults.items()
        }
        result = await self._provider.send(event, to=to, **kwargs)
        if not isinstance(result, ProviderResult):
            # A provider that returns nothing (or something else) is taken as "sent, no details".
            logger.debug(
                "provider of %s returned %r, not a ProviderResult", self.channel_id, result
            )
            return ChannelOutput.empty()
        if not result.success:
            logger.warning(
                "channel %s: provider failed to send %s to %r: %s",
                self.channel_id,
                event.id,
                to,
                result.error,
            )
        return ChannelOutput(provider_result=result)
