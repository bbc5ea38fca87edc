"""Room content as a model reads it: text by the transcoder's rules, images as parts.

An :class:`~roomkit.channels.ai.AIChannel` shows the model both the event it answers (which the
router may already have transcoded for it) and past events as they were stored (never
transcoded). Both read the same here: what the model cannot take as it is becomes the text
:class:`~roomkit.core.router.DefaultContentTranscoder` gives a text-only target (reference
§6.1), so a file, a place or a video sent earlier is still in the conversation.
"""

from __future__ import annotations

from collections.abc import Callable

from providers.ai.base import AIImagePart, AITextPart
from roomkit.core.router import placeholder_text
from roomkit.models.event import (
    CompositeContent,
    EventContent,
    MediaContent,
    TemplateContent,
    TextContent,
)

__all__ = ["Parts", "content_parts", "content_text", "image_mime_type"]

Parts = list[AITextPart | AIImagePart]


def content_text(content: EventContent) -> str:
    """The text of ``content`` as a text-only model should read it (``""`` when none).

    The rules of ``DefaultContentTranscoder`` for a target with no media type but text
    (``"[Media: caption|filename|url]"``, the transcript or ``"[Voice message: url]"``,
    ``"[Video: url]"``, ``"[Location: label|address (lat, lon)]"``, rich text's plain text,
    composites joined by newlines, a ``data:`` URL by its header only), with one difference:
    a template shows its body. System notices read as nothing.
    """
    if isinstance(content, TextContent):
        return content.body
    text = placeholder_text(content)
    if text is not None:
        return text
    if isinstance(content, CompositeContent):
        return "\n".join(text for part in content.parts if (text := content_text(part)))
    if isinstance(content, TemplateContent):
        return content.body or ""
    return ""


def image_mime_type(content: EventContent) -> str | None:
    """The MIME type of ``content`` when it is an image (lower case, no parameters), else None.

    MIME types are case-insensitive (RFC 2045): ``IMAGE/PNG`` is an image too.
    """
    if not isinstance(content, MediaContent):
        return None
    mime_type = content.mime_type.partition(";")[0].strip().lower()
    return mime_type if mime_type.startswith("image/") else None


def content_parts(content: EventContent, show_image: Callable[[str], bool]) -> Parts:
    """``content`` as multimodal parts: text, and an image part per image shown as one.

    Args:
        content: The content to render.
        show_image: Given an image's URL, whether to send the image itself; when not, the image
            reads as its text placeholder (``"[Media: caption|filename|url]"``).

    Returns:
        The parts, in order (none for content with nothing to read).
    """
    mime_type = image_mime_type(content)
    if isinstance(content, MediaContent) and mime_type is not None and show_image(content.url):
        parts: Parts = [AITextPart(text=content.caption)] if content.caption else []
        parts.append(AIImagePart(url=content.url, mime_type=mime_type))
        return parts
    if isinstance(content, CompositeContent):
        return [part for sub in content.parts for part in content_parts(sub, show_image)]
    text = content_text(content)
    return [AITextPart(text=text)] if text else []
