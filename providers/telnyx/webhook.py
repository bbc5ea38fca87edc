"""Telnyx messaging webhooks: inbound SMS / MMS / RCS and delivery status events.

Telnyx posts JSON ``{"data": {"event_type": ..., "id": ..., "occurred_at": ..., "payload":
{...message...}, "record_type": "event"}, "meta": {...}}``. The message has ``id``,
``direction`` (``inbound`` / ``outbound``), ``type`` (``SMS``, ``MMS``, ``RCS``), ``from``
(``{"phone_number": ...}``), ``to`` (a list of ``{"phone_number": ..., "status": ...}``),
``text``, ``media`` (``[{"url", "content_type", ...}]``) and ``errors``.

``message.received`` is an inbound message; ``message.sent`` and ``message.finalized`` report
the delivery of a message we sent. :attr:`WebhookMeta.status` is then the recipient's
``status`` (``sent``, ``delivered``, ``sending_failed``, ``delivery_failed``,
``delivery_unconfirmed``), while the ``DeliveryStatus`` of ``to_status()`` says ``sent`` or
``finalized``, from the event type, as in RoomKit 0.3.0 (the recipient's status stays in its
``raw`` payload, ``data.payload.to[0].status``).

An inbound message's metadata has RoomKit 0.3.0's keys: ``destination_number`` and
``received_at`` (as Telnyx wrote it) for SMS / MMS; ``agent_id``, ``agent_name`` (``""`` when
absent), ``received_at``, ``type`` (``"RCS"`` when absent), ``suggestion_response`` and
``location`` (the objects as Telnyx sent them, or None) for RCS. An RCS ``user_file``
(``{"payload": {"file_uri", "mime_type"}}``) is an attachment, as in 0.3.0.
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

__all__ = [
    "extract_telnyx_meta",
    "extract_telnyx_rcs_meta",
    "parse_telnyx_rcs_webhook",
    "parse_telnyx_webhook",
]

_STATUS_EVENTS = frozenset({"message.sent", "message.finalized"})
_MAX_MEDIA = 20


def extract_telnyx_meta(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read a Telnyx messaging webhook (inbound message or status event).

    Raises:
        ValueError: ``payload`` is not a mapping (any mapping is read without error).
    """
    return _extract(check_payload(payload, "telnyx"), rcs=False)


def extract_telnyx_rcs_meta(payload: Mapping[str, Any]) -> WebhookMeta:
    """Read a Telnyx RCS webhook: like :func:`extract_telnyx_meta`, with the text of a tapped
    suggestion as the body when there is no text, and ``channel`` plus ``postback_data`` in
    ``extra``.

    Raises:
        ValueError: ``payload`` is not a mapping.
    """
    return _extract(check_payload(payload, "telnyx"), rcs=True)


def parse_telnyx_webhook(
    payload: Mapping[str, Any], channel_id: str, *, strict: bool = True
) -> InboundMessage:
    """Turn a Telnyx ``message.received`` webhook into an :class:`InboundMessage` (the message
    id is its external id and idempotency key).

    ``strict=False`` (0.3.0's switch, not recommended) converts a webhook that is not an
    inbound message all the same, if it names a sender.

    Raises:
        ValueError: ``payload`` is not an inbound message (with ``strict=False``: it names no
            sender, or is not a mapping).
    """
    return _inbound(extract_telnyx_meta(payload), channel_id, strict)


def parse_telnyx_rcs_webhook(
    payload: Mapping[str, Any], channel_id: str, *, strict: bool = True
) -> InboundMessage:
    """Turn a Telnyx inbound RCS webhook into an :class:`InboundMessage`.

    ``strict``: as for :func:`parse_telnyx_webhook`.

    Raises:
        ValueError: ``payload`` is not an inbound message.
    """
    return _inbound(extract_telnyx_rcs_meta(payload), channel_id, strict)


def _inbound(meta: WebhookMeta, channel_id: str, strict: bool) -> InboundMessage:
    if not strict and not meta.is_inbound:
        meta = meta.model_copy(update={"direction": "inbound", "pending": False})
    return meta.to_inbound(channel_id)


