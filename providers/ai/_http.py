"""The JSON-over-HTTP session that every AI vendor provider talks through.

A :class:`VendorClient` sends JSON bodies with the vendor's headers through a
:class:`~providers._http.VendorHTTP` (which owns or borrows the ``httpx.AsyncClient`` and applies
the timeout) and returns JSON objects or server-sent events. Every failure is a
:class:`~providers.errors.ProviderError`: HTTP and transport failures are
:class:`~providers._http.VendorAPIError` (``"timeout"``, ``"HTTP 429: ..."``, retryable on
408/409/425/429/5xx and transport errors, ``retry_after`` from ``retry-after-ms`` /
``retry-after``), with the API key masked should a vendor echo it. Headers and bodies are never
logged: they carry API keys and the users' messages.

A request may be sent again (``max_retries``), as RoomKit 0.3.0's vendor SDKs (openai,
anthropic) sent it: after a timeout or a transport failure, and after an answer with status 408,
409, 429 or 5xx, unless the vendor's ``x-should-retry`` header says otherwise (``"true"``
retries any status). The wait is the answer's ``retry-after-ms`` / ``retry-after`` when it is
more than 0 and at most 60 seconds, else 0.5 s doubled at each retry up to 8 s, less up to a
quarter (jitter). A stream is retried only until its answer starts.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from providers._http import (
    ErrorDetail,
    ErrorParser,
    HTTPFailure,
    VendorAPIError,
    VendorHTTP,
    default_error_detail,
    loggable_url,
)
from providers._sse import SSEDecoder, SSEError, SSEEvent
from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = ["Sleep", "VendorClient", "event_json", "retry_delay"]

logger = logging.getLogger("roomkit.providers.ai.http")

Sleep = Callable[[float], Awaitable[object]]
"""How the client waits between attempts (``anyio.sleep``; tests pass one that does not)."""

# 0.3.0's SDKs (openai and anthropic alike): first wait, longest wait, and the longest delay a
# vendor may ask for and still be obeyed.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
_RETRY_STATUSES = frozenset({408, 409, 429})
_SHOULD_RETRY = "x-should-retry"


def retry_delay(
    retries_taken: int, retry_after: float | None, jitter: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retries_taken + 1``, as 0.3.0's SDKs waited.

    Args:
        retries_taken: Retries already made (0 before the first).
        retry_after: The delay the vendor asked for, if it did.
        jitter: A number in [0, 1) taking up to a quarter off the computed backoff.
    """
    if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER:
        return retry_after
    backoff = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY)
    return backoff * (1 - 0.25 * jitter())


def _should_retry(failure: HTTPFailure, should_retry: str | None) -> bool:
    """Whether 0.3.0's SDKs would have sent the request again after ``failure``."""
    if failure.error == "timeout":
        return True
    if failure.error == "network_error":
        # Only transport failures: an invalid URL or a redirect loop would fail again.
        return failure.retryable
    status = failure.status_code
    if status is None or failure.error == "invalid_response":
        return False
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return status in _RETRY_STATUSES or status >= 500


def _is_json(response: httpx.Response) -> bool:
    """Whether ``response`` says its body is JSON (``application/json``, ``...+json``) rather
    than an event stream (a stream without content type is still decoded as one)."""
    content_type: str = response.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


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
        max_retries: How many times a failed request may be sent again (see the module doc).
        sleep: Waits between attempts; ``anyio.sleep`` when None.

    Raises:
        ImportError: httpx is not installed.
        ValueError: ``max_retries`` is negative.
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
        max_retries: int = 0,
        sleep: Sleep | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.provider = provider
        self._headers = {"content-type": "application/json", **headers}
        self._http = VendorHTTP(
            provider, client=client, timeout=timeout, secrets=secrets, logger=logger
        )
        self._errors = error_parser
        self._max_retries = max_retries
        self._sleep: Sleep = sleep or anyio.sleep

    @property
    def max_retries(self) -> int:
        """How many times a failed request may be sent again."""
        return self._max_retries

    def _attempt_parser(self, hints: dict[str, str]) -> ErrorParser:
        """The error parser of one attempt: the vendor's, also noting the ``x-should-retry``
        header in ``hints`` (the failure keeps no headers; per call, as calls run
        concurrently)."""
        parse = self._errors or default_error_detail

        def parse_and_note(response: httpx.Response) -> ErrorDetail:
            hint = response.headers.get(_SHOULD_RETRY)
            if hint is not None:
                hints[_SHOULD_RETRY] = hint.strip().lower()
            return parse(response)

        return parse_and_note

    async def _wait_to_retry(self, failure: HTTPFailure, retries_taken: int, url: str) -> None:
        """Log the failure and wait the delay 0.3.0's SDKs waited before sending again."""
        delay = retry_delay(retries_taken, failure.retry_after)
        logger.info(
            "%s: %s failed (%s), retrying in %.2f s (retry %d of %d)",
            self.provider,
            loggable_url(url),  # a base_url may carry credentials (https://user:pw@host)
            failure.describe(),
            delay,
            retries_taken + 1,
            self._max_retries,
        )
        await self._sleep(delay)

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
        logger.debug("%s: POST %s", self.provider, loggable_url(url))
        retries_taken = 0
        while True:
            hints: dict[str, str] = {}
            outcome = await self._http.request(
                "POST",
                url,
                content=content,
                headers=self._headers,
                error_parser=self._attempt_parser(hints),
            )
            if not isinstance(outcome, HTTPFailure):
                break
            if retries_taken >= self._max_retries or not _should_retry(
                outcome, hints.get(_SHOULD_RETRY)
            ):
                raise outcome.to_error()
            await self._wait_to_retry(outcome, retries_taken, url)
            retries_taken += 1
        try:
            data = outcome.json()
        except (ValueError, RecursionError) as exc:  # see response_json
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
        logger.debug("%s: POST %s (stream)", self.provider, loggable_url(url))
        retries_taken = 0
        while True:
            hints: dict[str, str] = {}
            started = False
            try:
                async with self._http.stream(
                    "POST",
                    url,
                    content=content,
                    headers=self._headers,
                    error_parser=self._attempt_parser(hints),
                ) as response:
                    started = True
                    if _is_json(response):
                        # A 2xx JSON answer to a stream request: gateways and compatible
                        # servers answer an error object so. Fed to the SSE decoder it gave no
                        # event, and the vendor's error was lost for a generic, retryable
                        # "stream ended before ..."; as one event, the vendor maps it as it
                        # maps an error chunk (and as generate() maps the same answer).
                        answer = await self._http.read_answer(response)
                        yield SSEEvent(event="message", data=answer.decode("utf-8", "replace"))
                        return
                    async for chunk in response.aiter_bytes():
                        for event in decoder.feed(chunk):
                            yield event
                return
            except SSEError as exc:
                raise ProviderError(exc.message, provider=self.provider) from exc
            except VendorAPIError as exc:
                # Once the answer has started, events may have been yielded: as with 0.3.0's
                # SDKs, only the opening of the stream is retried.
                if (
                    started
                    or retries_taken >= self._max_retries
                    or not _should_retry(exc.failure, hints.get(_SHOULD_RETRY))
                ):
                    raise
                await self._wait_to_retry(exc.failure, retries_taken, url)
                retries_taken += 1

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
