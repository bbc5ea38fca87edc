"""The email provider contract."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from providers._base import MessagingProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["EmailProvider"]


class EmailProvider(MessagingProvider):
    """Sends email through a vendor.

    ``send`` reports vendor failures as ``ProviderResult(success=False, error=...)``.
    """

    @abstractmethod
    async def send(
        self,
        event: RoomEvent,
        to: str,
        from_: str | None = None,
        subject: str | None = None,
    ) -> ProviderResult:
        """Send ``event``'s content as an email.

        Args:
            event: The event to send.
            to: Recipient address.
            from_: Sender address; the provider's configured sender when None.
            subject: Subject line; a provider default when None.

        Returns:
            The vendor's outcome.
        """

    async def parse_inbound(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound-email payload into an :class:`InboundMessage`.

        Raises:
            NotImplementedError: This provider has no inbound parser.
        """
        raise NotImplementedError(f"{self.name} does not parse inbound email")
