"""The Microsoft Teams provider contract."""

from __future__ import annotations

from abc import abstractmethod

from providers._base import MessagingProvider
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["TeamsProvider"]


class TeamsProvider(MessagingProvider):
    """Sends messages through Microsoft Teams.

    ``send`` reports vendor failures as ``ProviderResult(success=False, error=...)``.
    """

    @abstractmethod
    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content.

        Args:
            event: The event to send.
            to: Recipient id (Teams conversation id).

        Returns:
            The vendor's outcome.
        """
