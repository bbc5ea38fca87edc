"""The RCS provider contract and its delivery result."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from providers._base import MessagingProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["RCSDeliveryResult", "RCSProvider"]


class RCSDeliveryResult(ProviderResult):
    """A :class:`ProviderResult` that also says which channel carried the message.

    ``channel_used`` is ``"rcs"``, or ``"sms"`` when the vendor fell back to SMS (then
    ``fallback`` is True).
    """

    channel_used: str = "rcs"
    fallback: bool = False


class RCSProvider(MessagingProvider):
    """Sends RCS business messages, optionally falling back to SMS.

    ``send`` reports vendor failures as ``RCSDeliveryResult(success=False, error=...)``.
    """

    @property
    @abstractmethod
    def sender_id(self) -> str:
        """The RCS agent / sender id."""

    @property
    def supports_fallback(self) -> bool:
        """Whether the vendor can fall back to SMS when the recipient lacks RCS."""
        return True

    @abstractmethod
    async def send(self, event: RoomEvent, to: str, *, fallback: bool = True) -> RCSDeliveryResult:
        """Send ``event``'s content over RCS.

        Args:
            event: The event to send.
            to: Recipient phone number (E.164).
            fallback: Allow an SMS fallback when RCS is unavailable.

        Returns:
            The vendor's outcome and the channel actually used.
        """

    async def check_capability(self, phone_number: str) -> bool:
        """Whether ``phone_number`` can receive RCS.

        Raises:
            NotImplementedError: This provider cannot check capabilities.
        """
        raise NotImplementedError(f"{self.name} cannot check RCS capability")

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
