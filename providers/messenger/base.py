"""The Messenger provider contract."""

from __future__ import annotations

from abc import abstractmethod

from providers._base import MessagingProvider
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["MessengerProvider"]


class MessengerProvider(MessagingProvider):
    """Sends messages through Messenger.

    ``send`` reports vendor failures as ``ProviderResult(success=False, error=...)``.
    """

    @abstractmethod
    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content.

        Args:
            event: The event to send.
            to: Recipient id (Facebook page-scoped user id).

        Returns:
            The vendor's outcome.
        """
