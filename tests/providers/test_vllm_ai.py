"""create_vllm_provider: an OpenAIAIProvider aimed at a vLLM server (httpx.MockTransport)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from providers.ai import AIContext, AIMessage
from providers.anthropic import AnthropicConfig
from providers.gemini import GeminiConfig
from providers.openai import OpenAIAIProvider, OpenAIConfig
from providers.vllm import VLLMConfig, create_vllm_provider
from tests.providers.ai_support import FakeAPI

MODEL = "Qwen/Qwen2.5-7B-Instruct"
REPLY = {
    "id": "cmpl-1",
    "object": "chat.completion",
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
CONTEXT = AIContext(messages=[AIMessage(role="user", content="hello")], max_tokens=32)


async def test_posts_to_the_local_server_without_a_key(fake: FakeAPI) -> None:
    fake.reply(httpx.Response(200, json=REPLY))
    provider = create_vllm_provider(VLLMConfig(model=MODEL), client=fake.client)
    assert isinstance(provider, OpenAIAIProvider)
    assert (provider.model_name, provider.supports_vision) == (MODEL, False)

    response = await provider.generate(CONTEXT)

    assert str(fake.request.url) == "http://localhost:8000/v1/chat/completions"
    assert "authorization" not in fake.request.headers
    assert fake.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 32,
        "temperature": 0.7,
    }
    assert (response.content, response.finish_reason) == ("Hi", "stop")
    assert response.usage == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


def test_no_key_by_default() -> None:
    """0.3.0's default key was "none", sent as ``Authorization: Bearer none``; kept None on
    purpose so a keyless server gets no made-up credential (see the test above)."""
    assert VLLMConfig(model=MODEL).api_key is None


async def test_key_url_and_vision_are_passed_on(fake: FakeAPI) -> None:
    fake.reply(httpx.Response(200, json=REPLY))
    config = VLLMConfig(
        model="llava-hf/llava-1.5-7b-hf",
        base_url="http://gpu-box.internal:9000/v1/",
        api_key="vllm-secret",
        vision=True,
    )
    provider = create_vllm_provider(config, client=fake.client)
    await provider.generate(CONTEXT)
    assert str(fake.request.url) == "http://gpu-box.internal:9000/v1/chat/completions"
    assert fake.request.headers["authorization"] == "Bearer vllm-secret"
    assert provider.supports_vision
    assert "vllm-secret" not in repr(config) and "vllm-secret" not in repr(provider)


async def test_created_client_is_closed() -> None:
    provider = create_vllm_provider(VLLMConfig(model=MODEL))
    await provider.close()
    assert provider._http.client.is_closed


def test_made_positionally_as_0_3_0_made_it() -> None:
    # A dataclass in 0.3.0: model, base_url, api_key, max_tokens, temperature.
    config = VLLMConfig("llama", "http://gpu:8000/v1", "secret", 256, 0.2)
    assert (config.model, config.base_url, config.max_tokens, config.temperature) == (
        "llama",
        "http://gpu:8000/v1",
        256,
        0.2,
    )
    assert config.api_key is not None and config.api_key.get_secret_value() == "secret"
    with pytest.raises(TypeError, match="multiple values for 'model'"):
        VLLMConfig("llama", model="other")


@pytest.mark.parametrize(
    ("config", "temperature"),
    [
        (AnthropicConfig(api_key="k"), 0.7),
        (OpenAIConfig(api_key="k"), 0.7),
        (GeminiConfig(api_key="k"), 1.0),
        (VLLMConfig(model="m"), 0.7),
    ],
)
def test_configs_keep_0_3_0_s_temperature(config: Any, temperature: float) -> None:
    assert config.temperature == temperature
    assert type(config)(**{**config.model_dump(), "temperature": 0.1}).temperature == 0.1
