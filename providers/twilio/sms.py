"""Twilio SMS / MMS over the REST Messages API, with httpx (no Twilio SDK)."""

from __future__ import annotations

from typing import Any

from providers._http import HTTPFailure
from providers.sms._outbound import refusal, render_outbound
from providers.sms.base import SMSProvider
from providers.twilio._messages import TwilioMessagesProvider
from providers.twilio.config import TwilioConfig
from providers.twilio.webhook import parse_twilio_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

__all__ = ["TwilioSMSProvider"]


class TwilioSMSProvider(TwilioMessagesProvider[TwilioConfig], SMSProvider):
    """Sends SMS / MMS through Twilio and reads its webhooks.

    Args:
        config: Account, credentials and sender.
        client: An ``httpx.AsyncClient`` to use (e.g. on ``httpx.MockTransport``); the caller
            keeps ownership. When None, a client is created and :meth:`close` closes it.

    Raises:
        ImportError: httpx is not installed.
    """

    def __repr__(self) -> str:
        return f"TwilioSMSProvider(account_sid={self._config.account_sid!r})"

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
        if (refused := refusal(message, to, ProviderResult)) is not None:
            return refused
        config = self._config
        if from_:
            sender = ("From", from_)
        elif config.messaging_service_sid:
            sender = ("MessagingServiceSid", config.messaging_service_sid)
        else:
            sender = ("From", config.from_number)
        sent = await self._create_message(to=to, sender=sender, message=message)
        if isinstance(sent, HTTPFailure):
            return sent.to_result(ProviderResult)
        return ProviderResult(success=True, provider_message_id=sent.sid, metadata=sent.metadata())

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn an inbound webhook into an :class:`InboundMessage` (see
        :func:`~providers.twilio.webhook.parse_twilio_webhook`).

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_twilio_webhook(payload, channel_id)
