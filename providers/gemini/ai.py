"""Gemini models through the Gemini API's ``generateContent``, over httpx (no vendor SDK)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers.ai._errors import RETRYABLE_STATUS_CODES, vendor_error_message
from providers.ai._http import VendorClient, event_json
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.ai.base import AIContext, AIProvider, AIResponse
from providers.errors import ProviderError
from providers.gemini._mapping import build_request, parse_response, retry_delay
from providers.gemini._stream import StreamState
from providers.gemini.config import GeminiConfig

if TYPE_CHECKING:
    import httpx

__all__ = ["GeminiAIProvider"]

logger = logging.getLogger("roomkit.providers.gemini")


class GeminiAIProvider(AIProvider):
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
        self._config = config
        api_key = config.api_key.get_secret_value()
        model = quote(config.model.removeprefix("models/"), safe="-._~")
        base = f"{config.base_url.rstrip('/')}/models/{model}"
        self._url = f"{base}:generateContent"
        self._stream_url = f"{base}:streamGenerateContent?alt=sse"
        self._secrets = [api_key]
        self._http = VendorClient(
            provider=self.name,
            headers={"x-goog-api-key": api_key},
            timeout=config.timeout,
            secrets=self._secrets,
            client=client,
            retry_after_from_body=retry_delay,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._config.model!r})"

    @property
    def model_name(self) -> str:
        """The configured model id."""
        return self._config.model

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
        data = await self._http.post_json(self._url, self._body(context))
        try:
            response = parse_response(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(
                f"unexpected response: {type(exc).__name__}", provider=self.name
            ) from exc
        logger.debug(
            "reply from %s: finish_reason=%s usage=%s",
            self._config.model,
            response.finish_reason,
            response.usage,
        )
        return response

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
        yield AIStreamEnd(response=state.response())

    async def close(self) -> None:
        """Close the HTTP client if the provider created it."""
        await self._http.aclose()

    def _body(self, context: AIContext) -> dict[str, Any]:
        try:
            return build_request(context, default_max_tokens=self._config.max_tokens)
        except ValueError as exc:
            raise ProviderError(f"invalid AI context: {exc}", provider=self.name) from exc

    def _stream_error(self, chunk: dict[str, Any]) -> ProviderError:
        error = chunk["error"]
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and not isinstance(code, bool) else None
        detail = vendor_error_message(chunk, self._secrets) or "unknown error"
        return ProviderError(
            f"stream error: {detail}",
            retryable=status in RETRYABLE_STATUS_CODES,
            provider=self.name,
            status_code=status,
            retry_after=retry_delay(chunk),
        )
