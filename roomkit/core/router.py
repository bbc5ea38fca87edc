"""Content transcoding: adapt an event's content to what a target channel can display.

`ContentTranscoder` is the pluggable interface; `DefaultContentTranscoder` implements RoomKit
0.3.0's rules (reference §6.1). Returning ``None`` means "this target cannot receive it": the
router records ``transcoding_failed`` for that target and skips it; an answer that is neither
content nor None fails the target, as a transcoder raising does (`transcode_with`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import TYPE_CHECKING, cast, get_args

from roomkit.models.enums import ChannelMediaType
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    TextContent,
    VideoContent,
)

if TYPE_CHECKING:
    from roomkit.models import ChannelBinding

__all__ = [
    "ContentTranscoder",
    "DefaultContentTranscoder",
    "check_transcoder",
    "placeholder_text",
    "required_media_type",
    "shown_url",
    "transcode_with",
]

# The classes of `EventContent` (an Annotated union): what a transcoder may return, besides
# None. Read from the union, so a content type added to it is not refused here.
_CONTENT_CLASSES: tuple[type, ...] = get_args(get_args(EventContent)[0])

_MEDIA_TYPE_OF: dict[str, ChannelMediaType] = {
    "text": ChannelMediaType.TEXT,
    "rich": ChannelMediaType.RICH,
    "media": ChannelMediaType.MEDIA,
    "audio": ChannelMediaType.AUDIO,
    "video": ChannelMediaType.VIDEO,
    "location": ChannelMediaType.LOCATION,
    "template": ChannelMediaType.TEMPLATE,
}


def required_media_type(content: EventContent) -> ChannelMediaType | None:
    """The media type a target needs to show ``content`` as is.

    ``None`` for content every channel passes through unchanged (system notices) and for
    composites, whose parts are judged one by one.
    """
    return _MEDIA_TYPE_OF.get(content.type)


class ContentTranscoder(ABC):
    """Turns content into a form the target binding supports.

    Contract: pure (no I/O needed, but async so implementations may call out, e.g. to a
    translation service); never mutates its input; returns the content itself when no change
    is needed, new content when converted, or ``None`` when the target cannot receive it.
    """

    @abstractmethod
    async def transcode(
        self,
        content: EventContent,
        source_binding: ChannelBinding,
        target_binding: ChannelBinding,
    ) -> EventContent | None:
        """Content for ``target_binding``, or ``None`` if it cannot be delivered there."""


def check_transcoder(name: str, transcoder: object) -> None:
    """Refuse, when the kit (or router) is made, a ``transcoder`` whose ``transcode`` cannot be
    called: a subclass may set it to anything, and every delivery needing transcoding failed.

    Raises:
        TypeError: ``transcode`` is missing or not callable.
    """
    if transcoder is not None and not callable(getattr(transcoder, "transcode", None)):
        raise TypeError(
            f"{name} must have a callable transcode(content, source_binding, target_binding), "
            f"got {type(transcoder).__name__}"
        )


async def transcode_with(
    transcoder: ContentTranscoder,
    content: EventContent,
    source_binding: ChannelBinding,
    target_binding: ChannelBinding,
) -> EventContent | None:
    """``transcoder.transcode(...)``, awaited only if it answers an awaitable, its answer
    checked.

    A ``transcode`` written with plain ``def`` has done its work when it returns, as a hook
    or a channel's ``deliver`` written so (awaiting its content failed every delivery that
    needed transcoding). An answer that is neither content nor None (a string) went into the
    event as is, and reached the providers, which failed on it or sent nonsense.

    Raises:
        TypeError: the answer is neither an ``EventContent`` nor None: the target fails, as
            when the transcoder raises.
    """
    answer: object = transcoder.transcode(content, source_binding, target_binding)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is None or isinstance(answer, _CONTENT_CLASSES):
        return cast("EventContent | None", answer)  # one of EventContent's classes
    raise TypeError(
        f"transcoder {type(transcoder).__name__} returned a {type(answer).__name__}, "
        "not an EventContent or None"
    )


# A data: URL's header is cut past this: it says what was inline, no more is needed.
_DATA_HEADER_MAX = 64


def shown_url(url: str) -> str:
    """``url`` as text for a reader: a ``data:`` URL by its header only, not its payload."""
    if url[:5].lower() != "data:":  # the scheme is case-insensitive
        return url
    return url.partition(",")[0][:_DATA_HEADER_MAX] + ",…"


class DefaultContentTranscoder(ContentTranscoder):
    """RoomKit 0.3.0's rules: degrade rich content, media, audio, video and locations to text.

    ==========  ==========================================================================
    content     when the target lacks the media type
    ==========  ==========================================================================
    Text        unchanged
    Rich        ``TextContent(plain_text or body)``
    Media       ``"[Media: caption|filename|url]"`` (first one set)
    Audio       the transcript as text, else ``"[Voice message: url]"``
    Video       ``"[Video: url]"``
    Location    ``"[Location: label|address (lat, lon)]"``
    Composite   each part transcoded; ``None`` parts dropped; ``None`` if none is left; one
                ``TextContent`` joined by newlines if every part became text
    System      unchanged
    Template    unchanged
    ==========  ==========================================================================

    A media or voice message ``data:`` URL shows by its header only
    (``data:image/png;base64,…``): its payload, megabytes of base64 in an SMS, tells a reader
    nothing (0.3.0 sent it whole).
    """

    async def transcode(
        self,
        content: EventContent,
        source_binding: ChannelBinding,
        target_binding: ChannelBinding,
    ) -> EventContent | None:
        """Apply the table above against ``target_binding``'s media types.

        Composite parts go through ``self.transcode`` again, so a subclass that refuses some
        content (returns ``None``) has those parts dropped from composites too.
        """
        if not isinstance(content, CompositeContent):
            return _transcode_single(content, target_binding.capabilities.media_types)
        parts: list[EventContent] = []
        for part in content.parts:
            # A subclass's transcode may be a plain def: see transcode_with.
            converted = await transcode_with(self, part, source_binding, target_binding)
            if converted is not None:
                parts.append(converted)
        if not parts:
            return None
        texts = [p.body for p in parts if isinstance(p, TextContent)]
        if len(texts) == len(parts):
            return TextContent(body="\n".join(texts))
        if len(parts) == len(content.parts) and all(
            new is old for new, old in zip(parts, content.parts, strict=True)
        ):
            return content  # nothing changed: keep the original object
        return CompositeContent(parts=parts)


def placeholder_text(content: EventContent) -> str | None:
    """The text that stands for ``content`` where its media type is not supported (the table
    of `DefaultContentTranscoder`), or None for content that is never replaced (text, system,
    template, composite). The AI channel renders its history with it too."""
    if isinstance(content, RichContent):
        return content.plain_text or content.body
    if isinstance(content, MediaContent):
        return f"[Media: {content.caption or content.filename or shown_url(content.url)}]"
    if isinstance(content, AudioContent):
        return content.transcript or f"[Voice message: {shown_url(content.url)}]"
    if isinstance(content, VideoContent):
        return f"[Video: {content.url}]"  # http(s) only: never a data: URL
    if isinstance(content, LocationContent):
        place = content.label or content.address
        where = f"({content.latitude}, {content.longitude})"
        return f"[Location: {place} {where}]" if place else f"[Location: {where}]"
    return None


def _transcode_single(
    content: EventContent, supported: Collection[ChannelMediaType]
) -> EventContent:
    """One non-composite content against the target's media types."""
    if isinstance(content, RichContent):
        kept = ChannelMediaType.RICH in supported
    elif isinstance(content, MediaContent):
        kept = ChannelMediaType.MEDIA in supported
    elif isinstance(content, AudioContent):
        kept = ChannelMediaType.AUDIO in supported
    elif isinstance(content, VideoContent):
        kept = ChannelMediaType.VIDEO in supported
    elif isinstance(content, LocationContent):
        kept = ChannelMediaType.LOCATION in supported
    else:
        return content  # text, system, template and anything newer pass through unchanged
    text = None if kept else placeholder_text(content)
    return content if text is None else TextContent(body=text)
