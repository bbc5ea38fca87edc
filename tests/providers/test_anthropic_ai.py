"""AnthropicAIProvider against a fake Messages API (httpx.MockTransport)."""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from providers.ai import AIContext, AIImagePart, AIMessage, AITextPart, AIToolCall
from providers.ai._messages import UNREADABLE_IMAGE
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.anthropic import AnthropicAIProvider, AnthropicConfig
from providers.errors import ProviderError
from tests.providers.ai_support import (
    CAT_URL,
    ChunkedStream,
    FakeAPI,
    NoSleep,
    ai_room,
    rich_context,
    sse_body,
    sse_response,
)
from tests.roomkit.kit_helpers import text

KEY = "sk-ant-test-0123456789"
MESSAGES_URL = "https://api.anthropic.com/v1/messages"


def provider(client: httpx.AsyncClient, **config: Any) -> AnthropicAIProvider:
    # Retries wait for nothing here (see TestRetries for the delays).
    return AnthropicAIProvider(
        AnthropicConfig(api_key=KEY, **config), client=client, sleep=NoSleep()
    )


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "Hi from Claude"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 4},
    }
    return body | overrides


def error(status: int, kind: str, text: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": kind, "message": text}}
    return httpx.Response(status, json=body, headers=headers)


class TestRequest:
    async def test_rich_context_maps_to_the_documented_body(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, json=message()))
        await provider(client).generate(rich_context())

        request = fake.request
        assert (request.method, str(request.url)) == ("POST", MESSAGES_URL)
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert request.headers["content-type"] == "application/json"
        assert "authorization" not in request.headers
        assert fake.body == {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 256,
            "temperature": 0.3,
            "system": "You are a concise assistant.\n\nAnswer in English.",
            "messages": [
                {"role": "user", "content": "Hi, I'm in Paris."},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is on these pictures?"},
                        {"type": "image", "source": {"type": "url", "url": CAT_URL}},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVBORw0KGgo=",
                            },
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me check the weather."},
                        {
                            "type": "tool_use",
                            "id": "call_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_1",
                            "content": '{"temp_c": 18}',
                        }
                    ],
                },
            ],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "input_schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ],
        }

    async def test_minimal_context_and_config_fallbacks(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, json=message()))
        custom = provider(client, base_url="https://proxy.example.com/", max_tokens=64)
        context = AIContext(max_tokens=0, messages=[AIMessage(role="user", content="hello")])
        await custom.generate(context)
        assert str(fake.request.url) == "https://proxy.example.com/v1/messages"
        assert fake.body == {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 64,
            "temperature": 0.7,
            "messages": [{"role": "user", "content": "hello"}],
        }

    async def test_consecutive_tool_results_share_one_user_turn(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, json=message()))
        calls = [AIToolCall(id="a", name="f"), AIToolCall(id="b", name="f")]
        context = AIContext(
            messages=[
                AIMessage(role="user", content="go"),
                AIMessage(role="assistant", content="", metadata={"tool_calls": calls}),
                AIMessage(role="tool", content="1", metadata={"tool_call_id": "a"}),
                AIMessage(role="tool", content="2", metadata={"tool_call_id": "b"}),
            ]
        )
        await provider(client).generate(context)
        assert fake.body["messages"][1:] == [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "b", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "1"},
                    {"type": "tool_result", "tool_use_id": "b", "content": "2"},
                ],
            },
        ]

    async def test_malformed_data_url_image_is_sent_as_a_placeholder(self, fake: FakeAPI) -> None:
        # The room's history carries the image into every request: failing them all would
        # silence the AI in the room for as long as the image stays in the window.
        fake.reply(httpx.Response(200, json=message()))
        context = AIContext(
            messages=[
                AIMessage(
                    role="user",
                    content=[AIImagePart(url="data:image/png;base64"), AITextPart(text="see?")],
                )
            ]
        )
        response = await provider(fake.client).generate(context)
        assert response.content == "Hi from Claude"
        assert fake.body["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": UNREADABLE_IMAGE},
                    {"type": "text", "text": "see?"},
                ],
            }
        ]

    async def test_invalid_context_fails_before_any_request(self, fake: FakeAPI) -> None:
        client = fake.client
        context = AIContext(messages=[AIMessage(role="tool", content="orphan result")])
        with pytest.raises(ProviderError, match="tool_call_id") as info:
            await provider(client).generate(context)
        assert not info.value.retryable
        assert fake.requests == []


