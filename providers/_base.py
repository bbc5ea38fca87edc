"""What every messaging provider has: a name for logs and a ``close`` for its clients; and what
the in-memory mocks share."""

from __future__ import annotations

from abc import ABC
from typing import Any
from uuid import uuid4

from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["MessagingProvider", "RecordingProvider", "inbound_channel_id", "mock_result"]


class MessagingProvider(ABC):  # noqa: B024 - each kind declares its own abstract send()
    """Common base of the messaging provider ABCs (SMS, email, RCS, WhatsApp, ...)."""

    @property
    def name(self) -> str:
        """Provider name, for logs and error reports (the class name by default)."""
        return type(self).__name__

    async def close(self) -> None:  # noqa: B027 - optional hook, intentionally empty
        """Release clients and connections (nothing to release by default)."""


def inbound_channel_id(provider: MessagingProvider, channel_id: str | None) -> str:
    """``channel_id`` as a webhook parser needs it. Optional in the ABCs' signatures, as
    0.3.0's ``parse_webhook(payload)`` had none (their parsers raise NotImplementedError).

    Raises:
        TypeError: ``channel_id`` is missing.
    """
    if channel_id is None:
        raise TypeError(
            f"{provider.name} needs the id of the channel the webhook came in on: "
            "parse_webhook(payload, channel_id)"
        )
    return channel_id


def mock_result(*, simulate_failure: bool, provider: str) -> ProviderResult:
    """The result a mock returns: a fresh message id (32 hex digits, as 0.3.0's mocks gave),
    or a failure when asked to fail."""
    if simulate_failure:
        return ProviderResult(
            success=False, error="simulated_failure", metadata={"provider": provider}
        )
    return ProviderResult(success=True, provider_message_id=uuid4().hex)


class RecordingProvider(MessagingProvider):
    """Base of the mocks whose ``send`` takes ``(event, to)``: records every send in
    :attr:`sent`; no network.

    Args:
        simulate_failure: Return ``success=False`` results (the send is still recorded).

    Attributes:
        sent: ``{"event", "to"}`` per send.
    """

    def __init__(self, *, simulate_failure: bool = False) -> None:
        self.simulate_failure = simulate_failure
        self.sent: list[dict[str, Any]] = []

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Record the send and return a result with a fresh message id."""
        self.sent.append({"event": event, "to": to})
        return mock_result(simulate_failure=self.simulate_failure, provider=self.name)
