"""WhatsApp Cloud API webhooks: inbound messages, delivery statuses and request signatures.

A webhook POST (field ``messages``) looks like::

    {"object": "whatsapp_business_account",
     "entry": [{"id": "<WABA_ID>", "changes": [{"field": "messages", "value": {
         "messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "15550001111", "phone_number_id": "<ID>"},
         "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16315551181"}],
         "messages": [{"from": "16315551181", "id": "wamid.ABC", "timestamp": "1700000000",
                       "type": "text", "text": {"body": "Hello"}}],
         "statuses": [{"id": "wamid.XYZ", "status": "delivered", "timestamp": "1700000001",
                       "recipient_id": "16315551181"}]}}]}]}

Media arrive as an id (``"image": {"id", "mime_type", "sha256", "caption"}``), not a URL: the
parser points the content at the Graph media object (``{media_base_url}/{media id}``), which
answers the short-lived download URL to a request bearing the access token
(:meth:`WhatsAppCloudProvider.get_media_url`). Meta signs the raw body with the app secret in
``X-Hub-Signature-256: sha256=<hex>``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr, ValidationError

from providers._meta import verify_meta_signature, verify_meta_subscription
from providers._text import clean_strings
from providers.errors import ProviderError
from roomkit.models.delivery import DeliveryStatus, InboundMessage
from roomkit.models.event import (
    AudioContent,
    EventContent,
    LocationContent,
    MediaContent,
    TextContent,
    VideoContent,
)

__all__ = [
    "DEFAULT_MEDIA_BASE_URL",
    "media_path",
    "parse_whatsapp_statuses",
    "parse_whatsapp_webhook",
    "verify_whatsapp_signature",
    "verify_whatsapp_subscription",
]

logger = logging.getLogger("roomkit.providers.whatsapp")

DEFAULT_MEDIA_BASE_URL = "https://graph.facebook.com/v21.0"
_PROVIDER = "WhatsAppCloud"


def verify_whatsapp_signature(
    body: bytes | str, signature: str | None, app_secret: SecretStr | str
) -> bool:
    """Whether ``signature`` (the ``X-Hub-Signature-256`` header) signs the raw ``body``.

    Raises:
        ValueError: ``app_secret`` is empty.
    """
    return verify_meta_signature(body, signature, app_secret)


def verify_whatsapp_subscription(
    params: Mapping[str, str], verify_token: SecretStr | str
) -> str | None:
    """Answer Meta's subscription check: the ``hub.challenge`` to echo, or None (answer 403).

    Raises:
        ValueError: ``verify_token`` is empty.
    """
    return verify_meta_subscription(params, verify_token)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _values(payload: Any) -> Iterator[dict[str, Any]]:
    """The ``value`` of every ``messages`` change of the payload."""
    if not isinstance(payload, dict):
        raise ProviderError("WhatsApp webhook payload must be a JSON object", provider=_PROVIDER)
    # Lone surrogates as U+FFFD: one (half an emoji) in a text made the room refuse the
    # message at each of the vendor's retries, so it was lost.
    payload = clean_strings(payload)
    if payload.get("object", "whatsapp_business_account") != "whatsapp_business_account":
        return
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        changes = _dict(entry).get("changes")
        for change in changes if isinstance(changes, list) else []:
            change = _dict(change)
            if change.get("field", "messages") == "messages":
                yield _dict(change.get("value"))


def media_path(media_id: str) -> str:
    """``media_id`` (read from a webhook) as one segment of a Graph URL path.

    Put in the path as it came, ``../../me/accounts?fields=access_token`` sent the request,
    and the access token with it, to another Graph path; a ``.`` or ``..`` alone is a dot
    segment that httpx resolves away, so its dots are escaped too.
    """
    segment = quote(media_id, safe="")
    return segment.replace(".", "%2E") if not segment.strip(".") else segment


def _media_content(
    kind: str, media: dict[str, Any], base_url: str, metadata: dict[str, Any]
) -> EventContent | None:
    media_id = _str(media.get("id"))
    if media_id is None:
        return None
    metadata["media_id"] = media_id
    url = f"{base_url.rstrip('/')}/{media_path(media_id)}"
    mime = _str(media.get("mime_type"))
    caption = _str(media.get("caption"))
    if kind == "audio":
        if media.get("voice") is True:
            metadata["voice_note"] = True
        return AudioContent(url=url, mime_type=mime or "audio/ogg")
    if kind == "video":
        if caption:
            metadata["caption"] = caption  # VideoContent has no caption field
        return VideoContent(url=url, mime_type=mime or "video/mp4")
    default_mime = {"image": "image/jpeg", "sticker": "image/webp"}.get(
        kind, "application/octet-stream"
    )
    return MediaContent(
        url=url,
        mime_type=mime or default_mime,
        filename=_str(media.get("filename")),
        caption=caption,
    )


def _content(
    message: dict[str, Any], base_url: str, metadata: dict[str, Any]
) -> EventContent | None:
    kind = message.get("type")
    if kind == "text":
        body = _str(_dict(message.get("text")).get("body"))
        return None if body is None else TextContent(body=body)
    if kind in ("image", "video", "audio", "document", "sticker"):
        return _media_content(kind, _dict(message.get(kind)), base_url, metadata)
    if kind == "location":
        location = _dict(message.get("location"))
        # Validation rejects missing or out-of-range coordinates (the caller skips the message).
        return LocationContent.model_validate(
            {
                "latitude": location.get("latitude"),
                "longitude": location.get("longitude"),
                "label": _str(location.get("name")),
                "address": _str(location.get("address")),
            }
        )
    if kind == "interactive":
        interactive = _dict(message.get("interactive"))
        reply = _dict(interactive.get(str(interactive.get("type"))))
        title = _str(reply.get("title"))
        if (reply_id := _str(reply.get("id"))) is not None:
            metadata["interactive_reply_id"] = reply_id
        return None if title is None else TextContent(body=title)
    if kind == "button":
        button = _dict(message.get("button"))
        if (payload := _str(button.get("payload"))) is not None:
            metadata["button_payload"] = payload
        text = _str(button.get("text"))
        return None if text is None else TextContent(body=text)
    return None  # reactions, contacts, orders, system and unsupported messages


def _parse_message(
    message: Any, value: dict[str, Any], names: dict[str, str], channel_id: str, base_url: str
) -> InboundMessage | None:
    message = _dict(message)
    sender = _str(message.get("from"))
    if sender is None:
        return None
    info = _dict(value.get("metadata"))
    metadata: dict[str, Any] = {"phone_number": sender}
    for key in ("phone_number_id", "display_phone_number"):
        if (item := _str(info.get(key))) is not None:
            metadata[key] = item
    if sender in names:
        metadata["sender_name"] = names[sender]
    if (timestamp := _str(message.get("timestamp"))) is not None:
        metadata["timestamp"] = timestamp
    if (reply_to := _str(_dict(message.get("context")).get("id"))) is not None:
        metadata["reply_to"] = reply_to
    try:
        content = _content(message, base_url, metadata)
    except ValidationError:
        return None  # e.g. a location out of range: not a message we can represent
    if content is None:
        return None
    message_id = _str(message.get("id"))
    return InboundMessage(
        channel_id=channel_id,
        sender_id=sender,
        content=content,
        external_id=message_id,
        idempotency_key=message_id,
        metadata=metadata,
    )


def parse_whatsapp_webhook(
    payload: Any, channel_id: str, *, media_base_url: str = DEFAULT_MEDIA_BASE_URL
) -> list[InboundMessage]:
    """Turn a WhatsApp Cloud API webhook body into inbound messages.

    Text, media (image, video, audio, document, sticker), location, interactive replies and
    template quick-reply buttons (their title / text as text) become messages; statuses,
    reactions and unsupported types are skipped. The ``wamid`` is the external id and the
    idempotency key. Metadata carries ``phone_number`` (the sender, the channel's recipient key),
    ``phone_number_id``, ``display_phone_number``, ``sender_name``, ``timestamp``, and when
    present ``reply_to``, ``media_id``, ``caption`` (video), ``voice_note``,
    ``interactive_reply_id``, ``button_payload``. Malformed entries are skipped.

    Args:
        payload: The decoded JSON body.
        channel_id: The channel the messages arrive on.
        media_base_url: Graph API root (with version) used to address media objects.

    Returns:
        The messages in payload order (possibly empty).

    Raises:
        ProviderError: ``payload`` is not a JSON object.
    """
    result: list[InboundMessage] = []
    for value in _values(payload):
        names: dict[str, str] = {}
        contacts = value.get("contacts")
        for contact in contacts if isinstance(contacts, list) else []:
            contact = _dict(contact)
            wa_id, name = (
                _str(contact.get("wa_id")),
                _str(_dict(contact.get("profile")).get("name")),
            )
            if wa_id is not None and name is not None:
                names[wa_id] = name
        messages = value.get("messages")
        for message in messages if isinstance(messages, list) else []:
            parsed = _parse_message(message, value, names, channel_id, media_base_url)
            if parsed is not None:
                result.append(parsed)
    return result


def parse_whatsapp_statuses(payload: Any) -> list[DeliveryStatus]:
    """The delivery statuses (``sent``, ``delivered``, ``read``, ``failed``) of a webhook body.

    ``error_code`` / ``error_message`` come from the first entry of ``errors`` of a failed
    status; ``raw`` is the status object.

    Raises:
        ProviderError: ``payload`` is not a JSON object.
    """
    result: list[DeliveryStatus] = []
    for value in _values(payload):
        sender = _str(_dict(value.get("metadata")).get("display_phone_number")) or ""
        statuses = value.get("statuses")
        for status in statuses if isinstance(statuses, list) else []:
            status = _dict(status)
            message_id, state = _str(status.get("id")), _str(status.get("status"))
            if message_id is None or state is None:
                continue
            errors = status.get("errors")
            error = _dict(errors[0]) if isinstance(errors, list) and errors else {}
            code = error.get("code")
            message = _str(error.get("title")) or _str(error.get("message"))
            timestamp = status.get("timestamp")
            result.append(
                DeliveryStatus(
                    provider="whatsapp",
                    message_id=message_id,
                    status=state,
                    recipient=_str(status.get("recipient_id")) or "",
                    sender=sender,
                    error_code=None if code is None else str(code),
                    error_message=message,
                    timestamp=None if timestamp is None else str(timestamp),
                    raw=status,
                )
            )
    return result
