"""Room events and their content: the discriminated ``EventContent`` union, sources, ``RoomEvent``.

``RoomEvent`` is built and serialised on the hot path, so validators stay cheap: URL checks are a
single ``str.startswith`` and the composite depth check only runs for composite content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from roomkit.models._defaults import new_id, utcnow
from roomkit.models._url import HTTP_SCHEMES, is_http_url
from roomkit.models.enums import ChannelDirection, ChannelType, EventStatus, EventType

__all__ = [
    "MAX_COMPOSITE_DEPTH",
    "AudioContent",
    "ChannelData",
    "CompositeContent",
    "EventContent",
    "EventSource",
    "LocationContent",
    "MediaContent",
    "RichContent",
    "RoomEvent",
    "SystemContent",
    "TemplateContent",
    "TextContent",
    "VideoContent",
]

MAX_COMPOSITE_DEPTH = 5
"""Deepest allowed nesting of ``CompositeContent`` (a flat composite has depth 1)."""

_HTTP_SCHEMES = HTTP_SCHEMES
_HTTP_OR_DATA_SCHEMES = (*HTTP_SCHEMES, "data:")


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    # http(s) in any case (a vendor's "HTTPS://"); "data:" as written, which is how every
    # reader of a data URL (a transcoder, an email renderer) tells one.
    data = "data:" in schemes and value.startswith("data:")
    if not (data or is_http_url(value)):
        # 0.3.0's words, which apps and their tests may match.
        if "data:" in schemes:
            raise ValueError("URL must start with http://, https://, or data:")
        raise ValueError("URL must start with http:// or https://")
    return value


class TextContent(BaseModel):
    """Plain text."""

    type: Literal["text"] = "text"
    body: str
    language: str | None = None


class RichContent(BaseModel):
    """Formatted text (HTML or Markdown) with optional buttons, cards and quick replies."""

    type: Literal["rich"] = "rich"
    body: str
    format: Literal["html", "markdown"] = "markdown"
    plain_text: str | None = None
    buttons: list[dict[str, Any]] = Field(default_factory=list)
    cards: list[dict[str, Any]] = Field(default_factory=list)
    quick_replies: list[str] = Field(default_factory=list)


class MediaContent(BaseModel):
    """A file or image referenced by an http(s) or ``data:`` URL."""

    type: Literal["media"] = "media"
    url: str
    mime_type: str
    filename: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    caption: str | None = None

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        return _check_url(value, _HTTP_OR_DATA_SCHEMES)


class LocationContent(BaseModel):
    """A geographic point."""

    type: Literal["location"] = "location"
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    label: str | None = None
    address: str | None = None


class AudioContent(BaseModel):
    """An audio clip referenced by an http(s) or ``data:`` URL."""

    type: Literal["audio"] = "audio"
    url: str
    mime_type: str = "audio/ogg"
    duration_seconds: float | None = Field(default=None, ge=0)
    transcript: str | None = None

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        return _check_url(value, _HTTP_OR_DATA_SCHEMES)


class VideoContent(BaseModel):
    """A video referenced by an http(s) URL (``data:`` is refused: videos are too large)."""

    type: Literal["video"] = "video"
    url: str
    mime_type: str = "video/mp4"
    duration_seconds: float | None = Field(default=None, ge=0)
    thumbnail_url: str | None = None

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        return _check_url(value, _HTTP_SCHEMES)

    @field_validator("thumbnail_url")
    @classmethod
    def _thumbnail_scheme(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, _HTTP_SCHEMES)


class CompositeContent(BaseModel):
    """Several contents sent as one message (non-empty, nested at most 5 levels deep)."""

    type: Literal["composite"] = "composite"
    parts: list[EventContent]

    @field_validator("parts")
    @classmethod
    def _parts_shape(cls, parts: list[EventContent]) -> list[EventContent]:
        if not parts:
            raise ValueError("CompositeContent must have at least one part")  # 0.3.0's words
        # Parts are validated before their parent, so each nested composite has already
        # checked its own subtree; this only measures it.
        if 1 + _nested_depth(parts) > MAX_COMPOSITE_DEPTH:
            raise ValueError(f"CompositeContent nesting depth exceeds {MAX_COMPOSITE_DEPTH}")
        return parts


def _nested_depth(parts: list[EventContent]) -> int:
    """Composite depth of the deepest part (0 when no part is a composite)."""
    depth = 0
    for part in parts:
        if isinstance(part, CompositeContent):
            depth = max(depth, 1 + _nested_depth(part.parts))
    return depth


class SystemContent(BaseModel):
    """A machine-generated notice (channel attached, room closed, ...) with a code and data."""

    type: Literal["system"] = "system"
    body: str
    code: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TemplateContent(BaseModel):
    """A pre-approved provider template (WhatsApp, Messenger) with its parameters."""

    type: Literal["template"] = "template"
    template_id: str
    language: str = "en"
    parameters: dict[str, str] = Field(default_factory=dict)
    body: str | None = None


EventContent = Annotated[
    TextContent
    | RichContent
    | MediaContent
    | LocationContent
    | AudioContent
    | VideoContent
    | CompositeContent
    | SystemContent
    | TemplateContent,
    Field(discriminator="type"),
]
"""Any content a room event can carry, discriminated by its ``type`` field."""

CompositeContent.model_rebuild()


class ChannelData(BaseModel):
    """Provider-specific addressing of an event (external id, thread) and free-form extras."""

    provider: str | None = None
    external_id: str | None = None
    thread_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class EventSource(BaseModel):
    """Where an event came from: channel, participant and provider identifiers."""

    channel_id: str
    channel_type: ChannelType
    direction: ChannelDirection = ChannelDirection.INBOUND
    participant_id: str | None = None
    external_id: str | None = None
    provider: str | None = None
    raw_payload: dict[str, Any] = Field(default_factory=dict)
    provider_message_id: str | None = None


class RoomEvent(BaseModel):
    """One entry of a room's timeline."""

    id: str = Field(default_factory=new_id)
    room_id: str
    type: EventType = EventType.MESSAGE
    source: EventSource
    content: EventContent
    status: EventStatus = EventStatus.PENDING
    blocked_by: str | None = None
    visibility: str = "all"
    index: int = Field(default=0, ge=0)
    chain_depth: int = Field(default=0, ge=0)
    parent_event_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)
    channel_data: ChannelData = Field(default_factory=ChannelData)
    delivery_results: dict[str, Any] = Field(default_factory=dict)
