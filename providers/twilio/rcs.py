"""Twilio RCS over the REST Messages API and an RCS-enabled Messaging Service, with httpx."""

from __future__ import annotations

from typing import Any

from providers._base import inbound_channel_id
from providers._http import HTTPFailure
from providers.rcs.base import RCSDeliveryResult, RCSProvider
from providers.sms._outbound import refusal, render_outbound
from providers.twilio._messages import TwilioMessagesProvider
from providers.twilio.config import TwilioRCSConfig
from providers.twilio.webhook import parse_twilio_rcs_webhook
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import RoomEvent

__all__ = ["TwilioRCSProvider"]

_RCS_PREFIX = "rcs:"


class TwilioRCSProvider(TwilioMessagesProvider[TwilioRCSConfig], RCSProvider):
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

    def __repr__(self) -> str:
        return (
            f"TwilioRCSProvider(account_sid={self._config.account_sid!r}, "
            f"messaging_service_sid={self._config.messaging_service_sid!r})"
        )

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
        if (refused := refusal(message, to, RCSDeliveryResult)) is not None:
            return refused
        bare = to[len(_RCS_PREFIX) :] if to.lower().startswith(_RCS_PREFIX) else to
        sent = await self._create_message(
            to=bare if fallback else f"{_RCS_PREFIX}{bare}",
            sender=("MessagingServiceSid", self._config.messaging_service_sid),
            message=message,
        )
        if isinstance(sent, HTTPFailure):
            return sent.to_result(RCSDeliveryResult)
        sent_from = sent.data.get("from")
        used_sms = (
            fallback
            and isinstance(sent_from, str)
            and bool(sent_from)
            and not sent_from.lower().startswith(_RCS_PREFIX)
        )
        return RCSDeliveryResult(
            success=True,
            provider_message_id=sent.sid,
            channel_used="sms" if used_sms else "rcs",
            fallback=used_sms,
            metadata=sent.metadata(),
        )

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound RCS webhook into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_twilio_rcs_webhook(payload, inbound_channel_id(self, channel_id))
