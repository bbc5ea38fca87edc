"""EventRouter: source gate, visibility/access/mute matrix, transcoding, truncation, delivery
through breaker, rate limit and retries, provider failures, chain depth, and deliver_to."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any
from uuid import uuid4

import anyio
import pytest

from providers.errors import ProviderError
from roomkit.channels.base import Channel
from roomkit.core._text_cut import cut_point
from roomkit.core.circuit_breaker import CircuitBreaker, CircuitState
from roomkit.core.event_router import (
    CHAIN_DEPTH_BLOCKED_BY,
    BroadcastResult,
    EventRouter,
    stamp_visibility,
    visible_to,
)
from roomkit.core.rate_limiter import TokenBucketRateLimiter
from roomkit.core.router import ContentTranscoder, DefaultContentTranscoder
from roomkit.models import (
    Access,
    ChannelBinding,
    ChannelCapabilities,
    ChannelCategory,
    ChannelDirection,
    ChannelMediaType,
    ChannelOutput,
    ChannelType,
    CompositeContent,
    EventContent,
    EventSource,
    EventStatus,
    InboundMessage,
    MediaContent,
    Observation,
    ProviderResult,
    RateLimit,
    RetryPolicy,
    RichContent,
    Room,
    RoomContext,
    RoomEvent,
    Task,
    TextContent,
    VideoContent,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Pure anyio code: every async test runs on both backends."""
    param: str = request.param
    return param


M = ChannelMediaType
TRANSPORT = ChannelCategory.TRANSPORT
INTELLIGENCE = ChannelCategory.INTELLIGENCE
OK = ProviderResult(success=True, provider_message_id="msg-1")
IMG = "https://x.test/cat.png"
CLIP = "https://x.test/cat.mp4"


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


Behaviour = ProviderResult | Exception | None


class Probe(Channel):
    """A test channel recording what it sees and delivers.

    ``deliveries`` scripts successive ``deliver`` calls: a ProviderResult to return, an
    exception to raise, or None for an output without a provider result; once exhausted,
    every delivery succeeds with ``OK``.
    """

    channel_type = ChannelType.SMS

    def __init__(
        self,
        channel_id: str,
        *,
        output: Callable[[RoomEvent], ChannelOutput] | None = None,
        deliveries: Iterable[Behaviour] = (),
        on_event_error: Exception | None = None,
    ) -> None:
        super().__init__(channel_id)
        self.seen: list[RoomEvent] = []
        self.delivered: list[RoomEvent] = []
        self.bindings: list[ChannelBinding] = []  # each deliver's
        self._output = output
        self._deliveries = list(deliveries)
        self._on_event_error = on_event_error

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        raise NotImplementedError

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.seen.append(event)
        if self._on_event_error is not None:
            raise self._on_event_error
        return self._output(event) if self._output is not None else ChannelOutput.empty()

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.delivered.append(event)
        self.bindings.append(binding)
        behaviour = self._deliveries.pop(0) if self._deliveries else OK
        if isinstance(behaviour, Exception):
            raise behaviour
        return ChannelOutput(provider_result=behaviour)


def reply(text: str = "reply", **extra: Any) -> Callable[[RoomEvent], ChannelOutput]:
    """An AI-like output: one response one level deeper in the chain."""

    def output(event: RoomEvent) -> ChannelOutput:
        response = RoomEvent(
            room_id=event.room_id,
            source=EventSource(channel_id="ai", channel_type=ChannelType.AI),
            content=TextContent(body=text),
            chain_depth=event.chain_depth + 1,
        )
        return ChannelOutput(responded=True, response_events=[response], **extra)

    return output


def bind(
    channel_id: str,
    *,
    category: ChannelCategory = TRANSPORT,
    media: Iterable[ChannelMediaType] = (M.TEXT,),
    max_length: int | None = None,
    **kwargs: Any,
) -> ChannelBinding:
    return ChannelBinding(
        channel_id=channel_id,
        room_id="r1",
        channel_type=ChannelType.AI if category is INTELLIGENCE else ChannelType.SMS,
        category=category,
        capabilities=ChannelCapabilities(media_types=list(media), max_length=max_length),
        **kwargs,
    )


def message(
    content: EventContent | str = "hello", *, chain_depth: int = 0, visibility: str = "all"
) -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="src", channel_type=ChannelType.SMS),
        content=TextContent(body=content) if isinstance(content, str) else content,
        chain_depth=chain_depth,
        visibility=visibility,
    )


def context(*bindings: ChannelBinding) -> RoomContext:
    return RoomContext(room=Room(id="r1"), bindings=list(bindings))


def make_router(*channels: Channel, **kwargs: Any) -> EventRouter:
    kwargs.setdefault("sleep", RecordingSleep())
    kwargs.setdefault("rate_limiter", TokenBucketRateLimiter(clock=FakeClock()))
    return EventRouter({c.channel_id: c for c in channels}, **kwargs)


async def broadcast(
    router: EventRouter,
    *targets: ChannelBinding,
    source: ChannelBinding | None = None,
    event: RoomEvent | None = None,
) -> BroadcastResult:
    source = source if source is not None else bind("src")
    return await router.broadcast(
        event if event is not None else message(), source, context(source, *targets)
    )


def reached(*channels: Probe) -> set[str]:
    return {c.channel_id for c in channels if c.seen}


# -- source gate, access, direction, visibility ---------------------------------------------


class TestSourceGate:
    @pytest.mark.parametrize(
        ("access", "delivers"),
        [
            (Access.READ_WRITE, True),
            (Access.WRITE_ONLY, True),
            (Access.READ_ONLY, False),
            (Access.NONE, False),
        ],
    )
    async def test_source_access(self, access: Access, delivers: bool) -> None:
        target = Probe("t")
        result = await broadcast(make_router(target), bind("t"), source=bind("src", access=access))
        assert bool(target.delivered) is delivers
        assert bool(result.delivery_results) is delivers

    async def test_muted_source_reaches_nobody(self) -> None:
        target = Probe("t")
        result = await broadcast(make_router(target), bind("t"), source=bind("src", muted=True))
        assert target.seen == [] and target.delivered == []
        assert result == BroadcastResult()

    async def test_the_source_never_receives_its_own_event(self) -> None:
        source, other = Probe("src"), Probe("t")
        await broadcast(make_router(source, other), bind("t"))
        assert reached(source, other) == {"t"}


async def test_a_bound_channel_not_registered_is_warned_of_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # At every message: 3,000 warnings for a room bound to a channel this process lacks.
    caplog.set_level(logging.DEBUG, logger="roomkit")
    target = Probe("t")
    router = make_router(target)
    for _ in range(3):
        await broadcast(router, bind("t"), bind("gone"))
    assert len(target.delivered) == 3
    warned = [r for r in caplog.records if "bound but not registered" in r.getMessage()]
    assert [r.levelname for r in warned] == ["WARNING", "DEBUG", "DEBUG"]


