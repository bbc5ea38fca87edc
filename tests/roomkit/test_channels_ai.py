"""AIChannel: context building, replies, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

from providers import (
    AIContext,
    AIImagePart,
    AIProvider,
    AIResponse,
    AITextPart,
    AITool,
    MockAIProvider,
    ProviderError,
)
from roomkit import HookExecution, HookTrigger, RoomKit
from roomkit.channels import SMS_CAPABILITIES, AIChannel
from roomkit.channels import ai as ai_module
from roomkit.core.router import DefaultContentTranscoder
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import (
    ChannelCategory,
    ChannelMediaType,
    ChannelType,
    EventStatus,
    EventType,
)
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    EventSource,
    LocationContent,
    MediaContent,
    RichContent,
    RoomEvent,
    SystemContent,
    TextContent,
    VideoContent,
)
from roomkit.models.room import Room
from tests.roomkit.kit_helpers import SimpleChannel, text

AI_ID = "ai-1"


def _event(
    body: str | EventContent = "hello",
    *,
    channel_id: str = "sms-1",
    channel_type: ChannelType = ChannelType.SMS,
    room_id: str = "r1",
    **kwargs: Any,
) -> RoomEvent:
    content = TextContent(body=body) if isinstance(body, str) else body
    return RoomEvent(
        room_id=room_id,
        source=EventSource(channel_id=channel_id, channel_type=channel_type),
        content=content,
        **kwargs,
    )


def _ai_event(body: str, **kwargs: Any) -> RoomEvent:
    return _event(body, channel_id=AI_ID, channel_type=ChannelType.AI, **kwargs)


def _attached() -> RoomEvent:
    """The kit's audit event of a channel attached (a system event)."""
    return _event(
        SystemContent(body="attached", code="channel_attached"),
        type=EventType.CHANNEL_ATTACHED,
        channel_id="system",
        channel_type=ChannelType.SYSTEM,
    )


def _ai_binding(**metadata: Any) -> ChannelBinding:
    return ChannelBinding(
        channel_id=AI_ID,
        room_id="r1",
        channel_type=ChannelType.AI,
        category=ChannelCategory.INTELLIGENCE,
        metadata=metadata,
    )


def _context(
    recent: list[RoomEvent] | None = None, bindings: list[ChannelBinding] | None = None
) -> RoomContext:
    return RoomContext(room=Room(id="r1"), bindings=bindings or [], recent_events=recent or [])


def _texts(context: AIContext) -> list[tuple[str, Any]]:
    return [(m.role, m.content) for m in context.messages]


class TestClass:
    def test_attributes_and_capabilities(self) -> None:
        channel = AIChannel(AI_ID, provider=MockAIProvider())
        assert channel.channel_type == ChannelType.AI
        assert channel.category == ChannelCategory.INTELLIGENCE
        assert AIChannel.category == ChannelCategory.INTELLIGENCE
        assert channel.capabilities().media_types == [ChannelMediaType.TEXT, ChannelMediaType.RICH]
        vision = AIChannel(AI_ID, provider=MockAIProvider(vision=True))
        assert ChannelMediaType.MEDIA in vision.capabilities().media_types
        # RICH is among its media types, and 0.3.0 said so in the flag too.
        assert channel.capabilities().supports_rich_text is True
        assert vision.capabilities().supports_rich_text is True
        assert channel.info["model"] == "mock"

    async def test_no_inbound_and_no_delivery(self) -> None:
        channel = AIChannel(AI_ID, provider=MockAIProvider())
        message = InboundMessage(channel_id=AI_ID, sender_id="x", content=TextContent(body="x"))
        with pytest.raises(
            NotImplementedError, match="^AI channel does not accept inbound messages$"
        ):
            await channel.handle_inbound(message, _context())
        assert await channel.deliver(_event(), _ai_binding(), _context()) == ChannelOutput.empty()

    async def test_close_closes_provider(self) -> None:
        class Closing(MockAIProvider):
            closed = False

            async def close(self) -> None:
                self.closed = True

        provider = Closing()
        await AIChannel(AI_ID, provider=provider).close()
        assert provider.closed


