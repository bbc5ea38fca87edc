"""Vendor-neutral view of an SMS webhook: :class:`WebhookMeta` and :func:`extract_sms_meta`.

A vendor webhook is either an inbound message (someone texted us), a delivery status of a message
we sent, or something else (an outbound echo, an event we do not handle). ``extract_sms_meta``
reads any of the four SMS vendors' payloads into a :class:`WebhookMeta`, which
``RoomKit.process_webhook(meta, channel_id)`` routes: ``is_inbound`` → ``to_inbound(channel_id)``
→ ``process_inbound``; ``is_status`` → ``to_status()`` → ``process_delivery_status``.

Extractors never raise on a mapping, whatever it holds: webhooks are attacker-controlled input,
and anything unreadable just yields a meta that is neither inbound nor a status. Only
``to_inbound`` (called on what is not an inbound message) and a non-mapping payload raise
``ValueError``; ``to_status`` answers for any meta, as in RoomKit 0.3.0 (``status="unknown"``
for one that is not a status).

The content helpers ``extract_text_body``, ``extract_media_urls`` and ``build_inbound_content``
take RoomKit 0.3.0's arguments (an event's content; a text and media dicts) as well as this
package's (a vendor name and its payload; a text and :class:`WebhookMedia`).

The small ``get_*`` helpers below are what the vendor parsers use to read untrusted payloads.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from providers._lazy import lazy_exports
from providers._positional import as_keywords
from providers._text import clean_strings
from roomkit.models._url import is_http_url
from roomkit.models.delivery import DeliveryStatus, InboundMessage
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    SystemContent,
    TemplateContent,
    TextContent,
    VideoContent,
)

if TYPE_CHECKING:
    from providers.voicemeup.mms import VoiceMeUpMMSAggregator

__all__ = [
    "SMS_WEBHOOK_PROVIDERS",
    "WebhookMedia",
    "WebhookMeta",
    "build_inbound_content",
    "check_payload",
    "extract_media_urls",
    "extract_sms_meta",
    "extract_text_body",
    "get_list",
    "get_mapping",
    "get_str",
    "parse_timestamp",
    "raw_dict",
    "webhook_media",
]

SMS_WEBHOOK_PROVIDERS = ("voicemeup", "telnyx", "twilio", "sinch")
"""Provider names :func:`extract_sms_meta` understands."""

logger = logging.getLogger("roomkit.providers.sms")

_DEFAULT_MIME = "application/octet-stream"


# RoomKit 0.3.0's WebhookMeta (a dataclass): its positional order, and the event types by
# which it told a status (and a message we sent) from an inbound message.
_ORDER_0_3_0 = (
    "provider",
    "sender",
    "recipient",
    "body",
    "external_id",
    "timestamp",
    "raw",
    "media_urls",
    "direction",
    "event_type",
)
_STATUS_EVENTS_0_3_0 = frozenset(
    {"message.sent", "message.delivered", "message.failed", "message.finalized"}
)


def _media_of(item: Any) -> WebhookMedia:
    """One of 0.3.0's ``media_urls`` entries (``{"url": ..., "mime_type": ...}``).

    Raises:
        ValueError: it is not such a mapping, or its URL is not http(s) (refused, not dropped).
    """
    url = item.get("url") if isinstance(item, Mapping) else None
    media = webhook_media(url, item.get("mime_type")) if isinstance(url, str) else None
    if media is None:
        raise ValueError(f"a media_urls entry is {{'url': 'http(s)://...'}}, not {item!r}")
    return media


class WebhookMedia(BaseModel):
    """One attachment of an inbound MMS: its URL and MIME type (as the vendor said, or guessed
    from the URL)."""

    model_config = ConfigDict(frozen=True)

    url: str
    mime_type: str = _DEFAULT_MIME


class WebhookMeta(BaseModel):
    """What a vendor webhook says, in vendor-neutral fields.

    It is also made as RoomKit 0.3.0 made it, positionally in 0.3.0's order (``provider,
    sender, recipient, body, external_id, timestamp, raw, media_urls, direction,
    event_type``) or by those names: ``external_id`` is ``message_id``, ``media_urls`` (dicts
    with an http(s) ``url`` and a ``mime_type``) become ``media``, and a status ``event_type``
    (``"message.delivered"``, ...) without an inbound direction gives ``status``. A name it
    does not know is refused, not dropped.

    Attributes:
        provider: Vendor name (``"twilio"``, ``"telnyx"``, ``"sinch"``, ``"voicemeup"``).
        direction: ``"inbound"`` (a message to us), ``"outbound"`` (about a message we sent),
            ``"unknown"`` when a vendor payload said neither (it is then neither inbound nor a
            status), or None when not given: as in 0.3.0, such a meta with a sender is an
            inbound message, unless it has a ``status`` (or a status ``event_type``).
        sender: Who sent the message (phone number, as the vendor wrote it).
        recipient: Who it was sent to.
        body: Text of the message.
        media: Attachments (http(s) URLs only).
        message_id: The vendor's message id.
        status: Delivery status (lower-case, the vendor's vocabulary) for status events.
        error_code: The vendor's error code of a failed delivery.
        error_message: The vendor's error text of a failed delivery.
        timestamp: When the vendor says it happened, if it did, as a ``datetime`` (as in
            RoomKit 0.3.0; an ISO 8601 text given here is read into one). Aware when the
            vendor gave a zone, naive otherwise (VoiceMeUp's ``datetime_transmission``).
        event_type: The vendor's event name, when it has one (``message.received``, ...).
        pending: The message is held back until its other half arrives (VoiceMeUp splits an
            MMS into several webhooks); a pending meta is neither inbound nor a status.
        extra: Vendor-specific details copied into the inbound message's metadata.
        raw: The payload as received.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    direction: str | None = None
    sender: str = ""
    recipient: str = ""
    body: str = ""
    media: list[WebhookMedia] = Field(default_factory=list)
    message_id: str | None = None
    status: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    timestamp: datetime | None = None
    event_type: str | None = None
    pending: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, *args: Any, **data: Any) -> None:
        super().__init__(**as_keywords("WebhookMeta", _ORDER_0_3_0, args, data))

    @model_validator(mode="before")
    @classmethod
    def _from_0_3_0(cls, data: Any) -> Any:
        """Read 0.3.0's ``external_id`` and ``media_urls``, and its status event types."""
        if not isinstance(data, dict):
            return data
        # Every vendor's fields, ``raw`` too: a lone surrogate (``"see you \\ud83d"``) made the
        # room refuse the message at each of the vendor's retries; it is lost no more.
        data = clean_strings(dict(data))
        if "external_id" in data:
            external_id = data.pop("external_id")
            if data.setdefault("message_id", external_id) != external_id:
                raise ValueError("external_id and message_id differ (they are one field)")
        if "media_urls" in data:
            if "media" in data:
                raise ValueError("give media or media_urls, not both (they are one field)")
            data["media"] = [_media_of(item) for item in data.pop("media_urls") or []]
        event_type = data.get("event_type")
        if (
            data.get("status") is None
            and data.get("direction") in (None, "outbound")
            and event_type in _STATUS_EVENTS_0_3_0
        ):
            data["status"] = event_type.removeprefix("message.")
        return data

    @field_validator("timestamp", mode="before")
    @classmethod
    def _read_timestamp(cls, value: Any) -> Any:
        """Read an ISO 8601 text as 0.3.0's extractors did (``Z`` meaning UTC)."""
        if isinstance(value, str):
            parsed = parse_timestamp(value)
            if parsed is None and value:
                raise ValueError(f"timestamp is not ISO 8601: {value!r}")
            return parsed
        return value

    @property
    def is_inbound(self) -> bool:
        """An inbound message that can become an :class:`InboundMessage`."""
        if self.pending or not self.sender:
            return False
        if self.direction is None:  # not given: 0.3.0's default, unless it is a status
            return self.status is None and self.event_type not in _STATUS_EVENTS_0_3_0
        return self.direction == "inbound"

    @property
    def is_status(self) -> bool:
        """A delivery status of a message we sent."""
        return (
            self.direction != "inbound"
            and not self.is_inbound
            and bool(self.status)
            and bool(self.message_id)
            and not self.pending
        )

    @property
    def external_id(self) -> str | None:
        """Alias of :attr:`message_id` (the name ``InboundMessage`` uses)."""
        return self.message_id

    @property
    def media_urls(self) -> list[dict[str, str | None]]:
        """:attr:`media` as RoomKit 0.3.0 gave it: dicts with ``url`` and ``mime_type``."""
        return [{"url": m.url, "mime_type": m.mime_type} for m in self.media]

    def to_inbound(self, channel_id: str) -> InboundMessage:
        """The inbound message this webhook carries.

        The vendor message id becomes both ``external_id`` and ``idempotency_key``, so a webhook
        the vendor retries is recorded once.

        Raises:
            ValueError: This is not an inbound message (:attr:`is_inbound` is False).
        """
        if not self.is_inbound:
            kind = "a pending MMS part" if self.pending else f"direction={self.direction!r}"
            # 0.3.0's words first, which apps and their tests may match.
            raise ValueError(
                f"Cannot convert outbound webhook to InboundMessage: {self.provider} webhook "
                f"is not an inbound message ({kind})"
            )
        metadata: dict[str, Any] = {
            "provider": self.provider,
            "recipient": self.recipient,
            # Set even when None, and written by isoformat(), as 0.3.0 did.
            "timestamp": None if self.timestamp is None else self.timestamp.isoformat(),
        }
        metadata.update(self.extra)
        return InboundMessage(
            channel_id=channel_id,
            sender_id=self.sender,
            content=self._content(),
            external_id=self.message_id,
            idempotency_key=self.message_id,
            metadata=metadata,
        )

    def _content(self) -> EventContent:
        """The message's content: a shared location (``extra["location"]``, as the vendor
        parsers put it) when there is neither text nor media, else text and media."""
        location = self.extra.get("location")
        if not self.body and not self.media and isinstance(location, dict):
            point = {
                key: location[key]
                for key in ("latitude", "longitude", "label", "address")
                if location.get(key) is not None
            }
            try:
                return LocationContent(**point)
            except (TypeError, ValueError):  # not the fields of a point: read as text
                pass
        return build_inbound_content(self.body, self.media)

    def to_status(self) -> DeliveryStatus:
        """The delivery status this webhook carries, as RoomKit 0.3.0 made it.

        Its ``status`` is the event type without ``message.`` for 0.3.0's status events
        (Telnyx' ``message.finalized`` gives ``"finalized"``, whatever the recipient's status:
        that one is :attr:`status` here and stays in ``raw``); else :attr:`status` (Twilio's
        and Sinch's statuses, which 0.3.0 did not read). Called on a meta that is not a status
        (:attr:`is_status` is False: check it first), it answers as 0.3.0 did rather than
        raising: the ``message.*`` event type's name (``"received"``), else ``"unknown"``.
        """
        event_type = self.event_type or ""
        if event_type.startswith("message.") and (
            not self.is_status or event_type in _STATUS_EVENTS_0_3_0
        ):
            status = event_type.removeprefix("message.")
        elif self.is_status and self.status:
            status = self.status
        else:
            status = "unknown"
        error_code, error_message = self._error()
        return DeliveryStatus(
            provider=self.provider,
            message_id=self.message_id or "",
            status=status,
            recipient=self.recipient,
            sender=self.sender,
            error_code=error_code,
            error_message=error_message,
            timestamp=None if self.timestamp is None else self.timestamp.isoformat(),
            raw=self.raw,
        )

    def _error(self) -> tuple[str | None, str | None]:
        """The failure's code and text: this meta's, or else, as 0.3.0 read them for any
        meta, those of the first of ``raw["data"]["payload"]["errors"]`` (Telnyx' shape, which
        a meta built by hand from another vendor's payload may follow too)."""
        if self.error_code is not None or self.error_message is not None:
            return self.error_code, self.error_message
        data = self.raw.get("data")
        payload = data.get("payload") if isinstance(data, Mapping) else None
        errors = payload.get("errors") if isinstance(payload, Mapping) else None
        if not isinstance(errors, list) or not errors or not isinstance(errors[0], Mapping):
            return None, None
        first = errors[0]
        return str(first.get("code", "")), str(first.get("detail", ""))


def extract_sms_meta(
    provider: str,
    payload: Mapping[str, Any],
    *,
    aggregator: VoiceMeUpMMSAggregator | None = None,
) -> WebhookMeta:
    """Read a webhook payload of ``provider`` into a :class:`WebhookMeta`.

    Args:
        provider: ``"voicemeup"``, ``"telnyx"``, ``"twilio"`` or ``"sinch"`` (any case).
        payload: The decoded webhook: Twilio's form fields as a dict, the others' JSON body.
        aggregator: VoiceMeUp only: the MMS aggregator to use (the module's default one when
            None; see :mod:`providers.voicemeup.mms`).

    Returns:
        The vendor-neutral view; check ``is_inbound`` / ``is_status``.

    Raises:
        ValueError: Unknown provider, or ``payload`` is not a mapping.
    """
    name = provider.strip().lower() if isinstance(provider, str) else ""
    if name == "twilio":
        from providers.twilio.webhook import extract_twilio_meta

        return extract_twilio_meta(payload)
    if name == "telnyx":
        from providers.telnyx.webhook import extract_telnyx_meta

        return extract_telnyx_meta(payload)
    if name == "sinch":
        from providers.sinch.webhook import extract_sinch_meta

        return extract_sinch_meta(payload)
    if name == "voicemeup":
        from providers.voicemeup.webhook import extract_voicemeup_meta

        return extract_voicemeup_meta(payload, aggregator=aggregator)
    known = ", ".join(SMS_WEBHOOK_PROVIDERS)
    raise ValueError(f"Unknown SMS provider: {provider} (known: {known})")  # 0.3.0's words


@overload
def extract_text_body(content: EventContent) -> str: ...


@overload
def extract_text_body(provider: str, payload: Mapping[str, Any]) -> str: ...


def extract_text_body(*args: Any, **kwargs: Any) -> str:
    """The text of an event's content (RoomKit 0.3.0's form), or of a vendor webhook.

    ``extract_text_body(content)``: a text, rich, system or template content's ``body``, a
    media content's caption, a composite's parts' texts joined by spaces; ``""`` for the rest
    (as 0.3.0 read outgoing events).

    ``extract_text_body(provider, payload)``: the text of an inbound webhook of ``provider``
    (``""`` when it has none); a VoiceMeUp payload is read alone (no MMS merging).

    Raises:
        TypeError: The arguments are neither form.
        ValueError: As :func:`extract_sms_meta` (webhook form).
    """
    bound = _content_or_webhook("extract_text_body", args, kwargs)
    if isinstance(bound, tuple):
        return _meta_without_aggregation(*bound).body
    return _text_of(bound)


@overload
def extract_media_urls(content: EventContent) -> list[str]: ...


@overload
def extract_media_urls(provider: str, payload: Mapping[str, Any]) -> list[WebhookMedia]: ...


def extract_media_urls(*args: Any, **kwargs: Any) -> list[str] | list[WebhookMedia]:
    """The media of an event's content (RoomKit 0.3.0's form), or of a vendor webhook.

    ``extract_media_urls(content)``: the URLs of a media content, or of a composite's media
    parts, as strings (``[]`` for the rest, as in 0.3.0).

    ``extract_media_urls(provider, payload)``: the attachments of an inbound webhook of
    ``provider`` as :class:`WebhookMedia` (http(s) URLs only).

    Raises:
        TypeError: The arguments are neither form.
        ValueError: As :func:`extract_sms_meta` (webhook form).
    """
    bound = _content_or_webhook("extract_media_urls", args, kwargs)
    if isinstance(bound, tuple):
        return list(_meta_without_aggregation(*bound).media)
    if isinstance(bound, MediaContent):
        return [bound.url]
    if isinstance(bound, CompositeContent):
        return [part.url for part in bound.parts if isinstance(part, MediaContent)]
    return []


_CONTENT_TYPES = (
    TextContent,
    RichContent,
    MediaContent,
    LocationContent,
    AudioContent,
    VideoContent,
    CompositeContent,
    SystemContent,
    TemplateContent,
)


def _content_or_webhook(
    function: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> EventContent | tuple[str, Mapping[str, Any]]:
    """Bind 0.3.0's ``(content)`` or this package's ``(provider, payload)``.

    Raises:
        TypeError: Neither form.
    """
    usage = f"{function}() takes an event's content, or (provider, payload)"
    if "content" in kwargs or (len(args) == 1 and not kwargs):
        if len(args) + len(kwargs) != 1:
            raise TypeError(usage)
        content = kwargs["content"] if kwargs else args[0]
        if not isinstance(content, _CONTENT_TYPES):
            raise TypeError(f"{usage}, not {type(content).__name__}")
        return content
    if len(args) > 2:
        raise TypeError(usage)
    bound: dict[str, Any] = dict(zip(("provider", "payload"), args, strict=False))
    for name, value in kwargs.items():
        if name not in ("provider", "payload") or name in bound:
            raise TypeError(f"{usage}; unexpected or repeated argument {name!r}")
        bound[name] = value
    if len(bound) != 2:
        raise TypeError(usage)
    return bound["provider"], bound["payload"]


def _text_of(content: EventContent) -> str:
    """RoomKit 0.3.0's text of an event's content (see :func:`extract_text_body`)."""
    if isinstance(content, MediaContent):
        return content.caption or ""
    if isinstance(content, CompositeContent):
        return " ".join(text for part in content.parts if (text := _text_of(part)))
    if isinstance(content, TextContent | RichContent | SystemContent | TemplateContent):
        return content.body or ""
    return ""


def _meta_without_aggregation(provider: str, payload: Mapping[str, Any]) -> WebhookMeta:
    # Reading one payload's fields must not feed (or drain) an MMS aggregation buffer.
    if isinstance(provider, str) and provider.strip().lower() == "voicemeup":
        from providers.voicemeup.webhook import read_voicemeup_payload

        return read_voicemeup_payload(payload)
    return extract_sms_meta(provider, payload)


def build_inbound_content(
    body: str, media: Sequence[WebhookMedia | Mapping[str, str | None]] = ()
) -> EventContent:
    """The content of an inbound message with ``body`` and ``media``.

    No media → ``TextContent``; one attachment → ``MediaContent`` with the text as caption;
    several → ``CompositeContent`` (the text first, when there is one, then each attachment).

    Args:
        body: The message's text (may be empty).
        media: The attachments: :class:`WebhookMedia`, or RoomKit 0.3.0's dicts with ``url``
            and an optional ``mime_type`` (``application/octet-stream`` when missing). An
            attachment without a URL, or whose URL is not http(s), is skipped.
    """
    items = [
        MediaContent(url=url, mime_type=mime_type or _DEFAULT_MIME)
        for url, mime_type in map(_url_and_type, media)
        if is_http_url(url)
    ]
    if not items:
        return TextContent(body=body)
    if len(items) == 1:
        return items[0].model_copy(update={"caption": body or None})
    parts: list[EventContent] = [TextContent(body=body)] if body else []
    parts.extend(items)
    return CompositeContent(parts=parts)


def _url_and_type(item: WebhookMedia | Mapping[str, str | None]) -> tuple[str, str | None]:
    """The URL ("" when none) and MIME type of one attachment, in either form."""
    if isinstance(item, WebhookMedia):
        return item.url, item.mime_type
    if not isinstance(item, Mapping):
        raise TypeError(f"a media item is a WebhookMedia or a dict, not {type(item).__name__}")
    url, mime_type = item.get("url"), item.get("mime_type")
    return (
        url if isinstance(url, str) else "",
        mime_type if isinstance(mime_type, str) else None,
    )


def parse_timestamp(text: str | None) -> datetime | None:
    """A vendor's ISO 8601 time as RoomKit 0.3.0's extractors read it (``Z`` meaning UTC), or
    None when ``text`` is empty or not such a time (webhooks are untrusted input)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def webhook_media(url: str, mime_type: str | None = None) -> WebhookMedia | None:
    """A :class:`WebhookMedia` for ``url``, guessing the MIME type from the URL when the vendor
    gave none; None unless ``url`` is http(s) (its scheme in any case, spaces around it
    dropped), with a warning for one that is not: the message goes on without it."""
    url = url.strip()
    if not is_http_url(url):
        if url:
            logger.warning("webhook media left out: not an http(s) URL: %r", url[:80])
        return None
    if not mime_type:
        mime_type = mimetypes.guess_type(url.split("?", 1)[0])[0] or _DEFAULT_MIME
    return WebhookMedia(url=url, mime_type=mime_type)


def check_payload(payload: object, provider: str) -> Mapping[str, Any]:
    """``payload`` if it is a mapping.

    Raises:
        ValueError: It is not.
    """
    if not isinstance(payload, Mapping):
        raise ValueError(f"{provider} webhook payload must be a mapping, not {type(payload)}")
    return payload


def raw_dict(payload: Mapping[Any, Any]) -> dict[str, Any]:
    """A plain ``dict`` copy of ``payload`` with string keys (for :attr:`WebhookMeta.raw`)."""
    return {str(key): value for key, value in payload.items()}


def get_str(payload: object, *keys: str) -> str:
    """The first of ``keys`` in ``payload`` whose value reads as text, else "".

    Strings are returned as is, numbers (not booleans) as their decimal text, and a list (a
    repeated form field) by its first element.
    """
    if not isinstance(payload, Mapping):
        return ""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, list | tuple) and value:
            value = value[0]
        if isinstance(value, str):
            if value:
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return str(value)
            except ValueError:  # an int past Python's digit limit: not a usable id anyway
                continue
    return ""


def get_mapping(payload: object, key: str) -> Mapping[str, Any]:
    """``payload[key]`` if it is a mapping, else an empty one."""
    if isinstance(payload, Mapping):
        value = payload.get(key)
        if isinstance(value, Mapping):
            return value
    return {}


def get_list(payload: object, key: str) -> list[Any]:
    """``payload[key]`` if it is a list, else an empty one."""
    if isinstance(payload, Mapping):
        value = payload.get(key)
        if isinstance(value, list):
            return value
    return []


# RoomKit 0.3.0 kept each vendor's extractor in this module; they live in the vendors' webhook
# modules, which import this one, so they are looked up on first access (PEP 562).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "extract_sinch_meta": "providers.sinch.webhook",
        "extract_telnyx_meta": "providers.telnyx.webhook",
        "extract_twilio_meta": "providers.twilio.webhook",
        "extract_voicemeup_meta": "providers.voicemeup.webhook",
    },
)
