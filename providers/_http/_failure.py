"""What a failed vendor call is (:class:`HTTPFailure`, :class:`VendorAPIError`) and how
responses and httpx exceptions are classified into one (see the package doc for the codes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from providers._http._error_body import ErrorDetail, ErrorParser, default_error_detail
from providers._http._retry_after import retry_after_from_headers
from providers._http._secrets import shorten
from providers.errors import ProviderError
from roomkit.models.delivery import ProviderResult

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HTTPFailure",
    "VendorAPIError",
    "failure_from_exception",
    "failure_from_response",
    "is_retryable_status",
]

R = TypeVar("R", bound=ProviderResult)

_AUTH_STATUSES = frozenset({401, 403})
# Besides 5xx, the statuses after which the same request may succeed (the vendors' own SDKs
# retry 408, 409 and 429; 425 is "too early").
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    """Whether repeating a request answered with ``status`` may succeed."""
    return status >= 500 or status in _RETRYABLE_STATUSES


@dataclass(frozen=True, slots=True)
class HTTPFailure:
    """Why a vendor call did not succeed.

    Attributes:
        error: The error code (see :mod:`providers._http`).
        message: Human-readable detail (the vendor's message when it gave one); no secrets.
        provider: Name of the provider that failed.
        status_code: HTTP status, when the vendor answered.
        retryable: Whether the same call may succeed later.
        retry_after: Seconds the vendor asked us to wait, when it said so.
        vendor_code: The vendor's own error code, when it gave one.
        cause: The httpx exception behind the failure, if any (the ``__cause__`` of
            :meth:`to_error`).
    """

    error: str
    message: str
    provider: str = ""
    status_code: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    vendor_code: str | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    def metadata(self) -> dict[str, Any]:
        """The failure's details for ``ProviderResult.metadata`` (None values left out)."""
        data: dict[str, Any] = {"provider": self.provider, "retryable": self.retryable}
        if self.status_code is not None:
            data["status_code"] = self.status_code
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.vendor_code is not None:
            data["vendor_code"] = self.vendor_code
        if self.message:
            data["detail"] = self.message
            if self.vendor_code is not None:
                # 0.3.0's key for the vendor's own text of its coded error (Twilio, Sinch,
                # Telnyx RCS, Messenger): apps showed or logged it from there.
                data["message"] = self.message
        return data

    def to_result(self, result_type: type[R], **extra: Any) -> R:
        """A ``success=False`` result of ``result_type`` (``ProviderResult`` or a subclass)
        carrying this failure; ``metadata=`` in ``extra`` is merged into the failure's."""
        metadata = self.metadata()
        metadata.update(extra.pop("metadata", {}))
        return result_type(success=False, error=self.error, metadata=metadata, **extra)

    def describe(self) -> str:
        """One line saying what failed (``"timeout"``, ``"HTTP 429: slow down"``,
        ``"transport error: ConnectError"``, ...), without the provider's name."""
        if self.error == "timeout":
            return "timeout"
        if self.error == "network_error":
            kind = "transport error" if self.retryable else "HTTP client error"
            return f"{kind}: {self.message}"
        if self.status_code is not None and not 200 <= self.status_code < 300:
            return f"HTTP {self.status_code}: {self.message}"
        return f"{self.error}: {self.message}"

    def to_error(self) -> VendorAPIError:
        """This failure as an exception (for calls that must return a value), with the httpx
        exception behind it, if any, as ``__cause__``."""
        error = VendorAPIError(self)
        error.__cause__ = self.cause
        return error


class VendorAPIError(ProviderError):
    """A vendor HTTP call failed; :attr:`code` is the error code (see :mod:`providers._http`) and
    the message is :meth:`HTTPFailure.describe` (never credentials or request bodies).

    Args:
        failure: What failed.
    """

    def __init__(self, failure: HTTPFailure) -> None:
        super().__init__(
            failure.describe(),
            retryable=failure.retryable,
            provider=failure.provider,
            status_code=failure.status_code,
            retry_after=failure.retry_after,
        )
        self.failure = failure

    @property
    def code(self) -> str:
        """The error code (``timeout``, ``auth_error``, ``rate_limit``, ``http_500``, ...)."""
        return self.failure.error

    @property
    def vendor_code(self) -> str | None:
        """The vendor's own error code, when its body had one."""
        return self.failure.vendor_code

    def to_result(self) -> ProviderResult:
        """The failed ``ProviderResult`` that a ``send`` returns for this error."""
        return self.failure.to_result(ProviderResult)


def failure_from_response(
    response: httpx.Response,
    parse_error: ErrorParser | None = None,
    *,
    provider: str = "",
    code_prefix: str = "",
    secrets: Iterable[str] = (),
) -> HTTPFailure:
    """Classify a non-2xx response.

    The error code is the parser's when it sets one; else ``auth_error`` for 401/403 and
    ``rate_limit`` for 429 (callers branch on these); else, with a ``code_prefix``, a 4xx
    carrying a vendor code is ``<code_prefix>_<code>``; else ``http_<status>``.
    ``retry_after`` comes from the headers, else from the parser.

    Args:
        response: The vendor's answer (its body read).
        parse_error: Reads the vendor's error body; the generic reader when None.
        provider: Name of the provider that failed.
        code_prefix: Prefix of vendor codes in error codes (``"twilio"`` → ``twilio_21211``).
        secrets: Values masked in the message.
    """
    status = response.status_code
    try:
        detail = (parse_error or default_error_detail)(response)
    except Exception:  # a surprising error body must not hide the HTTP failure itself
        detail = ErrorDetail()
    if detail.code:
        error = detail.code
    elif status in _AUTH_STATUSES:
        error = "auth_error"
    elif status == 429:
        error = "rate_limit"
    elif code_prefix and detail.vendor_code and status < 500:
        error = f"{code_prefix}_{detail.vendor_code}"
    else:
        error = f"http_{status}"
    header_delay = retry_after_from_headers(response.headers)
    return HTTPFailure(
        error,
        shorten(detail.message or response.reason_phrase or f"HTTP {status}", secrets),
        provider=provider,
        status_code=status,
        retryable=detail.retryable or error == "rate_limit" or is_retryable_status(status),
        retry_after=header_delay if header_delay is not None else detail.retry_after,
        vendor_code=detail.vendor_code,
    )


def failure_from_exception(exc: Exception, *, provider: str = "") -> HTTPFailure:
    """Classify an httpx exception raised before or while reading an answer.

    Only the exception's class name is kept: httpx messages may quote URLs.
    """
    import httpx

    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return HTTPFailure("timeout", name, provider=provider, retryable=True, cause=exc)
    # Transport failures (refused, reset, a peer breaking the protocol) are transient; other
    # client-side failures (an invalid URL, too many redirects, an undecodable body) would
    # fail again. So would two transport errors that are ours, not the network's: a URL
    # without http(s) scheme (UnsupportedProtocol: a base_url "api.example.com") and a
    # request h11 refuses to write (LocalProtocolError: a key ending in a newline). Both were
    # classed retryable, and AI providers sent the same doomed request again after backoff.
    retryable = isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError
    )
    return HTTPFailure("network_error", name, provider=provider, retryable=retryable, cause=exc)
