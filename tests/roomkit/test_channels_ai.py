"""AIChannel: context building, replies, failures."""

from __future__ import annotations

import logging
from typing import Any

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
from roomkit.channels import SMS_CAPABILITIES, AIChannel
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
    CompositeContent,
    EventContent,
    EventSource,
    MediaContent,
    RoomEvent,
    SystemContent,
    TextContent,
)
from roomkit.models.room import Room

AI_ID = "ai-1"


def _event(
    body: str | EventContent = "hello",
    *,
    channel_id: str = "sms-1",
    channel_type: ChannelType = ChannelType.SMS,
    **kwargs: Any,
) -> RoomEvent:
    content = TextContent(body=body) if isinstance(body, str) else body
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id=channel_id, channel_type=channel_type),
        content=content,
        **kwargs,
    )


def _ai_event(body: str) -> RoomEvent:
    return _event(body, channel_id=AI_ID, channel_type=ChannelType.AI)


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
        assert channel.info["model"] == "mock"

    async def test_no_inbound_and_no_delivery(self) -> None:
        channel = AIChannel(AI_ID, provider=MockAIProvider())
        message = InboundMessage(channel_id=AI_ID, sender_id="x", content=TextContent(body="x"))
        with pytest.raises(NotImplementedError):
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

    async def test_none_override_keeps_the_default(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider, system_prompt="default", temperature=0.3)
        binding = _ai_binding(system_prompt=None, temperature=None, tools=None)
        await channel.on_event(_event(), binding, _context())
        [ctx] = provider.calls
        assert (ctx.system_prompt, ctx.temperature, ctx.tools) == ("default", 0.3, [])

    async def test_invalid_settings_give_empty_output_and_are_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        binding = _ai_binding(tools=[{"description": "no name"}])
        with caplog.at_level(logging.ERROR, logger="roomkit.channels.ai"):
            output = await channel.on_event(_event(), binding, _context())
        assert output == ChannelOutput.empty()
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

    async def test_current_event_shown_as_passed_at_its_place(self) -> None:
        """The router may hand over a transcoded copy: that copy is shown, at its position."""
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        stored = _event(MediaContent(url="https://x.test/a.pdf", mime_type="application/pdf"))
        later = _event("after")
        transcoded = stored.model_copy(update={"content": TextContent(body="[Media: a.pdf]")})
        await channel.on_event(transcoded, _ai_binding(), _context([stored, later]))
        assert _texts(provider.calls[0]) == [("user", "[Media: a.pdf]"), ("user", "after")]

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

    async def test_skips_empty_blocked_and_non_message_events(self) -> None:
        provider = MockAIProvider()
        channel = AIChannel(AI_ID, provider=provider)
        history = [
            _event(
                SystemContent(body="attached", code="channel_attached"),
                type=EventType.CHANNEL_ATTACHED,
            ),
            _event("spam", status=EventStatus.BLOCKED),
            _event(""),
            _event("real"),
        ]
        await channel.on_event(history[-1], _ai_binding(), _context(history))
        assert _texts(provider.calls[0]) == [("user", "real")]

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
        assert _texts(provider.calls[0]) == [("user", "see")]


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
        assert _texts(provider.calls[0]) == [("user", "doc")]
