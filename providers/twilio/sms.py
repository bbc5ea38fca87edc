"""Twilio SMS / MMS over the REST Messages API, with httpx (no Twilio SDK)."""

from __future__ import annotations

from typing import Any

from providers._base import inbound_channel_id
from providers._http import HTTPFailure
from providers.sms._outbound import refusal, render_outbound
from providers.sms.base import SMSProvider
from providers.twilio._messages import TwilioMessagesProvider, logger
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

        The sender is the Messaging Service when one is configured, whatever ``from_`` says (as
        in RoomKit 0.3.0: the service picks its sender), else ``from_`` or :attr:`from_number`.

        Returns:
            ``success=True`` with the Message SID (None, with a warning logged, when Twilio's
            2xx answer names none), or ``success=False`` with ``error`` one of
            ``"empty_message"``, ``"missing_recipient"``, ``"timeout"``, ``"auth_error"``
            (401), ``"rate_limit"`` (429; ``metadata["retry_after"]`` when Twilio said), a
            Twilio error code of a 400 as ``"twilio_<code>"`` (``"twilio_21211"``),
            ``"invalid_request"`` (a 400 without a JSON body), ``"http_<status>"`` (any other
            status, 403 included), or the text of a failed connection (``"conn refused"``).
        """
        message = render_outbound(event.content)
        if (refused := refusal(message, to, ProviderResult)) is not None:
            return refused
        config = self._config
        sender: tuple[str, str]
        if config.messaging_service_sid:
            # 0.3.0 always sent through the configured service; its callers (SMSChannel passes
            # the binding's number as from_) rely on the service choosing the sender.
            if from_:
                logger.debug("twilio: sending through the Messaging Service, not from %s", from_)
            sender = ("MessagingServiceSid", config.messaging_service_sid)
        else:
            sender = ("From", from_ or config.from_number)
        sent = await self._create_message(to=to, sender=sender, message=message)
        if isinstance(sent, HTTPFailure):
            return sent.to_result(ProviderResult)
        return ProviderResult(success=True, provider_message_id=sent.sid, metadata=sent.metadata())

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound webhook into an :class:`InboundMessage` (see
        :func:`~providers.twilio.webhook.parse_twilio_webhook`).

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_twilio_webhook(payload, inbound_channel_id(self, channel_id))
