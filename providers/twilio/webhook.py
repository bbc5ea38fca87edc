"""Twilio messaging webhooks: inbound SMS / MMS / RCS and delivery status callbacks.

Twilio posts form fields. An inbound message has ``MessageSid``, ``From``, ``To``, ``Body``,
``NumMedia`` with ``MediaUrl{i}`` / ``MediaContentType{i}``, and ``SmsStatus=received``; a
status callback of a message we sent has ``MessageSid``, ``MessageStatus`` (``queued``, ``sent``,
``delivered``, ``undelivered``, ``failed``, ``read``, ...) and, on failure, ``ErrorCode``. RCS
uses the same fields with addresses prefixed ``rcs:`` and, for suggested-reply taps,
``ButtonText`` / ``ButtonPayload``.

Pass the form as a dict (a list value, as from ``parse_qs``, is read by its first element).

An inbound message's metadata has RoomKit 0.3.0's keys, with its defaults when Twilio left a
field out: ``to``, ``account_sid`` (``""``), ``num_media`` (``"0"``) and, for SMS / MMS,
``from_city``, ``from_state``, ``from_country`` (None); for RCS, ``channel`` (Twilio's
``Channel``, ``"rcs"`` when absent) and ``messaging_service_sid`` (``""``). The other caller
details Twilio sends are added when present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.sms.meta import (
    WebhookMedia,
    WebhookMeta,
    check_payload,
    get_str,
    raw_dict,
    webhook_media,
)
from roomkit.models.delivery import InboundMessage

__all__ = [
    "extract_twilio_meta",
    "extract_twilio_rcs_meta",
    "parse_twilio_rcs_webhook",
    "parse_twilio_webhook",
]

_MAX_MEDIA = 10
_INBOUND_STATUSES = frozenset({"received", "receiving"})
# Caller details Twilio adds to inbound messages; copied to the inbound message's metadata
# when present.
_EXTRA_FIELDS = {
    "AccountSid": "account_sid",
    "MessagingServiceSid": "messaging_service_sid",
    "NumSegments": "num_segments",
    "FromCity": "from_city",
    "FromState": "from_state",
    "FromZip": "from_zip",
    "FromCountry": "from_country",
}
# The metadata keys RoomKit 0.3.0's parsers always set, with their values for an absent field
# (applications read them without checking).
_KEYS_0_3_0: dict[str, tuple[str, str | None]] = {
    "to": ("To", ""),
    "account_sid": ("AccountSid", ""),
    "num_media": ("NumMedia", "0"),
}
_SMS_KEYS_0_3_0: dict[str, tuple[str, str | None]] = {
    "from_city": ("FromCity", None),
    "from_state": ("FromState", None),
    "from_country": ("FromCountry", None),
}
_RCS_KEYS_0_3_0: dict[str, tuple[str, str | None]] = {
    "channel": ("Channel", "rcs"),
    "messaging_service_sid": ("MessagingServiceSid", ""),
}


def extract_twilio_meta(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read a Twilio SMS / MMS webhook (inbound message or status callback).

    Raises:
        ValueError: ``payload`` is not a mapping (any mapping is read without error).
    """
    return _extract(check_payload(payload, "twilio"), rcs=False)


def extract_twilio_rcs_meta(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read a Twilio RCS webhook: like :func:`extract_twilio_meta`, with a tapped suggestion's
    ``ButtonText`` as the body when there is no ``Body``, and ``channel`` (Twilio's
    ``Channel``, ``"rcs"`` when absent, as in RoomKit 0.3.0) plus ``button_payload`` in
    ``extra``. Addresses are kept as Twilio wrote them (``rcs:…``), as 0.3.0 kept them.

    Raises:
        ValueError: ``payload`` is not a mapping.
    """
    return _extract(check_payload(payload, "twilio"), rcs=True)


def parse_twilio_webhook(payload: Mapping[str, Any], channel_id: str) -> InboundMessage:
    """Turn a Twilio inbound SMS / MMS webhook into an :class:`InboundMessage`.

    The ``MessageSid`` is the message's external id and idempotency key.

    Raises:
        ValueError: ``payload`` is not an inbound message (a status callback, say).
    """
    return extract_twilio_meta(payload).to_inbound(channel_id)


def parse_twilio_rcs_webhook(payload: Mapping[str, Any], channel_id: str) -> InboundMessage:
    """Turn a Twilio inbound RCS webhook into an :class:`InboundMessage`.

    Raises:
        ValueError: ``payload`` is not an inbound message.
    """
    return extract_twilio_rcs_meta(payload).to_inbound(channel_id)


def _extract(payload: Mapping[str, Any], *, rcs: bool) -> WebhookMeta:
    message_id = get_str(payload, "MessageSid", "SmsMessageSid", "SmsSid") or None
    status = get_str(payload, "MessageStatus", "SmsStatus").lower()
    sender = get_str(payload, "From")
    recipient = get_str(payload, "To")
    body = get_str(payload, "Body")
    media = _media(payload)
    extra: dict[str, Any] = {
        key: get_str(payload, field) or default
        for key, (field, default) in (
            _KEYS_0_3_0 | (_RCS_KEYS_0_3_0 if rcs else _SMS_KEYS_0_3_0)
        ).items()
    }
    extra.update(
        (key, value) for field, key in _EXTRA_FIELDS.items() if (value := get_str(payload, field))
    )
    if rcs:
        button_payload = get_str(payload, "ButtonPayload")
        if button_payload:
            extra["button_payload"] = button_payload
        body = body or get_str(payload, "ButtonText")
    location = _location(payload)
    if location is not None:
        extra["location"] = location
    inbound = status in _INBOUND_STATUSES or (
        not status and ("Body" in payload or media or location is not None)
    )
    if inbound:
        direction: str | None = "inbound"
    elif status:
        direction = "outbound"
    else:
        direction = "unknown"  # neither inbound nor a status
    return WebhookMeta(
        provider="twilio",
        direction=direction,
        sender=sender,
        recipient=recipient,
        body=body,
        media=media,
        message_id=message_id,
        status=None if inbound else (status or None),
        error_code=get_str(payload, "ErrorCode") or None,
        error_message=get_str(payload, "ErrorMessage") or None,
        event_type=status or None,
        extra=extra if inbound else {},
        raw=raw_dict(payload),
    )


def _location(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """A shared location (Twilio's WhatsApp: ``Latitude``, ``Longitude``, ``Label``,
    ``Address``), or None when there is none or its coordinates are not a point on Earth."""
    try:
        latitude = float(get_str(payload, "Latitude"))
        longitude = float(get_str(payload, "Longitude"))
    except ValueError:  # absent ("") or not a number
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):  # NaN fails both
        return None
    return {
        "latitude": latitude,
        "longitude": longitude,
        "label": get_str(payload, "Label") or None,
        "address": get_str(payload, "Address") or None,
    }


def _media(payload: Mapping[str, Any]) -> list[WebhookMedia]:
    # MediaUrl0..MediaUrl9 are read directly: NumMedia is attacker-controlled and redundant.
    items = (
        webhook_media(get_str(payload, f"MediaUrl{i}"), get_str(payload, f"MediaContentType{i}"))
        for i in range(_MAX_MEDIA)
    )
    return [item for item in items if item is not None]
