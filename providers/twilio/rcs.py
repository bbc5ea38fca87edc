"""Twilio RCS over the REST Messages API and an RCS-enabled Messaging Service, with httpx."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers.rcs.base import RCSDeliveryResult, RCSProvider
from providers.sms._http import HTTPFailure, VendorHTTP
from providers.sms._outbound import render_outbound
from providers.twilio._messages import send_message
from providers.twilio.config import TwilioRCSConfig
from providers.twilio.signature import verify_twilio_signature
from providers.twilio.webhook import parse_twilio_rcs_webhook
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["TwilioRCSProvider"]

logger = logging.getLogger("roomkit.providers.twilio")

_RCS_PREFIX = "rcs:"


class TwilioRCSProvider(RCSProvider):
    """Sends RCS messages through a Twilio Messaging Service that has an RCS sender.

    With ``fallback=True`` the recipient is a plain number and Twilio picks RCS when the device
    supports it, SMS otherwise. With ``fallback=False`` the recipient is addressed as
    ``rcs:+…``, which Twilio delivers over RCS only (failing instead of falling back).

    Args:
        config: Account, credentials and Messaging Service.
        client: An ``httpx.AsyncClient`` to use (the caller keeps ownership); when None, one is
            created and :meth:`close` closes it.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self, config: TwilioRCSConfig, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self._config = config
        self._http = VendorHTTP(
            "TwilioRCSProvider",
            code_prefix="twilio",
            client=client,
            timeout=config.timeout,
            logger=logger,
        )

    def __repr__(self) -> str:
        return (
            f"TwilioRCSProvider(account_sid={self._config.account_sid!r}, "
            f"messaging_service_sid={self._config.messaging_service_sid!r})"
        )

    @property
    def config(self) -> TwilioRCSConfig:
        """The provider's configuration."""
        return self._config

    @property
    def sender_id(self) -> str:
        """The RCS-enabled Messaging Service SID."""
        return self._config.messaging_service_sid

    async def send(self, event: RoomEvent, to: str, *, fallback: bool = True) -> RCSDeliveryResult:
        """Send ``event``'s text and media over RCS.

        ``channel_used`` is ``"sms"`` (with ``fallback=True``) when Twilio's answer shows a
        plain-number sender, and ``"rcs"`` otherwise (Twilio only knows the final channel once
        it delivers; the status callback tells).

        Returns:
            The outcome; failures as for :meth:`TwilioSMSProvider.send`.
        """
        message = render_outbound(event.content)
        if message.is_empty:
            return RCSDeliveryResult(success=False, error="empty_message")
        if not to:
            return RCSDeliveryResult(success=False, error="missing_recipient")
        config = self._config
        bare = to[len(_RCS_PREFIX) :] if to.lower().startswith(_RCS_PREFIX) else to
        outcome = await send_message(
            self._http,
            base_url=config.base_url,
            account_sid=config.account_sid,
            auth_token=config.auth_token,
            to=bare if fallback else f"{_RCS_PREFIX}{bare}",
            sender=("MessagingServiceSid", config.messaging_service_sid),
            message=message,
            status_callback=config.status_callback,
            logger=logger,
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(RCSDeliveryResult)
        sent_from = outcome.data.get("from")
        used_sms = (
            fallback
            and isinstance(sent_from, str)
            and bool(sent_from)
            and not sent_from.lower().startswith(_RCS_PREFIX)
        )
        metadata: dict[str, Any] = {"status": outcome.data.get("status")}
        if outcome.media_dropped:
            metadata["media_dropped"] = outcome.media_dropped
        return RCSDeliveryResult(
            success=True,
            provider_message_id=outcome.sid,
            channel_used="sms" if used_sms else "rcs",
            fallback=used_sms,
            metadata=metadata,
        )

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn an inbound RCS webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_twilio_rcs_webhook(payload, channel_id)

    def verify_signature(
        self,
        payload: bytes,
        signature: str,
        timestamp: str | None = None,
        url: str | None = None,
    ) -> bool:
        """Check an ``X-Twilio-Signature`` header (see
        :meth:`TwilioSMSProvider.verify_signature`).

        Raises:
            ValueError: ``url`` is missing.
        """
        if not url:
            raise ValueError("Twilio signs the webhook URL: pass url=")
        return verify_twilio_signature(
            self._config.auth_token.get_secret_value(), url, payload, signature
        )

    async def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        await self._http.aclose()
