"""An email provider that records what it is asked to send."""

from __future__ import annotations

from typing import Any

from providers._base import mock_result
from providers.email.base import EmailProvider
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["MockEmailProvider"]


class MockEmailProvider(EmailProvider):
    """Records every send in :attr:`sent`; no network.

    Args:
        simulate_failure: Return ``success=False`` results (the send is still recorded).

    Attributes:
        sent: ``{"event", "to", "from", "subject"}`` per send, as passed (``""`` for a sender
            or subject not given, as in 0.3.0).
    """

    def __init__(self, *, simulate_failure: bool = False) -> None:
        self.simulate_failure = simulate_failure
        self.sent: list[dict[str, Any]] = []

    async def send(
        self,
        event: RoomEvent,
        to: str,
        from_: str | None = None,
        subject: str | None = None,
    ) -> ProviderResult:
        """Record the send and return a result with a fresh message id."""
        self.sent.append({"event": event, "to": to, "from": from_ or "", "subject": subject or ""})
        return mock_result(simulate_failure=self.simulate_failure, provider=self.name)
