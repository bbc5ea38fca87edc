"""VoiceMeUp SMS / MMS webhooks.

VoiceMeUp posts one message per webhook (JSON or form fields): ``source_number`` (sender),
``destination_number`` (our number), ``message`` (text), ``direction`` (``incoming`` /
``outgoing``), a message id (``sms_hash`` as 0.3.0 read it, else ``sms_id``, ``message_id`` or
``id``; the inbound message's idempotency key), ``datetime_transmission``,
and for MMS an attachment URL (``attachment`` / ``attachment_url`` / ``media_url``) with its MIME
type (``attachment_mime_type`` / ``attachment_type`` / ``content_type``). Numbers come as digits
and are kept so (``15145550100``), as RoomKit 0.3.0 kept them: bind SMS channels with the number
as VoiceMeUp writes it.

An inbound message's metadata has RoomKit 0.3.0's keys: ``destination_number``, ``direction``
(``"inbound"`` when absent), ``datetime_transmission`` (``""`` when absent) and
``has_attachment``.

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
    parse_timestamp,
    raw_dict,
    webhook_media,
)
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
    sender = get_str(payload, "source_number", "from", "sender")
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
    recipient = get_str(payload, "destination_number", "to", "recipient")
    transmitted = get_str(payload, "datetime_transmission")
    # RoomKit 0.3.0's keys, with its defaults (has_attachment is updated when MMS parts merge).
    extra: dict[str, Any] = {
        "destination_number": recipient,
        "direction": get_str(payload, "direction") or "inbound",
        "datetime_transmission": transmitted,
        "has_attachment": media is not None,
    }
    return WebhookMeta(
        provider="voicemeup",
        direction=direction,
        sender=sender,
        recipient=recipient,
        body=get_str(payload, "message", "body", "text"),
        media=[media] if media is not None else [],
        # 0.3.0's id first: a message's id (its idempotency key) is the one it had then.
        message_id=get_str(payload, "sms_hash", "sms_id", "message_id", "id") or None,
        timestamp=parse_timestamp(transmitted or get_str(payload, "timestamp", "date")),
        extra=extra,
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
        (aggregator or default_voicemeup_aggregator()).note_channel(meta, channel_id)
        return None
    if not meta.is_inbound:
        raise ValueError("VoiceMeUp webhook is not an inbound message")
    return meta.to_inbound(channel_id)
