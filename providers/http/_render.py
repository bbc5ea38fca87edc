"""Turning event content into what text-first vendors accept: plain text, email parts, buttons.

The router transcodes content a channel cannot render before delivery, so providers mostly see
content their channel supports; these helpers cover the remaining cases (a part of a composite, a
system notice, a provider used without a channel) with a readable text fallback.
"""

from __future__ import annotations

import base64
import binascii
import html
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote_to_bytes

from roomkit.models._url import is_http_url
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

__all__ = [
    "Button",
    "EmailAttachment",
    "EmailParts",
    "Unsendable",
    "content_text",
    "email_parts",
    "html_to_text",
    "parse_data_url",
    "public_url",
    "rich_buttons",
    "rich_text",
]


class Unsendable(Exception):
    """Content a provider cannot express; ``code`` is the failed result's ``error``
    (``empty_message``, ``unsupported_media_url``, ...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def public_url(url: str) -> str:
    """``url`` when the vendor can fetch it (http or https).

    Raises:
        Unsendable: ``unsupported_media_url``, e.g. for a ``data:`` URL, which the vendors here
            could only take through their media upload APIs.
    """
    if not is_http_url(url):
        raise Unsendable("unsupported_media_url")
    return url


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, with line breaks for block elements."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The readable text of an HTML fragment (tags dropped, entities decoded)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def rich_text(content: RichContent) -> str:
    """Plain text of rich content: its ``plain_text``, else the body (HTML stripped)."""
    if content.plain_text:
        return content.plain_text
    return html_to_text(content.body) if content.format == "html" else content.body


def _media_label(caption: str | None, filename: str | None, url: str) -> str:
    # data: URLs are the file itself: never paste them into a text body.
    link = "" if url.startswith("data:") else url
    return "\n".join(part for part in (caption, filename if not link else None, link) if part)


def content_text(content: EventContent) -> str:
    """A plain-text rendering of any content ("" when there is nothing to say)."""
    if isinstance(content, TextContent | SystemContent):
        return content.body
    if isinstance(content, RichContent):
        return rich_text(content)
    if isinstance(content, MediaContent):
        return _media_label(content.caption, content.filename, content.url)
    if isinstance(content, AudioContent):
        return content.transcript or _media_label(None, None, content.url)
    if isinstance(content, VideoContent):
        return content.url
    if isinstance(content, LocationContent):
        label = ", ".join(p for p in (content.label, content.address) if p)
        point = f"({content.latitude}, {content.longitude})"
        return f"{label} {point}" if label else point
    if isinstance(content, TemplateContent):
        return content.body or ""
    if isinstance(content, CompositeContent):
        return "\n".join(t for t in (content_text(p) for p in content.parts) if t)
    return ""  # pragma: no cover - the union is exhaustive


def parse_data_url(url: str) -> tuple[str, bytes] | None:
    """``(mime_type, bytes)`` of a ``data:`` URL, or None if it is not a valid one."""
    if not url.startswith("data:") or "," not in url:
        return None
    header, _, data = url[5:].partition(",")
    params = header.split(";")
    mime = params[0] or "text/plain"
    try:
        if "base64" in params[1:]:
            return mime, base64.b64decode(data, validate=True)
        return mime, unquote_to_bytes(data)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class EmailAttachment:
    """A file to attach to an email (from a ``data:`` URL)."""

    filename: str
    mime_type: str
    data: bytes


@dataclass(slots=True)
class EmailParts:
    """An email body: plain text, optional HTML and attachments."""

    text: str = ""
    html: str | None = None
    attachments: list[EmailAttachment] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to send."""
        return not self.text.strip() and not self.html and not self.attachments


def _extension(mime: str) -> str:
    sub = mime.partition("/")[2].split("+")[0].split(";")[0]
    return sub or "bin"


def email_parts(content: EventContent) -> EmailParts:
    """Split content into the text, HTML and attachments of an email.

    HTML rich content keeps its markup in ``html`` and gets a stripped ``text`` alternative;
    ``data:`` media become attachments; linked media are written as links in the text. When a
    composite mixes HTML and other parts, the HTML alternative gets every part (text escaped), so
    that clients showing only the HTML miss nothing.
    """
    attachments: list[EmailAttachment] = []
    segments: list[tuple[str, str | None]] = []  # (text, html) per part, in order
    _collect(content, segments, attachments)
    text = "\n\n".join(t for t, _ in segments if t)
    markup: str | None = None
    if any(h is not None for _, h in segments):
        markup = "<br><br>".join(
            h if h is not None else html.escape(t).replace("\n", "<br>")
            for t, h in segments
            if h is not None or t
        )
    return EmailParts(text=text, html=markup, attachments=attachments)


def _collect(
    content: EventContent,
    segments: list[tuple[str, str | None]],
    attachments: list[EmailAttachment],
) -> None:
    if isinstance(content, CompositeContent):
        for part in content.parts:
            _collect(part, segments, attachments)
    elif isinstance(content, RichContent) and content.format == "html":
        segments.append((rich_text(content), content.body))
    elif isinstance(content, MediaContent | AudioContent) and content.url.startswith("data:"):
        decoded = parse_data_url(content.url)
        if decoded is not None:
            mime, data = decoded
            filename = content.filename if isinstance(content, MediaContent) else None
            name = filename or f"attachment-{len(attachments) + 1}.{_extension(mime)}"
            attachments.append(EmailAttachment(name, mime, data))
        label = content.caption if isinstance(content, MediaContent) else content.transcript
        segments.append((label or "", None))
    else:
        segments.append((content_text(content), None))


@dataclass(frozen=True, slots=True)
class Button:
    """A button read from ``RichContent.buttons``: a title and either a URL or a payload."""

    title: str
    payload: str
    url: str | None = None


def rich_buttons(buttons: list[dict[str, Any]]) -> list[Button]:
    """Normalise ``RichContent.buttons`` dicts (keys ``title``/``text``/``label``, ``payload``/
    ``value``/``id``, ``url``); entries without a title are skipped."""
    result: list[Button] = []
    for raw in buttons:
        title = next(
            (v for k in ("title", "text", "label") if isinstance(v := raw.get(k), str) and v), None
        )
        if title is None:
            continue
        url = raw.get("url")
        payload = next(
            (str(v) for k in ("payload", "value", "id") if (v := raw.get(k)) not in (None, "")),
            title,
        )
        result.append(Button(title, payload, url if isinstance(url, str) and url else None))
    return result
