"""Models behind the OpenAI Chat Completions API, over httpx (no vendor SDK).

Any OpenAI-compatible server works by changing ``base_url`` (vLLM, see
:func:`providers.vllm.create_vllm_provider`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

from providers.ai._http import Sleep, event_json
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.ai._vendor import HTTPAIProvider
from providers.ai.base import AIContext, AIResponse
from providers.errors import ProviderError
from providers.openai._mapping import build_request, parse_response, response_error
from providers.openai._stream import DONE, StreamState
from providers.openai.config import OPENAI_BASE_URL, OpenAIConfig

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAIAIProvider"]

logger = logging.getLogger("roomkit.providers.openai")

_VISION_PREFIXES = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4-turbo",
    "gpt-4-vision",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
)
# Early reasoning models that read text only.
_TEXT_ONLY_PREFIXES = ("o1-mini", "o1-preview", "o3-mini")


class OpenAIAIProvider(HTTPAIProvider[OpenAIConfig]):
    """Generates replies with ``POST {base_url}/chat/completions``.

    See :mod:`providers.openai._mapping` for how an :class:`AIContext` maps to the request
    and :mod:`providers.ai._messages` for the tool-turn conventions.

    Args:
        config: API key, model, endpoint and limits.
        client: An ``httpx.AsyncClient`` to send requests with (tests pass one with a
            ``MockTransport``); it is left open by :meth:`close`. When omitted the provider
            creates its own and :meth:`close` closes it.
        sleep: Waits between retries (``config.max_retries``); ``anyio.sleep`` when None.

    Raises:
        ImportError: httpx is not installed.
    """

    vendor = "openai"

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        api_key = config.api_key.get_secret_value()
        headers: dict[str, str] = {}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if config.organization:
            headers["openai-organization"] = config.organization
        super().__init__(config, client=client, headers=headers, logger=logger, sleep=sleep)
        self._url = (config.base_url or OPENAI_BASE_URL).rstrip("/") + "/chat/completions"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._config.model!r}, url={self._url!r})"

    @property
    def supports_vision(self) -> bool:
        """``config.vision`` when set, else whether the model's name is a known vision model."""
        if self._config.vision is not None:
            return self._config.vision
        model = self._config.model
        return model.startswith(_VISION_PREFIXES) and not model.startswith(_TEXT_ONLY_PREFIXES)

    async def generate(self, context: AIContext) -> AIResponse:
        """Generate one reply.

        Raises:
            ProviderError: Invalid context, HTTP failure once the retries are spent
                (retryable on 408/429/5xx and timeouts, with ``retry_after`` from
                ``retry-after-ms`` / ``retry-after``), an
                error object in a 2xx answer (retryable for a server error) or an unexpected
                answer (including tool arguments that are not a JSON object).
        """
        parse = partial(parse_response, provider=self._vendor, secrets=self._secrets)
        return await self._generate(self._url, self._body(context, stream=False), parse)

    async def generate_stream(self, context: AIContext) -> AsyncGenerator[AIStreamEvent, None]:
        """Generate one reply as a stream: text deltas, then the complete response.

        See :mod:`providers.ai._streaming` for the contract.

        Raises:
            ProviderError: As :meth:`generate`; also an error chunk from the server, a chunk
                of the wrong shape, or a stream that ends before ``[DONE]`` (retryable).
        """
        body = self._body(context, stream=True)
        state = StreamState()
        finished = False
        async with aclosing(self._http.stream_sse(self._url, body)) as events:
            async for event in events:
                if event.data.strip() == DONE:
                    finished = True
                    break
                chunk = event_json(event, provider=self._vendor)
                if chunk.get("error"):
                    raise response_error(
                        chunk, provider=self._vendor, secrets=self._secrets, stream=True
                    )
                if text := self._stream_step(state.apply, chunk, what="stream chunk"):
                    yield AITextDelta(text=text)
        if not finished:
            raise ProviderError(
                "stream ended before [DONE]", retryable=True, provider=self._vendor
            )
        if tail := state.text.flush():
            yield AITextDelta(text=tail)
        yield AIStreamEnd(response=self._streamed_response(state.response))

    def _body(self, context: AIContext, *, stream: bool) -> dict[str, Any]:
        config = self._config
        return self._request_body(
            partial(
                build_request,
                context,
                model=config.model,
                default_max_tokens=config.max_tokens,
                stream=stream,
            )
        )
