"""Gemini models through the Gemini API's ``generateContent``, over httpx (no vendor SDK)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers._http import ErrorDetail, default_error_detail, response_json
from providers.ai._http import Sleep, event_json
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.ai._vendor import HTTPAIProvider
from providers.ai.base import AIContext, AIResponse
from providers.errors import ProviderError
from providers.gemini._mapping import (
    build_request,
    parse_response,
    response_error,
    retry_delay,
)
from providers.gemini._stream import StreamState
from providers.gemini.config import GeminiConfig

if TYPE_CHECKING:
    import httpx

__all__ = ["GeminiAIProvider"]

logger = logging.getLogger("roomkit.providers.gemini")


def _gemini_error(response: httpx.Response) -> ErrorDetail:
    """The generic error detail, with the retry delay Gemini puts in the body."""
    detail = default_error_detail(response)
    return replace(detail, retry_after=retry_delay(response_json(response)))


class GeminiAIProvider(HTTPAIProvider[GeminiConfig]):
    """Generates replies with ``POST {base_url}/models/{model}:generateContent``.

    See :mod:`providers.gemini._mapping` for how an :class:`AIContext` maps to the request
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

    vendor = "gemini"

    def __init__(
        self,
        config: GeminiConfig,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(
            config,
            client=client,
            headers={"x-goog-api-key": config.api_key.get_secret_value()},
            logger=logger,
            error_parser=_gemini_error,
            sleep=sleep,
        )
        model = quote(config.model.removeprefix("models/"), safe="-._~")
        base = f"{config.base_url.rstrip('/')}/models/{model}"
        self._url = f"{base}:generateContent"
        self._stream_url = f"{base}:streamGenerateContent?alt=sse"

    @property
    def supports_vision(self) -> bool:
        """Always True: every Gemini model reads images."""
        return True

    async def generate(self, context: AIContext) -> AIResponse:
        """Generate one reply.

        Raises:
            ProviderError: Invalid context, HTTP failure (retryable on 408/429/5xx and
                timeouts, with ``retry_after`` from the header or the error's ``RetryInfo``)
                an error object in a 2xx answer (retryable as its ``code`` is) or an unexpected
                answer.
        """
        parse = partial(
            parse_response,
            provider=self._vendor,
            secrets=self._secrets,
            model=self._config.model,
        )
        return await self._generate(self._url, self._body(context), parse)

    async def generate_stream(self, context: AIContext) -> AsyncGenerator[AIStreamEvent, None]:
        """Generate one reply as a stream: text deltas, then the complete response.

        See :mod:`providers.ai._streaming` for the contract.

        Raises:
            ProviderError: As :meth:`generate`; also an error chunk, a chunk of the wrong
                shape, or a stream whose body ends before any chunk gave a finish reason
                (retryable).
        """
        body = self._body(context)
        state = StreamState(model=self._config.model)
        async with aclosing(self._http.stream_sse(self._stream_url, body)) as events:
            async for event in events:
                chunk = event_json(event, provider=self._vendor)
                if chunk.get("error"):
                    raise response_error(
                        chunk, provider=self._vendor, secrets=self._secrets, stream=True
                    )
                if text := self._stream_step(state.apply, chunk, what="stream chunk"):
                    yield AITextDelta(text=text)
        if not state.finished:
            raise ProviderError(
                "stream ended without a finish reason", retryable=True, provider=self._vendor
            )
        if tail := state.text.flush():
            yield AITextDelta(text=tail)
        yield AIStreamEnd(response=self._streamed_response(state.response))

    def _body(self, context: AIContext) -> dict[str, Any]:
        return self._request_body(
            partial(build_request, context, default_max_tokens=self._config.max_tokens)
        )
