"""What the vendor providers that talk HTTP share: one owned-or-borrowed ``httpx.AsyncClient``,
the translation of HTTP failures into error codes, and HMAC-SHA256 webhook signatures.

Error codes (the ``error`` of a failed ``ProviderResult`` and the ``code`` of
:class:`VendorAPIError`):

====================  ======================================================================
``timeout``           the request timed out (retryable)
``network_error``     the vendor could not be reached (retryable)
``auth_error``        HTTP 401/403, or a vendor code meaning "bad credentials"
``rate_limit``        HTTP 429, or a vendor throttling code (retryable; ``retry_after`` if said)
``http_<status>``     any other non-2xx answer (5xx are retryable)
``<vendor>_<code>``   a vendor error code without a better mapping (``messenger_551``, ...)
====================  ======================================================================

httpx is imported inside :func:`import_httpx`, never at module level, so that importing a provider
module (and ``providers``) works without it; the ImportError then names the extra to install.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import SecretStr

from providers.errors import ProviderError
from roomkit.models.delivery import ProviderResult

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ErrorDetail",
    "HTTPClientOwner",
    "VendorAPIError",
    "VendorHTTP",
    "hmac_sha256_hex",
    "import_httpx",
    "graph_error_parser",
    "json_body",
    "mask_recipient",
    "secret_value",
    "status_error_code",
    "verify_hmac_sha256_hex",
    "verify_meta_subscription",
]

INSTALL_HINT = "pip install 'roomkit[http]' (or: pip install httpx)"


def import_httpx(provider: str) -> ModuleType:
    """Import httpx, or fail with a hint naming the provider that needs it.

    Raises:
        ImportError: httpx is not installed.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is a dev dependency
        raise ImportError(f"{provider} needs the httpx package: {INSTALL_HINT}") from exc
    return httpx


