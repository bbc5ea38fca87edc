"""Sinch SMS callbacks: inbound (MO) messages and delivery reports.

Sinch posts JSON. An inbound message has ``type`` ``mo_text`` (``body`` is the text),
``mo_binary`` (``body`` is base64 data, not text) or ``mo_media`` (``body`` is an object with
``message`` / ``subject`` and the attachment's ``url``, or a ``media`` list of ``{"url", ...}``),
plus ``id``, ``from``, ``to``, ``received_at``, ``operator_id``. A delivery report is
``delivery_report_sms`` / ``_mms`` (per batch: ``batch_id`` and ``statuses`` of
``{"code", "status", "count", "recipients"}``) or ``recipient_delivery_report_sms`` / ``_mms``
(per recipient: ``batch_id``, ``recipient``, ``code``, ``status``, ``at``). Statuses are
``Queued``, ``Dispatched``, ``Delivered``, ``Failed``, ``Rejected``, ``Aborted``, ``Expired``,
``Unknown`` (lower-cased here); the batch id is the message id of a status.

An inbound message's metadata has RoomKit 0.3.0's keys: ``to``, ``received_at`` (as Sinch wrote
it, or None), ``operator_id`` and ``client_reference`` (None when absent). A ``mo_binary``
body is not text: the message's text is empty and the base64 data is in
``metadata["binary_body"]`` (0.3.0 made it the text, which then reached the room's other
channels as if typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.sms.meta import (
    WebhookMedia,
    WebhookMeta,
    check_payload,
    get_list,
    get_mapping,
    get_str,
    parse_timestamp,
    raw_dict,
    webhook_media,
)
from roomkit.models.delivery import InboundMessage

__all__ = ["extract_sinch_meta", "parse_sinch_webhook"]

_INBOUND_TYPES = frozenset({"mo_text", "mo_binary", "mo_media"})
_BATCH_REPORTS = frozenset({"delivery_report_sms", "delivery_report_mms"})
_RECIPIENT_REPORTS = frozenset({"recipient_delivery_report_sms", "recipient_delivery_report_mms"})
_MAX_MEDIA = 20


def extract_sinch_meta(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read a Sinch callback (inbound message or delivery report).

    Raises:
        ValueError: ``payload`` is not a mapping (any mapping is read without error).
    """
    payload = check_payload(payload, "sinch")
    kind = get_str(payload, "type").lower()
    raw = raw_dict(payload)
    if kind in _INBOUND_TYPES:
        return _inbound_meta(payload, kind, raw)
    if not kind and get_str(payload, "from") and "batch_id" not in payload:
        # Without a type: the shape RoomKit 0.3.0 documented for an inbound message (its
        # text in body, attachments in a top-level media list), read as it read it.
        return _inbound_meta(payload, "mo_text", raw)
    if kind in _RECIPIENT_REPORTS:
        status = get_str(payload, "status").lower()
        return WebhookMeta(
            provider="sinch",
            direction="outbound",
            sender=get_str(payload, "applied_originator"),
            recipient=get_str(payload, "recipient"),
            message_id=get_str(payload, "batch_id") or None,
            status=status or None,
            error_code=_error_code(payload, status),
            timestamp=parse_timestamp(get_str(payload, "at", "operator_status_at")),
            event_type=kind,
            raw=raw,
        )
    if kind in _BATCH_REPORTS:
        statuses = [item for item in get_list(payload, "statuses") if isinstance(item, Mapping)]
        first: Mapping[str, Any] = statuses[0] if statuses else {}
        status = get_str(first, "status").lower()
        recipients = get_list(first, "recipients")
        return WebhookMeta(
            provider="sinch",
            direction="outbound",
            recipient=recipients[0] if recipients and isinstance(recipients[0], str) else "",
            message_id=get_str(payload, "batch_id") or None,
            status=status or None,
            error_code=_error_code(first, status),
            event_type=kind,
            raw=raw,
        )
    return WebhookMeta(provider="sinch", direction="unknown", event_type=kind or None, raw=raw)


def parse_sinch_webhook(payload: Mapping[str, Any], channel_id: str) -> InboundMessage:
    """Turn a Sinch inbound (MO) callback into an :class:`InboundMessage` (the Sinch message id
    is its external id and idempotency key).

    Raises:
        ValueError: ``payload`` is not an inbound message.
    """
    meta = extract_sinch_meta(payload)
    if not meta.is_inbound:
        raise ValueError("Sinch webhook is not an inbound message")
    return meta.to_inbound(channel_id)


def _inbound_meta(payload: Mapping[str, Any], kind: str, raw: dict[str, Any]) -> WebhookMeta:
    media: list[WebhookMedia] = []
    extra: dict[str, Any] = {"message_type": kind}
    if kind == "mo_media":
        content = get_mapping(payload, "body")
        text = get_str(content, "message")
        subject = get_str(content, "subject")
        if subject:
            extra["subject"] = subject
        candidates = [content, *get_list(content, "media")[:_MAX_MEDIA]]
        for item in candidates:
            found = webhook_media(get_str(item, "url"), get_str(item, "content_type", "mime_type"))
            if found is not None:
                media.append(found)
    elif kind == "mo_binary":
        # Binary payloads (e.g. WAP push) are not text; keep them for the application.
        text = ""
        extra["binary_body"] = get_str(payload, "body")
        udh = get_str(payload, "udh")
        if udh:
            extra["udh"] = udh
    else:
        text = get_str(payload, "body")
        for item in get_list(payload, "media")[:_MAX_MEDIA]:  # 0.3.0's untyped shape
            found = webhook_media(get_str(item, "url"), get_str(item, "mimeType", "content_type"))
            if found is not None:
                media.append(found)
    # RoomKit 0.3.0's keys, None when Sinch left them out (applications read them unchecked).
    extra["to"] = get_str(payload, "to")
    extra["received_at"] = get_str(payload, "received_at") or None
    for key in ("operator_id", "client_reference"):
        extra[key] = get_str(payload, key) or None
    return WebhookMeta(
        provider="sinch",
        direction="inbound",
        sender=get_str(payload, "from"),
        recipient=get_str(payload, "to"),
        body=text,
        media=media,
        message_id=get_str(payload, "id") or None,
        timestamp=parse_timestamp(get_str(payload, "received_at", "sent_at")),
        event_type=kind,
        extra=extra,
        raw=raw,
    )


def _error_code(report: Mapping[str, Any], status: str) -> str | None:
    """Sinch's status code of a report that is not a success (0 and delivered mean success)."""
    code = get_str(report, "code")
    if not code or status in ("delivered", "queued", "dispatched") or code == "0":
        return None
    return code
