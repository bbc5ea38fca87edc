"""The JSON-over-HTTP session that every AI vendor provider talks through.

A :class:`VendorClient` sends JSON bodies with the vendor's headers through a
:class:`~providers._http.VendorHTTP` (which owns or borrows the ``httpx.AsyncClient`` and applies
the timeout) and returns JSON objects or server-sent events. Every failure is a
:class:`~providers.errors.ProviderError`: HTTP and transport failures are
:class:`~providers._http.VendorAPIError` (``"timeout"``, ``"HTTP 429: ..."``, retryable on
408/409/425/429/5xx and transport errors, ``retry_after`` from ``retry-after-ms`` /
``retry-after``), with the API key masked should a vendor echo it. Headers and bodies are never
logged: they carry API keys and the users' messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from providers._http import ErrorParser, HTTPFailure, VendorHTTP
from providers._sse import SSEDecoder, SSEError, SSEEvent
from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = ["VendorClient", "event_json"]

logger = logging.getLogger("roomkit.providers.ai.http")


def event_json(event: SSEEvent, *, provider: str) -> dict[str, Any]:
    """The JSON object carried by a server-sent event's data.

    Raises:
        ProviderError: The data is not a JSON object.
    """
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise ProviderError("invalid JSON in a stream event", provider=provider) from exc
    if not isinstance(data, dict):
        raise ProviderError("a stream event is not a JSON object", provider=provider)
    return data


class VendorClient:
    """POSTs JSON to one vendor and returns JSON, or a stream of server-sent events.

    Args:
        provider: Provider name for errors and logs.
        headers: Headers sent with every request (authentication, API version).
        timeout: Seconds allowed for each request (connect, read, write, pool).
        secrets: Values masked in error messages (API keys).
        client: A client to use instead of creating one; it stays open on :meth:`aclose`.
        error_parser: Reads the vendor's error body, for vendors that say more there than the
            generic reader finds (a retry delay, ...).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self,
        *,
        provider: str,
        headers: Mapping[str, str],
        timeout: float,
        secrets: Sequence[str] = (),
        client: httpx.AsyncClient | None = None,
        error_parser: ErrorParser | None = None,
    ) -> None:
        self.provider = provider
        self._headers = {"content-type": "application/json", **headers}
        self._http = VendorHTTP(
            provider, client=client, timeout=timeout, secrets=secrets, logger=logger
        )
        self._errors = error_parser

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying httpx client."""
        return self._http.client

    async def aclose(self) -> None:
        """Close the client if this object created it (idempotent)."""
        await self._http.aclose()

    async def post_json(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer.

        Raises:
            ProviderError: Timeout, transport failure, non-2xx status, or a body that is not
                a JSON object.
        """
        content = self._encode(body)
        logger.debug("%s: POST %s", self.provider, url)
        outcome = await self._http.request(
            "POST", url, content=content, headers=self._headers, error_parser=self._errors
        )
        if isinstance(outcome, HTTPFailure):
            raise outcome.to_error()
        try:
            data = outcome.json()
        except ValueError as exc:
            raise ProviderError(
                "invalid JSON in the response",
                provider=self.provider,
                status_code=outcome.status_code,
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(
                "the response is not a JSON object",
                provider=self.provider,
                status_code=outcome.status_code,
            )
        return data

    async def stream_sse(
        self, url: str, body: Mapping[str, Any]
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` as JSON and yield the server-sent events of the answer.

        Close the iterator (``contextlib.aclosing``) when leaving it before its end, so the
        response is released at once.

        Raises:
            ProviderError: Timeout or transport failure (also in the middle of the stream),
                non-2xx status, or an oversized event.
        """
        content = self._encode(body)
        decoder = SSEDecoder()
        logger.debug("%s: POST %s (stream)", self.provider, url)
        try:
            async with self._http.stream(
                "POST", url, content=content, headers=self._headers, error_parser=self._errors
            ) as response:
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield event
        except SSEError as exc:
            raise ProviderError(exc.message, provider=self.provider) from exc

    def _encode(self, body: Mapping[str, Any]) -> bytes:
        # Encoded here rather than by httpx so that a NaN or an unserialisable tool schema
        # becomes a ProviderError instead of a foreign exception.
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ProviderError(
                f"request cannot be encoded as JSON: {type(exc).__name__}",
                provider=self.provider,
            ) from exc
