"""Telnyx SMS / MMS over the v2 Messages API, with httpx (no Telnyx SDK)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers.sms._http import HTTPFailure, VendorHTTP
from providers.sms._outbound import render_outbound
from providers.sms.base import SMSProvider
from providers.telnyx._api import send_message
from providers.telnyx.config import TelnyxConfig
from providers.telnyx.signature import load_telnyx_public_key, verify_telnyx_signature
from providers.telnyx.webhook import parse_telnyx_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["TelnyxSMSProvider"]

logger = logging.getLogger("roomkit.providers.telnyx")


class TelnyxSMSProvider(SMSProvider):
    """Sends SMS / MMS through Telnyx and reads (and verifies) its webhooks.

    Args:
        config: API key, sender and messaging profile.
        public_key: Telnyx' webhook public key (base64 as the portal shows it, or PEM), for
            :meth:`verify_signature`; read here so that a bad key fails at start-up.
        client: An ``httpx.AsyncClient`` to use (the caller keeps ownership); when None, one is
            created and :meth:`close` closes it.

    Raises:
        ImportError: httpx (or, with a ``public_key``, cryptography) is not installed.
        ValueError: ``public_key`` is not an Ed25519 public key.
    """

    def __init__(
        self,
        config: TelnyxConfig,
        public_key: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._public_key: Ed25519PublicKey | None = (
            None if public_key is None else load_telnyx_public_key(public_key)
        )
        self._http = VendorHTTP(
            "TelnyxSMSProvider",
            code_prefix="telnyx",
            client=client,
            timeout=config.timeout,
            logger=logger,
        )

    def __repr__(self) -> str:
        return f"TelnyxSMSProvider(from_number={self._config.from_number!r})"

    @property
    def config(self) -> TelnyxConfig:
        """The provider's configuration (the API key stays a ``SecretStr``)."""
        return self._config

    @property
    def from_number(self) -> str:
        """The default sender number."""
        return self._config.from_number

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text and media (``media_urls``, making it an MMS).

        Returns:
            ``success=True`` with the Telnyx message id, or ``success=False`` with ``error``
            one of ``"empty_message"``, ``"missing_recipient"``, ``"timeout"``,
            ``"network_error"``, ``"auth_error"``, ``"rate_limit"``, ``"telnyx_<code>"``
            (``"telnyx_40310"``) or ``"http_<status>"``.
        """
        message = render_outbound(event.content)
        if message.is_empty:
            return ProviderResult(success=False, error="empty_message")
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        config = self._config
        body: dict[str, Any] = {"from": from_ or config.from_number, "to": to}
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
            return outcome.to_result(ProviderResult)
        logger.debug("telnyx accepted message %s", outcome.id)
        return ProviderResult(
            success=True,
            provider_message_id=outcome.id,
            metadata={"status": outcome.status, "type": outcome.data.get("type")},
        )

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn a ``message.received`` webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_telnyx_webhook(payload, channel_id)

    def verify_signature(
        self, payload: bytes, signature: str, timestamp: str | None = None
    ) -> bool:
        """Check the ``telnyx-signature-ed25519`` header of a webhook.

        Args:
            payload: The raw request body.
            signature: The ``telnyx-signature-ed25519`` header.
            timestamp: The ``telnyx-timestamp`` header; a missing or stale (over five
                minutes) timestamp fails verification.

        Raises:
            ValueError: The provider was created without ``public_key``.
        """
        if self._public_key is None:
            raise ValueError("TelnyxSMSProvider needs public_key= to verify signatures")
        return verify_telnyx_signature(self._public_key, payload, signature, timestamp)

    async def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        await self._http.aclose()
