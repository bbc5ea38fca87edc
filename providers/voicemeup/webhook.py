"""VoiceMeUp SMS / MMS webhooks.

VoiceMeUp posts one message per webhook (JSON or form fields): ``source_number`` (sender),
``destination_number`` (our number), ``message`` (text), ``direction`` (``incoming`` /
``outgoing``), a message id (``sms_id``, ``message_id`` or ``id``), ``datetime_transmission``,
and for MMS an attachment URL (``attachment`` / ``attachment_url`` / ``media_url``) with its MIME
type (``attachment_mime_type`` / ``attachment_type`` / ``content_type``). Numbers come as digits
and are written E.164 here (``15145550100`` and ``5145550100`` → ``+15145550100``) so that the
sender matches the ``phone_number`` of SMS bindings.

VoiceMeUp sends no delivery statuses; ``outgoing`` webhooks (echoes of what we sent) are
neither inbound nor statuses. An MMS arrives as several webhooks, merged by
:class:`~providers.voicemeup.mms.VoiceMeUpMMSAggregator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.sms.meta import (
    WebhookMeta,
    check_payload,
    get_str,
    raw_dict,
    webhook_media,
)
from providers.sms.phone import normalize_phone
from providers.voicemeup.mms import VoiceMeUpMMSAggregator, default_voicemeup_aggregator
from roomkit.models.delivery import InboundMessage

__all__ = ["extract_voicemeup_meta", "parse_voicemeup_webhook", "read_voicemeup_payload"]

_INBOUND = frozenset({"incoming", "inbound", "in", "received", "mo"})
_OUTBOUND = frozenset({"outgoing", "outbound", "out", "sent", "mt"})


def read_voicemeup_payload(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read one VoiceMeUp webhook as is (no MMS merging).

    Raises:
        ValueError: ``payload`` is not a mapping (any mapping is read without error).
    """
    payload = check_payload(payload, "voicemeup")
    sender = _phone(get_str(payload, "source_number", "from", "sender"))
    direction_field = get_str(payload, "direction").lower()
    if direction_field in _OUTBOUND:
        direction: str | None = "outbound"
    elif direction_field in _INBOUND or (not direction_field and sender):
        direction = "inbound"
    else:
        direction = "unknown"  # neither inbound nor a status
    media = webhook_media(
        get_str(payload, "attachment", "attachment_url", "media_url"),
        get_str(payload, "attachment_mime_type", "attachment_type", "content_type"),
    )
    return WebhookMeta(
        provider="voicemeup",
        direction=direction,
        sender=sender,
        recipient=_phone(get_str(payload, "destination_number", "to", "recipient")),
        body=get_str(payload, "message", "body", "text"),
        media=[media] if media is not None else [],
        message_id=get_str(payload, "sms_id", "message_id", "id", "sms_hash") or None,
        timestamp=get_str(payload, "datetime_transmission", "timestamp", "date") or None,
        raw=raw_dict(payload),
    )


def extract_voicemeup_meta(
    payload: Mapping[str, Any], *, aggregator: VoiceMeUpMMSAggregator | None = None
) -> WebhookMeta:
    """Read a VoiceMeUp webhook, merging MMS parts.

    Args:
        payload: The webhook's fields.
        aggregator: Where MMS parts wait for each other; the module's default aggregator when
            None (0.3.0 compatibility: share it only if one kit reads this number's webhooks).

    Returns:
        The meta to process; ``pending=True`` (neither inbound nor status, so
        ``process_webhook`` ignores it) while an attachment waits for its text.

    Raises:
        ValueError: ``payload`` is not a mapping.
    """
    meta = read_voicemeup_payload(payload)
    return (aggregator or default_voicemeup_aggregator()).add(meta)


def parse_voicemeup_webhook(
    payload: Mapping[str, Any],
    channel_id: str,
    *,
    aggregator: VoiceMeUpMMSAggregator | None = None,
) -> InboundMessage | None:
    """Turn a VoiceMeUp inbound webhook into an :class:`InboundMessage`.

    Returns:
        The message, or None while an MMS attachment waits for its text (see
        :func:`extract_voicemeup_meta`).

    Raises:
        ValueError: ``payload`` is not an inbound message (an ``outgoing`` echo, say).
    """
    meta = extract_voicemeup_meta(payload, aggregator=aggregator)
    if meta.pending:
        return None
    if not meta.is_inbound:
        raise ValueError("VoiceMeUp webhook is not an inbound message")
    return meta.to_inbound(channel_id)


def _phone(number: str) -> str:
    """``number`` in E.164 when it reads as one, else as given (short codes, odd input).

    VoiceMeUp serves North America: ten digits are a NANP national number, more digits are
    E.164 without the ``+``.
    """
    if not number:
        return ""
    try:
        if number.isascii() and number.isdigit():
            if len(number) == 10:
                return normalize_phone(number, "US")
            return normalize_phone(f"+{number}")
        return normalize_phone(number)
    except ValueError:
        return number
