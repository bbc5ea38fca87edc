"""The Twilio Messages API call shared by the SMS and RCS providers.

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP Basic auth
(account SID : auth token). Fields: ``To``, ``From`` or ``MessagingServiceSid``, ``Body``, up to
ten ``MediaUrl`` (one field per URL), optional ``StatusCallback``. A created message answers
``201`` with the Message resource (``sid``, ``status``, ``from``, ...); an error answers
``{"code": 21211, "message": "...", "more_info": "...", "status": 400}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers.sms._http import HTTPFailure, VendorHTTP, response_json
from providers.sms._outbound import OutboundMessage

if TYPE_CHECKING:
    import httpx
    from pydantic import SecretStr

__all__ = ["MAX_MEDIA", "TwilioSent", "messages_url", "send_message", "twilio_error"]

MAX_MEDIA = 10
"""Twilio accepts at most ten ``MediaUrl`` per message."""


def messages_url(base_url: str, account_sid: str) -> str:
    """The Messages.json URL of an account."""
    account = quote(account_sid, safe="")
    return f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"


def twilio_error(body: Any) -> tuple[str | None, str | None]:
    """Twilio's ``(code, message)`` from an error body."""
    if not isinstance(body, dict):
        return None, None
    code = body.get("code")
    message = body.get("message")
    return (
        str(code) if isinstance(code, int | str) and code != "" else None,
        message if isinstance(message, str) else None,
    )


@dataclass(frozen=True, slots=True)
class TwilioSent:
    """A message Twilio accepted."""

    sid: str
    data: dict[str, Any]
    media_dropped: int


async def send_message(
    http: VendorHTTP,
    *,
    base_url: str,
    account_sid: str,
    auth_token: SecretStr,
    to: str,
    sender: tuple[str, str],
    message: OutboundMessage,
    status_callback: str | None,
    logger: logging.Logger,
) -> TwilioSent | HTTPFailure:
    """Create one message.

    Args:
        http: The provider's HTTP client.
        base_url: API root.
        account_sid: Account SID.
        auth_token: Auth token (only ever put in the Authorization header).
        to: The ``To`` field.
        sender: ``("From", number)`` or ``("MessagingServiceSid", sid)``.
        message: Text and media.
        status_callback: ``StatusCallback`` URL, if any.
        logger: The vendor's logger.
    """
    form: list[tuple[str, str]] = [("To", to), sender]
    if message.text:
        form.append(("Body", message.text))
    media = message.media[:MAX_MEDIA]
    dropped = len(message.media) - len(media)
    if dropped:
        logger.warning("twilio: %d attachment(s) past the first %d not sent", dropped, MAX_MEDIA)
    form.extend(("MediaUrl", item.url) for item in media)
    if status_callback:
        form.append(("StatusCallback", status_callback))
    outcome = await http.request(
        "POST",
        messages_url(base_url, account_sid),
        data=_form(form),
        auth=http.httpx_module.BasicAuth(account_sid, auth_token.get_secret_value()),
        extract_error=twilio_error,
    )
    if isinstance(outcome, HTTPFailure):
        return outcome
    return _sent(outcome, dropped, http.provider)


def _sent(response: httpx.Response, dropped: int, provider: str) -> TwilioSent | HTTPFailure:
    data = response_json(response)
    if isinstance(data, dict):
        sid = data.get("sid")
        if isinstance(sid, str) and sid:
            return TwilioSent(sid=sid, data=data, media_dropped=dropped)
    return HTTPFailure(
        "invalid_response",
        "Twilio answered without a message sid",
        provider=provider,
        status_code=response.status_code,
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