def _is_telnyx_inbound(event_type: str, direction: str) -> bool:
    """A ``message.received`` event, or an inbound message without an event type."""
    return event_type == "message.received" or (not event_type and direction == "inbound")


def _extract(payload: Mapping[str, Any], *, rcs: bool) -> WebhookMeta:
    data = get_mapping(payload, "data")
    event_type = get_str(data, "event_type").lower()
    message = get_mapping(data, "payload")
    direction = get_str(message, "direction").lower()
    recipients = [item for item in get_list(message, "to") if isinstance(item, Mapping)]
    first_recipient: Mapping[str, Any] = recipients[0] if recipients else {}
    sender = _address(message.get("from"))
    recipient = _address(first_recipient) or _address(message.get("to"))
    body = get_str(message, "text") or get_str(get_mapping(message, "body"), "text")
    received_at = get_str(message, "received_at")
    extra: dict[str, Any] = {}
    media: list[WebhookMedia] = _media(message)
    if rcs:
        agent = get_mapping(message, "to")
        # RoomKit 0.3.0's keys, with its defaults; the objects as Telnyx sent them.
        extra.update(
            agent_id=get_str(agent, "agent_id"),
            agent_name=get_str(agent, "agent_name"),
            received_at=received_at or None,
            type=get_str(message, "type") or "RCS",
            suggestion_response=_object(message, "suggestion_response"),
            location=_object(message, "location"),
        )
        extra["channel"] = get_str(message, "type").lower() or "rcs"
        suggestion = get_mapping(message, "suggestion_response")
        body = body or get_str(suggestion, "text")
        postback = get_str(suggestion, "postback_data")
        if postback:
            extra["postback_data"] = postback
        user_file = get_mapping(get_mapping(message, "user_file"), "payload")
        shared = webhook_media(get_str(user_file, "file_uri"), get_str(user_file, "mime_type"))
        if shared is not None and len(media) < _MAX_MEDIA:
            media.append(shared)
    else:
        extra.update(destination_number=recipient, received_at=received_at or None)
    errors = [item for item in get_list(message, "errors") if isinstance(item, Mapping)]
    first_error: Mapping[str, Any] = errors[0] if errors else {}
    inbound = _is_telnyx_inbound(event_type, direction)
    status = ""
    if not inbound and (event_type in _STATUS_EVENTS or direction == "outbound"):
        status = get_str(first_recipient, "status").lower() or event_type.removeprefix("message.")
    for key, field in (("message_type", "type"), ("messaging_profile_id", "messaging_profile_id")):
        value = get_str(message, field)
        if value and inbound:
            extra[key] = value
    if inbound and get_str(data, "id"):
        extra["telnyx_event_id"] = get_str(data, "id")
    # The message's own time, else (absent or unreadable) the event's.
    timestamp = parse_timestamp(
        received_at if inbound else get_str(message, "completed_at", "sent_at")
    ) or parse_timestamp(get_str(data, "occurred_at"))
    return WebhookMeta(
        provider="telnyx",
        direction="inbound"
        if inbound
        else ("outbound" if status or direction == "outbound" else "unknown"),
        sender=sender,
        recipient=recipient,
        body=body,
        media=media if inbound else [],
        message_id=get_str(message, "id") or None,
        status=status or None,
        error_code=get_str(first_error, "code") or None,
        error_message=get_str(first_error, "detail", "title") or None,
        timestamp=timestamp,
        event_type=event_type or None,
        extra=extra,
        raw=raw_dict(payload),
    )


def _address(value: object) -> str:
    """A phone number (or RCS agent id) from a ``{"phone_number": ...}`` object or a string."""
    if isinstance(value, str):
        return value
    return get_str(value, "phone_number", "agent_id")


def _object(message: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """``message[key]`` as a plain dict when it is an object, else None."""
    value = message.get(key)
    return dict(value) if isinstance(value, Mapping) else None


def _media(message: Mapping[str, Any]) -> list[WebhookMedia]:
    items = (
        webhook_media(get_str(item, "url"), get_str(item, "content_type"))
        for item in get_list(message, "media")[:_MAX_MEDIA]
        if isinstance(item, Mapping)
    )
    return [item for item in items if item is not None]