class TestReply:
    async def test_reply_event(self) -> None:
        provider = MockAIProvider(["Hi there"])
        channel = AIChannel(AI_ID, provider=provider)
        event = _event("hello", chain_depth=2, correlation_id="corr")
        output = await channel.on_event(event, _ai_binding(), _context([event]))
        assert output.responded
        [reply] = output.response_events
        assert reply.content == TextContent(body="Hi there")
        assert reply.room_id == "r1"
        assert reply.source.channel_id == AI_ID
        assert reply.source.channel_type == ChannelType.AI
        assert reply.chain_depth == 3
        assert reply.parent_event_id == event.id
        assert reply.correlation_id == "corr"
        assert reply.metadata == {"ai_usage": {"prompt_tokens": 10, "completion_tokens": 5}}
        assert reply.id != event.id

    async def test_own_events_are_ignored(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        output = await channel.on_event(_ai_event("me"), _ai_binding(), _context())
        assert output == ChannelOutput.empty()
        assert provider.calls == []

    async def test_empty_reply_is_not_sent(self) -> None:
        channel = AIChannel(AI_ID, provider=MockAIProvider([""]))
        output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()


class _Failing(AIProvider):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    @property
    def model_name(self) -> str:
        return "failing"

    async def generate(self, context: AIContext) -> AIResponse:
        raise self.exc


class TestFailures:
    @pytest.mark.parametrize(
        "exc",
        [
            ProviderError("quota", retryable=True, provider="X", status_code=429),
            RuntimeError("bug"),
        ],
    )
    async def test_error_gives_empty_output_and_is_logged(
        self, exc: Exception, caplog: pytest.LogCaptureFixture
    ) -> None:
        channel = AIChannel(AI_ID, provider=_Failing(exc))
        with caplog.at_level(logging.WARNING, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()
        assert [r.name for r in caplog.records] == ["roomkit.channels.ai"]


async def test_a_provider_failure_reaches_on_error_hooks_and_framework_events() -> None:
    # It showed only in the log: an invalid API key answered nothing, and an app's ON_ERROR
    # hook and delivery_failed handler never heard of it.
    failing = ProviderError("invalid api key", provider="X", status_code=401)
    errors: list[RoomEvent] = []
    failed: list[str | None] = []
    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(AIChannel(AI_ID, provider=_Failing(failing)))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", AI_ID, category=ChannelCategory.INTELLIGENCE)

        @kit.hook(HookTrigger.ON_ERROR, HookExecution.ASYNC)
        async def on_error(event: RoomEvent, context: RoomContext) -> None:
            errors.append(event)

        kit.on("delivery_failed")(lambda e: failed.append(e.channel_id))
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert not result.blocked  # the message itself went through, as in 0.3.0
    assert failed == [AI_ID]
    [error] = errors
    assert isinstance(error.content, SystemContent)
    assert error.content.data["channel_id"] == AI_ID
    assert "invalid api key" in str(error.content.data["error"])


async def test_invalid_ai_settings_of_a_room_reach_on_error_hooks_and_framework_events() -> None:
    # Logged only: a room whose binding said {"temperature": "hot"} never answered, and
    # nothing but the log said why.
    errors: list[RoomEvent] = []
    failed: list[str | None] = []
    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(AIChannel(AI_ID, provider=MockAIProvider()))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel(
            "r1", AI_ID, category=ChannelCategory.INTELLIGENCE, metadata={"temperature": "hot"}
        )

        @kit.hook(HookTrigger.ON_ERROR, HookExecution.ASYNC)
        async def on_error(event: RoomEvent, context: RoomContext) -> None:
            errors.append(event)

        kit.on("delivery_failed")(lambda e: failed.append(e.channel_id))
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert not result.blocked
    assert failed == [AI_ID]
    [error] = errors
    assert isinstance(error.content, SystemContent)
    assert "invalid AI settings in the binding metadata of room r1" in str(
        error.content.data["error"]
    )


class _Returning(AIProvider):
    """A provider returning whatever it is given (a custom provider's own result type)."""

    def __init__(self, result: object) -> None:
        self.result = result

    @property
    def model_name(self) -> str:
        return "returning"

    async def generate(self, context: AIContext) -> AIResponse:
        return self.result  # type: ignore[return-value]


class TestProviderResults:
    async def test_a_result_with_content_and_usage_is_taken_as_a_response(self) -> None:
        # 0.3.0 read any object's content and usage.
        class Answer:
            content = "duck reply"
            usage = {"a": 1, "cost_usd": 0.0012}  # any usage, as 0.3.0 took it

        channel = AIChannel(AI_ID, provider=_Returning(Answer()))
        output = await channel.on_event(_event(), _ai_binding(), _context())
        [reply] = output.response_events
        assert reply.content == TextContent(body="duck reply")
        assert reply.metadata["ai_usage"] == {"a": 1, "cost_usd": 0.0012}

    async def test_a_result_whose_content_is_none_is_an_empty_reply(self) -> None:
        class Nothing:
            content = None

        channel = AIChannel(AI_ID, provider=_Returning(Nothing()))
        output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()

    @pytest.mark.parametrize("result", [None, {"content": "a dict"}])
    async def test_a_result_without_content_fails_the_target(self, result: object) -> None:
        # As 0.3.0's reading of result.content did: the router reports the failure (its
        # framework events and ON_ERROR hooks), instead of a log line only.
        channel = AIChannel(AI_ID, provider=_Returning(result))
        with pytest.raises(TypeError, match="expected an AIResponse"):
            await channel.on_event(_event(), _ai_binding(), _context())


class TestSettings:
    async def test_constructor_defaults(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(
            AI_ID, provider=provider, system_prompt="Be brief", temperature=0.1, max_tokens=99
        )
        await channel.on_event(_event(), _ai_binding(), _context())
        [ctx] = provider.calls
        assert (ctx.system_prompt, ctx.temperature, ctx.max_tokens) == ("Be brief", 0.1, 99)
        assert ctx.tools == []

    @pytest.mark.parametrize(
        ("settings", "error", "said"),
        [
            ({"provider": None}, TypeError, "^provider must be an AIProvider .* got NoneType$"),
            ({"provider": object()}, TypeError, "^provider must be an AIProvider .* got object$"),
            ({"system_prompt": 42}, ValueError, "system_prompt"),
            ({"temperature": "hot"}, ValueError, "temperature"),
            ({"max_tokens": "many"}, ValueError, "max_tokens"),
            ({"max_context_events": "10"}, TypeError, "^max_context_events must be an integer"),
        ],
    )
    def test_wrong_settings_are_refused_when_the_channel_is_made(
        self, settings: dict[str, Any], error: type[Exception], said: str
    ) -> None:
        # Each was taken, then failed every message: logged as an invalid setting in the
        # room's binding metadata (which held none), or as the AI target failing.
        with pytest.raises(error, match=said):
            AIChannel(AI_ID, **{"provider": MockAIProvider(), **settings})

    async def test_settings_are_taken_as_each_message_takes_them(self) -> None:
        # As pydantic reads them into AIContext: what worked at every message before works.
        class DuckProvider:  # no AIProvider base, model_name an attribute
            name = "duck"
            model_name = "duck-1"
            supports_vision = False

            def __init__(self) -> None:
                self.calls: list[AIContext] = []

            async def generate(self, context: AIContext) -> AIResponse:
                self.calls.append(context)
                return AIResponse(content="quack")

        provider = DuckProvider()
        channel = AIChannel(
            AI_ID,
            provider,  # type: ignore[arg-type]
            temperature=Decimal("0.5"),  # type: ignore[arg-type]
            max_tokens=512.0,  # type: ignore[arg-type]
        )
        output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output.responded
        [ctx] = provider.calls
        assert (ctx.temperature, ctx.max_tokens) == (0.5, 512)

    async def test_a_provider_with_only_generate_and_model_name_is_used_as_one(self) -> None:
        # Taken, it failed where the channel read what AIProvider gives by default: its
        # info (name), attaching it (supports_vision), closing the kit (close).
        class Bare:
            model_name = "bare-1"

            async def generate(self, context: AIContext) -> AIResponse:
                return AIResponse(content="hi")

        class Plain(Bare):  # a name that is a method, a close that is a plain function
            def name(self) -> str:
                return "plain"

            def close(self) -> None:
                self.closed = True

        plain = Plain()
        channel = AIChannel(AI_ID, plain)  # type: ignore[arg-type]
        assert channel.info["provider"] == "Plain"
        await channel.close()
        assert plain.closed
        bare = Bare()
        channel = AIChannel(AI_ID, bare)  # type: ignore[arg-type]
        assert channel.provider is bare
        assert channel.info["provider"] == "Bare" and channel.info["model"] == "bare-1"
        assert channel.capabilities().supports_media is False
        output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output.responded
        await channel.close()

    async def test_per_room_overrides_and_tools(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, system_prompt="default")
        tool = {
            "name": "lookup",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
        binding = _ai_binding(
            system_prompt="room prompt",
            temperature=0.0,
            max_tokens=10,
            tools=[tool, AITool(name="other")],
        )
        context = _context()
        await channel.on_event(_event(), binding, context)
        [ctx] = provider.calls
        assert (ctx.system_prompt, ctx.temperature, ctx.max_tokens) == ("room prompt", 0.0, 10)
        assert ctx.tools == [AITool(**tool), AITool(name="other")]
        assert ctx.room == context

    async def test_none_system_prompt_means_no_system_prompt(self) -> None:
        """A present key wins even when None, as in 0.3.0 (``metadata.get(key, default)``)."""
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, system_prompt="default", temperature=0.3)
        await channel.on_event(_event(), _ai_binding(system_prompt=None), _context())
        [ctx] = provider.calls
        assert (ctx.system_prompt, ctx.temperature, ctx.tools) == (None, 0.3, [])

    async def test_absent_keys_keep_the_defaults(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, system_prompt="default", max_tokens=77)
        await channel.on_event(_event(), _ai_binding(other="x"), _context())
        [ctx] = provider.calls
        assert (ctx.system_prompt, ctx.max_tokens, ctx.tools) == ("default", 77, [])

    @pytest.mark.parametrize("key", ["temperature", "max_tokens", "tools"])
    async def test_none_for_a_required_setting_is_invalid(
        self, key: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """0.3.0 took the None too and failed (no reply); it does not mean the default."""
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, temperature=0.3)
        with caplog.at_level(logging.ERROR, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(**{key: None}), _context())
        assert output == ChannelOutput.empty()
        assert output.failure is not None and key in output.failure
        assert provider.calls == []
        assert "invalid AI settings" in caplog.text

    async def test_invalid_settings_give_a_failed_output_and_are_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # An empty output only: the kit said nothing of it (no delivery_failed, no ON_ERROR)
        # where 0.3.0's error out of on_event was reported as the target's failure.
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        binding = _ai_binding(tools=[{"description": "no name"}])
        with caplog.at_level(logging.ERROR, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), binding, _context())
        assert output == ChannelOutput.empty()
        assert output.failure is not None
        assert output.failure.startswith("invalid AI settings in the binding metadata of room")
        assert provider.calls == []
        assert "invalid AI settings" in caplog.text

    async def test_target_capabilities_from_first_other_transport(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        other_ai = ChannelBinding(
            channel_id="ai-2",
            room_id="r1",
            channel_type=ChannelType.AI,
            category=ChannelCategory.INTELLIGENCE,
        )
        sms = ChannelBinding(
            channel_id="sms-1",
            room_id="r1",
            channel_type=ChannelType.SMS,
            capabilities=SMS_CAPABILITIES,
        )
        ws = ChannelBinding(
            channel_id="ws-1",
            room_id="r1",
            channel_type=ChannelType.WEBSOCKET,
            capabilities=ChannelCapabilities(media_types=[ChannelMediaType.RICH]),
        )
        bindings = [_ai_binding(), other_ai, sms, ws]
        await channel.on_event(_event(), _ai_binding(), _context(bindings=bindings))
        [ctx] = provider.calls
        assert ctx.target_capabilities == SMS_CAPABILITIES
        assert ctx.target_media_types == SMS_CAPABILITIES.media_types

    async def test_no_transport_no_target(self) -> None:
        provider = MockAIProvider()
        await AIChannel(AI_ID, provider=provider).on_event(_event(), _ai_binding(), _context())
        assert provider.calls[0].target_capabilities is None
        assert provider.calls[0].target_media_types == []


class TestMessages:
    async def test_roles_and_current_event_once_when_committed(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        history = [_event("hi"), _ai_event("hello, how can I help?"), _event("order 42?")]
        current = history[-1]
        await channel.on_event(current, _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", "hi"),
            ("assistant", "hello, how can I help?"),
            ("user", "order 42?"),
        ]

    async def test_current_event_appended_when_not_in_recent(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        await channel.on_event(_event("now"), _ai_binding(), _context([_event("before")]))
        assert _texts(provider.calls[0]) == [("user", "before"), ("user", "now")]

    async def test_current_event_shown_as_passed_and_last(self) -> None:
        """The router may hand over a transcoded copy: that copy is shown, once, and last.
        What was recorded after it in the same decision (an event a hook injected for the AI:
        "customer is VIP") comes before it: shown after, it was what the model answered."""
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        stored = _event(MediaContent(url="https://x.test/a.pdf", mime_type="application/pdf"))
        injected = _event("NOTE: customer is VIP")
        transcoded = stored.model_copy(update={"content": TextContent(body="[Media: a.pdf]")})
        await channel.on_event(transcoded, _ai_binding(), _context([stored, injected]))
        assert _texts(provider.calls[0]) == [
            ("user", "NOTE: customer is VIP"),
            ("user", "[Media: a.pdf]"),
        ]

    async def test_window_is_the_most_recent_events(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, max_context_events=2)
        history = [_event(str(i)) for i in range(5)]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [("user", "3"), ("user", "4")]

    async def test_zero_window_still_shows_current(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, max_context_events=0)
        history = [_event("old"), _event("now")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [("user", "now")]

    async def test_the_window_counts_the_events_shown(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # System events (a channel attached and detached) took the window's places and pushed
        # the conversation out: the model saw the question alone.
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, max_context_events=3)
        attached = [_attached() for _ in range(6)]
        history = [_event("my name is Ann"), _ai_event("Hi Ann"), *attached, _event("my name?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", "my name is Ann"),
            ("assistant", "Hi Ann"),
            ("user", "my name?"),
        ]
        # More than a room hands its channels: said, not silently cut.
        AIChannel(AI_ID, provider=provider, max_context_events=100)
        assert "max_context_events=100" in caplog.text

    async def test_each_reply_comes_after_the_message_it_answers(self) -> None:
        # Messages that came while the AI answered are recorded before its replies: the model
        # saw two questions, then two answers.
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        first, second = _event("first?"), _event("second?")
        replies = [
            _ai_event(body, parent_event_id=parent)
            for body, parent in (("to first", first.id), ("to second", second.id))
        ]
        other = _event("another AI's", channel_id="ai-2", parent_event_id=first.id)
        history = [first, second, other, *replies, _event("third?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", "first?"),
            ("assistant", "to first"),
            ("user", "second?"),
            ("assistant", "to second"),
            ("user", "another AI's"),  # not this channel's: where it was recorded
            ("user", "third?"),
        ]

    async def test_the_window_is_cut_once_replies_follow_their_messages(self) -> None:
        # Cut first, the replies recorded after the messages that came meanwhile took the
        # window: the model saw two answers and no question.
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, max_context_events=3)
        q0, q1, q2 = _event("q0"), _event("q1"), _event("q2")
        a0 = _ai_event("to q0", parent_event_id=q0.id)
        a1 = _ai_event("to q1", parent_event_id=q1.id)
        history = [q0, q1, a0, a1, q2]  # as the room hands them for q2
        await channel.on_event(q2, _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", "q1"),
            ("assistant", "to q1"),
            ("user", "q2"),
        ]

    async def test_a_reply_to_one_of_its_own_replies_is_shown(self) -> None:
        # A reply whose parent is the channel's own reply was left out of the history.
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        first = _event("first?")
        reply = _ai_event("to first", parent_event_id=first.id)
        more = _ai_event("and more", parent_event_id=reply.id)
        second = _event("second?")
        history = [first, second, reply, more, _event("third?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", "first?"),
            ("assistant", "to first"),
            ("assistant", "and more"),
            ("user", "second?"),
            ("user", "third?"),
        ]

    async def test_skips_empty_blocked_and_system_events(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        history = [
            _attached(),
            _event(SystemContent(body="room closed", code="room_closed"), type=EventType.SYSTEM),
            _event("spam", status=EventStatus.BLOCKED),
            _event("spam edit", type=EventType.EDIT, status=EventStatus.BLOCKED),
            _event(""),
            _event("real"),
        ]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [("user", "real")]

    async def test_a_system_event_with_text_it_answered_stays_in_its_history(self) -> None:
        # send_event(..., event_type=SYSTEM) with text: answered (as in 0.3.0), then left out
        # of the history, so the model saw its answer to a question it was not shown.
        provider = MockAIProvider(["4"])
        channel = AIChannel(AI_ID, provider=provider)
        question = _event("What is 2+2?", type=EventType.SYSTEM)
        output = await channel.on_event(question, _ai_binding(), _context([question]))
        assert output.responded
        history = [question, _ai_event("4"), _event("and now?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[1]) == [
            ("user", "What is 2+2?"),
            ("assistant", "4"),
            ("user", "and now?"),
        ]

    async def test_past_events_of_every_answered_type_are_shown(self) -> None:
        """The channel answers edits, reactions, ...: the model must see what it answered,
        or its history holds replies to nothing (0.3.0 showed every past event)."""
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        shown = [t for t in EventType if t not in (EventType.MESSAGE, EventType.SYSTEM)]
        history = [_event("first"), _ai_event("reply")]
        for event_type in shown:
            history += [_event(f"a {event_type}", type=event_type), _ai_event("reply")]
        history.append(_event("now"))
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        expected = [("user", "first"), ("assistant", "reply")]
        for event_type in shown:
            expected += [("user", f"a {event_type}"), ("assistant", "reply")]
        assert _texts(provider.calls[0]) == [*expected, ("user", "now")]

    async def test_other_ai_channels_are_users(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        other = _event("from the other bot", channel_id="ai-2", channel_type=ChannelType.AI)
        await channel.on_event(other, _ai_binding(), _context([other]))
        assert _texts(provider.calls[0]) == [("user", "from the other bot")]

    async def test_text_only_provider_reads_composite_text(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        composite = CompositeContent(
            parts=[
                TextContent(body="see"),
                MediaContent(url="https://x.test/a.png", mime_type="image/png"),
            ]
        )
        await channel.on_event(_event(composite), _ai_binding(), _context())
        assert _texts(provider.calls[0]) == [("user", "see\n[Media: https://x.test/a.png]")]


class TestVision:
    async def test_media_becomes_caption_and_image_parts(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        media = MediaContent(url="https://x.test/a.png", mime_type="image/png", caption="my cat")
        await channel.on_event(_event(media), _ai_binding(), _context())
        [message] = provider.calls[0].messages
        assert message.role == "user"
        assert message.content == [
            AITextPart(text="my cat"),
            AIImagePart(url="https://x.test/a.png", mime_type="image/png"),
        ]

    async def test_composite_becomes_parts(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        composite = CompositeContent(
            parts=[
                TextContent(body="two pictures"),
                MediaContent(url="https://x.test/a.png", mime_type="image/png"),
                MediaContent(url="https://x.test/b.jpg", mime_type="image/jpeg"),
            ]
        )
        await channel.on_event(_event(composite), _ai_binding(), _context())
        [message] = provider.calls[0].messages
        assert message.content == [
            AITextPart(text="two pictures"),
            AIImagePart(url="https://x.test/a.png", mime_type="image/png"),
            AIImagePart(url="https://x.test/b.jpg", mime_type="image/jpeg"),
        ]

    async def test_text_stays_a_string(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        await channel.on_event(_event("plain"), _ai_binding(), _context())
        assert _texts(provider.calls[0]) == [("user", "plain")]

    async def test_non_image_media_is_not_an_image_part(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        pdf = MediaContent(url="https://x.test/a.pdf", mime_type="application/pdf", caption="doc")
        await channel.on_event(_event(pdf), _ai_binding(), _context())
        assert _texts(provider.calls[0]) == [("user", "[Media: doc]")]


class _Scripted(AIProvider):
    """A provider recording every context; ``answer`` decides each reply (or raises)."""

    def __init__(
        self,
        answer: Callable[[AIContext], AIResponse] | None = None,
        *,
        vision: bool = False,
    ) -> None:
        self.calls: list[AIContext] = []
        self._answer = answer or (lambda _: AIResponse(content="ok"))
        self._vision = vision

    @property
    def model_name(self) -> str:
        return "scripted"

    @property
    def supports_vision(self) -> bool:
        return self._vision

    async def generate(self, context: AIContext) -> AIResponse:
        self.calls.append(context)
        return self._answer(context)


EXPIRED = "https://x.test/expired.jpg"


def _image_urls(context: AIContext) -> list[str]:
    return [
        part.url
        for message in context.messages
        if isinstance(message.content, list)
        for part in message.content
        if isinstance(part, AIImagePart)
    ]


def _refuse_expired(context: AIContext) -> AIResponse:
    """What Anthropic answers when it cannot download an image of the request."""
    if EXPIRED in _image_urls(context):
        raise ProviderError("HTTP 400: Unable to download the file", provider="X", status_code=400)
    return AIResponse(content="ok")


def _photo(url: str = EXPIRED, **kwargs: Any) -> RoomEvent:
    return _event(MediaContent(url=url, mime_type="image/jpeg"), **kwargs)


class TestHistoryImages:
    async def test_past_images_are_sent_as_images(self) -> None:
        """0.3.0: a vision provider gets the images of past events too."""
        provider = _Scripted(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_photo("https://x.test/cat.jpg"), _ai_event("a cat"), _event("its name?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _image_urls(provider.calls[0]) == ["https://x.test/cat.jpg"]

    async def test_refused_past_image_is_retried_as_text(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        provider = _Scripted(_refuse_expired, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_photo(), _ai_event("nice"), _event("and now?")]
        with caplog.at_level(logging.WARNING, logger="roomkit.channels.ai"):
            output = await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert output.responded
        first, retry = provider.calls
        assert _image_urls(first) == [EXPIRED]
        assert _texts(retry) == [
            ("user", f"[Media: {EXPIRED}]"),
            ("assistant", "nice"),
            ("user", "and now?"),
        ]
        assert "retrying once with them as text" in caplog.text

    async def test_refused_image_stays_text_in_that_room_only(self) -> None:
        provider = _Scripted(_refuse_expired, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_photo(), _event("one")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert len(provider.calls) == 2
        history.append(_event("two"))
        output = await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert output.responded
        assert len(provider.calls) == 3  # no failed first attempt any more
        assert _texts(provider.calls[2])[0] == ("user", f"[Media: {EXPIRED}]")
        # Another room never had it refused: its copy of the URL is still sent as an image.
        other = [_photo(room_id="r2"), _event("hi", room_id="r2")]
        await channel.on_event(other[-1], _ai_binding(), _context(other))
        assert _image_urls(provider.calls[3]) == [EXPIRED]

    async def test_a_provider_with_a_reply_type_of_its_own_has_refused_images_remembered(
        self,
    ) -> None:
        # Its reply (not an AIResponse, read by its content) did not count as a success of
        # the retry: every later turn sent the refused image again first.
        class Reply:
            def __init__(self, content: str) -> None:
                self.content = content
                self.usage: dict[str, int] = {}

        def refuse_expired_own_type(context: AIContext) -> AIResponse:
            _refuse_expired(context)
            return Reply("ok")  # type: ignore[return-value]

        provider = _Scripted(refuse_expired_own_type, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_photo(), _event("one")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        history.append(_event("two"))
        output = await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert output.responded
        assert len(provider.calls) == 3  # no failed first attempt on the second turn

    async def test_remembered_images_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse_any_image(context: AIContext) -> AIResponse:
            if _image_urls(context):
                raise ProviderError("HTTP 400: bad image", status_code=400)
            return AIResponse(content="ok")

        monkeypatch.setattr(ai_module, "_UNUSABLE_IMAGES_MAX", 1)
        provider = _Scripted(refuse_any_image, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        for room in ("r1", "r2"):  # r2's refused image pushes r1's out
            history = [_photo(room_id=room), _event("x", room_id=room)]
            await channel.on_event(history[-1], _ai_binding(), _context(history))
        provider.calls.clear()
        history = [_photo(), _event("again")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert len(provider.calls) == 2  # r1's image forgotten: tried as an image again

    async def test_current_image_is_not_replaced(self) -> None:
        provider = _Scripted(_refuse_expired, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        current = _photo()
        output = await channel.on_event(current, _ai_binding(), _context([current]))
        assert output == ChannelOutput.empty()
        assert len(provider.calls) == 1

    async def test_retryable_failure_is_not_retried(self) -> None:
        def busy(context: AIContext) -> AIResponse:
            raise ProviderError("overloaded", retryable=True, status_code=529)

        provider = _Scripted(busy, vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_photo("https://x.test/cat.jpg"), _event("hi")]
        output = await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert output == ChannelOutput.empty()
        assert len(provider.calls) == 1


class TestAttachments:
    async def test_uppercase_image_mime_type_is_an_image(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        media = MediaContent(url="https://x.test/p.png", mime_type="IMAGE/PNG")
        await channel.on_event(_event(media), _ai_binding(), _context())
        [message] = provider.calls[0].messages
        assert message.content == [AIImagePart(url="https://x.test/p.png", mime_type="image/png")]

    async def test_vision_reads_a_file_as_the_transcoder_placeholder(self) -> None:
        provider = MockAIProvider(vision=True)
        channel = AIChannel(AI_ID, provider=provider)
        pdf = MediaContent(
            url="https://x.test/report.pdf", mime_type="application/pdf", filename="report.pdf"
        )
        await channel.on_event(_event(pdf), _ai_binding(), _context())
        assert _texts(provider.calls[0]) == [("user", "[Media: report.pdf]")]

    @pytest.mark.parametrize("vision", [False, True])
    async def test_nothing_to_read_means_no_call(
        self, vision: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        provider = MockAIProvider(vision=vision)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_event("before"), _event("")]
        with caplog.at_level(logging.INFO, logger="roomkit.channels.ai"):
            output = await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert output == ChannelOutput.empty()
        assert provider.calls == []
        assert "nothing the model can read" in caplog.text


_PAST_CONTENTS: list[tuple[EventContent, str]] = [
    (
        MediaContent(url="https://x.test/r.pdf", mime_type="application/pdf", filename="r.pdf"),
        "[Media: r.pdf]",
    ),
    (
        LocationContent(latitude=48.85, longitude=2.35, label="Office"),
        "[Location: Office (48.85, 2.35)]",
    ),
    (LocationContent(latitude=1.0, longitude=2.0), "[Location: (1.0, 2.0)]"),
    (VideoContent(url="https://x.test/v.mp4"), "[Video: https://x.test/v.mp4]"),
    (AudioContent(url="https://x.test/a.ogg"), "[Voice message: https://x.test/a.ogg]"),
    (AudioContent(url="https://x.test/a.ogg", transcript="call me"), "call me"),
    (RichContent(body="**hi**", plain_text="hi"), "hi"),
    (
        CompositeContent(
            parts=[TextContent(body="look"), VideoContent(url="https://x.test/v.mp4")]
        ),
        "look\n[Video: https://x.test/v.mp4]",
    ),
]


class TestHistoryText:
    @pytest.mark.parametrize("vision", [False, True])
    @pytest.mark.parametrize(("content", "text"), _PAST_CONTENTS)
    async def test_past_event_reads_as_the_transcoder_renders_it(
        self, content: EventContent, text: str, vision: bool
    ) -> None:
        provider = MockAIProvider(vision=vision)
        channel = AIChannel(AI_ID, provider=provider)
        history = [_event(content), _ai_event("Got it."), _event("what did I send?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [
            ("user", text),
            ("assistant", "Got it."),
            ("user", "what did I send?"),
        ]

    @pytest.mark.parametrize(("content", "text"), _PAST_CONTENTS)
    async def test_same_text_as_default_transcoder(self, content: EventContent, text: str) -> None:
        """The kit's transcoder is the reference: a text-only target gets the same text."""
        source = ChannelBinding(channel_id="s", room_id="r1", channel_type=ChannelType.WEBSOCKET)
        text_only = ChannelBinding(
            channel_id="t",
            room_id="r1",
            channel_type=ChannelType.SMS,
            capabilities=ChannelCapabilities(media_types=[ChannelMediaType.TEXT]),
        )
        transcoded = await DefaultContentTranscoder().transcode(content, source, text_only)
        assert transcoded == TextContent(body=text)

    async def test_data_url_is_not_read_out(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        inline = MediaContent(url="data:application/pdf;base64," + "A" * 10_000, mime_type="x/y")
        history = [_event(inline), _event("?")]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0])[0] == ("user", "[Media: data:application/pdf;base64,…]")


class _Stray(AIProvider):
    """Raises CancelledError of its own (an inner operation's), or waits until cancelled."""

    def __init__(self, *, wait: bool = False) -> None:
        self.wait = wait
        self.calls = 0

    @property
    def model_name(self) -> str:
        return "stray"

    async def generate(self, context: AIContext) -> AIResponse:
        self.calls += 1
        if self.wait:
            await anyio.sleep_forever()
        raise asyncio.CancelledError


class TestCancellation:
    async def test_stray_cancelled_error_is_a_provider_failure(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        channel = AIChannel(AI_ID, provider=_Stray())
        with caplog.at_level(logging.WARNING, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()
        assert "CancelledError while nothing cancelled it" in caplog.text

    async def test_real_cancellation_propagates(self) -> None:
        provider = _Stray(wait=True)
        channel = AIChannel(AI_ID, provider=provider)
        outputs: list[ChannelOutput] = []

        async def answer() -> None:
            outputs.append(await channel.on_event(_event(), _ai_binding(), _context()))

        async with anyio.create_task_group() as group:
            group.start_soon(answer)
            await anyio.wait_all_tasks_blocked()
            group.cancel_scope.cancel()
        assert provider.calls == 1
        assert outputs == []  # on_event did not swallow the cancellation


class TestBadSettings:
    @pytest.mark.parametrize("tools", [5, "abc", {"name": "lookup"}])
    async def test_tools_not_a_list(self, tools: Any, caplog: pytest.LogCaptureFixture) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        with caplog.at_level(logging.ERROR, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(tools=tools), _context())
        assert output == ChannelOutput.empty()
        assert provider.calls == []
        assert "invalid AI settings" in caplog.text


class TestEmptyReply:
    @pytest.mark.parametrize(
        ("finish_reason", "metadata"),
        [
            ("refusal", {}),
            ("content_filter", {}),
            ("SAFETY", {}),
            (None, {"block_reason": "PROHIBITED_CONTENT"}),
            ("stop", {"refusal": "I can't help with that."}),
        ],
    )
    async def test_refusal_is_a_warning(
        self, finish_reason: str | None, metadata: dict[str, Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        response = AIResponse(content="", finish_reason=finish_reason, metadata=metadata)
        channel = AIChannel(AI_ID, provider=_Scripted(lambda _: response))
        with caplog.at_level(logging.WARNING, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        assert "declined to answer" in record.getMessage()

    async def test_plain_empty_reply_is_not_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        response = AIResponse(content="", finish_reason="stop")
        channel = AIChannel(AI_ID, provider=_Scripted(lambda _: response))
        with caplog.at_level(logging.WARNING, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), _ai_binding(), _context())
        assert output == ChannelOutput.empty()
        assert caplog.records == []
