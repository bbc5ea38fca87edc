"""The SMS provider contract."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from providers._base import MessagingProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["SMSProvider"]


class SMSProvider(MessagingProvider):
    """Sends SMS/MMS through a vendor and parses its webhooks.

    ``send`` reports vendor failures as ``ProviderResult(success=False, error=...)`` rather than
    raising, so that the router can count them as failed deliveries.
    """

    @property
    @abstractmethod
    def from_number(self) -> str:
        """The sender number used when ``send`` gets no ``from_``."""

    @abstractmethod
    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s content as an SMS (MMS when it carries media).

        Args:
            event: The event to send.
            to: Recipient phone number (E.164).
            from_: Sender number; :attr:`from_number` when None.

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

    def verify_signature(
        self, payload: bytes, signature: str, timestamp: str | None = None
    ) -> bool:
        """Check a webhook's signature.

        Raises:
            NotImplementedError: This provider does not sign its webhooks.
        """
        raise NotImplementedError(f"{self.name} does not verify webhook signatures")
