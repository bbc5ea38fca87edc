"""The HTTP plumbing every vendor provider shares (SMS / RCS, messaging, AI).

:class:`VendorHTTP` owns or borrows one ``httpx.AsyncClient``: an injected client (tests pass one
built on ``httpx.MockTransport``) is never closed here; a created one is closed by
:meth:`VendorHTTP.aclose`. The configured timeout applies to every request, on either client.
httpx is imported when a provider is constructed (:func:`import_httpx`), never when
``providers`` is imported, so the base package works without it.

A failed call is described by one :class:`HTTPFailure`, whose ``error`` is the code that §9 of
the reference API fixes for ``ProviderResult.error``:

====================  ======================================================================
``timeout``           the request timed out (retryable)
``network_error``     the vendor could not be reached (retryable for transport failures)
``client_closed``     the provider was closed before the call
``auth_error``        HTTP 401/403, or a vendor code meaning "bad credentials"
``rate_limit``        HTTP 429, or a vendor throttling code (retryable; ``retry_after`` if said)
``<vendor>_<code>``   a vendor error code (``twilio_21211``, ``messenger_551``, ...)
``http_<status>``     any other non-2xx answer (408, 409, 425 and 5xx are retryable)
``invalid_response``  a 2xx answer without what the call needs
====================  ======================================================================

The SMS / RCS vendors (Twilio, Telnyx, Sinch, VoiceMeUp) keep RoomKit 0.3.0's codes instead:
their error parsers name the code of every non-2xx answer (``http_403``, ``invalid_request``,
...; see :mod:`providers.sms._errors`) and :meth:`VendorHTTP.transport_error_as_text` gives a
failed connection the exception's text. The other vendors use the table above.

The two result contracts are built from it: messaging ``send`` methods return
:meth:`HTTPFailure.to_result` (``success=False``); calls that must return a value raise
:meth:`HTTPFailure.to_error`, a :class:`VendorAPIError` (a
:class:`~providers.errors.ProviderError`). Vendor messages are shortened and every known secret
in them is replaced by ``***``; request headers and bodies are never logged.
"""

from __future__ import annotations

from providers._http._accepted import accepted_id
from providers._http._client import VendorHTTP, import_httpx
from providers._http._error_body import (
    ErrorDetail,
    ErrorParser,
    body_error_parser,
    code_and_message,
    default_error_detail,
    response_json,
    vendor_error_message,
)
from providers._http._failure import (
    HTTPFailure,
    VendorAPIError,
    failure_from_exception,
    failure_from_response,
    is_retryable_status,
)
from providers._http._retry_after import parse_retry_after, retry_after_from_headers
from providers._http._secrets import (
    MAX_MESSAGE,
    bearer,
    loggable_url,
    redact,
    secret_value,
    shorten,
)

__all__ = [
    "MAX_MESSAGE",
    "ErrorDetail",
    "ErrorParser",
    "HTTPFailure",
    "VendorAPIError",
    "VendorHTTP",
    "accepted_id",
    "bearer",
    "body_error_parser",
    "code_and_message",
    "default_error_detail",
    "failure_from_exception",
    "failure_from_response",
    "import_httpx",
    "is_retryable_status",
    "loggable_url",
    "parse_retry_after",
    "redact",
    "response_json",
    "retry_after_from_headers",
    "secret_value",
    "shorten",
    "vendor_error_message",
]
