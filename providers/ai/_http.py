"""The JSON-over-HTTP session that every AI vendor provider talks through.

A :class:`VendorClient` owns or borrows one ``httpx.AsyncClient``, sends JSON bodies with the
vendor's headers and the configured timeout, and turns every failure into
:class:`~providers.errors.ProviderError` (see :mod:`providers.ai._errors`). It never logs headers
or bodies: they carry API keys and the users' messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from providers._sse import SSEDecoder, SSEError, SSEEvent
from providers.ai._errors import error_from_exception, error_from_response
from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = ["VendorClient", "event_json", "import_httpx"]

logger = logging.getLogger("roomkit.providers.ai.http")

RetryAfterFromBody = Callable[[Any], "float | None"]


def import_httpx(provider: str) -> ModuleType:
    """Import httpx, or fail with a hint naming the extra to install.

    Raises:
        ImportError: httpx is not installed.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is installed in the test environment
        raise ImportError(
            f"{provider} needs httpx; install it with: pip install 'roomkit[http]'"
        ) from exc
    return httpx


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
        retry_after_from_body: Extracts a retry delay from a decoded error body, for vendors
            that put it there rather than in a header.
    """

    def __init__(
        self,
        *,
        provider: str,
        headers: Mapping[str, str],
        timeout: float,
        secrets: Sequence[str] = (),
        client: httpx.AsyncClient | None = None,
        retry_after_from_body: RetryAfterFromBody | None = None,
    ) -> None:
        self.provider = provider
        self._headers = {"content-type": "application/json", **headers}
        self._timeout = timeout
        self._secrets = tuple(secret for secret in secrets if secret)
        self._owns_client = client is None
        self._client: httpx.AsyncClient = (
            client if client is not None else import_httpx(provider).AsyncClient()
        )
        self._retry_after_from_body = retry_after_from_body

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying httpx client."""
        return self._client

    async def aclose(self) -> None:
        """Close the client if this object created it (idempotent)."""
        if self._owns_client and not self._client.is_closed:
            await self._client.aclose()

    async def post_json(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer.

        Raises:
            ProviderError: Timeout, transport failure, non-2xx status, or a body that is not
                a JSON object.
        """
        import httpx

        content = self._encode(body)
        logger.debug("%s: POST %s", self.provider, url)
        try:
            response = await self._client.post(
                url, content=content, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, provider=self.provider) from exc
        if not response.is_success:
            raise self._error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(
                "invalid JSON in the response",
                provider=self.provider,
                status_code=response.status_code,
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(
                "the response is not a JSON object",
                provider=self.provider,
                status_code=response.status_code,
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
        import httpx

        content = self._encode(body)
        decoder = SSEDecoder()
        logger.debug("%s: POST %s (stream)", self.provider, url)
        try:
            async with self._client.stream(
                "POST", url, content=content, headers=self._headers, timeout=self._timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._error(response)
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield event
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, provider=self.provider) from exc
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

    def _error(self, response: httpx.Response) -> ProviderError:
        retry_after = None
        if self._retry_after_from_body is not None:
            try:
                retry_after = self._retry_after_from_body(response.json())
            except ValueError:
                retry_after = None
        error = error_from_response(
            response, provider=self.provider, secrets=self._secrets, retry_after=retry_after
        )
        logger.debug(
            "%s: HTTP %s (retryable=%s)", self.provider, error.status_code, error.retryable
        )
        return error
