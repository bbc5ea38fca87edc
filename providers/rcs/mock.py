"""An RCS provider that records what it is asked to send."""

from __future__ import annotations

from typing import Any

from providers.rcs.base import RCSDeliveryResult, RCSProvider
from roomkit.models.event import RoomEvent

__all__ = ["MockRCSProvider"]


class MockRCSProvider(RCSProvider):
    """Records every send in :attr:`calls`; no network.

    Args:
        sender_id: The RCS agent id.
        simulate_fallback: Pretend recipients lack RCS: sends that allow fallback go out as SMS
            (``check_capability`` says False). As in 0.3.0, a send that does not allow it
            still goes out as RCS.
        simulate_failure: Every send fails with ``error="simulated_failure"``.

    Attributes:
        calls: ``{"event", "to", "fallback"}`` per send, as passed.

    Message ids count the sends, as 0.3.0's did: ``mock_rcs_1``, ``mock_rcs_2``, ... and
    ``mock_sms_<n>`` for one that fell back to SMS.
    """

    def __init__(
        self,
        sender_id: str = "mock_rcs_agent",  # 0.3.0's
        *,
        simulate_fallback: bool = False,
        simulate_failure: bool = False,
    ) -> None:
        self._sender_id = sender_id
        self.simulate_fallback = simulate_fallback
        self.simulate_failure = simulate_failure
        self.calls: list[dict[str, Any]] = []
        self._sends = 0

    @property
    def sender_id(self) -> str:
        """The RCS agent id."""
        return self._sender_id

    async def send(self, event: RoomEvent, to: str, *, fallback: bool = True) -> RCSDeliveryResult:
        """Record the send and return the simulated outcome."""
        self._sends += 1
        self.calls.append({"event": event, "to": to, "fallback": fallback})
        if self.simulate_failure:
            return RCSDeliveryResult(success=False, error="simulated_failure")
        if self.simulate_fallback and fallback:
            return RCSDeliveryResult(
                success=True,
                provider_message_id=f"mock_sms_{self._sends}",
                channel_used="sms",
                fallback=True,
            )
        return RCSDeliveryResult(success=True, provider_message_id=f"mock_rcs_{self._sends}")

    async def check_capability(self, phone_number: str) -> bool:
        """RCS is reachable unless fallback is being simulated."""
        return not self.simulate_fallback