class TestTargetFilter:
    @pytest.mark.parametrize(
        ("access", "receives"),
        [
            (Access.READ_WRITE, True),
            (Access.READ_ONLY, True),
            (Access.WRITE_ONLY, False),
            (Access.NONE, False),
        ],
    )
    async def test_target_access(self, access: Access, receives: bool) -> None:
        target = Probe("t")
        await broadcast(make_router(target), bind("t", access=access))
        assert bool(target.seen) is receives
        assert bool(target.delivered) is receives

    @pytest.mark.parametrize(
        ("direction", "receives"),
        [
            (ChannelDirection.BIDIRECTIONAL, True),
            (ChannelDirection.INBOUND, True),
            (ChannelDirection.OUTBOUND, False),
        ],
    )
    async def test_target_direction(self, direction: ChannelDirection, receives: bool) -> None:
        target = Probe("t")
        await broadcast(make_router(target), bind("t", direction=direction))
        assert bool(target.seen) is receives

    @pytest.mark.parametrize(
        ("visibility", "expected"),
        [
            ("all", {"sms", "email", "ai", "internal"}),
            ("none", set()),
            ("transport", {"sms", "email", "internal"}),
            ("intelligence", {"ai"}),
            ("sms, ai", {"sms", "ai"}),
            ("sms,email,", {"sms", "email"}),
            ("email", {"email"}),
            ("internal", {"internal"}),
            ("nobody", set()),
        ],
    )
    async def test_visibility_of_the_source_binding(
        self, visibility: str, expected: set[str]
    ) -> None:
        channels = [Probe("sms"), Probe("email"), Probe("ai"), Probe("internal")]
        await broadcast(
            make_router(*channels),
            bind("sms"),
            bind("email"),
            bind("ai", category=INTELLIGENCE),
            bind("internal"),
            source=bind("src", visibility=visibility),
        )
        assert reached(*channels) == expected

    async def test_routing_uses_the_binding_visibility_not_the_events(self) -> None:
        """As in 0.3.0: an event's own visibility does not narrow its routing."""
        sms, ai = Probe("sms"), Probe("ai")
        await broadcast(
            make_router(sms, ai),
            bind("sms"),
            bind("ai", category=INTELLIGENCE),
            event=message(visibility="intelligence"),
        )
        assert reached(sms, ai) == {"sms", "ai"}

    async def test_unregistered_channels_are_skipped_silently(self) -> None:
        known = Probe("known")
        result = await broadcast(make_router(known), bind("ghost"), bind("known"))
        assert reached(known) == {"known"}
        assert result.errors == {}
        assert set(result.delivery_results) == {"known"}

    def test_visible_to_is_exposed(self) -> None:
        assert visible_to(" a , b ", bind("b")) is True  # ids in a list are stripped
        assert visible_to(" b ", bind("b")) is False  # a single id must match exactly


class TestVisibilityStamping:
    async def test_event_takes_the_binding_visibility(self) -> None:
        target = Probe("t")
        await broadcast(make_router(target), bind("t"), source=bind("src", visibility="t"))
        assert target.seen[0].visibility == "t"
        assert target.delivered[0].visibility == "t"

    async def test_explicit_event_visibility_is_kept(self) -> None:
        target = Probe("t")
        await broadcast(
            make_router(target),
            bind("t"),
            source=bind("src", visibility="transport"),
            event=message(visibility="agents"),
        )
        assert target.seen[0].visibility == "agents"

    def test_stamp_returns_the_same_object_when_nothing_changes(self) -> None:
        ev = message()
        assert stamp_visibility(ev, bind("src")) is ev
        stamped = stamp_visibility(ev, bind("src", visibility="transport"))
        assert stamped.visibility == "transport" and ev.visibility == "all"


class TestCategoryAndMute:
    async def test_on_event_for_all_deliver_for_transport_only(self) -> None:
        sms, ai = Probe("sms"), Probe("ai")
        result = await broadcast(
            make_router(sms, ai), bind("sms"), bind("ai", category=INTELLIGENCE)
        )
        assert reached(sms, ai) == {"sms", "ai"}
        assert [c.channel_id for c in (sms, ai) if c.delivered] == ["sms"]
        assert set(result.outputs) == {"sms", "ai"}
        assert set(result.delivery_results) == set(result.delivery_outputs) == {"sms"}

    @pytest.mark.parametrize("category", [TRANSPORT, INTELLIGENCE])
    async def test_muted_target_listens_but_its_responses_are_dropped(
        self, category: ChannelCategory
    ) -> None:
        task = Task(room_id="r1", title="follow up")
        obs = Observation(room_id="r1", channel_id="t", content="angry")
        target = Probe(
            "t", output=reply(tasks=[task], observations=[obs], metadata_updates={"k": 1})
        )
        result = await broadcast(make_router(target), bind("t", category=category, muted=True))
        assert len(target.seen) == 1
        assert len(target.delivered) == (1 if category is TRANSPORT else 0)
        assert result.reentry_events == [] and result.blocked_events == []
        assert result.tasks == [task] and result.observations == [obs]
        assert result.metadata_updates == {"k": 1}

    async def test_unmuted_responses_are_reentered(self) -> None:
        ai = Probe("ai", output=reply("hi back"))
        result = await broadcast(make_router(ai), bind("ai", category=INTELLIGENCE))
        assert [body(e) for e in result.reentry_events] == ["hi back"]

    async def test_responses_without_responded_are_ignored(self) -> None:
        def output(event: RoomEvent) -> ChannelOutput:
            return ChannelOutput(responded=False, response_events=reply()(event).response_events)

        ai = Probe("ai", output=output)
        result = await broadcast(make_router(ai), bind("ai", category=INTELLIGENCE))
        assert result.reentry_events == []

    async def test_side_effects_merge_across_targets(self) -> None:
        a = Probe("a", output=lambda e: ChannelOutput(metadata_updates={"x": 1, "y": 1}))
        b = Probe("b", output=lambda e: ChannelOutput(metadata_updates={"y": 2}))
        result = await broadcast(make_router(a, b), bind("a"), bind("b"))
        assert result.metadata_updates == {"x": 1, "y": 2}  # binding order: later wins


def body(event: RoomEvent) -> str:
    assert isinstance(event.content, TextContent)
    return event.content.body


# -- transcoding and truncation -------------------------------------------------------------


class SpyTranscoder(DefaultContentTranscoder):
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse

    async def transcode(
        self, content: EventContent, source: ChannelBinding, target: ChannelBinding
    ) -> EventContent | None:
        self.calls.append((source.channel_id, target.channel_id))
        if self.refuse:
            return None
        return await super().transcode(content, source, target)


class Broken(ContentTranscoder):
    async def transcode(
        self, content: EventContent, source: ChannelBinding, target: ChannelBinding
    ) -> EventContent | None:
        raise RuntimeError("no translator")


class Stringly(ContentTranscoder):
    """Answers a string where content is due."""

    async def transcode(
        self, content: EventContent, source: ChannelBinding, target: ChannelBinding
    ) -> EventContent | None:
        return "a string"  # type: ignore[return-value]  # the mistake under test


class PlainDef(ContentTranscoder):
    """A ``transcode`` written with plain ``def``, as hooks and channels may be."""

    def transcode(  # type: ignore[override]  # the plain def under test
        self, content: EventContent, source: ChannelBinding, target: ChannelBinding
    ) -> EventContent | None:
        return TextContent(body="plain")


STRINGLY_SAID = "transcoder Stringly returned a str, not an EventContent or None"


