"""DefaultContentTranscoder: RoomKit 0.3.0's content degradation rules (reference §6.1)."""

from __future__ import annotations

import pytest

from roomkit.core.router import ContentTranscoder, DefaultContentTranscoder, required_media_type
from roomkit.models import (
    AudioContent,
    ChannelBinding,
    ChannelCapabilities,
    ChannelMediaType,
    ChannelType,
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

M = ChannelMediaType
ALL = list(ChannelMediaType)


def binding(*media_types: ChannelMediaType, channel_id: str = "target") -> ChannelBinding:
    return ChannelBinding(
        channel_id=channel_id,
        room_id="r1",
        channel_type=ChannelType.SMS,
        capabilities=ChannelCapabilities(media_types=list(media_types)),
    )


SOURCE = binding(*ALL, channel_id="source")
TEXT_ONLY = binding(M.TEXT)


async def transcode(content: EventContent, target: ChannelBinding) -> EventContent | None:
    return await DefaultContentTranscoder().transcode(content, SOURCE, target)


def text(body: str) -> TextContent:
    return TextContent(body=body)


IMG = "https://x.test/a.png"
CLIP = "https://x.test/a.ogg"
MOVIE = "https://x.test/a.mp4"


class TestUnchanged:
    @pytest.mark.parametrize(
        "content",
        [
            text("hi"),
            SystemContent(body="room closed", code="room_closed"),
            TemplateContent(template_id="welcome", parameters={"name": "Ann"}),
        ],
        ids=["text", "system", "template"],
    )
    async def test_passes_through_to_a_text_only_target(self, content: EventContent) -> None:
        assert await transcode(content, TEXT_ONLY) is content

    @pytest.mark.parametrize(
        "content",
        [
            RichContent(body="**hi**"),
            MediaContent(url=IMG, mime_type="image/png"),
            AudioContent(url=CLIP),
            VideoContent(url=MOVIE),
            LocationContent(latitude=1.5, longitude=2.5),
        ],
        ids=["rich", "media", "audio", "video", "location"],
    )
    async def test_kept_when_the_target_supports_it(self, content: EventContent) -> None:
        media_type = required_media_type(content)
        assert media_type is not None
        assert await transcode(content, binding(M.TEXT, media_type)) is content


class TestDegradedToText:
    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (RichContent(body="**hi**", plain_text="hi"), "hi"),
            (RichContent(body="**hi**"), "**hi**"),
            (
                MediaContent(url=IMG, mime_type="image/png", caption="cat", filename="a.png"),
                "[Media: cat]",
            ),
            (MediaContent(url=IMG, mime_type="image/png", filename="a.png"), "[Media: a.png]"),
            (MediaContent(url=IMG, mime_type="image/png"), f"[Media: {IMG}]"),
            (AudioContent(url=CLIP, transcript="hello there"), "hello there"),
            (AudioContent(url=CLIP), f"[Voice message: {CLIP}]"),
            (AudioContent(url=CLIP, transcript=""), f"[Voice message: {CLIP}]"),
            (VideoContent(url=MOVIE), f"[Video: {MOVIE}]"),
            (
                LocationContent(latitude=45.5, longitude=-73.6, label="Office", address="1 Main"),
                "[Location: Office (45.5, -73.6)]",
            ),
            (
                LocationContent(latitude=45.5, longitude=-73.6, address="1 Main"),
                "[Location: 1 Main (45.5, -73.6)]",
            ),
            (LocationContent(latitude=0.0, longitude=1.0), "[Location: (0.0, 1.0)]"),
            # A data: URL by its header: its payload is no text for a reader (or an SMS).
            (
                MediaContent(url="data:image/png;base64," + "A" * 100_000, mime_type="image/png"),
                "[Media: data:image/png;base64,…]",
            ),
            (
                AudioContent(url="data:audio/ogg;base64,T2dn"),
                "[Voice message: data:audio/ogg;base64,…]",
            ),
        ],
        ids=[
            "rich-plain",
            "rich-body",
            "media-caption",
            "media-filename",
            "media-url",
            "audio-transcript",
            "audio-url",
            "audio-empty-transcript",
            "video",
            "location-label",
            "location-address",
            "location-bare",
            "media-data-url",
            "audio-data-url",
        ],
    )
    async def test_rule(self, content: EventContent, expected: str) -> None:
        assert await transcode(content, TEXT_ONLY) == text(expected)


class TestComposite:
    async def test_all_text_flattens_to_one_text(self) -> None:
        content = CompositeContent(
            parts=[text("see"), MediaContent(url=IMG, mime_type="image/png", caption="cat")]
        )
        assert await transcode(content, TEXT_ONLY) == text("see\n[Media: cat]")

    async def test_mixed_result_stays_composite(self) -> None:
        media = MediaContent(url=IMG, mime_type="image/png")
        content = CompositeContent(parts=[RichContent(body="*a*", plain_text="a"), media])
        result = await transcode(content, binding(M.TEXT, M.MEDIA))
        assert result == CompositeContent(parts=[text("a"), media])

    async def test_unchanged_parts_keep_the_original_object(self) -> None:
        content = CompositeContent(
            parts=[MediaContent(url=IMG, mime_type="image/png"), AudioContent(url=CLIP)]
        )
        assert await transcode(content, binding(M.MEDIA, M.AUDIO)) is content

    async def test_nested_composites(self) -> None:
        inner = CompositeContent(parts=[VideoContent(url=MOVIE), text("b")])
        content = CompositeContent(parts=[text("a"), inner])
        assert await transcode(content, TEXT_ONLY) == text(f"a\n[Video: {MOVIE}]\nb")

    async def test_parts_a_subclass_refuses_are_dropped(self) -> None:
        class NoVideo(DefaultContentTranscoder):
            async def transcode(
                self, content: EventContent, source: ChannelBinding, target: ChannelBinding
            ) -> EventContent | None:
                if isinstance(content, VideoContent):
                    return None
                return await super().transcode(content, source, target)

        no_video = NoVideo()
        mixed = CompositeContent(parts=[text("x"), VideoContent(url=MOVIE)])
        assert await no_video.transcode(mixed, SOURCE, TEXT_ONLY) == text("x")
        only_video = CompositeContent(parts=[VideoContent(url=MOVIE)])
        assert await no_video.transcode(only_video, SOURCE, TEXT_ONLY) is None

    async def test_a_part_that_is_not_content_fails_the_composite(self) -> None:
        # It was put into the composite's parts as is.
        class Stringly(DefaultContentTranscoder):
            async def transcode(
                self, content: EventContent, source: ChannelBinding, target: ChannelBinding
            ) -> EventContent | None:
                if isinstance(content, VideoContent):
                    return "a video"  # type: ignore[return-value]  # the mistake under test
                return await super().transcode(content, source, target)

        mixed = CompositeContent(parts=[text("x"), VideoContent(url=MOVIE)])
        with pytest.raises(TypeError, match="^transcoder Stringly returned a str, not an "):
            await Stringly().transcode(mixed, SOURCE, TEXT_ONLY)


def test_contract_is_abstract() -> None:
    with pytest.raises(TypeError):
        ContentTranscoder()  # type: ignore[abstract]


def test_required_media_type() -> None:
    assert required_media_type(text("x")) is M.TEXT
    assert required_media_type(SystemContent(body="x")) is None
    assert required_media_type(CompositeContent(parts=[text("x")])) is None
