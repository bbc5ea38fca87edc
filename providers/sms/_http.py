"""HTTP plumbing shared by the vendor SMS / RCS providers (Twilio, Telnyx, Sinch, VoiceMeUp).

Each provider owns one :class:`VendorHTTP`: an ``httpx.AsyncClient`` that is either injected
(``client=``, e.g. one built on ``httpx.MockTransport`` in tests; the caller closes it) or created
here (closed by :meth:`VendorHTTP.aclose`). httpx is imported when a provider is constructed, never
when ``providers`` is imported, so the base package works without it.

:meth:`VendorHTTP.request` never raises for network or HTTP failures: it returns an
:class:`HTTPFailure` whose ``error`` is the string §9 of the reference API fixes for
``ProviderResult.error``:

====================  ======================================================================
``timeout``           the request timed out (retryable)
``network_error``     the vendor could not be reached (retryable)
``client_closed``     the provider was closed before the call
``auth_error``        HTTP 401/403
``rate_limit``        HTTP 429 (retryable; ``metadata["retry_after"]`` when the vendor said)
``<vendor>_<code>``   another 4xx whose body carries the vendor's error code (``twilio_21211``)
``http_<status>``     any other non-2xx answer (5xx are retryable)
====================  ======================================================================

(the same vocabulary as ``providers.http._vendor``). Calls whose contract has no result
(capability checks) turn it into a :class:`~providers.errors.ProviderError` with
:meth:`HTTPFailure.to_error`.

Secrets travel only in request headers or bodies, which are never logged or put in messages.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from providers.errors import ProviderError
from roomkit.models.delivery import ProviderResult

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ErrorExtractor",
    "HTTPFailure",
    "VendorHTTP",
    "import_httpx",
    "parse_retry_after",
    "response_json",
]

R = TypeVar("R", bound=ProviderResult)

ErrorExtractor = Callable[[Any], tuple[str | None, str | None]]
"""Reads ``(vendor error code, vendor error message)`` from a decoded error body (any JSON)."""

_AUTH_STATUSES = frozenset({401, 403})
# Statuses after which the same request may succeed later (besides 429 and 5xx).
_RETRYABLE_STATUSES = frozenset({408, 409, 425})
_MAX_MESSAGE = 300


def import_httpx(provider: str) -> ModuleType:
    """Import httpx for ``provider``, with an install hint when it is missing.

    Raises:
        ImportError: httpx is not installed.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is a dev dependency
        raise ImportError(
            f"{provider} needs httpx; install it with `pip install 'roomkit[http]'` "
            "(or `pip install httpx`)"
        ) from exc
    return httpx


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Returns:
        A non-negative number of seconds, or None when the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def response_json(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HTTPFailure:
    """Why a vendor call did not succeed.

    Attributes:
        error: The ``ProviderResult.error`` string (see the module doc).
        message: Human-readable detail (the vendor's message when it gave one); no secrets.
        provider: Name of the provider that failed.
        status_code: HTTP status, when the vendor answered.
        retryable: Whether the same call may succeed later.
        retry_after: Seconds the vendor asked us to wait, when it said so.
        vendor_code: The vendor's own error code, when it gave one.
    """

    error: str
    message: str
    provider: str = ""
    status_code: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    vendor_code: str | None = None

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
        return data

    def to_result(self, result_type: type[R], **extra: Any) -> R:
        """A ``success=False`` result of ``result_type`` (``ProviderResult`` or a subclass)
        carrying this failure; ``metadata=`` in ``extra`` is merged into the failure's."""
        metadata = self.metadata()
        metadata.update(extra.pop("metadata", {}))
        return result_type(success=False, error=self.error, metadata=metadata, **extra)

    def to_error(self) -> ProviderError:
        """This failure as a :class:`ProviderError` (for calls that must return a value)."""
        return ProviderError(
            f"{self.provider}: {self.error}: {self.message}",
            retryable=self.retryable,
            provider=self.provider,
            status_code=self.status_code,
            retry_after=self.retry_after,
        )


def _no_vendor_error(body: Any) -> tuple[str | None, str | None]:
    return None, None


def failure_from_response(
    response: httpx.Response,
    extract_error: ErrorExtractor = _no_vendor_error,
    *,
    provider: str = "",
    code_prefix: str = "",
) -> HTTPFailure:
    """Classify a non-2xx response.

    401/403 are ``auth_error`` and 429 ``rate_limit`` whatever the vendor code says (callers
    branch on these); other 4xx use the vendor's error code when it has one
    (``<code_prefix>_<code>``), else ``http_<status>``; 5xx are always ``http_<status>`` and
    retryable.
    """
    status = response.status_code
    try:
        code, message = extract_error(response_json(response))
    except Exception:  # a surprising error body must not hide the HTTP failure
        code, message = None, None
    message = (message or response.reason_phrase or f"HTTP {status}")[:_MAX_MESSAGE]
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in _AUTH_STATUSES:
        return HTTPFailure(
            "auth_error",
            message,
            provider=provider,
            status_code=status,
            retryable=False,
            vendor_code=code,
        )
    if status == 429:
        return HTTPFailure(
            "rate_limit",
            message,
            provider=provider,
            status_code=status,
            retryable=True,
            retry_after=retry_after,
            vendor_code=code,
        )
    retryable = status >= 500 or status in _RETRYABLE_STATUSES
    if code and status < 500:
        error = f"{code_prefix}_{code}" if code_prefix else code
    else:
        error = f"http_{status}"
    return HTTPFailure(
        error,
        message,
        provider=provider,
        status_code=status,
        retryable=retryable,
        retry_after=retry_after,
        vendor_code=code,
    )


class VendorHTTP:
    """The httpx client of one provider and the one way it sends requests.

    Args:
        provider: Provider name, for messages and logs.
        code_prefix: Prefix of vendor error codes in ``error`` (``"twilio"`` → ``twilio_21211``).
        client: An ``httpx.AsyncClient`` to borrow (not closed by :meth:`aclose`); a new client
            owned by this object when None.
        timeout: Per-request timeout in seconds (applied to borrowed clients too).
        logger: The vendor's logger.
    """

    def __init__(
        self,
        provider: str,
        *,
        code_prefix: str,
        client: httpx.AsyncClient | None,
        timeout: float,
        logger: logging.Logger,
    ) -> None:
        httpx_module = import_httpx(provider)
        self._httpx = httpx_module
        self._provider = provider
        self._code_prefix = code_prefix
        self._timeout = timeout
        self._logger = logger
        self._owns_client = client is None
        self._client: httpx.AsyncClient = (
            httpx_module.AsyncClient(timeout=timeout) if client is None else client
        )

    @property
    def provider(self) -> str:
        """Name of the provider this client serves."""
        return self._provider

    @property
    def httpx_module(self) -> ModuleType:
        """The httpx module (imported when this object was made)."""
        return self._httpx

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying client."""
        return self._client

    @property
    def owns_client(self) -> bool:
        """Whether :meth:`aclose` closes the client (it was created here)."""
        return self._owns_client

    async def request(
        self,
        method: str,
        url: str,
        *,
        extract_error: ErrorExtractor = _no_vendor_error,
        **kwargs: Any,
    ) -> httpx.Response | HTTPFailure:
        """Send one request; return the 2xx response or why there is none.

        Args:
            method: HTTP method.
            url: Absolute URL (never carrying secrets: they go in headers or the body).
            extract_error: Reads the vendor's error code and message from an error body.
            **kwargs: Passed to ``httpx.AsyncClient.request`` (``data``, ``json``, ``headers``,
                ``auth``, ``params``).
        """
        httpx_module = self._httpx
        if self._client.is_closed:
            return HTTPFailure(
                "client_closed", f"{self._provider} has been closed", provider=self._provider
            )
        try:
            response = await self._client.request(method, url, timeout=self._timeout, **kwargs)
        except httpx_module.TimeoutException as exc:
            self._logger.warning("%s %s %s timed out", self._provider, method, _path(url))
            return HTTPFailure(
                "timeout", type(exc).__name__, provider=self._provider, retryable=True
            )
        except httpx_module.RequestError as exc:
            # The message of a transport error names the host, never the request's headers
            # or body, so it carries no secret.
            detail = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
            self._logger.warning("%s %s %s failed: %s", self._provider, method, _path(url), detail)
            return HTTPFailure("network_error", detail, provider=self._provider, retryable=True)
        if response.is_success:
            return response
        failure = failure_from_response(
            response, extract_error, provider=self._provider, code_prefix=self._code_prefix
        )
        self._logger.warning(
            "%s %s %s answered %s: %s (%s)",
            self._provider,
            method,
            _path(url),
            response.status_code,
            failure.error,
            failure.message,
        )
        return failure

    async def aclose(self) -> None:
        """Close the client if it was created here (a borrowed client stays open)."""
        if self._owns_client and not self._client.is_closed:
            await self._client.aclose()


def _path(url: str) -> str:
    """The URL without its query, for logs."""
    return url.split("?", 1)[0]
