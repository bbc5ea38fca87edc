"""What an SMS / MMS / RCS vendor can carry of a room event: one text and public media URLs.

Every vendor API here takes a text body and a list of media URLs, so providers render an event's
content once with :func:`render_outbound` and map the result to their own request shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from roomkit.models._url import is_http_url
from roomkit.models.delivery import ProviderResult
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

__all__ = ["OutboundMedia", "OutboundMessage", "refusal", "render_outbound", "split_text"]

logger = logging.getLogger("roomkit.providers.sms")

R = TypeVar("R", bound=ProviderResult)


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """One attachment to send: a public http(s) URL and its MIME type."""

    url: str
    mime_type: str


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """The text and attachments of one outgoing message."""

    text: str
    media: tuple[OutboundMedia, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Nothing to send: no text (after stripping) and no media."""
        return not self.text.strip() and not self.media


def render_outbound(content: EventContent) -> OutboundMessage:
    """Render ``content`` as text plus media URLs.

    Rich text uses its plain-text variant when it has one; a location becomes
    ``label / address / "lat,lon"`` lines; a composite joins its parts' texts with newlines and
    concatenates their media. ``data:`` URLs are dropped (with a warning): vendors fetch media
    from the URL, so it must be public.
    """
    texts: list[str] = []
    media: list[OutboundMedia] = []
    _collect(content, texts, media)
    return OutboundMessage(text="\n".join(text for text in texts if text), media=tuple(media))


def refusal(message: OutboundMessage, to: str, result_type: type[R]) -> R | None:
    """Why ``message`` must not be sent to ``to``, as a failed ``result_type``; None when it may.

    Returns:
        ``error="empty_message"`` when there is nothing to send, ``"missing_recipient"`` when
        ``to`` is empty (checked in that order), else None.
    """
    if message.is_empty:
        return result_type(success=False, error="empty_message")
    if not to:
        return result_type(success=False, error="missing_recipient")
    return None


def _collect(content: EventContent, texts: list[str], media: list[OutboundMedia]) -> None:
    if isinstance(content, TextContent | SystemContent):
        texts.append(content.body)
    elif isinstance(content, RichContent):
        texts.append(content.plain_text or content.body)
    elif isinstance(content, TemplateContent):
        texts.append(content.body or "")
    elif isinstance(content, MediaContent):
        _add_media(content.url, content.mime_type, media)
        texts.append(content.caption or "")
    elif isinstance(content, AudioContent | VideoContent):
        _add_media(content.url, content.mime_type, media)
    elif isinstance(content, LocationContent):
        lines = [content.label or "", content.address or ""]
        lines.append(f"{content.latitude:.6f},{content.longitude:.6f}")
        texts.append("\n".join(line for line in lines if line))
    elif isinstance(content, CompositeContent):
        for part in content.parts:
            _collect(part, texts, media)


def _add_media(url: str, mime_type: str, media: list[OutboundMedia]) -> None:
    if is_http_url(url):
        media.append(OutboundMedia(url=url, mime_type=mime_type))
    else:
        # Vendors fetch attachments themselves, so an inline data: URL cannot be sent.
        logger.warning("dropping a %s attachment whose URL is not http(s)", mime_type)


def split_text(text: str, max_length: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_length`` characters.

    Cuts at the last whitespace of each chunk when there is one (the whitespace is dropped), so
    words stay whole; a word longer than ``max_length`` is cut where it must be. Joining the
    chunks with single spaces gives back the text up to whitespace at the cuts.

    Raises:
        ValueError: ``max_length`` is not positive.
    """
    if max_length <= 0:
        raise ValueError("max_length must be positive")
    chunks: list[str] = []
    rest = text
    while len(rest) > max_length:
        window = rest[: max_length + 1]
        cut = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
        if cut <= 0:
            chunks.append(rest[:max_length])
            rest = rest[max_length:]
        else:
            chunks.append(rest[:cut].rstrip())
            rest = rest[cut + 1 :]
    if rest or not chunks:
        chunks.append(rest)
    return [chunk for chunk in chunks if chunk] or [""]
