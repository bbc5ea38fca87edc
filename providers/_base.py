"""What every messaging provider has: a name for logs and a ``close`` for its clients."""

from __future__ import annotations

from abc import ABC
from uuid import uuid4

from roomkit.models.delivery import ProviderResult

__all__ = ["MessagingProvider", "mock_result"]


class MessagingProvider(ABC):  # noqa: B024 - each kind declares its own abstract send()
    """Common base of the messaging provider ABCs (SMS, email, RCS, WhatsApp, ...)."""

    @property
    def name(self) -> str:
        """Provider name, for logs and error reports (the class name by default)."""
        return type(self).__name__

    async def close(self) -> None:  # noqa: B027 - optional hook, intentionally empty
        """Release clients and connections (nothing to release by default)."""


def mock_result(*, simulate_failure: bool, provider: str) -> ProviderResult:
    """The result a mock returns: a fresh message id, or a failure when asked to fail."""
    if simulate_failure:
        return ProviderResult(
            success=False, error="simulated_failure", metadata={"provider": provider}
        )
    return ProviderResult(success=True, provider_message_id=f"mock-{uuid4().hex}")