class TestResponse:
    async def test_text_tool_calls_usage_and_stop_reason(self, fake: FakeAPI) -> None:
        client = fake.client
        content = [
            {"type": "text", "text": "It is sunny"},
            {"type": "text", "text": " in Paris."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Lyon"},
            },
        ]
        usage = {"input_tokens": 120, "output_tokens": 30, "cache_read_input_tokens": 10}
        fake.reply(
            httpx.Response(200, json=message(content=content, stop_reason="tool_use", usage=usage))
        )
        response = await provider(client).generate(rich_context())
        assert response.content == "It is sunny in Paris."
        assert response.tool_calls == [
            AIToolCall(id="toolu_01", name="get_weather", arguments={"city": "Lyon"})
        ]
        assert response.finish_reason == "tool_use"
        assert response.usage == {
            "input_tokens": 120,
            "output_tokens": 30,
            "cache_read_input_tokens": 10,
            "prompt_tokens": 130,
            "completion_tokens": 30,
            "total_tokens": 160,
        }
        assert response.metadata == {"id": "msg_01", "model": "claude-sonnet-4-20250514"}

    async def test_unexpected_shape(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, json={"content": [{"type": "tool_use"}]}))
        with pytest.raises(ProviderError, match="unexpected response"):
            await provider(client).generate(rich_context())

    async def test_null_text_is_empty(self, fake: FakeAPI) -> None:
        content = [{"type": "text", "text": None}, {"type": "text", "text": "ok"}]
        fake.reply(httpx.Response(200, json=message(content=content)))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == "ok"  # not "Noneok"

    @pytest.mark.parametrize("value", [5, ["a"], {"a": 1}, True])
    async def test_text_that_is_not_a_string_is_refused(self, fake: FakeAPI, value: Any) -> None:
        content = [{"type": "text", "text": value}]
        fake.reply(httpx.Response(200, json=message(content=content)))
        with pytest.raises(ProviderError, match="unexpected response") as info:
            await provider(fake.client).generate(rich_context())
        assert not info.value.retryable

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}},
            {"error": {"type": "overloaded_error", "message": "Busy"}},  # a gateway's shape
        ],
        ids=["anthropic", "gateway"],
    )
    async def test_error_object_in_a_200_answer_is_the_stream_error(
        self, fake: FakeAPI, body: dict[str, Any]
    ) -> None:
        fake.reply(httpx.Response(200, json=body))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        failure = info.value
        assert failure.message == "error: overloaded_error: Busy"
        assert (failure.retryable, failure.status_code) == (True, 529)
        assert failure.provider == "anthropic"  # 0.3.0's name

    async def test_error_object_in_a_200_answer_never_shows_the_key(self, fake: FakeAPI) -> None:
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": KEY}}
        fake.reply(httpx.Response(200, json=body))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert info.value.message == "error: invalid_request_error: ***"
        assert not info.value.retryable
        assert KEY not in repr(info.value)

    async def test_lone_surrogates_in_the_reply_are_replaced(self, fake: FakeAPI) -> None:
        # Escapes in the JSON text: json.loads turns them into surrogate code points.
        raw = b'{"content": [{"type": "text", "text": "a\\ud800b\\ud83d\\ude00"}]}'
        fake.reply(httpx.Response(200, content=raw))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == "a\ufffdb\U0001f600"


