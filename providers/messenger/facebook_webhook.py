"""Messenger webhooks: parsing page events into inbound messages, and checking their origin.

A webhook POST looks like::

    {"object": "page",
     "entry": [{"id": "<PAGE_ID>", "time": 1700000000000,
                "messaging": [{"sender": {"id": "<PSID>"}, "recipient": {"id": "<PAGE_ID>"},
                               "timestamp": 1700000000000,
                               "message": {"mid": "m_...", "text": "hello",
                                           "attachments": [{"type": "image",
                                                            "payload": {"url": "https://..."}}],
                                           "quick_reply": {"payload": "..."}}}]}]}

Button clicks arrive as ``"postback": {"title", "payload", "mid"}`` instead of ``message``. Meta
signs the raw body with the app secret: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from providers._meta import verify_meta_signature, verify_meta_subscription
from providers._text import clean_strings
from providers.errors import ProviderError
from roomkit.models._url import is_http_url
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    MediaContent,
    TextContent,
    VideoContent,
)

__all__ = [
    "parse_messenger_webhook",
    "verify_messenger_signature",
    "verify_messenger_subscription",
]

logger = logging.getLogger("roomkit.providers.messenger")

SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify_messenger_signature(
    body: bytes | str, signature: str | None, app_secret: SecretStr | str
) -> bool:
    """Whether ``signature`` (the ``X-Hub-Signature-256`` header) signs ``body``.

    Args:
        body: The raw request body, exactly as received (not re-serialised JSON).
        signature: The header value, ``sha256=<hex>``.
        app_secret: The Facebook app secret.

    Returns:
        True when the signature matches (constant-time comparison); a malformed signature or
        body is False.

    Raises:
        ValueError: ``app_secret`` is empty.
    """
    return verify_meta_signature(body, signature, app_secret)


def verify_messenger_subscription(
    params: Mapping[str, str], verify_token: SecretStr | str
) -> str | None:
    """Answer Meta's webhook subscription check (``GET`` with ``hub.*`` query parameters).

    Args:
        params: The request's query parameters.
        verify_token: The token you entered when subscribing the webhook.

    Returns:
        The ``hub.challenge`` to echo with HTTP 200 when ``hub.mode`` is ``subscribe`` and
        ``hub.verify_token`` matches; None otherwise (answer 403).

    Raises:
        ValueError: ``verify_token`` is empty.
    """
    return verify_meta_subscription(params, verify_token)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _attachment_content(attachment: Any) -> EventContent | None:
    attachment = _dict(attachment)
    kind = attachment.get("type")
    url = _str(_dict(attachment.get("payload")).get("url"))
    if url is None:
        return None  # fallback / template attachments carry no file
    if not is_http_url(url):
        # Messenger's attachments are on its CDN: a data: URL (inline HTML labelled an
        # image, say) is not one of them, as the SMS parsers refuse it too.
        logger.warning("messenger: attachment left out: not an http(s) URL: %r", url[:80])
        return None
    try:
        # Messenger does not give MIME types: use what its CDN serves for each kind.
        if kind == "image":
            return MediaContent(url=url, mime_type="image/*")
        if kind == "video":
            return VideoContent(url=url)
        if kind == "audio":
            return AudioContent(url=url, mime_type="audio/mp4")
        if kind == "file":
            return MediaContent(url=url, mime_type="application/octet-stream")
    except ValidationError:
        return None
    return None


def _message_content(message: dict[str, Any]) -> EventContent | None:
    parts: list[EventContent] = []
    text = _str(message.get("text"))
    if text is not None:
        parts.append(TextContent(body=text))
    attachments = message.get("attachments")
    if isinstance(attachments, list):
        parts.extend(c for a in attachments if (c := _attachment_content(a)) is not None)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else CompositeContent(parts=parts)


def _parse_item(item: Any, page_id: str | None, channel_id: str) -> InboundMessage | None:
    item = _dict(item)
    sender = _str(_dict(item.get("sender")).get("id"))
    if sender is None:
        return None
    recipient = _str(_dict(item.get("recipient")).get("id")) or page_id
    # recipient_id is 0.3.0's key (always present, "" when unknown); page_id is ours.
    metadata: dict[str, Any] = {"facebook_user_id": sender, "recipient_id": recipient or ""}
    if recipient is not None:
        metadata["page_id"] = recipient
    timestamp = item.get("timestamp")
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        metadata["timestamp"] = timestamp
    message = item.get("message")
    postback = item.get("postback")
    if isinstance(message, dict):
        if message.get("is_echo") is True:
            return None  # our own page's messages, echoed back
        content = _message_content(message)
        mid = _str(message.get("mid"))
        if (payload := _str(_dict(message.get("quick_reply")).get("payload"))) is not None:
            metadata["quick_reply_payload"] = payload
        if (reply_to := _str(_dict(message.get("reply_to")).get("mid"))) is not None:
            metadata["reply_to_mid"] = reply_to
    elif isinstance(postback, dict):
        title = _str(postback.get("title"))
        content = TextContent(body=title) if title is not None else None
        mid = _str(postback.get("mid"))
        if (payload := _str(postback.get("payload"))) is not None:
            metadata["postback_payload"] = payload
    else:
        return None  # delivery / read receipts, reactions, optins, ...
    if content is None:
        return None
    return InboundMessage(
        channel_id=channel_id,
        sender_id=sender,
        content=content,
        external_id=mid,
        idempotency_key=mid,
        metadata=metadata,
    )


def parse_messenger_webhook(payload: Any, channel_id: str) -> list[InboundMessage]:
    """Turn a Messenger webhook body into inbound messages.

    Text messages, messages with image/video/audio/file attachments (a composite when they also
    have text) and postbacks (button clicks, their title as text) become messages; echoes,
    receipts and other events are skipped. The message ``mid`` is the external id and the
    idempotency key, so Meta's retries are de-duplicated. Metadata carries
    ``facebook_user_id`` (the sender PSID, the channel's recipient key), ``recipient_id``
    (0.3.0's key: the page id, ``""`` when unknown), ``page_id``,
    ``timestamp`` and, when present, ``quick_reply_payload``, ``postback_payload`` and
    ``reply_to_mid``. Malformed entries are skipped.

    Args:
        payload: The decoded JSON body.
        channel_id: The channel the messages arrive on.

    Returns:
        The messages in payload order (possibly empty).

    Raises:
        ProviderError: ``payload`` is not a JSON object.
    """
    if not isinstance(payload, dict):
        raise ProviderError(
            "Messenger webhook payload must be a JSON object", provider="FacebookMessenger"
        )
    # Lone surrogates as U+FFFD: one (half an emoji) in a text made the room refuse the
    # message at each of the vendor's retries, so it was lost.
    payload = clean_strings(payload)
    if payload.get("object", "page") not in ("page", "instagram"):
        return []
    entries = payload.get("entry")
    messages: list[InboundMessage] = []
    for entry in entries if isinstance(entries, list) else []:
        entry = _dict(entry)
        items = entry.get("messaging")
        page_id = _str(entry.get("id"))
        for item in items if isinstance(items, list) else []:
            parsed = _parse_item(item, page_id, channel_id)
            if parsed is not None:
                messages.append(parsed)
    if not messages:
        logger.debug("messenger webhook carried no inbound message")
    return messages
