"""GeminiAIProvider against a fake Gemini API (httpx.MockTransport)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from providers.ai import AIContext, AIImagePart, AIMessage, AITextPart, AIToolCall
from providers.ai._messages import UNREADABLE_IMAGE
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.errors import ProviderError
from providers.gemini import GeminiAIProvider, GeminiConfig
from tests.providers.ai_support import (
    CAT_URL,
    FakeAPI,
    NoSleep,
    ai_room,
    rich_context,
    sse_body,
    sse_response,
)
from tests.roomkit.kit_helpers import text

KEY = "AIzaSy-test-0123456789"
MODEL_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash"


def provider(client: httpx.AsyncClient, **config: Any) -> GeminiAIProvider:
    # Retries wait for nothing here (see TestRetries for the delays).
    return GeminiAIProvider(GeminiConfig(api_key=KEY, **config), client=client, sleep=NoSleep())


def generated(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 40,
            "candidatesTokenCount": 8,
            "totalTokenCount": 48,
        },
        "modelVersion": "gemini-2.0-flash",
        "responseId": "resp-1",
    } | extra


def error(status: int, state: str, text: str, *details: Any, **headers: str) -> httpx.Response:
    body = {"error": {"code": status, "message": text, "status": state, "details": list(details)}}
    return httpx.Response(status, json=body, headers=headers)


class TestRequest:
    async def test_rich_context_maps_to_the_documented_body(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=generated({"text": "ok"})))
        await provider(fake.client).generate(rich_context())

        request = fake.request
        assert (request.method, str(request.url)) == ("POST", f"{MODEL_URL}:generateContent")
        assert request.headers["x-goog-api-key"] == KEY
        assert KEY not in str(request.url)
        assert request.headers["content-type"] == "application/json"
        assert fake.body == {
            "contents": [
                {"role": "user", "parts": [{"text": "Hi, I'm in Paris."}]},
                {"role": "model", "parts": [{"text": "Hello! How can I help?"}]},
                {
                    "role": "user",
                    "parts": [
                        {"text": "What is on these pictures?"},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": CAT_URL}},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    ],
                },
                {
                    "role": "model",
                    "parts": [
                        {"text": "Let me check the weather."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}
                    ],
                },
            ],
            "systemInstruction": {
                "parts": [{"text": "You are a concise assistant.\n\nAnswer in English."}]
            },
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 256},
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Current weather for a city",
                            "parametersJsonSchema": {
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                                "required": ["city"],
                            },
                        }
                    ]
                }
            ],
        }

    async def test_turns_of_one_role_merge_and_text_results_are_wrapped(
        self, fake: FakeAPI
    ) -> None:
        fake.reply(httpx.Response(200, json=generated({"text": "ok"})))
        context = AIContext(
            max_tokens=0,
            messages=[
                AIMessage(role="user", content="first"),
                AIMessage(role="user", content="second"),
                AIMessage(
                    role="tool", content="done", metadata={"tool_call_id": "x", "name": "job"}
                ),
            ],
        )
        await provider(fake.client, model="models/gemini-2.5-pro", max_tokens=77).generate(context)
        assert str(fake.request.url).endswith("/v1beta/models/gemini-2.5-pro:generateContent")
        assert fake.body == {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "first"},
                        {"text": "second"},
                        {"functionResponse": {"name": "job", "response": {"output": "done"}}},
                    ],
                }
            ],
            "generationConfig": {"temperature": 0.7, "maxOutputTokens": 77},
        }

    @pytest.mark.parametrize(
        "url",
        ["data:image/png;base64", "data:image/png;base64,", "data:image/png;base64,@@@@"],
        ids=["no-comma", "empty", "not-base64"],
    )
    async def test_malformed_data_url_image_is_sent_as_a_placeholder(
        self, fake: FakeAPI, url: str
    ) -> None:
        # The room's history carries the image into every request: failing them all would
        # silence the AI in the room for as long as the image stays in the window.
        fake.reply(httpx.Response(200, json=generated({"text": "ok"})))
        parts = [AITextPart(text="see?"), AIImagePart(url=url, mime_type="image/png")]
        response = await provider(fake.client).generate(
            AIContext(messages=[AIMessage(role="user", content=parts)])
        )
        assert response.content == "ok"
        assert fake.body["contents"] == [
            {"role": "user", "parts": [{"text": "see?"}, {"text": UNREADABLE_IMAGE}]}
        ]

    async def test_tool_result_for_an_unknown_call_needs_a_name(self, fake: FakeAPI) -> None:
        context = AIContext(
            messages=[AIMessage(role="tool", content="42", metadata={"tool_call_id": "nope"})]
        )
        with pytest.raises(ProviderError, match="unknown call"):
            await provider(fake.client).generate(context)
        assert fake.requests == []


class TestResponse:
    async def test_text_tool_calls_usage_and_finish_reason(self, fake: FakeAPI) -> None:
        usage = {
            "promptTokenCount": 40,
            "candidatesTokenCount": 8,
            "thoughtsTokenCount": 5,
            "totalTokenCount": 53,
        }
        reply = generated(
            {"text": "Let me think about the sky...", "thought": True},
            {"text": "Sunny"},
            {"text": " today."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}},
            {"functionCall": {"id": "fc-2", "name": "get_time", "args": {}}},
            usageMetadata=usage,
        )
        fake.reply(httpx.Response(200, json=reply))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == "Sunny today."
        assert response.tool_calls == [
            # No id from Gemini: the function's name, as in 0.3.0.
            AIToolCall(id="get_weather", name="get_weather", arguments={"city": "Lyon"}),
            AIToolCall(id="fc-2", name="get_time", arguments={}),
        ]
        assert response.finish_reason == "STOP"
        assert response.usage == usage | {
            "prompt_tokens": 40,
            "completion_tokens": 13,
            "total_tokens": 53,
        }
        assert response.metadata == {"id": "resp-1", "model": "gemini-2.0-flash"}

    async def test_blocked_prompt_is_an_empty_reply(self, fake: FakeAPI) -> None:
        blocked = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
        fake.reply(httpx.Response(200, json=blocked))
        response = await provider(fake.client).generate(rich_context())
        assert (response.content, response.finish_reason) == ("", "SAFETY")
        # No modelVersion: the configured model, as 0.3.0 gave it.
        assert response.metadata == {"block_reason": "SAFETY", "model": "gemini-2.0-flash"}

    async def test_unexpected_shape(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json={"candidates": ["?"]}))
        with pytest.raises(ProviderError, match="unexpected response"):
            await provider(fake.client).generate(rich_context())

    async def test_lone_surrogates_in_the_reply_are_replaced(self, fake: FakeAPI) -> None:
        raw = b'{"candidates": [{"content": {"parts": [{"text": "a\\udc00b"}]}}]}'
        fake.reply(httpx.Response(200, content=raw))
        response = await provider(fake.client).generate(rich_context())
        assert response.content == "a\ufffdb"


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "state"), [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "DENIED")]
    )
    async def test_client_errors_are_not_retryable_and_never_show_the_key(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture, status: int, state: str
    ) -> None:
        fake.reply(error(status, state, f"API key not valid: {KEY}"))
        caplog.set_level(logging.DEBUG)
        gemini = provider(fake.client)
        with pytest.raises(ProviderError) as info:
            await gemini.generate(rich_context())
        failure = info.value
        assert (failure.status_code, failure.retryable) == (status, False)
        assert failure.message == f"HTTP {status}: {state}: API key not valid: ***"
        for shown in (str(failure), repr(failure), repr(gemini), caplog.text):
            assert KEY not in shown

    async def test_429_takes_retry_after_from_the_retry_info(self, fake: FakeAPI) -> None:
        fake.reply(error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", {"@type": "x"}, RETRY_INFO))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable, info.value.retry_after) == (
            429,
            True,
            17.0,
        )

    async def test_a_retry_after_header_wins(self, fake: FakeAPI) -> None:
        fake.reply(error(429, "RESOURCE_EXHAUSTED", "slow", RETRY_INFO, **{"retry-after": "4"}))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert info.value.retry_after == 4.0

    async def test_error_object_in_a_200_answer_is_the_stream_error(self, fake: FakeAPI) -> None:
        # Some gateways answer 200 with the error body; it is no empty successful reply.
        body = {
            "error": {
                "code": 503,
                "message": f"overloaded {KEY}",
                "status": "UNAVAILABLE",
                "details": [RETRY_INFO],
            }
        }
        fake.reply(httpx.Response(200, json=body))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        failure = info.value
        assert failure.message == "error: UNAVAILABLE: overloaded ***"
        assert (failure.retryable, failure.status_code, failure.retry_after) == (True, 503, 17.0)

    async def test_client_error_object_in_a_200_answer_is_not_retryable(
        self, fake: FakeAPI
    ) -> None:
        body = {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
        fake.reply(httpx.Response(200, json=body))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.retryable, info.value.status_code) == (False, 400)

    @pytest.mark.parametrize(("status", "state"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
    async def test_server_errors_are_retryable(
        self, fake: FakeAPI, status: int, state: str
    ) -> None:
        fake.reply(error(status, state, "try later"))
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.status_code, info.value.retryable) == (status, True)

    async def test_timeout(self, fake: FakeAPI) -> None:
        def too_slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        fake.reply(too_slow)
        with pytest.raises(ProviderError) as info:
            await provider(fake.client).generate(rich_context())
        assert (info.value.message, info.value.retryable) == ("timeout", True)


def piece(*parts: dict[str, Any], finish: str | None = None, output: int = 0) -> dict[str, Any]:
    usage = {"promptTokenCount": 9, "candidatesTokenCount": output, "totalTokenCount": 9 + output}
    return generated(*parts, finish=finish, usageMetadata=usage, responseId="resp-2")


STREAM_EVENTS: list[tuple[str | None, object]] = [
    (None, piece({"text": "Bon"}, output=1)),
    (None, piece({"text": "jour"}, output=2)),
    (
        None,
        piece(
            {"functionCall": {"name": "get_weather", "args": {"city": "Nice"}}},
            finish="STOP",
            output=6,
        ),
    ),
]


def crlf(body: bytes) -> bytes:
    """Gemini separates its events with CRLF."""
    return body.replace(b"\n", b"\r\n")


class TestStreaming:
    async def test_deltas_in_order_then_the_whole_response(self, fake: FakeAPI) -> None:
        fake.reply(sse_response(crlf(sse_body(*STREAM_EVENTS)), chunk=3))
        events: list[AIStreamEvent] = [
            event async for event in provider(fake.client).generate_stream(rich_context())
        ]
        assert str(fake.request.url) == f"{MODEL_URL}:streamGenerateContent?alt=sse"
        assert fake.request.headers["x-goog-api-key"] == KEY
        assert "stream" not in fake.body
        assert events[:2] == [AITextDelta(text="Bon"), AITextDelta(text="jour")]
        assert len(events) == 3
        end = events[2]
        assert isinstance(end, AIStreamEnd)
        assert end.response.content == "Bonjour"
        assert end.response.finish_reason == "STOP"
        assert end.response.tool_calls == [
            AIToolCall(id="get_weather", name="get_weather", arguments={"city": "Nice"})
        ]
        assert end.response.usage == {
            "promptTokenCount": 9,
            "candidatesTokenCount": 6,
            "totalTokenCount": 15,
            "prompt_tokens": 9,
            "completion_tokens": 6,
            "total_tokens": 15,
        }
        assert end.response.metadata == {"id": "resp-2", "model": "gemini-2.0-flash"}

    async def test_stream_without_a_finish_reason_is_a_retryable_error(
        self, fake: FakeAPI
    ) -> None:
        fake.reply(sse_response(sse_body(*STREAM_EVENTS[:2])))
        with pytest.raises(ProviderError, match="without a finish reason") as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        assert info.value.retryable

    async def test_blocked_prompt_ends_the_stream(self, fake: FakeAPI) -> None:
        fake.reply(sse_response(sse_body((None, {"promptFeedback": {"blockReason": "OTHER"}}))))
        events = [event async for event in provider(fake.client).generate_stream(rich_context())]
        assert len(events) == 1
        assert isinstance(events[0], AIStreamEnd)
        assert (events[0].response.content, events[0].response.finish_reason) == ("", "OTHER")

    async def test_error_chunk(self, fake: FakeAPI) -> None:
        failure = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
        fake.reply(sse_response(sse_body(STREAM_EVENTS[0], (None, failure))))
        with pytest.raises(ProviderError) as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        assert info.value.message == "stream error: UNAVAILABLE: overloaded"
        assert (info.value.retryable, info.value.status_code) == (True, 503)

    @pytest.mark.parametrize(
        "bad",
        [
            generated({"text": "hi"}, finish=None) | {"candidates": [{"finishReason": 1}]},
            {"promptFeedback": {"blockReason": 3}},
            generated({"functionCall": {"name": "f", "args": [1]}}),
        ],
        ids=["finish-reason-int", "block-reason-int", "args-list"],
    )
    async def test_malformed_chunk_is_an_unexpected_stream_chunk(
        self, fake: FakeAPI, bad: dict[str, Any]
    ) -> None:
        fake.reply(sse_response(sse_body(STREAM_EVENTS[0], (None, bad))))
        with pytest.raises(ProviderError) as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        # Not "invalid tool arguments", not a foreign TypeError or ValidationError.
        assert info.value.message == "unexpected stream chunk"

    async def test_surrogate_pair_split_across_chunks_is_joined(self, fake: FakeAPI) -> None:
        halves = [
            '{"candidates": [{"content": {"parts": [{"text": "a\\ud83d"}]}}]}',
            '{"candidates": [{"content": {"parts": [{"text": "\\ude00"}]}, '
            '"finishReason": "STOP"}]}',
        ]
        fake.reply(sse_response(sse_body(*((None, half) for half in halves))))
        events = [e async for e in provider(fake.client).generate_stream(rich_context())]
        assert events[:2] == [AITextDelta(text="a"), AITextDelta(text="\U0001f600")]
        assert isinstance(events[2], AIStreamEnd)
        assert events[2].response.content == "a\U0001f600"

    async def test_http_error_before_the_stream(self, fake: FakeAPI) -> None:
        fake.reply(error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", RETRY_INFO))
        with pytest.raises(ProviderError) as info:
            async for _ in provider(fake.client).generate_stream(rich_context()):
                pass
        assert (info.value.retryable, info.value.retry_after) == (True, 17.0)


class TestProvider:
    async def test_vision_and_model(self, fake: FakeAPI) -> None:
        gemini = provider(fake.client)
        assert gemini.supports_vision
        assert gemini.model_name == "gemini-2.0-flash"

    async def test_close_closes_only_its_own_client(self, fake: FakeAPI) -> None:
        own = GeminiAIProvider(GeminiConfig(api_key=KEY))
        await own.close()
        assert own._http.client.is_closed
        await provider(fake.client).close()
        assert not fake.client.is_closed


class TestEndToEnd:
    async def test_gemini_answers_in_the_room(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(200, json=generated({"text": "Hi from Gemini"})))
        async with ai_room(provider(fake.client)) as (kit, sms):
            await kit.process_inbound(text("sms", "hello"))
            assert sms.texts() == ["Hi from Gemini"]
        assert fake.body["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