class TestErrors:
    async def test_401_is_not_retryable_and_never_shows_the_key(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        client = fake.client
        fake.reply(error(401, "authentication_error", f"invalid x-api-key {KEY}"))
        caplog.set_level(logging.DEBUG)
        claude = provider(client)
        with pytest.raises(ProviderError) as info:
            await claude.generate(rich_context())
        failure = info.value
        assert (failure.status_code, failure.retryable, failure.retry_after) == (401, False, None)
        assert failure.provider == "anthropic"  # 0.3.0's name
        assert failure.message == "HTTP 401: authentication_error: invalid x-api-key ***"
        for shown in (str(failure), repr(failure), repr(claude), caplog.text):
            assert KEY not in shown

    async def test_429_is_retryable_with_retry_after(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(*(error(429, "rate_limit_error", "slow down", **{"retry-after": "12"}),) * 3)
        with pytest.raises(ProviderError) as info:
            await provider(client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable) == (429, True)
        assert info.value.retry_after == 12.0

    @pytest.mark.parametrize(
        ("status", "kind"),
        [(500, "api_error"), (502, "api_error"), (503, "api_error"), (529, "overloaded_error")],
    )
    async def test_server_errors_are_retryable(
        self, fake: FakeAPI, status: int, kind: str
    ) -> None:
        client = fake.client
        fake.reply(*(error(status, kind, "try again") for _ in range(3)))
        with pytest.raises(ProviderError) as info:
            await provider(client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable) == (status, True)
        assert kind in info.value.message
        assert len(fake.requests) == 3  # as 0.3.0's SDK sent it (max_retries=2)

    async def test_400_is_not_retryable(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(error(400, "invalid_request_error", "max_tokens: too large"))
        with pytest.raises(ProviderError) as info:
            await provider(client).generate(rich_context())
        assert not info.value.retryable

    async def test_timeout(self, fake: FakeAPI) -> None:
        client = fake.client

        def too_slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        fake.reply(too_slow, too_slow, too_slow)
        with pytest.raises(ProviderError) as info:
            await provider(client).generate(rich_context())
        assert (info.value.message, info.value.retryable) == ("timeout", True)
        assert info.value.status_code is None


STREAM = sse_body(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_02",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-20250514",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hel"},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "lo!"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_9",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


STREAM_START: tuple[str | None, object] = (
    None,
    {"type": "message_start", "message": {"id": "m", "model": "claude", "usage": {}}},
)
STREAM_END: list[tuple[str | None, object]] = [
    (None, {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}),
    (None, {"type": "message_stop"}),
]


def tool_block(partial_json: Any) -> list[tuple[str | None, object]]:
    """A tool_use block whose one argument fragment is ``partial_json``."""
    block = {"type": "tool_use", "id": "t", "name": "f"}
    delta = {"type": "input_json_delta", "partial_json": partial_json}
    return [
        (None, {"type": "content_block_start", "index": 0, "content_block": block}),
        (None, {"type": "content_block_delta", "index": 0, "delta": delta}),
    ]


async def collect(stream: Any) -> list[AIStreamEvent]:
    return [event async for event in stream]


class TestStreaming:
    async def test_deltas_in_order_then_the_whole_response(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(sse_response(STREAM))
        events = await collect(provider(client).generate_stream(rich_context()))

        assert fake.body["stream"] is True
        assert str(fake.request.url) == MESSAGES_URL
        assert events[:2] == [AITextDelta(text="Hel"), AITextDelta(text="lo!")]
        assert len(events) == 3
        end = events[2]
        assert isinstance(end, AIStreamEnd)
        assert end.response.content == "Hello!"
        assert end.response.finish_reason == "tool_use"
        assert end.response.tool_calls == [
            AIToolCall(id="toolu_9", name="get_weather", arguments={"city": "Paris"})
        ]
        assert end.response.usage == {
            "input_tokens": 25,
            "output_tokens": 15,
            "prompt_tokens": 25,
            "completion_tokens": 15,
            "total_tokens": 40,
        }
        assert end.response.metadata == {"id": "msg_02", "model": "claude-sonnet-4-20250514"}

    async def test_error_event_is_a_retryable_provider_error(self, fake: FakeAPI) -> None:
        client = fake.client
        overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}
        fake.reply(sse_response(STREAM[:400] + b"\n\n" + sse_body(("error", overloaded))))
        with pytest.raises(ProviderError) as info:
            await collect(provider(client).generate_stream(rich_context()))
        assert info.value.message == "stream error: overloaded_error: Busy"
        assert (info.value.retryable, info.value.status_code) == (True, 529)

    async def test_cut_stream_is_a_retryable_error(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(sse_response(STREAM[: STREAM.index(b"event: message_delta")]))
        with pytest.raises(ProviderError, match="before message_stop") as info:
            await collect(provider(client).generate_stream(rich_context()))
        assert info.value.retryable

    async def test_http_error_before_the_stream(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(*(error(529, "overloaded_error", "Overloaded", **{"retry-after": "3"}),) * 3)
        with pytest.raises(ProviderError) as info:
            await collect(provider(client).generate_stream(rich_context()))
        assert (info.value.status_code, info.value.retryable, info.value.retry_after) == (
            529,
            True,
            3.0,
        )

    @pytest.mark.parametrize(
        "event",
        [
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": 5},
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": 5},
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": None, "name": "f"},
            },
            {
                "type": "content_block_start",
                "index": "0",
                "content_block": {"type": "tool_use", "id": "t", "name": "f"},
            },
            {"type": "message_delta", "delta": {"stop_reason": 4}},
        ],
        ids=["text-int", "start-text-int", "tool-id-null", "index-str", "stop-reason-int"],
    )
    async def test_malformed_event_is_an_unexpected_stream_event(
        self, fake: FakeAPI, event: dict[str, Any]
    ) -> None:
        fake.reply(sse_response(sse_body(STREAM_START, (None, event), *STREAM_END)))
        with pytest.raises(ProviderError) as info:
            await collect(provider(fake.client).generate_stream(rich_context()))
        # Not "invalid tool arguments", not a foreign TypeError or ValidationError.
        assert info.value.message == "unexpected stream event"
        assert not info.value.retryable

    @pytest.mark.parametrize("partial_json", [["{}"], 5])
    async def test_non_string_partial_json_is_an_unexpected_stream_event(
        self, fake: FakeAPI, partial_json: Any
    ) -> None:
        fake.reply(sse_response(sse_body(STREAM_START, *tool_block(partial_json), *STREAM_END)))
        with pytest.raises(ProviderError, match="unexpected stream event"):
            await collect(provider(fake.client).generate_stream(rich_context()))

    async def test_null_partial_json_is_an_empty_fragment(self, fake: FakeAPI) -> None:
        fake.reply(sse_response(sse_body(STREAM_START, *tool_block(None), *STREAM_END)))
        events = await collect(provider(fake.client).generate_stream(rich_context()))
        assert isinstance(events[-1], AIStreamEnd)
        assert events[-1].response.tool_calls == [AIToolCall(id="t", name="f", arguments={})]

    async def test_surrogate_pair_split_across_events_is_joined(self, fake: FakeAPI) -> None:
        halves = (
            '{"type": "content_block_delta", "index": 0, '
            '"delta": {"type": "text_delta", "text": "a\\ud83d"}}',
            '{"type": "content_block_delta", "index": 0, '
            '"delta": {"type": "text_delta", "text": "\\ude00b"}}',
        )
        fake.reply(
            sse_response(sse_body(STREAM_START, *((None, half) for half in halves), *STREAM_END))
        )
        events = await collect(provider(fake.client).generate_stream(rich_context()))
        assert events[:2] == [AITextDelta(text="a"), AITextDelta(text="\U0001f600b")]
        assert isinstance(events[2], AIStreamEnd)
        assert events[2].response.content == "a\U0001f600b"

    async def test_leaving_early_closes_the_response(self, fake: FakeAPI) -> None:
        client = fake.client
        body = ChunkedStream(STREAM)
        fake.reply(httpx.Response(200, stream=body))
        async with aclosing(provider(client).generate_stream(rich_context())) as stream:
            async for event in stream:
                assert event == AITextDelta(text="Hel")
                break
            assert not body.closed
        assert body.closed


class TestProvider:
    @pytest.mark.parametrize(
        ("model", "vision"),
        [
            ("claude-3-5-sonnet-20241022", True),
            ("claude-3-haiku-20240307", True),
            ("claude-sonnet-4-20250514", True),
            ("claude-opus-4-1-20250805", True),
            ("claude-haiku-4-5", True),
            ("claude-2.1", False),
            ("claude-instant-1.2", False),
        ],
    )
    async def test_vision_by_model(self, model: str, vision: bool) -> None:
        claude = AnthropicAIProvider(AnthropicConfig(api_key=KEY, model=model))
        assert claude.supports_vision is vision
        assert claude.model_name == model
        await claude.close()

    async def test_close_closes_only_its_own_client(self, fake: FakeAPI) -> None:
        client = fake.client
        own = AnthropicAIProvider(AnthropicConfig(api_key=KEY))
        await own.close()
        await own.close()
        assert own._http.client.is_closed
        await provider(client).close()
        assert not client.is_closed

    def test_config_hides_the_key(self) -> None:
        config = AnthropicConfig(api_key=KEY)
        assert KEY not in repr(config) and KEY not in str(config.model_dump())


class TestEndToEnd:
    async def test_claude_answers_in_the_room(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, json=message()))
        async with ai_room(provider(client), system_prompt="Be brief.") as (kit, sms):
            await kit.process_inbound(text("sms", "hello"))
            assert sms.texts() == ["Hi from Claude"]
        assert fake.body["system"] == "Be brief."
        assert fake.body["messages"] == [{"role": "user", "content": "hello"}]
        assert not client.is_closed  # the kit closed the provider, which left our client open
