"""Reading vendors' error bodies: the generic reader and the hook for vendor-specific ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from providers._http._secrets import shorten

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ErrorDetail",
    "ErrorParser",
    "body_error_parser",
    "code_and_message",
    "default_error_detail",
    "response_json",
    "vendor_error_message",
]


def response_json(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    # json.JSONDecodeError and UnicodeDecodeError are ValueErrors; JSON nested deeper than
    # the parser recurses (a hostile or broken endpoint) is a RecursionError: raised from a
    # send, the vendor's 2xx was taken for a failure and the message sent again.
    except (ValueError, RecursionError):
        return None


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


def vendor_error_message(body: Any, secrets: Iterable[str] = ()) -> str:
    """The vendor's ``"<type>: <message>"`` from a decoded error body (``""`` if none).

    Reads ``{"error": {"type" or "status", "message"}}``, ``{"error": "text"}`` and
    ``{"message": ...}``; the result is shortened to a few hundred characters with ``secrets``
    masked.
    """
    return shorten(_vendor_detail(body), secrets)


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What a vendor's error body says, as read by a vendor-specific :data:`ErrorParser`.

    Attributes:
        message: The vendor's human-readable message ("" when none).
        vendor_code: The vendor's error code, as a string.
        code: An error code that overrides the one derived from the HTTP status.
        retryable: Force the call retryable (e.g. Graph's ``is_transient``).
        retry_after: Seconds to wait, when the vendor says so elsewhere than in the headers.
    """

    message: str = ""
    vendor_code: str | None = None
    code: str | None = None
    retryable: bool = False
    retry_after: float | None = None


ErrorParser = Callable[["httpx.Response"], ErrorDetail]
"""Reads the :class:`ErrorDetail` of a non-2xx response."""


def default_error_detail(response: httpx.Response) -> ErrorDetail:
    """The generic :data:`ErrorParser`: the message of :func:`vendor_error_message`, unshortened
    (:func:`failure_from_response` masks secrets, then shortens)."""
    return ErrorDetail(message=_vendor_detail(response_json(response)))


def code_and_message(code: Any, message: Any) -> tuple[str | None, str | None]:
    """A vendor's error code as a string and its message, from raw JSON values: a code that is
    not a number or a non-empty string, or a message that is not a string, becomes None."""
    return (
        str(code) if isinstance(code, int | str) and code != "" else None,
        message if isinstance(message, str) else None,
    )


def body_error_parser(
    extract: Callable[[Any], tuple[str | None, str | None]],
) -> ErrorParser:
    """An :data:`ErrorParser` from a function reading ``(vendor code, message)`` from the
    decoded JSON body (None when the body is empty or not JSON)."""

    def parse(response: httpx.Response) -> ErrorDetail:
        code, message = extract(response_json(response))
        return ErrorDetail(message=message or "", vendor_code=code)

    return parse