class TestTranscoding:
    async def test_a_transcoder_answering_no_content_fails_the_target(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Its string went into the event as is: providers got a RoomEvent whose content was
        # a str (a real one crashed on it, a mock recorded it as sent).
        target = Probe("t")
        result = await broadcast(
            make_router(target, transcoder=Stringly()),
            bind("t"),
            source=bind("src", media=(M.TEXT, M.RICH)),
        )
        assert target.seen == target.delivered == []
        assert result.errors == {"t": STRINGLY_SAID}
        assert result.delivery_results["t"].error == STRINGLY_SAID
        assert STRINGLY_SAID in caplog.text

    async def test_a_plain_def_transcoder_is_taken(self) -> None:
        # Its content was awaited: "object TextContent can't be used in 'await' expression"
        # failed every delivery that needed transcoding.
        target = Probe("t")
        result = await broadcast(
            make_router(target, transcoder=PlainDef()),
            bind("t"),
            source=bind("src", media=(M.TEXT, M.RICH)),
        )
        assert result.errors == {}
        assert body(target.delivered[0]) == "plain"

    async def test_a_plain_def_subclass_judges_composite_parts_too(self) -> None:
        # Composite parts went through ``await self.transcode(...)``: a subclass written
        # with plain def failed on every composite ("can't be used in 'await' expression").
        class PlainNoVideo(DefaultContentTranscoder):
            def transcode(  # type: ignore[override]  # the plain def under test
                self, content: EventContent, source: ChannelBinding, target: ChannelBinding
            ) -> Any:
                if isinstance(content, VideoContent):
                    return None
                return super().transcode(content, source, target)  # awaited by the kit

        target = Probe("t")
        mixed = CompositeContent(parts=[TextContent(body="x"), VideoContent(url=CLIP)])
        result = await broadcast(
            make_router(target, transcoder=PlainNoVideo()), bind("t"), event=message(mixed)
        )
        assert result.errors == {}
        assert body(target.delivered[0]) == "x"

    def test_a_transcoder_whose_transcode_cannot_be_called_is_refused(self) -> None:
        class NoTranscode(DefaultContentTranscoder):
            transcode = None  # type: ignore[assignment]  # the mistake under test

        with pytest.raises(TypeError, match="^transcoder must have a callable transcode"):
            make_router(Probe("t"), transcoder=NoTranscode())

    async def test_not_invoked_when_source_types_are_a_subset(self) -> None:
        spy = SpyTranscoder()
        target = Probe("t")
        await broadcast(
            make_router(target, transcoder=spy),
            bind("t", media=(M.TEXT, M.MEDIA)),
            source=bind("src", media=(M.TEXT,)),
        )
        assert spy.calls == []

    async def test_rich_to_text_only_target(self) -> None:
        spy = SpyTranscoder()
        target = Probe("t")
        await broadcast(
            make_router(target, transcoder=spy),
            bind("t"),
            source=bind("src", media=(M.TEXT, M.RICH)),
            event=message(RichContent(body="**hi**", plain_text="hi")),
        )
        assert spy.calls == [("src", "t")]
        assert body(target.seen[0]) == "hi" and body(target.delivered[0]) == "hi"

    async def test_content_the_target_cannot_show_is_transcoded(self) -> None:
        """QUIRK 11 fixed: equal binding media sets no longer let media reach a text target."""
        target = Probe("t")
        await broadcast(
            make_router(target),
            bind("t"),
            event=message(MediaContent(url=IMG, mime_type="image/png", caption="cat")),
        )
        assert body(target.delivered[0]) == "[Media: cat]"

    @pytest.mark.parametrize(
        ("media", "expected"),
        [
            ((M.TEXT, M.MEDIA), None),  # every part fits: delivered as is
            ((M.TEXT,), TextContent(body="look\n[Media: cat]")),
        ],
    )
    async def test_composites_are_judged_part_by_part(
        self, media: tuple[ChannelMediaType, ...], expected: TextContent | None
    ) -> None:
        composite = CompositeContent(
            parts=[
                TextContent(body="look"),
                MediaContent(url=IMG, mime_type="image/png", caption="cat"),
            ]
        )
        target = Probe("t")
        await broadcast(make_router(target), bind("t", media=media), event=message(composite))
        assert target.delivered[0].content == (expected or composite)

    async def test_transcoding_failure_skips_the_target(self) -> None:
        target, ai = Probe("t"), Probe("ai")
        result = await broadcast(
            make_router(target, ai, transcoder=SpyTranscoder(refuse=True)),
            bind("t"),
            bind("ai", category=INTELLIGENCE),
            source=bind("src", media=(M.TEXT, M.AUDIO)),
        )
        assert target.seen == target.delivered == ai.seen == []
        assert result.errors == {"t": "transcoding_failed", "ai": "transcoding_failed"}
        assert result.delivery_results["t"].success is False
        assert result.delivery_results["t"].error == "transcoding_failed"
        assert "ai" not in result.delivery_results

    async def test_transcoder_exception_is_the_targets_error(self) -> None:
        target = Probe("t")
        result = await broadcast(
            make_router(target, transcoder=Broken()),
            bind("t"),
            source=bind("src", media=(M.TEXT, M.RICH)),
        )
        assert result.errors == {"t": "no translator"}
        assert target.seen == []


class TestTruncation:
    @pytest.mark.parametrize(
        ("max_length", "text", "expected"),
        [
            (10, "abcdefghijklmnop", "abcdefg..."),
            (10, "abcdefghij", "abcdefghij"),
            (4, "abcdef", "a..."),
            (3, "abcdef", "abc"),
            (1, "abcdef", "a"),
            (None, "x" * 5000, "x" * 5000),
            # Cut between whole characters: a family emoji (ZWJs), a flag (two regional
            # indicators), a letter and its combining accents, a skin tone were split.
            (10, "Hi there \U0001f468\u200d\U0001f469\u200d\U0001f467!", "Hi ther..."),
            (10, "ab \U0001f468\u200d\U0001f469\u200d\U0001f467 cdef", "ab ..."),
            (8, "abcd\U0001f1e8\U0001f1e6\U0001f1eb\U0001f1f7xyz", "abcd..."),
            (9, "abcd\U0001f1e8\U0001f1e6\U0001f1eb\U0001f1f7xyz", "abcd\U0001f1e8\U0001f1e6..."),
            (6, "abce\u0301\u0301xyz", "abc..."),
            (6, "ab\U0001f44d\U0001f3fdxyzw", "ab..."),
            (3, "e\u0301\u0301\u0301", "e\u0301\u0301"),  # no whole character fits
        ],
    )
    async def test_text_is_cut_to_max_length(
        self, max_length: int | None, text: str, expected: str
    ) -> None:
        target = Probe("t")
        original = message(text)
        await broadcast(make_router(target), bind("t", max_length=max_length), event=original)
        assert body(target.seen[0]) == body(target.delivered[0]) == expected
        assert body(original) == text

    def test_a_cut_keeps_whole_characters(self) -> None:
        family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
        texts = (
            f"x{family}y" * 3,
            "a\u0301b\u0308\u0323c" * 4,
            "\U0001f1e8\U0001f1e6" * 5,
            "\u0e19\u0e49\u0e33\u0e17\u0e33" * 3,  # Thai: a SARA AM stays with its letter
            "\u0ea5\u0eb3" * 3,  # Lao likewise
            "ab\r\ncd" * 3,
        )
        for text in texts:
            for limit in range(len(text) + 2):
                kept = text[: cut_point(text, limit)]
                assert len(kept) <= limit
                rest = text[len(kept) :]
                # What is kept and what is left read as they did together: no mark, joiner
                # or half flag at the seam.
                assert not rest or cut_point(text, len(kept)) == len(kept)
                assert not kept.endswith("\u200d") and not rest.startswith(("\u200d", "\u0301"))
                assert not rest.startswith(("\u0e33", "\u0eb3"))
                assert not (kept.endswith("\r") and rest.startswith("\n"))

    async def test_only_the_limited_target_is_cut(self) -> None:
        short, long = Probe("short"), Probe("long")
        await broadcast(
            make_router(short, long),
            bind("short", max_length=5),
            bind("long"),
            event=message("0123456789"),
        )
        assert body(short.delivered[0]) == "01..."
        assert body(long.delivered[0]) == "0123456789"

    async def test_non_text_is_not_cut(self) -> None:
        target = Probe("t")
        rich = RichContent(body="x" * 50)
        await broadcast(
            make_router(target),
            bind("t", media=(M.TEXT, M.RICH), max_length=5),
            event=message(rich),
        )
        assert target.delivered[0].content == rich


# -- delivery: provider results, retries, breaker, rate limit -------------------------------


class TestDelivery:
    async def test_success(self) -> None:
        target = Probe("t")
        result = await broadcast(make_router(target), bind("t"))
        delivery = result.delivery_results["t"]
        assert (delivery.channel_id, delivery.success, delivery.error) == ("t", True, None)
        assert delivery.provider_result == OK
        assert result.delivery_outputs["t"].provider_result == OK
        assert result.errors == {}

    async def test_output_without_provider_result_is_a_success(self) -> None:
        target = Probe("t", deliveries=[None])
        result = await broadcast(make_router(target), bind("t"))
        assert result.delivery_results["t"].success
        assert result.delivery_results["t"].provider_result is None

    @pytest.mark.parametrize(
        ("returned", "success"),
        [
            (None, True),  # "sent it, nothing to say": as 0.3.0 took it
            ("sent", True),
            (ProviderResult(success=True, message_id="m1"), True),
            (ProviderResult(success=False, error="invalid_number"), False),
        ],
    )
    async def test_a_deliver_that_returns_no_channel_output_is_taken_as_it_says(
        self, returned: object, success: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        # It was a failure whatever it said ("'NoneType' object has no attribute
        # 'provider_result'"): the message was sent again at every retry, then the breaker
        # opened and later messages were dropped.
        class Careless(Probe):
            async def deliver(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                self.delivered.append(event)
                return returned  # type: ignore[return-value]

        target = Careless(f"careless-{uuid4().hex}")  # each warns once
        breakers: dict[str, CircuitBreaker] = {}
        policy = RetryPolicy(max_retries=2, base_delay_seconds=0.01)
        result = await broadcast(
            make_router(target, sleep=RecordingSleep(), breakers=breakers),
            bind(target.channel_id, retry_policy=policy),
        )
        delivery = result.delivery_results[target.channel_id]
        assert delivery.success is success
        assert len(target.delivered) == (1 if success else 3)
        assert breakers[target.channel_id].failure_count == (0 if success else 1)
        if isinstance(returned, ProviderResult):
            assert delivery.provider_result == returned
        assert ("returned a str" in caplog.text) == isinstance(returned, str)

    async def test_an_on_event_that_returns_no_channel_output_is_taken_as_nothing(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        channel_id = f"odd-{uuid4().hex}"  # each warns once
        target = Probe(channel_id, output=lambda event: 42)  # type: ignore[arg-type,return-value]
        result = await broadcast(make_router(target), bind(channel_id))
        assert result.errors == {} and result.delivery_results[channel_id].success
        assert "on_event returned a int" in caplog.text

    @pytest.mark.parametrize(
        ("provider_error", "expected"),
        [("invalid_number", "invalid_number"), (None, "provider_failure")],
    )
    async def test_provider_failure_is_a_failure(
        self, provider_error: str | None, expected: str
    ) -> None:
        """QUIRK 12 fixed: success=False is no longer counted as a delivery."""
        failed = ProviderResult(success=False, error=provider_error)
        target = Probe("t", deliveries=[failed])
        breakers: dict[str, CircuitBreaker] = {}
        result = await broadcast(make_router(target, breakers=breakers), bind("t"))
        assert result.errors == {"t": expected}
        delivery = result.delivery_results["t"]
        assert delivery.success is False and delivery.error == expected
        assert delivery.provider_result == failed
        assert "t" not in result.delivery_outputs
        assert breakers["t"].failure_count == 1

    async def test_exception_is_a_failure(self) -> None:
        target = Probe("t", deliveries=[ConnectionError("socket closed")])
        breakers: dict[str, CircuitBreaker] = {}
        result = await broadcast(make_router(target, breakers=breakers), bind("t"))
        assert result.errors == {"t": "socket closed"}
        assert result.delivery_results["t"].provider_result is None
        assert breakers["t"].failure_count == 1

    async def test_retries_see_provider_failures(self) -> None:
        failed = ProviderResult(success=False, error="rate_limit")
        target = Probe("t", deliveries=[failed, ConnectionError("reset")])
        sleep = RecordingSleep()
        breakers: dict[str, CircuitBreaker] = {}
        policy = RetryPolicy(max_retries=2, base_delay_seconds=1.0)
        result = await broadcast(
            make_router(target, sleep=sleep, breakers=breakers), bind("t", retry_policy=policy)
        )
        assert len(target.delivered) == 3
        assert sleep.delays == [1.0, 2.0]
        assert result.delivery_results["t"].success
        assert breakers["t"].failure_count == 0

    async def test_exhausted_retries_count_one_breaker_failure(self) -> None:
        failed = ProviderResult(success=False, error="down")
        target = Probe("t", deliveries=[failed] * 4)
        sleep = RecordingSleep()
        breakers: dict[str, CircuitBreaker] = {}
        policy = RetryPolicy(max_retries=3, base_delay_seconds=0.5, max_delay_seconds=1.5)
        result = await broadcast(
            make_router(target, sleep=sleep, breakers=breakers), bind("t", retry_policy=policy)
        )
        assert len(target.delivered) == 4
        assert sleep.delays == [0.5, 1.0, 1.5]
        assert result.errors == {"t": "down"}
        assert result.delivery_results["t"].provider_result == failed
        assert breakers["t"].failure_count == 1

    async def test_what_the_provider_says_of_a_failure_decides_its_retries(self) -> None:
        # Every failure was sent again up to max_retries times: a 400 for a bad number, a
        # message some parts of which went out (the recipient got them twice), and a 429
        # sooner than its Retry-After.
        def failure(**metadata: Any) -> ProviderResult:
            return ProviderResult(success=False, error="refused", metadata=metadata)

        policy = RetryPolicy(max_retries=3, base_delay_seconds=1.0, max_delay_seconds=30.0)
        cases: list[tuple[list[Behaviour], int, list[float]]] = [
            ([failure(retryable=False, status_code=400)], 1, []),
            ([failure(retryable=False, message_ids=["part-1"])], 1, []),
            ([ProviderResult(success=False, error="missing_recipient")], 1, []),
            ([ProviderResult(success=False, error="conversation_reference_not_found")], 1, []),
            ([ProviderResult(success=False, error="unsupported_media_url")], 1, []),
            # Retry-After longer than the backoff is waited; shorter, the backoff is.
            ([failure(retryable=True, retry_after=5), failure(retry_after=0.5)], 3, [5.0, 2.0]),
            # Longer than the policy's longest wait: not tried again.
            ([failure(retryable=True, retry_after=120)], 1, []),
            ([failure(retry_after=10**400)], 1, []),  # past any float: it raised OverflowError
            ([failure(retry_after=math.nan), failure(retry_after="5")], 3, [1.0, 2.0]),
            # A failure that says nothing is tried again, as every failure was; a
            # ProviderError raised by an app's channel too (its retryable is False unless
            # said: it was tried once).
            ([failure(), ConnectionError("reset")], 3, [1.0, 2.0]),
            ([ProviderError("upstream unavailable")] * 2, 3, [1.0, 2.0]),
        ]
        for deliveries, calls, delays in cases:
            target = Probe("t", deliveries=deliveries)
            sleep = RecordingSleep()
            router = make_router(target, sleep=sleep)
            await broadcast(router, bind("t", retry_policy=policy))
            assert (len(target.delivered), sleep.delays) == (calls, delays), deliveries

    async def test_a_refusal_of_one_message_does_not_count_against_its_channel(self) -> None:
        # A bad number's 400 (or a message without a recipient) opened the channel's breaker
        # for every room; bad credentials (401) and outages still count.
        def failure(status: int | None, retryable: bool = False) -> ProviderResult:
            metadata: dict[str, Any] = {"retryable": retryable}
            if status is not None:
                metadata["status_code"] = status
            return ProviderResult(success=False, error="refused", metadata=metadata)

        def unsent(code: str) -> ProviderResult:
            return ProviderResult(success=False, error=code)

        # The count after an outage (one failure) and then the case: the vendor answering
        # resets it, as a success does; nothing called leaves it.
        cases: list[tuple[Behaviour, int]] = [
            (failure(400), 0),
            (failure(404), 0),
            (failure(200), 0),  # a refusal in a success answer (VoiceMeUp's bad number)
            (unsent("missing_recipient"), 1),
            (unsent("empty_message"), 1),
            # Refused unsent too: a data: image (WhatsApp, Messenger, Teams), a Teams
            # conversation without a saved reference or with an unusable service URL.
            (unsent("unsupported_media_url"), 1),
            (unsent("conversation_reference_not_found"), 1),
            (unsent("invalid_service_url"), 1),
            (failure(401), 2),
            (failure(403), 2),
            (failure(503, retryable=True), 2),
            (failure(None), 2),
            (ProviderResult(success=False, error="down"), 2),
        ]
        for behaviour, count in cases:
            breakers: dict[str, CircuitBreaker] = {}
            target = Probe("t", deliveries=[ConnectionError("reset"), behaviour])
            router = make_router(target, breakers=breakers)
            await broadcast(router, bind("t"))
            await broadcast(router, bind("t"))
            assert breakers["t"].failure_count == count, behaviour

    async def test_a_refused_message_as_the_breaker_s_probe(self) -> None:
        # The vendor answered (a 400): the channel works, the breaker closes. Refused before
        # any call (no recipient): the probe says nothing, the next delivery probes.
        clock = FakeClock()
        for refusal, state in (
            (
                ProviderResult(success=False, metadata={"retryable": False, "status_code": 400}),
                CircuitState.CLOSED,
            ),
            (ProviderResult(success=False, error="missing_recipient"), CircuitState.HALF_OPEN),
        ):
            breakers = {"t": CircuitBreaker(1, recovery_timeout=10, clock=clock)}
            target = Probe("t", deliveries=[ConnectionError("reset"), refusal])
            router = make_router(target, breakers=breakers)
            await broadcast(router, bind("t"))
            assert breakers["t"].state is CircuitState.OPEN
            clock.now += 11
            await broadcast(router, bind("t"))  # the probe
            assert breakers["t"].state is state
            assert breakers["t"].allow_request()

    async def test_a_probe_whose_delivery_is_cancelled_lets_the_next_caller_probe(self) -> None:
        # Cancelled, the probe reported nothing: the channel stayed shut until the probe
        # expired (30 s), whatever its recovery_timeout.
        class Hanging(Probe):
            hang = True

            async def deliver(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                if self.hang:
                    await anyio.sleep_forever()
                return await super().deliver(event, binding, context)

        now = [0.0]
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=2, clock=lambda: now[0])
        breaker.record_failure()
        target = Hanging("t")
        router = make_router(target, breakers={"t": breaker})
        now[0] = 2.0  # a probe is due
        with anyio.move_on_after(0.05):  # its caller gives up
            await broadcast(router, bind("t"))
        target.hang = False
        result = await broadcast(router, bind("t"))
        assert result.errors == {} and breaker.state is CircuitState.CLOSED

    async def test_a_cancelled_delivery_that_was_not_the_probe_leaves_the_probe_alone(
        self,
    ) -> None:
        # Let through while the breaker was closed and cancelled during the probe that
        # followed, it cleared that probe: a second caller went through beside it.
        started: list[str] = []

        class Scripted(Probe):
            async def deliver(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                body = event.content.body  # type: ignore[union-attr]
                started.append(body)
                if body.startswith("hang"):
                    await anyio.sleep_forever()
                if body == "fail":
                    raise ConnectionError("down")
                return await super().deliver(event, binding, context)

        now = [0.0]
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=2, clock=lambda: now[0])
        router = make_router(Scripted("t"), breakers={"t": breaker})
        errors: dict[str, dict[str, str]] = {}

        async def send(body: str) -> None:
            result = await broadcast(router, bind("t"), event=message(body))
            errors[body] = result.errors

        async with anyio.create_task_group() as tg:
            early = anyio.CancelScope()

            async def first() -> None:
                with early:
                    await send("hang early")

            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            await send("fail")  # opens the breaker
            now[0] = 2.0
            tg.start_soon(send, "hang probe")
            await anyio.wait_all_tasks_blocked()
            early.cancel()  # not the probe
            await anyio.wait_all_tasks_blocked()
            await send("while probing")
            tg.cancel_scope.cancel()
        assert started == ["hang early", "fail", "hang probe"]
        assert errors["while probing"] == {"t": "circuit_breaker_open"}

    async def test_without_policy_there_is_a_single_attempt(self) -> None:
        target = Probe("t", deliveries=[ConnectionError("x")])
        sleep = RecordingSleep()
        await broadcast(make_router(target, sleep=sleep), bind("t"))
        assert len(target.delivered) == 1 and sleep.delays == []

    async def test_on_event_failure_skips_delivery(self) -> None:
        target = Probe("t", on_event_error=ValueError("bad state"))
        other = Probe("other")
        result = await broadcast(make_router(target, other), bind("t"), bind("other"))
        assert target.delivered == []
        assert result.errors == {"t": "bad state"}
        assert result.delivery_results["t"].success is False
        assert result.delivery_results["other"].success
        assert "t" not in result.outputs


class TestCircuitBreaker:
    async def test_opens_refuses_then_probes(self) -> None:
        clock = FakeClock()
        target = Probe("t", deliveries=[ConnectionError("down")] * 2)
        router = make_router(
            target,
            breaker_factory=lambda: CircuitBreaker(
                failure_threshold=2, recovery_timeout=30, clock=clock
            ),
        )
        for _ in range(2):
            await broadcast(router, bind("t"))
        assert router.breaker("t").state is CircuitState.OPEN
        result = await broadcast(router, bind("t"))
        assert result.errors == {"t": "circuit_breaker_open"}
        assert result.delivery_results["t"].error == "circuit_breaker_open"
        assert len(target.delivered) == 2  # not called while open
        assert len(target.seen) == 3  # on_event still runs
        clock.now += 30
        result = await broadcast(router, bind("t"))  # the probe succeeds
        assert result.delivery_results["t"].success
        assert router.breaker("t").state is CircuitState.CLOSED

    async def test_breakers_survive_router_recreation(self) -> None:
        """QUIRK 14 fixed: the kit owns the breakers; a new router sees the open circuit."""
        breakers = {"t": CircuitBreaker(failure_threshold=1, clock=FakeClock())}
        breakers["t"].record_failure()
        target = Probe("t")
        router = make_router(target, breakers=breakers)
        assert router.breakers is breakers
        result = await broadcast(router, bind("t"))
        assert result.errors == {"t": "circuit_breaker_open"}
        assert target.delivered == []

    async def test_breakers_are_per_channel(self) -> None:
        bad, good = Probe("bad", deliveries=[ConnectionError("x")]), Probe("good")
        breakers: dict[str, CircuitBreaker] = {}
        router = make_router(
            bad, good, breakers=breakers, breaker_factory=lambda: CircuitBreaker(1)
        )
        await broadcast(router, bind("bad"), bind("good"))
        assert breakers["bad"].state is CircuitState.OPEN
        assert breakers["good"].state is CircuitState.CLOSED


class TestRateLimit:
    async def test_deliveries_wait_for_their_token(self) -> None:
        sleep = RecordingSleep()
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        target = Probe("t")
        limited = bind("t", rate_limit=RateLimit(max_per_minute=30))
        router = make_router(target, rate_limiter=limiter)
        for _ in range(3):
            await broadcast(router, limited)
        assert len(target.delivered) == 3  # queued, never dropped
        assert sleep.delays == [pytest.approx(2.0), pytest.approx(4.0)]
        # QUIRK 14: the limiter outlives the router.
        await broadcast(make_router(target, rate_limiter=limiter), limited)
        assert sleep.delays[-1] == pytest.approx(6.0)
        assert router.rate_limiter is limiter

    async def test_each_retry_waits_for_a_token_too(self) -> None:
        # Retries went out past the binding's rate limit.
        sleep = RecordingSleep()
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        target = Probe("t", deliveries=[ConnectionError("reset")] * 2)
        retried = bind(
            "t",
            rate_limit=RateLimit(max_per_minute=30),
            retry_policy=RetryPolicy(max_retries=2, base_delay_seconds=0.5),
        )
        await broadcast(make_router(target, rate_limiter=limiter, sleep=sleep), retried)
        assert len(target.delivered) == 3
        # The backoff (0.5 s, 1 s), each followed by the wait for the attempt's token.
        assert sleep.delays == [0.5, pytest.approx(2.0), 1.0, pytest.approx(4.0)]

    async def test_unlimited_bindings_do_not_wait(self) -> None:
        sleep = RecordingSleep()
        router = make_router(
            Probe("t"), rate_limiter=TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        )
        for _ in range(5):
            await broadcast(router, bind("t"))
        assert sleep.delays == []


class TestDetachedMeanwhile:
    """A channel detached from its room while its delivery waited to try again gets no
    further attempt: its retries went on calling it for the whole policy, the operator's
    fix (detach the failing channel) notwithstanding."""

    @staticmethod
    def still_bound(bound: bool, asked: list[tuple[str, str]]) -> Any:
        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            asked.append((room_id, binding.channel_id))
            return binding if bound else None

        return check

    async def test_a_retry_stops_once_the_channel_is_detached(self) -> None:
        asked: list[tuple[str, str]] = []
        target = Probe("t", deliveries=[ConnectionError("reset")] * 3)
        breakers: dict[str, CircuitBreaker] = {}
        router = make_router(target, still_bound=self.still_bound(False, asked), breakers=breakers)
        result = await broadcast(router, bind("t", retry_policy=RetryPolicy(max_retries=3)))
        assert len(target.delivered) == 1  # the first attempt only
        assert result.delivery_results["t"].error == "channel_detached"
        assert result.errors == {"t": "channel_detached"}
        assert asked == [("r1", "t")]
        # The attempt it made failed: one failure for its breaker, as uncut.
        assert breakers["t"].failure_count == 1

    async def test_a_delivery_that_must_wait_for_its_token_asks_first(self) -> None:
        # Before, it waited for a token of the detached channel, then stopped: a backlog of
        # the room's messages for a channel of one message each 2 s held its room's other
        # deliveries 2 s a message after the detach.
        asked: list[tuple[str, str]] = []
        sleep = RecordingSleep()
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        target = Probe("t")
        limited = bind("t", rate_limit=RateLimit(max_per_minute=30))
        router = make_router(
            target, rate_limiter=limiter, still_bound=self.still_bound(False, asked)
        )
        await broadcast(router, limited)  # its token at hand: nothing waited, nothing asked
        assert asked == [] and len(target.delivered) == 1
        result = await broadcast(router, limited)
        assert sleep.delays == []  # no wait for the detached channel's token
        assert asked == [("r1", "t")] and len(target.delivered) == 1
        assert result.delivery_results["t"].error == "channel_detached"
        assert router.breaker("t").failure_count == 0  # no attempt: nothing to count

    async def test_a_delivery_that_waited_for_its_token_stops(self) -> None:
        bound = [True, False]  # bound before its wait, detached during it

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return binding if bound.pop(0) else None

        sleep = RecordingSleep()
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        target = Probe("t")
        limited = bind("t", rate_limit=RateLimit(max_per_minute=30))
        router = make_router(target, rate_limiter=limiter, still_bound=check)
        await broadcast(router, limited)
        result = await broadcast(router, limited)
        assert sleep.delays == [pytest.approx(2.0)] and bound == []
        assert len(target.delivered) == 1
        assert result.delivery_results["t"].error == "channel_detached"
        # The kit's limiter spends a token per call made or waited for: this one is not
        # given back (the channel is detached; a token lent meanwhile would be owed).
        assert router.breaker("t").failure_count == 0  # no attempt: nothing to count

    @pytest.mark.parametrize("waiting_for", ["token", "backoff"])
    async def test_a_long_wait_ends_once_the_channel_is_detached(
        self, monkeypatch: pytest.MonkeyPatch, waiting_for: str
    ) -> None:
        # Before, a delivery waiting 10 s (for a token, to try again) learnt of the detach
        # only once the wait was over, holding its room's deliveries as long.
        monkeypatch.setattr("roomkit.core.event_router._WATCH_FIRST", 0.05)
        answers = [True]  # bound when the wait begins, then detached

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return binding if (answers.pop(0) if answers else False) else None

        if waiting_for == "token":
            target = Probe("t")
            used = bind("t", rate_limit=RateLimit(max_per_second=0.1))
        else:
            target = Probe("t", deliveries=[ConnectionError("reset")])
            used = bind("t", retry_policy=RetryPolicy(max_retries=1, base_delay_seconds=10))
            answers.clear()  # a retry asks only once its backoff has begun
        limiter = TokenBucketRateLimiter()
        router = make_router(target, rate_limiter=limiter, still_bound=check, sleep=anyio.sleep)
        if waiting_for == "token":
            await broadcast(router, used)  # spends the one token
        with anyio.fail_after(5):
            result = await broadcast(router, used)
        assert result.delivery_results["t"].error == "channel_detached"
        assert len(target.delivered) == 1

    async def test_a_watched_wait_that_fails_fails_the_delivery_with_its_own_error(
        self,
    ) -> None:
        # Raised inside the watch's task group, it came out as an ExceptionGroup: the
        # delivery's error said "unhandled errors in a TaskGroup (1 sub-exception)".
        async def bound(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return binding

        async def sleep(seconds: float) -> None:
            raise RuntimeError("the clock is gone")

        target = Probe("t", deliveries=[ConnectionError("reset")])
        used = bind("t", retry_policy=RetryPolicy(max_retries=1, base_delay_seconds=10))
        router = make_router(target, still_bound=bound, sleep=sleep)
        with anyio.fail_after(5):
            result = await broadcast(router, used)
        assert result.delivery_results["t"].error == "the clock is gone"

    @pytest.mark.parametrize(
        ("now", "attempts", "delays"),
        [
            (None, 1, [1.0]),
            (RetryPolicy(max_retries=0), 1, [1.0]),
            (RetryPolicy(max_retries=1, base_delay_seconds=0.5), 2, [1.0]),
            (
                RetryPolicy(max_retries=5, base_delay_seconds=0.01),
                6,
                [1.0, 0.02, 0.04, 0.08, 0.16],
            ),
        ],
    )
    async def test_a_retry_follows_the_retry_policy_of_the_binding_as_it_is_now(
        self, now: RetryPolicy | None, attempts: int, delays: list[float]
    ) -> None:
        # Before, the schedule of the binding the delivery began with went on: a channel
        # attached again without retries was tried 4 times, each retry given a binding
        # saying it takes none.
        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        changed = used.model_copy(update={"retry_policy": now})

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return changed

        sleep = RecordingSleep()
        target = Probe("t", deliveries=[ConnectionError("reset")] * 10)
        result = await broadcast(make_router(target, still_bound=check, sleep=sleep), used)
        assert result.delivery_results["t"].error == "reset"
        assert len(target.delivered) == attempts
        assert sleep.delays == [pytest.approx(d) for d in delays]

    @pytest.mark.parametrize(
        "change",
        [{"category": INTELLIGENCE}, {"direction": ChannelDirection.OUTBOUND}],
        ids=["intelligence", "outbound"],
    )
    async def test_a_retry_stops_for_a_binding_a_broadcast_would_not_deliver_to(
        self, change: dict[str, Any]
    ) -> None:
        # Before, only an access that may not read cut it: attached again as an AI channel,
        # or OUTBOUND-only, the channel still got the retries (a new message would not).
        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        changed = used.model_copy(update=change)

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return changed

        target = Probe("t", deliveries=[ConnectionError("reset")] * 3)
        router = make_router(target, still_bound=check)
        result = await broadcast(router, used)
        assert len(target.delivered) == 1
        assert result.delivery_results["t"].error == "channel_detached"

    async def test_a_retry_goes_through_the_channel_registered_now_prepared_for_it(
        self,
    ) -> None:
        # Before, a channel registered again under its id (register_channel replaces it)
        # and attached again meanwhile: the retry called the replaced object, with the new
        # binding and the content prepared for the old one (not cut to its max_length).
        old = Probe("t", deliveries=[ConnectionError("reset")])
        new = Probe("t")
        channels: dict[str, Channel] = {"t": old}
        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        changed = bind("t", max_length=10, retry_policy=RetryPolicy(max_retries=3))

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            channels["t"] = new
            return changed

        router = EventRouter(channels, sleep=RecordingSleep(), still_bound=check)
        result = await broadcast(router, used, event=message("a message longer than ten"))
        assert result.delivery_results["t"].success
        assert [body(e) for e in old.delivered] == ["a message longer than ten"]
        assert [body(e) for e in new.delivered] == ["a messa..."]
        assert new.bindings == [changed]

    async def test_a_retry_its_changed_binding_cannot_take_fails_as_not_transcoded(
        self,
    ) -> None:
        # Prepared again for the binding as it is now: one that takes no such content fails
        # as a broadcast to it would (its transcoding refused), without calling deliver.
        class Refusing(ContentTranscoder):
            async def transcode(
                self, content: EventContent, source: ChannelBinding, target: ChannelBinding
            ) -> EventContent | None:
                return None if M.TEXT not in target.capabilities.media_types else content

        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        changed = bind("t", media=(M.AUDIO,), retry_policy=RetryPolicy(max_retries=3))

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return changed

        target = Probe("t", deliveries=[ConnectionError("reset")])
        router = make_router(target, still_bound=check, transcoder=Refusing())
        result = await broadcast(router, used)
        assert result.delivery_results["t"].error == "transcoding_failed"
        assert len(target.delivered) == 1
        assert router.breaker("t").failure_count == 1  # the attempt made, as uncut

    async def test_the_check_is_given_the_binding_the_delivery_uses(self) -> None:
        # Asked with the channel id alone, a channel detached and attached again (another
        # access, another policy) meanwhile was "still bound": the retry went out with the
        # binding of before the detach.
        seen: list[ChannelBinding] = []

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            seen.append(binding)
            return None

        target = Probe("t", deliveries=[ConnectionError("reset")])
        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        result = await broadcast(make_router(target, still_bound=check), used)
        assert result.delivery_results["t"].error == "channel_detached"
        assert [b.attached_at for b in seen] == [used.attached_at]

    async def test_a_probe_that_failed_then_was_cut_opens_the_circuit_again(self) -> None:
        # Before, the cut abandoned the probe: the breaker stayed half-open with no probe,
        # and the next delivery, from any room, went to the channel that had just failed.
        now = [0.0]
        breakers = {
            "t": CircuitBreaker(failure_threshold=1, recovery_timeout=30, clock=lambda: now[0])
        }
        bound = [True]

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return binding if bound[0] else None

        target = Probe("t", deliveries=[ConnectionError("down")] * 10)
        router = make_router(target, still_bound=check, breakers=breakers)
        await broadcast(router, bind("t"))
        assert breakers["t"].state is CircuitState.OPEN
        now[0] = 31.0  # recovered: the next delivery is the probe
        bound[0] = False  # its channel detached while its retry waits
        result = await broadcast(router, bind("t", retry_policy=RetryPolicy(max_retries=3)))
        assert result.delivery_results["t"].error == "channel_detached"
        assert breakers["t"].state is CircuitState.OPEN
        bound[0] = True  # another room's binding of the channel
        result = await broadcast(router, bind("t"))
        assert result.delivery_results["t"].error == "circuit_breaker_open"
        assert len(target.delivered) == 2

    async def test_deliveries_that_failed_then_were_cut_open_the_circuit(self) -> None:
        # Before, a delivery cut after its attempt failed counted nothing: a channel failing
        # every call never opened its breaker while its rooms detached it.
        breakers = {"t": CircuitBreaker(failure_threshold=2, recovery_timeout=30)}
        target = Probe("t", deliveries=[ConnectionError("down")] * 10)
        router = make_router(target, still_bound=self.still_bound(False, []), breakers=breakers)
        for _ in range(2):
            result = await broadcast(router, bind("t", retry_policy=RetryPolicy(max_retries=3)))
            assert result.delivery_results["t"].error == "channel_detached"
        assert len(target.delivered) == 2
        assert breakers["t"].state is CircuitState.OPEN

    async def test_a_probe_cut_before_any_attempt_lets_the_next_one_probe(self) -> None:
        now = [0.0]
        breakers = {
            "t": CircuitBreaker(failure_threshold=1, recovery_timeout=30, clock=lambda: now[0])
        }
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=RecordingSleep())
        target = Probe("t", deliveries=[ConnectionError("down")])
        limited = bind("t", rate_limit=RateLimit(max_per_minute=30))
        router = make_router(
            target,
            rate_limiter=limiter,
            breakers=breakers,
            still_bound=self.still_bound(False, []),
        )
        await broadcast(router, limited)  # its token at hand: called, failed, opened
        now[0] = 31.0
        result = await broadcast(router, limited)  # the probe: waited for its token, cut
        assert result.delivery_results["t"].error == "channel_detached"
        assert len(target.delivered) == 1 and breakers["t"].state is CircuitState.HALF_OPEN
        result = await broadcast(router, bind("t"))  # the channel was never called: it probes
        assert result.delivery_results["t"].success

    async def test_a_channel_still_bound_is_tried_again(self) -> None:
        asked: list[tuple[str, str]] = []
        target = Probe("t", deliveries=[ConnectionError("reset")] * 2)
        router = make_router(target, still_bound=self.still_bound(True, asked))
        result = await broadcast(router, bind("t", retry_policy=RetryPolicy(max_retries=3)))
        assert len(target.delivered) == 3 and result.delivery_results["t"].success
        assert asked == [("r1", "t")] * 2

    async def test_a_retry_takes_the_binding_as_it_is_now(self) -> None:
        # Changed meanwhile (its recipient, its metadata), the retry went out with the binding
        # of before; told apart by their times of attach, a re-attach at the same time was
        # taken for the same binding, and a store keeping rounded times cut deliveries of
        # channels never detached.
        used = bind("t", retry_policy=RetryPolicy(max_retries=3))
        now = used.model_copy(update={"metadata": {"recipient_id": "+2"}})

        async def check(room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
            return now

        target = Probe("t", deliveries=[ConnectionError("reset")])
        result = await broadcast(make_router(target, still_bound=check), used)
        assert result.delivery_results["t"].success
        assert [b.metadata for b in target.bindings] == [{}, {"recipient_id": "+2"}]


# -- chain depth ----------------------------------------------------------------------------


class TestChainDepth:
    async def test_responses_below_the_limit_reenter(self) -> None:
        ai = Probe("ai", output=reply())
        result = await broadcast(
            make_router(ai), bind("ai", category=INTELLIGENCE), event=message(chain_depth=3)
        )
        assert [e.chain_depth for e in result.reentry_events] == [4]
        assert result.blocked_events == []

    async def test_responses_at_the_limit_are_blocked_with_an_observation(self) -> None:
        ai = Probe("ai", output=reply("too deep"))
        result = await broadcast(
            make_router(ai), bind("ai", category=INTELLIGENCE), event=message(chain_depth=4)
        )
        assert result.reentry_events == []
        (blocked,) = result.blocked_events
        assert blocked.status is EventStatus.BLOCKED
        assert blocked.blocked_by == CHAIN_DEPTH_BLOCKED_BY == "event_chain_depth_limit"
        assert blocked.chain_depth == 5 and body(blocked) == "too deep"
        (obs,) = result.observations
        assert obs.id == f"obs_{blocked.id}"
        assert obs.category == "event_chain_depth_exceeded"
        assert obs.content == "Event chain depth 5 exceeded limit 5"  # 0.3.0's text
        assert obs.room_id == "r1" and obs.channel_id == "ai"
        assert obs.metadata == {"chain_depth": 5, "max_chain_depth": 5, "source_channel": "ai"}

    @pytest.mark.parametrize(("given", "counted"), [(0, 4), (3, 4), (4, 4), (9, 9)])
    async def test_a_response_counts_deeper_than_the_event_it_answers(
        self, given: int, counted: int
    ) -> None:
        # Whatever depth its channel gave it: one that kept the default 0 re-entered for ever.
        def output(event: RoomEvent) -> ChannelOutput:
            response = RoomEvent(
                room_id=event.room_id,
                source=EventSource(channel_id="ai", channel_type=ChannelType.AI),
                content=TextContent(body="reply"),
                chain_depth=given,
            )
            return ChannelOutput(responded=True, response_events=[response])

        ai = Probe("ai", output=output)
        result = await broadcast(
            make_router(ai, max_chain_depth=math.inf),
            bind("ai", category=INTELLIGENCE),
            event=message(chain_depth=3),
        )
        assert [e.chain_depth for e in result.reentry_events] == [counted]

    async def test_a_response_at_the_parents_depth_is_blocked_at_the_limit(self) -> None:
        def output(event: RoomEvent) -> ChannelOutput:
            response = RoomEvent(
                room_id=event.room_id,
                source=EventSource(channel_id="ai", channel_type=ChannelType.AI),
                content=TextContent(body="same depth"),
                chain_depth=event.chain_depth,
            )
            return ChannelOutput(responded=True, response_events=[response])

        ai = Probe("ai", output=output)
        result = await broadcast(
            make_router(ai), bind("ai", category=INTELLIGENCE), event=message(chain_depth=4)
        )
        assert result.reentry_events == []
        (blocked,) = result.blocked_events
        assert blocked.chain_depth == 5 and blocked.blocked_by == CHAIN_DEPTH_BLOCKED_BY

    async def test_max_depth_one_blocks_the_first_reply(self) -> None:
        ai = Probe("ai", output=reply())
        result = await broadcast(
            make_router(ai, max_chain_depth=1), bind("ai", category=INTELLIGENCE)
        )
        assert result.reentry_events == []
        assert len(result.blocked_events) == 1


# -- concurrency ----------------------------------------------------------------------------


class TestConcurrency:
    async def test_targets_run_concurrently_and_merge_in_binding_order(self) -> None:
        """``a`` waits until ``b`` has run: sequential processing would deadlock."""
        b_done = anyio.Event()

        class Waiting(Probe):
            async def on_event(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                await b_done.wait()
                return await super().on_event(event, binding, context)

        class Signalling(Probe):
            async def on_event(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                output = await super().on_event(event, binding, context)
                b_done.set()
                return output

        a = Waiting("a", output=reply("from a"))
        b = Signalling("b", output=reply("from b"))
        with anyio.fail_after(5):
            result = await broadcast(
                make_router(a, b),
                bind("a", category=INTELLIGENCE),
                bind("b", category=INTELLIGENCE),
            )
        assert [body(e) for e in result.reentry_events] == ["from a", "from b"]
        assert list(result.outputs) == ["a", "b"]


# -- deliver_to (injected events) -----------------------------------------------------------


class TestDeliverTo:
    async def test_a_transport_target_sees_it_and_sends_it_out(self) -> None:
        """QUIRK 5 fixed: injected events also go out through ``deliver``."""
        target = Probe("t")
        router = make_router(target)
        delivery = await router.deliver_to(message(), bind("t"), context(bind("src"), bind("t")))
        assert delivery is not None and delivery.success and delivery.provider_result == OK
        assert len(target.seen) == len(target.delivered) == 1

    async def test_another_target_only_sees_it(self) -> None:
        target = Probe("ai", on_event_error=RuntimeError("the model is down"))
        ai = bind("ai", category=ChannelCategory.INTELLIGENCE)
        delivery = await make_router(target).deliver_to(message(), ai, context(bind("src"), ai))
        assert delivery is None  # nothing to send out (deliver_injected says how it failed)
        assert len(target.seen) == 1 and target.delivered == []

    async def test_the_failure_of_a_target_that_sends_nothing_is_said_as_a_broadcast_says_it(
        self,
    ) -> None:
        # An AI target that missed an injected event (its transcoding refused, its on_event
        # failed) was reported nowhere: deliver_to returned None, as for a success, so the
        # room fired no ON_ERROR where a broadcast's errors named the target.
        ai = bind("ai", category=ChannelCategory.INTELLIGENCE)
        source = bind("src", media=(M.TEXT, M.MEDIA))
        media = message(MediaContent(url=IMG, mime_type="image/png"))
        cases: list[tuple[EventRouter, RoomEvent]] = [
            (make_router(Probe("ai"), transcoder=SpyTranscoder(refuse=True)), media),
            (make_router(Probe("ai"), transcoder=Broken()), media),
            (
                make_router(Probe("ai", on_event_error=RuntimeError("the model is down"))),
                message(),
            ),
            (
                make_router(Probe("ai", output=lambda e: ChannelOutput.failed("not now"))),
                message(),
            ),
        ]
        errors = []
        for router, event in cases:
            said = await router.broadcast(event, source, context(source, ai))
            injected = await router.deliver_injected(event, ai, context(source, ai))
            assert injected == (None, said.errors["ai"])
            errors.append(said.errors["ai"])
        assert errors == ["transcoding_failed", "no translator", "the model is down", "not now"]
        # A target that did not fail, or is not registered (skipped, as by a broadcast).
        assert await make_router(Probe("ai")).deliver_injected(message(), ai, context(ai)) == (
            None,
            None,
        )
        assert await make_router().deliver_injected(message(), ai, context(ai)) == (None, None)

    async def test_explicit_targets_skip_the_mute_check_not_the_access_one(self) -> None:
        target = Probe("t")
        binding = bind("t", muted=True)
        delivery = await make_router(target).deliver_to(message(), binding, context(binding))
        assert delivery is not None and delivery.success
        # A target that may not read the room sends nothing (it sent injected events).
        for access in (Access.WRITE_ONLY, Access.NONE):
            binding = bind("t", access=access)
            assert (
                await make_router(target).deliver_to(message(), binding, context(binding)) is None
            )
        assert len(target.delivered) == 1

    async def test_transcodes_against_the_source_binding(self) -> None:
        target = Probe("t")
        source = bind("src", media=(M.TEXT, M.RICH))
        spy = SpyTranscoder()
        await make_router(target, transcoder=spy).deliver_to(
            message(RichContent(body="*b*", plain_text="b")),
            bind("t", max_length=100),
            context(source, bind("t")),
        )
        assert spy.calls == [("src", "t")]
        assert body(target.delivered[0]) == "b"

    async def test_transcodes_by_content_without_a_source_binding(self) -> None:
        target = Probe("t")
        await make_router(target).deliver_to(
            message(MediaContent(url=IMG, mime_type="image/png")),
            bind("t", max_length=10),
            context(bind("t")),
        )
        assert body(target.delivered[0]) == "[Media:..."

    async def test_failures(self) -> None:
        failed = ProviderResult(success=False, error="blocked_number")
        target = Probe("t", deliveries=[failed])
        breakers: dict[str, CircuitBreaker] = {}
        router = make_router(target, breakers=breakers, breaker_factory=lambda: CircuitBreaker(1))
        ctx = context(bind("t"))
        missing = await router.deliver_to(message(), bind("ghost"), ctx)
        assert (missing.success, missing.error) == (False, "channel_not_registered")
        delivery = await router.deliver_to(message(), bind("t"), ctx)
        assert (delivery.success, delivery.error) == (False, "blocked_number")
        assert delivery.provider_result == failed
        refused = await router.deliver_to(message(), bind("t"), ctx)
        assert refused.error == "circuit_breaker_open"
        assert len(target.delivered) == 1

    async def test_transcoding_refused(self) -> None:
        target = Probe("t")
        delivery = await make_router(target, transcoder=SpyTranscoder(refuse=True)).deliver_to(
            message(MediaContent(url=IMG, mime_type="image/png")), bind("t"), context()
        )
        assert (delivery.success, delivery.error) == (False, "transcoding_failed")
        assert target.delivered == []

    async def test_transcoder_exception(self) -> None:
        target = Probe("t")
        source = bind("src", media=(M.TEXT, M.RICH))
        delivery = await make_router(target, transcoder=Broken()).deliver_to(
            message(), bind("t"), context(source)
        )
        assert (delivery.success, delivery.error) == (False, "no translator")
        assert target.delivered == []

    async def test_transcoder_answering_no_content(self) -> None:
        # Its string reached the target's deliver as the event's content.
        target = Probe("t")
        source = bind("src", media=(M.TEXT, M.RICH))
        delivery = await make_router(target, transcoder=Stringly()).deliver_to(
            message(), bind("t"), context(source)
        )
        assert (delivery.success, delivery.error) == (False, STRINGLY_SAID)
        assert target.delivered == []

    async def test_plain_def_transcoder(self) -> None:
        target = Probe("t")
        source = bind("src", media=(M.TEXT, M.RICH))
        delivery = await make_router(target, transcoder=PlainDef()).deliver_to(
            message(), bind("t"), context(source)
        )
        assert delivery.success and body(target.delivered[0]) == "plain"

    async def test_retry_policy_applies(self) -> None:
        target = Probe("t", deliveries=[ConnectionError("once")])
        sleep = RecordingSleep()
        binding = bind("t", retry_policy=RetryPolicy(max_retries=1))
        delivery = await make_router(target, sleep=sleep).deliver_to(
            message(), binding, context(binding)
        )
        assert delivery.success and len(target.delivered) == 2 and sleep.delays == [1.0]


async def test_no_targets_returns_an_empty_result() -> None:
    result = await broadcast(make_router())
    assert result == BroadcastResult()


async def test_default_collaborators() -> None:
    router = EventRouter({})
    assert isinstance(router.rate_limiter, TokenBucketRateLimiter)
    assert router.breakers == {}
    assert router.max_chain_depth == 5
    assert router.breaker("x") is router.breaker("x")
