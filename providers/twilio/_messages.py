"""The Twilio Messages API, shared by the SMS and RCS providers.

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP Basic auth
(account SID : auth token). Fields: ``To``, ``From`` or ``MessagingServiceSid``, ``Body``, up to
ten ``MediaUrl`` (one field per URL), optional ``StatusCallback``. A created message answers
``201`` with the Message resource (``sid``, ``status``, ``from``, ...); an error answers
``{"code": 21211, "message": "...", "more_info": "...", "status": 400}``.

Failures keep RoomKit 0.3.0's codes (:mod:`providers.sms._errors`; a failed connection gives the
exception's text). A ``2xx`` answer is a sent message even without a ``sid`` (the id is then
None and a warning is logged): Twilio accepted it, so failing would make the router send it
again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from providers._http import HTTPFailure, accepted_id, code_and_message, response_json
from providers._vendor import VendorProvider
from providers.sms._errors import SMSErrorStyle, sms_error_parser
from providers.twilio.config import TwilioConfig, TwilioRCSConfig
from providers.twilio.signature import verify_twilio_signature

if TYPE_CHECKING:
    import httpx

    from providers.sms._outbound import OutboundMessage

__all__ = ["MAX_MEDIA", "TwilioMessagesProvider", "TwilioSent", "twilio_error"]

logger = logging.getLogger("roomkit.providers.twilio")

MAX_MEDIA = 10
"""Twilio accepts at most ten ``MediaUrl`` per message."""

C = TypeVar("C", bound=TwilioConfig | TwilioRCSConfig)


def twilio_error(body: Any) -> tuple[str | None, str | None]:
    """Twilio's ``(code, message)`` from an error body."""
    if not isinstance(body, dict):
        return None, None
    return code_and_message(body.get("code"), body.get("message"))


_ERRORS = sms_error_parser(twilio_error, "twilio", SMSErrorStyle.VENDOR_CODE)


@dataclass(frozen=True, slots=True)
class TwilioSent:
    """A message Twilio accepted (``sid`` None when its answer named none)."""

    sid: str | None
    data: dict[str, Any]
    media_dropped: int

    def metadata(self) -> dict[str, Any]:
        """``status`` and, when attachments were left out, ``media_dropped``."""
        metadata: dict[str, Any] = {"status": self.data.get("status")}
        if self.media_dropped:
            metadata["media_dropped"] = self.media_dropped
        return metadata


def _basic_credentials(config: TwilioConfig | TwilioRCSConfig) -> SecretStr:
    """``"<account sid>:<auth token>"``, which Basic authentication sends (in base64)."""
    return SecretStr(f"{config.account_sid}:{config.auth_token.get_secret_value()}")


class TwilioMessagesProvider(VendorProvider[C]):
    """Mixin of the Twilio providers: their client, message creation and webhook signature
    check. Constructor arguments as for :class:`~providers.twilio.TwilioSMSProvider`."""

    def __init__(self, config: C, *, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(
            config,
            client=client,
            code_prefix="twilio",
            # The Basic credentials too: a vendor error may echo the header's base64 of them.
            secrets=[config.auth_token, _basic_credentials(config)],
            logger=logger,
        )

    async def _create_message(
        self, *, to: str, sender: tuple[str, str], message: OutboundMessage
    ) -> TwilioSent | HTTPFailure:
        """Create one message.

        Args:
            to: The ``To`` field.
            sender: ``("From", number)`` or ``("MessagingServiceSid", sid)``.
            message: Text and media (past :data:`MAX_MEDIA` attachments are dropped).
        """
        config = self._config
        form: list[tuple[str, str]] = [("To", to), sender]
        if message.text:
            form.append(("Body", message.text))
        media = message.media[:MAX_MEDIA]
        dropped = len(message.media) - len(media)
        if dropped:
            logger.warning(
                "twilio: %d attachment(s) past the first %d not sent", dropped, MAX_MEDIA
            )
        form.extend(("MediaUrl", item.url) for item in media)
        if config.status_callback:
            form.append(("StatusCallback", config.status_callback))
        http = self._http
        outcome = await http.request(
            "POST",
            config.api_url,
            data=_form(form),
            auth=http.httpx_module.BasicAuth(
                config.account_sid, config.auth_token.get_secret_value()
            ),
            error_parser=_ERRORS,
        )
        if isinstance(outcome, HTTPFailure):
            return http.transport_error_as_text(outcome)
        data = response_json(outcome)
        if not isinstance(data, dict):
            data = {}
        sid = accepted_id("twilio", data.get("sid"), outcome.status_code)
        return TwilioSent(sid=sid, data=data, media_dropped=dropped)

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
            url: The full URL Twilio called, query string included. Without it no signature
                can be checked: False, as in 0.3.0, with a warning (Twilio signs the URL).
        """
        if not url:
            logger.warning(
                "Twilio signature not checked: Twilio signs the webhook URL, pass "
                "verify_signature(..., url=request_url); answered False"
            )
            return False
        return verify_twilio_signature(
            self._config.auth_token.get_secret_value(), url, payload, signature
        )


def _form(fields: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form fields for httpx; a repeated name becomes a list, which httpx encodes as one field
    per element (how Twilio reads ``MediaUrl``)."""
    form: dict[str, str | list[str]] = {}
    for name, value in fields:
        current = form.get(name)
        if current is None:
            form[name] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            form[name] = [current, value]
    return form
