"""The AI vendor providers where RoomKit 0.3.0's users meet them: retries as its SDKs made them,
its error ``provider`` names, Gemini's tool-call ids and model, and the config values it took."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from providers.ai import AIContext, AIMessage, AIToolCall
from providers.ai._http import VendorClient, retry_delay
from providers.anthropic import AnthropicAIProvider, AnthropicConfig
from providers.errors import ProviderError
from providers.gemini import GeminiAIProvider, GeminiConfig
from providers.openai import OpenAIAIProvider, OpenAIConfig
from providers.pydantic_ai import PydanticAIConfig
from providers.vllm import VLLMConfig, create_vllm_provider
from tests.providers.ai_support import FakeAPI, NoSleep, sse_body, sse_response

URL = "https://api.example.com/v1/do"
PING = AIContext(messages=[AIMessage(role="user", content="ping")])


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": "x", "type": "t"}}, headers=headers)


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def client(fake: FakeAPI, sleep: NoSleep, max_retries: int = 2) -> VendorClient:
    return VendorClient(
        provider="openai", headers={}, timeout=5.0, client=fake.client,
        max_retries=max_retries, sleep=sleep,
    )  # fmt: skip


class TestRetryDelay:
    def test_backoff_as_0_3_0_s_sdks(self) -> None:
        # 0.5 s doubled at each retry, at most 8 s; jitter takes up to a quarter off.
        assert [retry_delay(n, None, lambda: 0.0) for n in range(6)] == [
            0.5, 1.0, 2.0, 4.0, 8.0, 8.0,
        ]  # fmt: skip
        assert retry_delay(0, None, lambda: 1.0) == 0.375
        assert retry_delay(10_000, None, lambda: 0.0) == 8.0

    @pytest.mark.parametrize(
        ("retry_after", "expected"), [(3.0, 3.0), (60.0, 60.0), (0.0, 0.5), (61.0, 0.5)]
    )
    def test_the_vendor_s_delay_when_reasonable(self, retry_after: float, expected: float) -> None:
        assert retry_delay(0, retry_after, lambda: 0.0) == expected


class TestVendorClientRetries:
    @pytest.mark.parametrize("failure", [429, 500, 503, 529, 408, 409])
    async def test_retried_statuses_then_success(self, fake: FakeAPI, failure: int) -> None:
        sleep = NoSleep()
        fake.reply(status(failure), status(failure), ok())
        assert await client(fake, sleep).post_json(URL, {}) == {"ok": True}
        assert len(fake.requests) == 3
        # Exponential backoff with jitter: 0.5 s then 1 s, less up to a quarter.
        assert 0.375 <= sleep.delays[0] <= 0.5
        assert 0.75 <= sleep.delays[1] <= 1.0

    async def test_three_requests_in_all_then_the_last_error(self, fake: FakeAPI) -> None:
        sleep = NoSleep()
        fake.reply(*(status(429, **{"retry-after": "2"}) for _ in range(4)))
        with pytest.raises(ProviderError) as info:
            await client(fake, sleep).post_json(URL, {})
        assert (info.value.status_code, info.value.retryable) == (429, True)
        assert len(fake.requests) == 3
        assert sleep.delays == [2.0, 2.0]  # Retry-After honoured

    @pytest.mark.parametrize(
        ("replies", "requests"),
        [
            ([status(400)], 1),
            ([status(401)], 1),
            ([status(404)], 1),
            # The vendor's own say wins over the status, both ways.
            ([status(500, **{"x-should-retry": "false"})], 1),
            ([status(400, **{"x-should-retry": "true"}), ok()], 2),
        ],
    )
    async def test_what_is_not_retried(
        self, fake: FakeAPI, replies: list[httpx.Response], requests: int
    ) -> None:
        fake.reply(*replies)
        with pytest.raises(ProviderError) if requests == 1 else contextlib.nullcontext():
            await client(fake, NoSleep()).post_json(URL, {})
        assert len(fake.requests) == requests

    @pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectError])
    async def test_timeouts_and_transport_failures(
        self, fake: FakeAPI, exc: type[httpx.TransportError]
    ) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise exc("down", request=request)

        fake.reply(fail, fail, ok())
        assert await client(fake, NoSleep()).post_json(URL, {}) == {"ok": True}
        assert len(fake.requests) == 3

    async def test_max_retries_zero_sends_once(self, fake: FakeAPI) -> None:
        fake.reply(status(503))
        with pytest.raises(ProviderError):
            await client(fake, NoSleep(), max_retries=0).post_json(URL, {})
        assert len(fake.requests) == 1
        with pytest.raises(ValueError):
            client(fake, NoSleep(), max_retries=-1)

    async def test_a_stream_is_retried_until_it_starts(self, fake: FakeAPI) -> None:
        fake.reply(status(503), sse_response(sse_body((None, {"a": 1}))))
        events = [e async for e in client(fake, NoSleep()).stream_sse(URL, {})]
        assert [e.data for e in events] == ['{"a": 1}']
        assert len(fake.requests) == 2

    async def test_a_started_stream_is_not_retried(self, fake: FakeAPI) -> None:
        class Broken(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield b'data: {"a": 1}\n\n'
                raise httpx.ReadError("dropped")

        fake.reply(httpx.Response(200, stream=Broken()), sse_response(b""))
        seen: list[str] = []
        with pytest.raises(ProviderError):
            async for event in client(fake, NoSleep()).stream_sse(URL, {}):
                seen.append(event.data)
        assert seen == ['{"a": 1}']
        assert len(fake.requests) == 1


OPENAI_OK = {
    "model": "gpt-4o",
    "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
}


def openai(fake: FakeAPI, **config: Any) -> OpenAIAIProvider:
    return OpenAIAIProvider(
        OpenAIConfig(api_key="sk-test", **config), client=fake.client, sleep=NoSleep()
    )


class TestProviders:
    @pytest.mark.parametrize(
        ("make", "vendor", "requests"),
        [
            (lambda c, s: OpenAIAIProvider(OpenAIConfig(api_key="k"), client=c, sleep=s),
             "openai", 3),
            (lambda c, s: AnthropicAIProvider(AnthropicConfig(api_key="k"), client=c, sleep=s),
             "anthropic", 3),
            # 0.3.0's google-genai made one attempt.
            (lambda c, s: GeminiAIProvider(GeminiConfig(api_key="k"), client=c, sleep=s),
             "gemini", 1),
            (lambda c, s: GeminiAIProvider(
                GeminiConfig(api_key="k", max_retries=2), client=c, sleep=s), "gemini", 3),
            (lambda c, s: create_vllm_provider(VLLMConfig(model="m"), client=c), "openai", 3),
        ],
    )  # fmt: skip
    async def test_errors_name_0_3_0_s_vendor_and_429_is_retried_as_its_sdk_did(
        self, fake: FakeAPI, make: Any, vendor: str, requests: int, monkeypatch: Any
    ) -> None:
        sleep = NoSleep()
        monkeypatch.setattr("providers.ai._http.anyio.sleep", sleep)  # the vLLM factory's
        provider = make(fake.client, sleep)
        fake.reply(*(status(429) for _ in range(3)))
        with pytest.raises(ProviderError) as info:
            await provider.generate(PING)
        assert (info.value.provider, info.value.retryable) == (vendor, True)
        assert len(fake.requests) == requests
        assert provider.name == type(provider).__name__  # as in 0.3.0
        # Errors of the provider's own making name the vendor too.
        fake.reply(httpx.Response(200, content=b"{not json"))
        with pytest.raises(ProviderError) as info:
            await provider.generate(PING)
        assert info.value.provider == vendor

    def test_default_retries(self) -> None:
        assert OpenAIConfig(api_key="k").max_retries == 2
        assert AnthropicConfig(api_key="k").max_retries == 2
        assert GeminiConfig(api_key="k").max_retries == 0

    async def test_openai_base_url_defaults_to_none_and_the_same_url(self, fake: FakeAPI) -> None:
        config = OpenAIConfig(api_key="k")
        assert config.base_url is None  # 0.3.0's default
        fake.reply(httpx.Response(200, json=OPENAI_OK))
        await openai(fake).generate(PING)
        assert str(fake.request.url) == "https://api.openai.com/v1/chat/completions"

    @pytest.mark.parametrize("limit", [0, -5])
    async def test_openai_max_tokens_0_3_0_took(self, fake: FakeAPI, limit: int) -> None:
        # 0.3.0 took any value and used it only when the context asked for 0.
        fake.reply(*(httpx.Response(200, json=OPENAI_OK) for _ in range(2)))
        gpt = openai(fake, max_tokens=limit)
        await gpt.generate(PING)
        await gpt.generate(PING.model_copy(update={"max_tokens": 0}))
        first, second = (json.loads(request.content) for request in fake.requests)
        assert first["max_tokens"] == 1024
        assert "max_tokens" not in second  # no limit of ours: the server's own

    @pytest.mark.parametrize(
        "config",
        [
            lambda timeout: OpenAIConfig(api_key="k", timeout=timeout),
            lambda timeout: AnthropicConfig(api_key="k", timeout=timeout),
            lambda timeout: GeminiConfig(api_key="k", timeout=timeout),
            lambda timeout: VLLMConfig(model="m", timeout=timeout),  # refused 0 (gt=0)
        ],
        ids=["openai", "anthropic", "gemini", "vllm"],
    )
    @pytest.mark.parametrize("timeout", [0, -1, -0.5])
    def test_non_positive_timeouts_give_the_default(
        self, config: Any, timeout: float, caplog: pytest.LogCaptureFixture
    ) -> None:
        # 0.3.0 had no timeout in these configs: one given was ignored and requests worked.
        with caplog.at_level(logging.WARNING, "roomkit.providers.ai"):
            assert config(timeout).timeout == 120.0
        assert "timeout" in caplog.text
        assert config(3).timeout == 3.0

    def test_pydantic_ai_api_key(self) -> None:
        config = PydanticAIConfig(model="openai:gpt-4o", api_key="sk-x")
        assert config.api_key is not None
        assert config.api_key.get_secret_value() == "sk-x"
        assert "sk-x" not in repr(config)
        assert PydanticAIConfig().api_key is None


class TestGemini:
    CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}

    def gemini(self, fake: FakeAPI) -> GeminiAIProvider:
        config = GeminiConfig(api_key="k", model="gemini-1.5-pro")
        return GeminiAIProvider(config, client=fake.client, sleep=NoSleep())

    async def test_tool_call_id_and_model_as_0_3_0(self, fake: FakeAPI) -> None:
        answer = {"candidates": [{"content": {"role": "model", "parts": [self.CALL]},
                                  "finishReason": "STOP"}]}  # fmt: skip
        fake.reply(httpx.Response(200, json=answer))
        response = await self.gemini(fake).generate(PING)
        assert response.tool_calls == [
            AIToolCall(id="get_weather", name="get_weather", arguments={"city": "Paris"})
        ]
        assert response.metadata == {"model": "gemini-1.5-pro"}

    async def test_stream_too(self, fake: FakeAPI) -> None:
        chunk = {"candidates": [{"content": {"role": "model", "parts": [self.CALL]},
                                 "finishReason": "STOP"}]}  # fmt: skip
        fake.reply(sse_response(sse_body((None, chunk))))
        events = [e async for e in self.gemini(fake).generate_stream(PING)]
        end = events[-1].response  # type: ignore[union-attr]
        assert [c.id for c in end.tool_calls] == ["get_weather"]
        assert end.metadata == {"model": "gemini-1.5-pro"}
