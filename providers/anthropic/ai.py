"""Claude models through the Anthropic Messages API, over httpx (no vendor SDK)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

from providers.ai._http import Sleep, event_json
from providers.ai._streaming import AIStreamEnd, AIStreamEvent, AITextDelta
from providers.ai._vendor import HTTPAIProvider
from providers.ai.base import AIContext, AIResponse
from providers.anthropic._mapping import build_request, is_error, parse_response, response_error
from providers.anthropic._stream import StreamState
from providers.anthropic.config import ANTHROPIC_VERSION, AnthropicConfig
from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = ["AnthropicAIProvider"]

logger = logging.getLogger("roomkit.providers.anthropic")

# Every Claude 3 and later model reads images; Claude 2 and Instant do not.
_VISION_MODEL = re.compile(r"claude-(3|(sonnet|opus|haiku)-[4-9])")


class AnthropicAIProvider(HTTPAIProvider[AnthropicConfig]):
    """Generates replies with a Claude model (``POST {base_url}/v1/messages``).

    See :mod:`providers.anthropic._mapping` for how an :class:`AIContext` maps to the request
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

    vendor = "anthropic"

    def __init__(
        self,
        config: AnthropicConfig,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        api_key = config.api_key.get_secret_value()
        headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        super().__init__(config, client=client, headers=headers, logger=logger, sleep=sleep)
        self._url = config.base_url.rstrip("/") + "/v1/messages"

    @property
    def supports_vision(self) -> bool:
        """True for Claude 3 and later models (``claude-3*``, ``claude-sonnet-4*``, ...)."""
        return _VISION_MODEL.match(self._config.model) is not None

    async def generate(self, context: AIContext) -> AIResponse:
        """Generate one reply.

        Raises:
            ProviderError: Invalid context, HTTP failure (retryable on 408/429/5xx/529 and
                timeouts, with ``retry_after`` from the ``retry-after`` header), an error
                object in a 2xx answer (retryable when overloaded or rate limited) or an
                unexpected answer.
        """
        parse = partial(parse_response, provider=self._vendor, secrets=self._secrets)
        return await self._generate(self._url, self._body(context, stream=False), parse)

    async def generate_stream(self, context: AIContext) -> AsyncGenerator[AIStreamEvent, None]:
        """Generate one reply as a stream: text deltas, then the complete response.

        See :mod:`providers.ai._streaming` for the contract.

        Raises:
            ProviderError: As :meth:`generate`; also an ``error`` event from the vendor
                (retryable when overloaded or rate limited), an event of the wrong shape, or a
                stream that ends before ``message_stop`` (retryable).
        """
        body = self._body(context, stream=True)
        state = StreamState()
        async with aclosing(self._http.stream_sse(self._url, body)) as events:
            async for event in events:
                data = event_json(event, provider=self._vendor)
                if is_error(data):
                    raise response_error(
                        data, provider=self._vendor, secrets=self._secrets, stream=True
                    )
                if text := self._stream_step(state.apply, data, what="stream event"):
                    yield AITextDelta(text=text)
                if state.done:
                    break
        if not state.done:
            raise ProviderError(
                "stream ended before message_stop", retryable=True, provider=self._vendor
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
