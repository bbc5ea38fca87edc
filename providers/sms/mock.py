"""An SMS provider that records what it is asked to send."""

from __future__ import annotations

from typing import Any

from providers._base import mock_result
from providers.sms.base import SMSProvider
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["MockSMSProvider"]


class MockSMSProvider(SMSProvider):
    """Records every send in :attr:`sent`; no network.

    Args:
        from_number: The default sender number.
        simulate_failure: Return ``success=False`` results (the send is still recorded).

    Attributes:
        sent: ``{"event", "to", "from"}`` per send, as passed (``from``: ``""`` when no
            ``from_`` was given, as in 0.3.0; the provider's ``from_number`` was the sender).
    """

    def __init__(
        self, from_number: str = "+15550001234", *, simulate_failure: bool = False
    ) -> None:
        self._from_number = from_number
        self.simulate_failure = simulate_failure
        self.sent: list[dict[str, Any]] = []

    @property
    def from_number(self) -> str:
        """The default sender number."""
        return self._from_number

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Record the send and return a result with a fresh message id."""
        self.sent.append({"event": event, "to": to, "from": from_ or ""})
        return mock_result(simulate_failure=self.simulate_failure, provider=self.name)
