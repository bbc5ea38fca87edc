"""Translating httpx failures and vendor error responses into :class:`ProviderError`.

Shared by the AI vendor providers. The rules:

- a timeout is ``ProviderError("timeout", retryable=True)``;
- any other transport failure (connection refused, reset, protocol error) is retryable;
- an HTTP error response is retryable for 408, 429, 500, 502, 503, 504 and 529 (Anthropic's
  "overloaded"), with ``retry_after`` from ``retry-after-ms`` or ``retry-after`` (seconds or
  an HTTP date) when the vendor sent one;
- the message names the status and the vendor's own error type and message (every vendor here
  answers ``{"error": {"message": ...}}`` or ``{"message": ...}``), shortened, with every known
  secret replaced by ``***`` so that an API key echoed by a vendor or proxy never leaks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "RETRYABLE_STATUS_CODES",
    "error_from_exception",
    "error_from_response",
    "parse_retry_after",
    "redact",
    "vendor_error_message",
]

RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504, 529})

_MAX_MESSAGE = 300


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after``, or None.

    ``retry-after`` may be a number of seconds or an HTTP date (RFC 9110); a date in the past
    gives 0. Unparseable or negative values are ignored.
    """
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def vendor_error_message(body: Any, secrets: Iterable[str] = ()) -> str:
    """The vendor's ``"<type>: <message>"`` from a decoded error body (``""`` if none).

    The result is shortened to a few hundred characters and ``secrets`` are masked.
    """
    # Masked before shortening: a cut could otherwise leave half a key unmasked.
    detail = redact(_vendor_detail(body), secrets)
    if len(detail) > _MAX_MESSAGE:
        detail = detail[: _MAX_MESSAGE - 3] + "..."
    return detail


def _vendor_detail(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    error = body.get("error", body)
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    message = error.get("message")
    # Anthropic and OpenAI name the kind of error in "type", Google in "status".
    kind = error.get("type") or error.get("status")
    message = message if isinstance(message, str) else ""
    if isinstance(kind, str) and kind:
        return f"{kind}: {message}" if message else kind
    return message


def error_from_response(
    response: httpx.Response,
    *,
    provider: str,
    secrets: Iterable[str] = (),
    retry_after: float | None = None,
) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx response whose body has been read.

    Args:
        response: The vendor's answer (``await response.aread()`` first when streaming).
        provider: Provider name recorded in the error.
        secrets: Values to mask in the message.
        retry_after: A delay the vendor gave in its body; the headers win when they have one.
    """
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    detail = vendor_error_message(body, secrets)
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    header_delay = parse_retry_after(response.headers)
    return ProviderError(
        message,
        retryable=status in RETRYABLE_STATUS_CODES,
        provider=provider,
        status_code=status,
        retry_after=header_delay if header_delay is not None else retry_after,
    )


def error_from_exception(exc: Exception, *, provider: str) -> ProviderError:
    """The :class:`ProviderError` for an httpx exception raised before or while reading.

    Only the exception's class name goes into the message: httpx messages may quote URLs.
    """
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("timeout", retryable=True, provider=provider)
    if isinstance(exc, httpx.TransportError):
        return ProviderError(
            f"transport error: {type(exc).__name__}", retryable=True, provider=provider
        )
    return ProviderError(f"HTTP client error: {type(exc).__name__}", provider=provider)
