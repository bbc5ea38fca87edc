"""The WhatsApp provider contract."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from providers._base import MessagingProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["WhatsAppProvider"]


class WhatsAppProvider(MessagingProvider):
    """Sends messages through WhatsApp.

    ``send`` reports vendor failures as ``ProviderResult(success=False, error=...)``.
    """

    @abstractmethod
    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content.

        Args:
            event: The event to send.
            to: Recipient id (phone number or chat JID).

        Returns:
            The vendor's outcome.
        """

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound webhook payload into an :class:`InboundMessage`.

        Raises:
            NotImplementedError: This provider has no webhook parser.
        """
        raise NotImplementedError(f"{self.name} does not parse webhooks")

    async def send_template(
        self, to: str, template_name: str, params: dict[str, str] | None = None
    ) -> ProviderResult:
        """Send a pre-approved template message.

        Raises:
            NotImplementedError: This provider cannot send templates.
        """
        raise NotImplementedError(f"{self.name} does not send templates")

    async def send_reaction(
        self, chat: str, sender: str, message_id: str, emoji: str
    ) -> ProviderResult:
        """React to a message with ``emoji`` (an empty string removes the reaction).

        Raises:
            NotImplementedError: This provider cannot send reactions.
        """
        raise NotImplementedError(f"{self.name} does not send reactions")
