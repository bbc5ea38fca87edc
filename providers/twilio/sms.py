"""Twilio SMS / MMS over the REST Messages API, with httpx (no Twilio SDK)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers.sms._http import HTTPFailure, VendorHTTP
from providers.sms._outbound import render_outbound
from providers.sms.base import SMSProvider
from providers.twilio._messages import send_message
from providers.twilio.config import TwilioConfig
from providers.twilio.signature import verify_twilio_signature
from providers.twilio.webhook import parse_twilio_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["TwilioSMSProvider"]

logger = logging.getLogger("roomkit.providers.twilio")


class TwilioSMSProvider(SMSProvider):
    """Sends SMS / MMS through Twilio and reads its webhooks.

    Args:
        config: Account, credentials and sender.
        client: An ``httpx.AsyncClient`` to use (e.g. on ``httpx.MockTransport``); the caller
            keeps ownership. When None, a client is created and :meth:`close` closes it.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(self, config: TwilioConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._http = VendorHTTP(
            "TwilioSMSProvider",
            code_prefix="twilio",
            client=client,
            timeout=config.timeout,
            logger=logger,
        )

    def __repr__(self) -> str:
        return f"TwilioSMSProvider(account_sid={self._config.account_sid!r})"

    @property
    def config(self) -> TwilioConfig:
        """The provider's configuration (the auth token stays a ``SecretStr``)."""
        return self._config

    @property
    def from_number(self) -> str:
        """The default sender number."""
        return self._config.from_number

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text and media (as MMS, at most ten attachments).

        The sender is ``from_`` when given, else the Messaging Service when configured, else
        :attr:`from_number`.

        Returns:
            ``success=True`` with the Message SID, or ``success=False`` with ``error`` one of
            ``"empty_message"``, ``"missing_recipient"``, ``"timeout"``, ``"network_error"``,
            ``"auth_error"``, ``"rate_limit"`` (``metadata["retry_after"]`` when Twilio said),
            a Twilio error code as ``"twilio_<code>"`` (``"twilio_21211"``), or
            ``"http_<status>"``.
        """
        message = render_outbound(event.content)
        if message.is_empty:
            return ProviderResult(success=False, error="empty_message")
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        config = self._config
        if from_:
            sender = ("From", from_)
        elif config.messaging_service_sid:
            sender = ("MessagingServiceSid", config.messaging_service_sid)
        else:
            sender = ("From", config.from_number)
        outcome = await send_message(
            self._http,
            base_url=config.base_url,
            account_sid=config.account_sid,
            auth_token=config.auth_token,
            to=to,
            sender=sender,
            message=message,
            status_callback=config.status_callback,
            logger=logger,
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        metadata: dict[str, Any] = {"status": outcome.data.get("status")}
        if outcome.media_dropped:
            metadata["media_dropped"] = outcome.media_dropped
        logger.debug("twilio accepted message %s", outcome.sid)
        return ProviderResult(success=True, provider_message_id=outcome.sid, metadata=metadata)

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn an inbound webhook into an :class:`InboundMessage` (see
        :func:`~providers.twilio.webhook.parse_twilio_webhook`).

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_twilio_webhook(payload, channel_id)

    def verify_signature(
        self,
        payload: bytes,
        signature: str,
        timestamp: str | None = None,
        url: str | None = None,
    ) -> bool:
        """Check an ``X-Twilio-Signature`` header with the auth token.

        Args:
            payload: The raw request body (or the decoded form fields).
            signature: The header's value.
            timestamp: Unused (Twilio signs no timestamp); kept for the ABC's signature.
            url: The full URL Twilio called, query string included.

        Raises:
            ValueError: ``url`` is missing (Twilio's signature covers it).
        """
        if not url:
            raise ValueError("Twilio signs the webhook URL: pass url=")
        return verify_twilio_signature(
            self._config.auth_token.get_secret_value(), url, payload, signature
        )

    async def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        await self._http.aclose()