def secret_value(secret: SecretStr | str) -> str:
    """The plain value of a secret (configs hold ``SecretStr``; helpers also accept ``str``)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def mask_recipient(recipient: str) -> str:
    """A recipient shortened for logs: addresses and phone numbers are personal data."""
    local, at, domain = recipient.partition("@")
    if at:
        return f"{local[:2]}***@{domain}"
    return f"***{recipient[-4:]}" if len(recipient) > 4 else "***"


class VendorAPIError(ProviderError):
    """A vendor HTTP call failed; ``code`` is the error code of the module docstring.

    Args:
        message: What failed; never contains credentials or request bodies.
        code: The error code (``timeout``, ``auth_error``, ``rate_limit``, ``http_500``, ...).
        provider: Name of the provider that failed.
        retryable: Whether repeating the call may succeed.
        status_code: HTTP status of the vendor's answer, when there was one.
        retry_after: Seconds the vendor asked us to wait, when it said so.
        vendor_code: The vendor's own error code, when its body had one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        provider: str,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        vendor_code: str | None = None,
    ) -> None:
        super().__init__(
            message,
            retryable=retryable,
            provider=provider,
            status_code=status_code,
            retry_after=retry_after,
        )
        self.code = code
        self.vendor_code = vendor_code

    def to_result(self) -> ProviderResult:
        """The failed ``ProviderResult`` that ``send`` returns for this error."""
        metadata: dict[str, Any] = {"provider": self.provider, "retryable": self.retryable}
        if self.status_code is not None:
            metadata["status_code"] = self.status_code
        if self.retry_after is not None:
            metadata["retry_after"] = self.retry_after
        if self.vendor_code is not None:
            metadata["vendor_code"] = self.vendor_code
        if self.message:
            metadata["detail"] = self.message
        return ProviderResult(success=False, error=self.code, metadata=metadata)


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What a vendor's error body says, as read by a vendor-specific parser.

    Attributes:
        message: The vendor's human-readable message ("" when none).
        vendor_code: The vendor's error code, as a string.
        code: An error code that overrides the one derived from the HTTP status.
        retryable: Force the call retryable (e.g. Graph's ``is_transient``).
        retry_after: Seconds to wait, when the vendor says so elsewhere than ``Retry-After``.
    """

    message: str = ""
    vendor_code: str | None = None
    code: str | None = None
    retryable: bool = False
    retry_after: float | None = None


ErrorParser = Callable[["httpx.Response"], ErrorDetail]

# Vendor messages go into exception messages and result metadata; keep them short so that a
# vendor echoing a large request body cannot flood logs.
_MAX_DETAIL = 300


def status_error_code(status: int) -> str:
    """The error code for a non-2xx HTTP status without a vendor-specific meaning."""
    if status in (401, 403):
        return "auth_error"
    if status == 429:
        return "rate_limit"
    return f"http_{status}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON body, or None when it has none (or not valid JSON)."""
    try:
        return response.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _default_detail(response: httpx.Response) -> ErrorDetail:
    """A short message from a body of unknown shape."""
    body = json_body(response)
    if isinstance(body, dict):
        for key in ("message", "error_description", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return ErrorDetail(message=value)
    return ErrorDetail()


def http_error(
    provider: str, response: httpx.Response, parser: ErrorParser | None = None
) -> VendorAPIError:
    """Translate a non-2xx response into a :class:`VendorAPIError`."""
    status = response.status_code
    try:
        detail = (parser or _default_detail)(response)
    except Exception:  # a parser must never hide the HTTP failure itself
        detail = ErrorDetail()
    code = detail.code or status_error_code(status)
    retryable = detail.retryable or code == "rate_limit" or status >= 500 or status == 408
    message = f"{provider}: HTTP {status} ({code})"
    if detail.message:
        message = f"{message}: {detail.message[:_MAX_DETAIL]}"
    return VendorAPIError(
        message,
        code=code,
        provider=provider,
        retryable=retryable,
        status_code=status,
        retry_after=parse_retry_after(response.headers.get("retry-after")) or detail.retry_after,
        vendor_code=detail.vendor_code,
    )


class VendorHTTP:
    """The ``httpx.AsyncClient`` of one provider: created and owned, or injected and borrowed.

    An injected client (tests pass one with ``httpx.MockTransport``) keeps its own settings and is
    never closed here: whoever created it closes it. A created client gets ``timeout`` and is
    closed by :meth:`aclose`.

    Args:
        provider: Provider name for error messages.
        client: A client to borrow; None to create one.
        timeout: Seconds for connect/read/write/pool of a created client.
    """

    def __init__(self, provider: str, *, client: httpx.AsyncClient | None, timeout: float) -> None:
        self._httpx = import_httpx(provider)
        self.provider = provider
        self._owned = client is None
        self.client: httpx.AsyncClient = (
            self._httpx.AsyncClient(timeout=timeout) if client is None else client
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        error_parser: ErrorParser | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; return the 2xx response or raise :class:`VendorAPIError`.

        Raises:
            VendorAPIError: Timeout, network failure or a non-2xx answer.
        """
        httpx = self._httpx
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise VendorAPIError(
                f"{self.provider}: request timed out",
                code="timeout",
                provider=self.provider,
                retryable=True,
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Only the exception type: httpx messages can carry full URLs.
            raise VendorAPIError(
                f"{self.provider}: request failed ({type(exc).__name__})",
                code="network_error",
                provider=self.provider,
                retryable=True,
            ) from exc
        if response.is_success:
            return response
        raise http_error(self.provider, response, error_parser)

    async def aclose(self) -> None:
        """Close the client if it was created here (idempotent)."""
        if self._owned and not self.client.is_closed:
            await self.client.aclose()


class HTTPClientOwner:
    """Mixin: ``close()`` and ``async with`` for a provider holding a :class:`VendorHTTP`."""

    _http: VendorHTTP

    async def close(self) -> None:
        """Close the HTTP client this provider created (an injected one stays open)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def hmac_sha256_hex(secret: SecretStr | str | bytes, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    key = secret if isinstance(secret, bytes) else secret_value(secret).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_hmac_sha256_hex(
    secret: SecretStr | str | bytes, body: bytes, signature: str | None, *, prefix: str = ""
) -> bool:
    """Whether ``signature`` (``prefix`` + hex digest) is the HMAC-SHA256 of ``body``.

    Compares in constant time; a missing, malformed or wrongly prefixed signature is False.
    """
    if not signature or not isinstance(signature, str) or not signature.isascii():
        return False
    signature = signature.strip()
    if prefix:
        if not signature.lower().startswith(prefix.lower()):
            return False
        signature = signature[len(prefix) :]
    expected = hmac_sha256_hex(secret, body)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())


# Meta Graph API (Messenger, WhatsApp Cloud). Errors come as ``{"error": {"message", "type",
# "code", "error_subcode", "is_transient", "fbtrace_id"}}``, often with HTTP 400 even for
# throttling, so the code decides. Token errors: 190 (invalid/expired token), 102 (session).
_GRAPH_AUTH_CODES = frozenset({102, 190})
# App / user / page / WABA-level throttling and WhatsApp throughput / pair-rate limits.
_GRAPH_RATE_CODES = frozenset({4, 17, 32, 613, 80004, 80006, 80007, 130429, 131048, 131056})


def graph_error_parser(prefix: str) -> ErrorParser:
    """An :data:`ErrorParser` for Graph API errors; unmapped codes become ``<prefix>_<code>``."""

    def parse(response: httpx.Response) -> ErrorDetail:
        body = json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return ErrorDetail()
        raw_code = error.get("code")
        is_int = isinstance(raw_code, int) and not isinstance(raw_code, bool)
        code_num = raw_code if is_int else None
        message = error.get("message")
        code: str | None = None
        if code_num in _GRAPH_AUTH_CODES:
            code = "auth_error"
        elif code_num in _GRAPH_RATE_CODES:
            code = "rate_limit"
        elif code_num is not None and response.status_code not in (401, 403, 429):
            code = f"{prefix}_{code_num}"
        return ErrorDetail(
            message=message if isinstance(message, str) else "",
            vendor_code=None if code_num is None else str(code_num),
            code=code,
            retryable=error.get("is_transient") is True,
        )

    return parse


def verify_meta_subscription(
    params: Mapping[str, str], verify_token: SecretStr | str
) -> str | None:
    """Answer Meta's webhook subscription check (``GET`` with ``hub.*`` query parameters).

    Returns:
        The ``hub.challenge`` to echo with HTTP 200 when ``hub.mode`` is ``subscribe`` and
        ``hub.verify_token`` matches; None otherwise (answer 403).
    """
    token = params.get("hub.verify_token")
    if params.get("hub.mode") != "subscribe" or not isinstance(token, str):
        return None
    expected = secret_value(verify_token).encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected):
        return None
    challenge = params.get("hub.challenge")
    return challenge if isinstance(challenge, str) else None
