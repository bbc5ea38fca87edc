"""Telnyx RCS over the v2 Messages API (``type: "RCS"``), with httpx."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers.rcs.base import RCSDeliveryResult, RCSProvider
from providers.sms._http import HTTPFailure, VendorHTTP, response_json
from providers.sms._outbound import render_outbound
from providers.telnyx._api import bearer, send_message, telnyx_error
from providers.telnyx.config import TelnyxRCSConfig
from providers.telnyx.signature import load_telnyx_public_key, verify_telnyx_signature
from providers.telnyx.webhook import parse_telnyx_rcs_webhook
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["TelnyxRCSProvider"]

logger = logging.getLogger("roomkit.providers.telnyx")


class TelnyxRCSProvider(RCSProvider):
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

    def __init__(
        self,
        config: TelnyxRCSConfig,
        public_key: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._public_key: Ed25519PublicKey | None = (
            None if public_key is None else load_telnyx_public_key(public_key)
        )
        self._http = VendorHTTP(
            "TelnyxRCSProvider",
            code_prefix="telnyx",
            client=client,
            timeout=config.timeout,
            logger=logger,
        )

    def __repr__(self) -> str:
        return f"TelnyxRCSProvider(agent_id={self._config.agent_id!r})"

    @property
    def config(self) -> TelnyxRCSConfig:
        """The provider's configuration."""
        return self._config

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
        if message.is_empty:
            return RCSDeliveryResult(success=False, error="empty_message")
        if not to:
            return RCSDeliveryResult(success=False, error="missing_recipient")
        config = self._config
        body: dict[str, Any] = {
            "from": config.agent_id,
            "to": to,
            "type": "RCS",
            "auto_detect": fallback,
        }
        if message.text:
            body["text"] = message.text
        if message.media:
            body["media_urls"] = [item.url for item in message.media]
        if config.messaging_profile_id:
            body["messaging_profile_id"] = config.messaging_profile_id
        if config.webhook_url:
            body["webhook_url"] = config.webhook_url
        outcome = await send_message(
            self._http, base_url=config.base_url, api_key=config.api_key, body=body
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(RCSDeliveryResult)
        sent_as = outcome.data.get("type")
        used_sms = isinstance(sent_as, str) and sent_as.upper() in ("SMS", "MMS")
        return RCSDeliveryResult(
            success=True,
            provider_message_id=outcome.id,
            channel_used="sms" if used_sms else "rcs",
            fallback=used_sms,
            metadata={"status": outcome.status, "type": sent_as},
        )

    async def check_capability(self, phone_number: str) -> bool:
        """Whether ``phone_number`` can receive RCS from this agent
        (``GET /v2/messaging/rcs/capabilities/{agent_id}/{phone_number}``).

        Returns:
            True when Telnyx reports RCS features for the number; False when it reports none
            or does not know the number (404).

        Raises:
            ProviderError: The check itself failed (auth, rate limit, timeout, 5xx, ...), with
                ``retryable`` / ``retry_after`` set as the vendor said.
        """
        config = self._config
        url = (
            f"{config.base_url.rstrip('/')}/v2/messaging/rcs/capabilities/"
            f"{quote(config.agent_id, safe='')}/{quote(phone_number, safe='')}"
        )
        outcome = await self._http.request(
            "GET", url, headers=bearer(config.api_key), extract_error=telnyx_error
        )
        if isinstance(outcome, HTTPFailure):
            if outcome.status_code == 404:
                return False
            raise outcome.to_error()
        data = response_json(outcome)
        data = data.get("data") if isinstance(data, dict) else None
        if not isinstance(data, dict):
            return False
        features = data.get("features")
        return bool(features) if isinstance(features, list) else True

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn an inbound RCS webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_telnyx_rcs_webhook(payload, channel_id)

    def verify_signature(
        self, payload: bytes, signature: str, timestamp: str | None = None
    ) -> bool:
        """Check the ``telnyx-signature-ed25519`` header (see
        :meth:`TelnyxSMSProvider.verify_signature`).

        Raises:
            ValueError: The provider was created without ``public_key``.
        """
        if self._public_key is None:
            raise ValueError("TelnyxRCSProvider needs public_key= to verify signatures")
        return verify_telnyx_signature(self._public_key, payload, signature, timestamp)

    async def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        await self._http.aclose()
