"""Telnyx RCS over the v2 Messages API (``type: "RCS"``), with httpx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from providers._base import inbound_channel_id
from providers._http import HTTPFailure, response_json
from providers.rcs.base import RCSDeliveryResult, RCSProvider
from providers.sms._outbound import refusal, render_outbound
from providers.telnyx._api import TelnyxMessagingProvider
from providers.telnyx.config import TelnyxRCSConfig
from providers.telnyx.webhook import parse_telnyx_rcs_webhook
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import RoomEvent

__all__ = ["TelnyxRCSProvider"]


class TelnyxRCSProvider(TelnyxMessagingProvider[TelnyxRCSConfig], RCSProvider):
    """Sends RCS messages from a Telnyx RCS agent.

    The message is ``type: "RCS"`` from the agent id. With ``fallback=True`` Telnyx detects
    whether the recipient has RCS and sends SMS otherwise (``auto_detect: true``); with
    ``fallback=False`` it sends RCS only (``auto_detect: false``).

    Args:
        config: API key and agent.
        public_key: Telnyx' webhook public key, for :meth:`verify_signature`.
        client: An ``httpx.AsyncClient`` to use (the caller keeps ownership); when None, one is
            created and :meth:`close` closes it.

    Raises:
        ImportError: httpx (or, with a ``public_key``, cryptography) is not installed.
        ValueError: ``public_key`` is not an Ed25519 public key.
    """

    def __repr__(self) -> str:
        return f"TelnyxRCSProvider(agent_id={self._config.agent_id!r})"

    @property
    def sender_id(self) -> str:
        """The RCS agent id."""
        return self._config.agent_id

    async def send(self, event: RoomEvent, to: str, *, fallback: bool = True) -> RCSDeliveryResult:
        """Send ``event``'s text and media over RCS.

        ``channel_used`` is ``"sms"`` (and ``fallback`` True) when Telnyx answers that it sent
        an SMS / MMS instead.

        Returns:
            The outcome; failures as for :meth:`TelnyxSMSProvider.send`.
        """
        message = render_outbound(event.content)
        if (refused := refusal(message, to, RCSDeliveryResult)) is not None:
            return refused
        fields = {"from": self.sender_id, "to": to, "type": "RCS", "auto_detect": fallback}
        sent = await self._create_message(fields, message)
        if isinstance(sent, HTTPFailure):
            return sent.to_result(RCSDeliveryResult)
        sent_as = sent.data.get("type")
        used_sms = isinstance(sent_as, str) and sent_as.upper() in ("SMS", "MMS")
        return RCSDeliveryResult(
            success=True,
            provider_message_id=sent.id,
            channel_used="sms" if used_sms else "rcs",
            fallback=used_sms,
            metadata={"status": sent.status, "type": sent_as},
        )

    async def check_capability(self, phone_number: str) -> bool:
        """Whether ``phone_number`` can receive RCS from this agent
        (``GET /v2/messaging/rcs/capabilities/{agent_id}/{phone_number}``).

        Returns:
            The answer's ``rcs_enabled`` when it has one (RoomKit 0.3.0 read it), else whether
            Telnyx lists RCS ``features`` for the number. False when it says neither, and
            False when the check itself fails (HTTP error, timeout, unreadable answer; the
            failure is logged), as in 0.3.0: callers take False as "send SMS instead".
        """
        config = self._config
        url = (
            f"{config.base_url.rstrip('/')}/v2/messaging/rcs/capabilities/"
            f"{quote(config.agent_id, safe='')}/{quote(phone_number, safe='')}"
        )
        outcome = await self._call("GET", url)
        if isinstance(outcome, HTTPFailure):
            return False  # logged by the HTTP client
        data = response_json(outcome)
        data = data.get("data") if isinstance(data, dict) else None
        if not isinstance(data, dict):
            return False
        if "rcs_enabled" in data:
            return data["rcs_enabled"] is True
        features = data.get("features")
        return isinstance(features, list) and bool(features)

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound RCS webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_telnyx_rcs_webhook(payload, inbound_channel_id(self, channel_id))
