"""Gemini models through the Gemini API's ``generateContent``, over httpx (no vendor SDK)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers._http import (
    ErrorDetail,
    default_error_detail,
    is_retryable_status,
    response_json,
    vendor_error_message,
)
from providers.ai._http import event_json
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.ai._vendor import HTTPAIProvider
from providers.ai.base import AIContext, AIResponse
from providers.errors import ProviderError
from providers.gemini._mapping import build_request, parse_response, retry_delay
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

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(self, config: GeminiConfig, *, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(
            config,
            client=client,
            headers={"x-goog-api-key": config.api_key.get_secret_value()},
            logger=logger,
            error_parser=_gemini_error,
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
                or an unexpected answer.
        """
        return await self._generate(self._url, self._body(context), parse_response)

    async def generate_stream(self, context: AIContext) -> AsyncGenerator[AIStreamEvent, None]:
        """Generate one reply as a stream: text deltas, then the complete response.

        See :mod:`providers.ai._streaming` for the contract.

        Raises:
            ProviderError: As :meth:`generate`; also an error chunk, or a stream whose body
                ends before any chunk gave a finish reason (retryable).
        """
        body = self._body(context)
        state = StreamState()
        async with aclosing(self._http.stream_sse(self._stream_url, body)) as events:
            async for event in events:
                chunk = event_json(event, provider=self.name)
                if chunk.get("error"):
                    raise self._stream_error(chunk)
                try:
                    text = state.apply(chunk)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise ProviderError("unexpected stream chunk", provider=self.name) from exc
                if text:
                    yield AITextDelta(text=text)
        if not state.finished:
            raise ProviderError(
                "stream ended without a finish reason", retryable=True, provider=self.name
            )
        yield AIStreamEnd(response=self._streamed_response(state.response))

    def _body(self, context: AIContext) -> dict[str, Any]:
        return self._request_body(
            partial(build_request, context, default_max_tokens=self._config.max_tokens)
        )

    def _stream_error(self, chunk: dict[str, Any]) -> ProviderError:
        error = chunk["error"]
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and not isinstance(code, bool) else None
        detail = vendor_error_message(chunk, self._secrets) or "unknown error"
        return ProviderError(
            f"stream error: {detail}",
            retryable=status is not None and is_retryable_status(status),
            provider=self.name,
            status_code=status,
            retry_after=retry_delay(chunk),
        )
