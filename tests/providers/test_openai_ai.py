"""OpenAIAIProvider against a fake Chat Completions API (httpx.MockTransport)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.ai import AIContext, AIImagePart, AIMessage, AITextPart, AIToolCall
from providers.ai._messages import UNREADABLE_IMAGE
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.errors import ProviderError
from providers.openai import OpenAIAIProvider, OpenAIConfig
from tests.providers.ai_support import (
    CAT_URL,
    PNG_DATA_URL,
    FakeAPI,
    NoSleep,
    ai_room,
    rich_context,
    sse_body,
    sse_response,
)
from tests.roomkit.kit_helpers import text

KEY = "sk-proj-test-0123456789"
COMPLETIONS_URL = "https://api.openai.com/v1/chat/completions"


def provider(client: httpx.AsyncClient, **config: Any) -> OpenAIAIProvider:
    # Retries wait for nothing here (see TestRetries for the delays).
    return OpenAIAIProvider(OpenAIConfig(api_key=KEY, **config), client=client, sleep=NoSleep())


def completion(message: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": message or {"role": "assistant", "content": "Hi from GPT"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 7,
            "total_tokens": 57,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    return body | overrides


def error(status: int, kind: str, text: str, **headers: str) -> httpx.Response:
    body = {"error": {"message": text, "type": kind, "param": None, "code": None}}
    return httpx.Response(status, json=body, headers=headers)


class TestRequest:
    async def test_rich_context_maps_to_the_documented_body(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        await provider(fake.client, organization="org-123").generate(rich_context())

        request = fake.request
        assert (request.method, str(request.url)) == ("POST", COMPLETIONS_URL)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["openai-organization"] == "org-123"
        assert request.headers["content-type"] == "application/json"
        assert fake.body == {
            "model": "gpt-4o",
            "max_tokens": 256,
            "temperature": 0.3,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "system", "content": "Answer in English."},
                {"role": "user", "content": "Hi, I'm in Paris."},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is on these pictures?"},
                        {"type": "image_url", "image_url": {"url": CAT_URL}},
                        {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "Let me check the weather.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Current weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                }
            ],
        }

    async def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
        self, fake: FakeAPI
    ) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        context = AIContext(messages=[AIMessage(role="user", content="hi")], max_tokens=99)
        await provider(fake.client, model="o3-2025-04-16").generate(context)
        assert fake.body == {
            "model": "o3-2025-04-16",
            "max_completion_tokens": 99,
            "messages": [{"role": "user", "content": "hi"}],
        }

    async def test_assistant_tool_call_without_text_and_a_bare_tool(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        call = {"id": "c", "name": "now", "arguments": {}}
        context = AIContext(
            system_prompt=None,
            tools=[{"name": "now"}],  # type: ignore[list-item]
            messages=[AIMessage(role="assistant", content="", metadata={"tool_calls": [call]})],
        )
        await provider(fake.client).generate(context)
        body = fake.body
        assert body["messages"] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "now", "arguments": "{}"}}
                ],
            }
        ]
        assert body["tools"] == [
            {
                "type": "function",
                "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
            }
        ]

    async def test_a_role_of_its_own_is_passed_on_as_0_3_0_did(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        context = AIContext(messages=[AIMessage(role="developer", content="Be brief.")])
        await provider(fake.client).generate(context)
        assert fake.body["messages"] == [{"role": "developer", "content": "Be brief."}]

    async def test_malformed_data_url_image_is_sent_as_a_placeholder(self, fake: FakeAPI) -> None:
        # Passed on as it is, the URL would make OpenAI refuse every request of the room.
        fake.reply(httpx.Response(200, json=completion()))
        parts = [AITextPart(text="see?"), AIImagePart(url="data:image/png;base64")]
        await provider(fake.client).generate(
            AIContext(messages=[AIMessage(role="user", content=parts)])
        )
        assert fake.body["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see?"},
                    {"type": "text", "text": UNREADABLE_IMAGE},
                ],
            }
        ]

    async def test_unencodable_tool_arguments(self, fake: FakeAPI) -> None:
        call = AIToolCall(id="c", name="f", arguments={"when": object()})
        context = AIContext(
            messages=[AIMessage(role="assistant", content="", metadata={"tool_calls": [call]})]
        )
        with pytest.raises(ProviderError, match="not JSON"):
            await provider(fake.client).generate(context)
        assert fake.requests == []


class TestResponse:
    async def test_text_tool_calls_usage_and_finish_reason(self, fake: FakeAPI) -> None:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                }
            ],
        }
        reply = completion(message)
        reply["choices"][0]["finish_reason"] = "tool_calls"
        fake.reply(httpx.Response(200, json=reply))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == ""
        assert response.tool_calls == [
            AIToolCall(id="call_9", name="get_weather", arguments={"city": "Lyon"})
        ]
        assert response.finish_reason == "tool_calls"
        assert response.usage == {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57}
        assert response.metadata == {
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_1",
        }

    async def test_plain_text(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        response = await provider(fake.client).generate(rich_context())
        assert (response.content, response.finish_reason) == ("Hi from GPT", "stop")
        assert response.tool_calls == []

    @pytest.mark.parametrize(
        "reply",
        [
            completion(choices=[]),
            completion(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "x",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{"},
                        }
                    ],
                }
            ),
            completion(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "x",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[]"},
                        }
                    ],
                }
            ),
        ],
        ids=["no-choices", "broken-json-arguments", "non-object-arguments"],
    )
    async def test_unexpected_answers(self, fake: FakeAPI, reply: dict[str, Any]) -> None:
        fake.reply(httpx.Response(200, json=reply))
        with pytest.raises(ProviderError, match="unexpected response") as info:
            await provider(fake.client).generate(rich_context())
        assert not info.value.retryable

    async def test_lone_surrogates_in_the_reply_are_replaced(self, fake: FakeAPI) -> None:
        raw = b'{"choices": [{"message": {"content": "a\\ud800b"}, "finish_reason": "stop"}]}'
        fake.reply(httpx.Response(200, content=raw))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == "a\ufffdb"


class TestErrors:
    @pytest.mark.parametrize(
        ("error_object", "message", "retryable", "status"),
        [
            (
                {"code": 503, "message": "upstream overloaded", "type": "server_error"},
                "error: server_error: upstream overloaded",
                True,
                503,
            ),
            ({"code": 429, "message": "slow down"}, "error: slow down", True, 429),
            (
                {"code": "invalid_api_key", "message": "nope", "type": "invalid_request_error"},
                "error: invalid_request_error: nope",
                False,
                None,
            ),
        ],
        ids=["server-error", "gateway-429", "client-error"],
    )
    async def test_error_object_in_a_200_answer_is_the_stream_error(
        self,
        fake: FakeAPI,
        error_object: dict[str, Any],
        message: str,
        retryable: bool,
        status: int | None,
    ) -> None:
        # Gateways such as OpenRouter answer 200 with an error object instead of choices.
        fake.reply(httpx.Response(200, json={"error": error_object}))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        failure = info.value
        assert (failure.message, failure.retryable, failure.status_code) == (
            message,
            retryable,
            status,
        )

    async def test_401_is_not_retryable_and_never_shows_the_key(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        fake.reply(error(401, "invalid_request_error", f"Incorrect API key provided: {KEY}."))
        caplog.set_level(logging.DEBUG)
        gpt = provider(fake.client)
        with pytest.raises(ProviderError) as info:
            await gpt.generate(rich_context())
        failure = info.value
        assert (failure.status_code, failure.retryable) == (401, False)
        assert (
            failure.message == "HTTP 401: invalid_request_error: Incorrect API key provided: ***."
        )
        for shown in (str(failure), repr(failure), repr(gpt), caplog.text):
            assert KEY not in shown

    async def test_429_is_retryable_with_retry_after(self, fake: FakeAPI) -> None:
        # Sent 3 times in all, as 0.3.0's SDK sent it (max_retries=2).
        fake.reply(*(error(429, "requests", "Rate limit reached", **{"retry-after": "2"}),) * 3)
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable, info.value.retry_after) == (
            429,
            True,
            2.0,
        )
        assert len(fake.requests) == 3
        assert info.value.provider == "openai"  # 0.3.0's name

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_server_errors_are_retryable(self, fake: FakeAPI, status: int) -> None:
        fake.reply(*(error(status, "server_error", "The server had an error") for _ in range(3)))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable) == (status, True)
        assert len(fake.requests) == 3

    async def test_timeout(self, fake: FakeAPI) -> None:
        def too_slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectTimeout("timed out", request=request)

        fake.reply(too_slow, too_slow, too_slow)
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.message, info.value.retryable) == ("timeout", True)
        assert len(fake.requests) == 3

    async def test_a_key_with_a_newline_is_not_retried_nor_shown(self, fake: FakeAPI) -> None:
        # h11 refuses the header of a key read with its newline and quotes it, escaped: the
        # request was sent twice more after backoff, and the key was in the error's cause
        # (RoomKit logs AI failures with their traceback).
        def h11_refuses(request: httpx.Request) -> httpx.Response:
            for _, value in request.headers.raw:
                if b"\n" in value:
                    raise httpx.LocalProtocolError(f"Illegal header value {value!r}")
            return httpx.Response(200, json=completion())

        fake.reply(h11_refuses, h11_refuses, h11_refuses)
        config = OpenAIConfig(api_key=SecretStr(KEY + "\n"))
        openai = OpenAIAIProvider(config, client=fake.client, sleep=NoSleep())
        with pytest.raises(ProviderError) as info:
            await openai.generate(rich_context())
        assert (info.value.message, info.value.retryable) == (
            "HTTP client error: LocalProtocolError",
            False,
        )
        assert len(fake.requests) == 1
        assert KEY not in "".join(traceback.format_exception(info.value))

    async def test_a_base_url_without_scheme_is_not_retried(self, fake: FakeAPI) -> None:
        def httpcore_refuses(request: httpx.Request) -> httpx.Response:
            # What httpcore's pool says of such a URL (MockTransport takes any).
            assert request.url.scheme not in ("http", "https")
            raise httpx.UnsupportedProtocol("Request URL is missing a protocol.")

        fake.reply(httpcore_refuses, httpcore_refuses, httpcore_refuses)
        with pytest.raises(ProviderError) as info:
            await provider(fake.client, base_url="api.openai.com/v1").generate(rich_context())
        assert (info.value.message, info.value.retryable) == (
            "HTTP client error: UnsupportedProtocol",
            False,
        )
        assert len(fake.requests) == 1


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def tool_piece(**fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, **fields}]}


STREAM_EVENTS: list[tuple[str | None, object]] = [
    (None, chunk({"role": "assistant", "content": ""})),
    (None, chunk({"content": "Hel"})),
    (None, chunk({"content": "lo"})),
    (
        None,
        chunk(
            tool_piece(
                id="call_7", type="function", function={"name": "get_weather", "arguments": ""}
            )
        ),
    ),
    (None, chunk(tool_piece(function={"arguments": '{"city":'}))),
    (None, chunk(tool_piece(function={"arguments": '"Rome"}'}))),
    (None, chunk({}, finish_reason="tool_calls")),
    (
        None,
        {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        },
    ),
]
STREAM = sse_body(*STREAM_EVENTS, (None, "[DONE]"))


class TestStreaming:
    async def test_deltas_in_order_then_the_whole_response(self, fake: FakeAPI) -> None:
        fake.reply(sse_response(STREAM, chunk=5))
        events: list[AIStreamEvent] = [
            event async for event in provider(fake.client).generate_stream(rich_context())
        ]
        body = fake.body
        assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
        assert events[:2] == [AITextDelta(text="Hel"), AITextDelta(text="lo")]
        assert len(events) == 3
        end = events[2]
        assert isinstance(end, AIStreamEnd)
        assert end.response.content == "Hello"
        assert end.response.finish_reason == "tool_calls"
        assert end.response.tool_calls == [
            AIToolCall(id="call_7", name="get_weather", arguments={"city": "Rome"})
        ]
        assert end.response.usage == {
            "prompt_tokens": 9,
            "completion_tokens": 12,
            "total_tokens": 21,
        }
        assert end.response.metadata == {"id": "chatcmpl-2", "model": "gpt-4o-2024-08-06"}

    async def test_missing_done_is_a_retryable_error(self, fake: FakeAPI) -> None:
        fake.reply(sse_response(sse_body(*STREAM_EVENTS)))
        with pytest.raises(ProviderError, match=r"before \[DONE\]") as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        assert info.value.retryable

    async def test_error_chunk(self, fake: FakeAPI) -> None:
        failure = {"error": {"message": "overloaded", "type": "server_error"}}
        fake.reply(sse_response(sse_body(STREAM_EVENTS[1], (None, failure))))
        received: list[AIStreamEvent] = []
        with pytest.raises(ProviderError) as info:
            async for event in provider(fake.client).generate_stream(rich_context()):
                received.append(event)
        assert received == [AITextDelta(text="Hel")]
        assert info.value.message == "stream error: server_error: overloaded"
        assert info.value.retryable

    @pytest.mark.parametrize(
        "chunks",
        [
            [chunk({"content": 5})],
            [chunk({"content": ["a"]})],
            [chunk({"content": "hi"}), chunk({}, finish_reason=7)],  # type: ignore[arg-type]
            [chunk(tool_piece(id=5, function={"name": "f"}))],
            [chunk(tool_piece(id="t", function={"name": "f", "arguments": 5}))],
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": "0", "id": "t", "function": {"name": "f"}},
                            {"index": 1, "id": "u", "function": {"name": "g"}},
                        ]
                    }
                )
            ],
        ],
        ids=[
            "content-int",
            "content-list",
            "finish-reason-int",
            "tool-id-int",
            "arguments-int",
            "index-str-and-int",
        ],
    )
    async def test_malformed_chunk_is_an_unexpected_stream_chunk(
        self, fake: FakeAPI, chunks: list[dict[str, Any]]
    ) -> None:
        events = [(None, c) for c in chunks]
        fake.reply(sse_response(sse_body(*events, (None, "[DONE]"))))
        received: list[AIStreamEvent] = []
        with pytest.raises(ProviderError) as info:
            async for event in provider(fake.client).generate_stream(rich_context()):
                received.append(event)
        # Not "invalid tool arguments", not a foreign TypeError or ValidationError.
        assert info.value.message == "unexpected stream chunk"
        assert all(isinstance(event, AITextDelta) for event in received)

    async def test_arguments_sent_as_an_object_are_accepted(self, fake: FakeAPI) -> None:
        # As the non-streaming path accepts them (some compatible servers send objects).
        piece = tool_piece(id="t", function={"name": "f", "arguments": {"city": "Oslo"}})
        fake.reply(
            sse_response(
                sse_body(
                    (None, chunk(piece)),
                    (None, chunk({}, finish_reason="tool_calls")),
                    (None, "[DONE]"),
                )
            )
        )
        events = [e async for e in provider(fake.client).generate_stream(rich_context())]
        assert isinstance(events[-1], AIStreamEnd)
        assert events[-1].response.tool_calls == [
            AIToolCall(id="t", name="f", arguments={"city": "Oslo"})
        ]

    async def test_arguments_as_text_and_as_an_object_are_invalid(self, fake: FakeAPI) -> None:
        pieces = [
            chunk(tool_piece(id="t", function={"name": "f", "arguments": "{"})),
            chunk(tool_piece(function={"arguments": {"a": 1}})),
        ]
        fake.reply(sse_response(sse_body(*((None, p) for p in pieces), (None, "[DONE]"))))
        with pytest.raises(ProviderError, match="unexpected stream chunk"):
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass

    @pytest.mark.parametrize(
        ("contents", "deltas"),
        [
            (["smile \\ud83d", "\\ude00!"], ["smile ", "\U0001f600!"]),
            (["a\\ud800b"], ["a\ufffdb"]),
            (["a\\ud83d"], ["a", "\ufffd"]),
        ],
        ids=["pair-split-across-chunks", "lone-surrogate", "half-pair-at-the-end"],
    )
    async def test_streamed_text_is_storable(
        self, fake: FakeAPI, contents: list[str], deltas: list[str]
    ) -> None:
        # The escapes stay in the JSON text, as a server sends them.
        raw = [f'{{"choices": [{{"index": 0, "delta": {{"content": "{c}"}}}}]}}' for c in contents]
        stop = chunk({}, finish_reason="stop")
        fake.reply(
            sse_response(sse_body(*((None, r) for r in raw), (None, stop), (None, "[DONE]")))
        )
        events = [e async for e in provider(fake.client).generate_stream(rich_context())]
        assert events[:-1] == [AITextDelta(text=d) for d in deltas]
        assert isinstance(events[-1], AIStreamEnd)
        assert events[-1].response.content == "".join(deltas)

    async def test_http_error_before_the_stream(self, fake: FakeAPI) -> None:
        fake.reply(*(error(429, "tokens", "Rate limit", **{"retry-after-ms": "250"}),) * 3)
        with pytest.raises(ProviderError) as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        assert (info.value.retryable, info.value.retry_after) == (True, 0.25)
        assert len(fake.requests) == 3  # the opening of a stream is retried


class TestProvider:
    @pytest.mark.parametrize(
        ("model", "vision"),
        [
            ("gpt-4o", True),
            ("gpt-4o-mini", True),
            ("gpt-4-turbo", True),
            ("gpt-4-vision-preview", True),
            ("gpt-4.1-mini", True),
            ("gpt-5", True),
            ("o1", True),
            ("o3", True),
            ("o1-mini", False),
            ("o3-mini", False),
            ("gpt-3.5-turbo", False),
            ("gpt-4", False),
        ],
    )
    async def test_vision_by_model(self, model: str, vision: bool) -> None:
        gpt = OpenAIAIProvider(OpenAIConfig(api_key=KEY, model=model))
        assert gpt.supports_vision is vision
        await gpt.close()

    async def test_vision_override(self, fake: FakeAPI) -> None:
        config = OpenAIConfig(api_key=KEY, model="my-local-vl", vision=True)
        assert OpenAIAIProvider(config, client=fake.client).supports_vision

    async def test_close_closes_only_its_own_client(self, fake: FakeAPI) -> None:
        own = OpenAIAIProvider(OpenAIConfig(api_key=KEY))
        await own.close()
        assert own._http.client.is_closed
        await provider(fake.client).close()
        assert not fake.client.is_closed


class TestEndToEnd:
    async def test_gpt_answers_in_the_room(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=completion()))
        async with ai_room(provider(fake.client)) as (kit, sms):
            await kit.process_inbound(text("sms", "hello"))
            assert sms.texts() == ["Hi from GPT"]
        assert fake.body["messages"] == [{"role": "user", "content": "hello"}]

    async def test_a_reply_with_lone_surrogates_is_recorded(self, fake: FakeAPI) -> None:
        # UTF-8 cannot carry a lone surrogate: the room could not store the reply as it came.
        raw = b'{"choices": [{"message": {"content": "a\\ud800b"}, "finish_reason": "stop"}]}'
        fake.reply(httpx.Response(200, content=raw))
        async with ai_room(provider(fake.client)) as (kit, sms):
            await kit.process_inbound(text("sms", "hello"))
            assert sms.texts() == ["a\ufffdb"]
            timeline = await kit.get_timeline("r1")
            assert [event.content.body for event in timeline][-2:] == ["hello", "a\ufffdb"]
