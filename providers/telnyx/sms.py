"""Telnyx SMS / MMS over the v2 Messages API, with httpx (no Telnyx SDK)."""

from __future__ import annotations

from typing import Any

from providers._base import inbound_channel_id
from providers._http import HTTPFailure
from providers.sms._errors import SMSErrorStyle
from providers.sms._outbound import refusal, render_outbound
from providers.sms.base import SMSProvider
from providers.telnyx._api import TelnyxMessagingProvider
from providers.telnyx.config import TelnyxConfig
from providers.telnyx.webhook import parse_telnyx_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["TelnyxSMSProvider"]


class TelnyxSMSProvider(TelnyxMessagingProvider[TelnyxConfig], SMSProvider):
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

    error_style = SMSErrorStyle.INVALID_REQUEST

    def __repr__(self) -> str:
        return f"TelnyxSMSProvider(from_number={self._config.from_number!r})"

    @property
    def from_number(self) -> str:
        """The default sender number."""
        return self._config.from_number

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text and media (``media_urls``, making it an MMS).

        Returns:
            ``success=True`` with the Telnyx message id (None, with a warning logged, when
            Telnyx's 2xx answer names none), or ``success=False`` with ``error`` one of
            ``"empty_message"``, ``"missing_recipient"``, ``"timeout"``, ``"auth_error"``
            (401), ``"rate_limit"`` (429), ``"invalid_request"`` (400; Telnyx's code in
            ``metadata["vendor_code"]``), ``"http_<status>"`` (any other status, 403
            included) or the text of a failed connection, as in RoomKit 0.3.0.
        """
        message = render_outbound(event.content)
        if (refused := refusal(message, to, ProviderResult)) is not None:
            return refused
        sent = await self._create_message({"from": from_ or self.from_number, "to": to}, message)
        if isinstance(sent, HTTPFailure):
            return sent.to_result(ProviderResult)
        return ProviderResult(
            success=True,
            provider_message_id=sent.id,
            metadata={"status": sent.status, "type": sent.data.get("type")},
        )

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn a ``message.received`` webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_telnyx_webhook(payload, inbound_channel_id(self, channel_id))
