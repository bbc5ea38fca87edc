"""The ``httpx.AsyncClient`` of one provider (owned or borrowed) and the one way it calls."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio

from providers._http._error_body import ErrorParser
from providers._http._failure import HTTPFailure, failure_from_exception, failure_from_response
from providers._http._secrets import loggable_url, redact, shorten

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_ANSWER_BYTES", "VendorHTTP", "import_httpx"]

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Most bytes of an answer read (decoded): vendor answers are small JSON objects, and a 300 MB
error page was read whole (600 MB of memory more) for the 300 characters a failure keeps."""


def import_httpx(provider: str) -> ModuleType:
    """Import httpx, or fail with a hint naming the provider that needs it.

    Raises:
        ImportError: httpx is not installed.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is a dev dependency
        raise ImportError(
            f"{provider} needs httpx; install it with: pip install 'roomkit[http]' "
            "(or: pip install httpx)"
        ) from exc
    return httpx


def _mask_exception_texts(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Mask ``secrets`` in the text of ``exc`` and of every exception chained under it
    (``__cause__``, ``__context__``), in place: the ones whose only argument is their text."""
    if not secrets:
        return
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if len(current.args) == 1 and isinstance(current.args[0], str):
            masked = redact(current.args[0], secrets)
            if masked != current.args[0]:
                current.args = (masked,)
        pending.extend((current.__cause__, current.__context__))


class VendorHTTP:
    """The ``httpx.AsyncClient`` of one provider and the one way it sends requests.

    Args:
        provider: Provider name, for failures and logs.
        client: An ``httpx.AsyncClient`` to borrow (not closed by :meth:`aclose`); a new
            client owned by this object when None.
        timeout: Per-request timeout in seconds (applied to borrowed clients too).
        code_prefix: Prefix of vendor error codes in failures (see
            :func:`failure_from_response`); "" to use vendor codes only through parsers.
        secrets: Values masked in failure messages (API keys, tokens).
        logger: Where failed calls are logged; ``roomkit.providers.http`` when None.
        log_path: Whether logs name the path of the URLs called (never their userinfo or
            query); only their scheme and host when False (a webhook URL whose path is its
            token).

    Each call must be complete within ``timeout`` (sending, the answer's headers and its
    body): httpx's own read timeout restarts at each chunk, and a server sending one byte
    every few tenths of a second held a ``send(timeout=1.0)`` for as long as it liked. An
    answer is read up to :data:`MAX_ANSWER_BYTES`: an error page beyond is cut, a 2xx answer
    beyond is an ``invalid_response`` failure.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self,
        provider: str,
        *,
        client: httpx.AsyncClient | None,
        timeout: float,
        code_prefix: str = "",
        secrets: Iterable[str] = (),
        logger: logging.Logger | None = None,
        log_path: bool = True,
    ) -> None:
        self._httpx = import_httpx(provider)
        self._log_path = log_path
        self._provider = provider
        self._timeout = timeout
        self._code_prefix = code_prefix
        self._secrets = tuple(secret for secret in secrets if secret)
        self._logger = logger or logging.getLogger("roomkit.providers.http")
        self._owns_client = client is None
        self._client: httpx.AsyncClient = (
            self._httpx.AsyncClient(timeout=timeout) if client is None else client
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
        error_parser: ErrorParser | None = None,
        **kwargs: Any,
    ) -> httpx.Response | HTTPFailure:
        """Send one request; return the 2xx response or why there is none (never raises for
        network or HTTP failures).

        Args:
            method: HTTP method.
            url: Absolute URL (never carrying secrets: they go in headers or the body).
            error_parser: Reads the vendor's error body (see :func:`failure_from_response`).
            **kwargs: Passed to ``httpx.AsyncClient.request`` (``content``, ``data``,
                ``json``, ``files``, ``headers``, ``auth``, ``params``).
        """
        if self._client.is_closed:
            return self._closed_failure()
        send_options = _send_options(kwargs)
        request = self._build_request(method, url, kwargs)
        if isinstance(request, HTTPFailure):
            return request
        with anyio.move_on_after(self._timeout) as deadline:
            outcome = await self._exchange(
                request, method, url, error_parser, send_options, read_all=True
            )
        if deadline.cancelled_caught:
            return self._deadline_failure(method, url)
        return outcome

    def _build_request(
        self, method: str, url: str, kwargs: dict[str, Any]
    ) -> httpx.Request | HTTPFailure:
        """The request to send, or why it cannot be built."""
        try:
            return self._client.build_request(method, url, timeout=self._timeout, **kwargs)
        except UnicodeEncodeError:
            return self._unencodable_failure(method, url)
        except (self._httpx.HTTPError, self._httpx.InvalidURL) as exc:
            return self._exception_failure(exc, method, url)

    async def _exchange(
        self,
        request: httpx.Request,
        method: str,
        url: str,
        error_parser: ErrorParser | None,
        send_options: dict[str, Any],
        *,
        read_all: bool,
    ) -> httpx.Response | HTTPFailure:
        """Send ``request`` and read its answer up to :data:`MAX_ANSWER_BYTES`: the whole of
        it when ``read_all``, else only a non-2xx one (a 2xx answer is returned open, to be
        streamed and closed by the caller)."""
        response: httpx.Response | None = None
        try:
            response = await self._client.send(request, stream=True, **send_options)
            if not read_all and response.is_success:
                return response
            complete = await _read_at_most(response, MAX_ANSWER_BYTES)
        except UnicodeEncodeError:
            return self._unencodable_failure(method, url)
        except (self._httpx.HTTPError, self._httpx.InvalidURL) as exc:
            return self._exception_failure(exc, method, url)
        finally:
            if response is not None and (read_all or not response.is_success):
                await _close(response)
        if not response.is_success:
            return self._response_failure(response, method, url, error_parser)
        if not complete:
            failure = self.answer_failure(
                response, f"the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )
            self._log(method, url, failure)
            return failure
        return response

    def _closed_failure(self) -> HTTPFailure:
        """The failure of a call made after :meth:`aclose`."""
        return HTTPFailure(
            "client_closed", f"{self._provider} has been closed", provider=self._provider
        )

    def _deadline_failure(self, method: str, url: str) -> HTTPFailure:
        """The failure of a call not complete within the timeout (see the class doc)."""
        failure = HTTPFailure(
            "timeout",
            f"no complete answer within {self._timeout:g} s",
            provider=self._provider,
            retryable=True,
        )
        self._log(method, url, failure)
        return failure

    def _unencodable_failure(self, method: str, url: str) -> HTTPFailure:
        """The failure of a request whose headers httpx cannot encode (ASCII only).

        A key pasted with a non-breaking space or a typographic quote made httpx raise a
        ``UnicodeEncodeError`` holding the whole header (``Bearer KEY``) out of ``send`` and
        ``generate``; the failure keeps neither that exception nor its text. Like a key
        ending in a newline (refused by h11), it would fail again: not retryable.
        """
        failure = HTTPFailure(
            "network_error",
            "a request header holds a non-ASCII character (a credential pasted with one?)",
            provider=self._provider,
        )
        self._log(method, url, failure)
        return failure

    def _exception_failure(self, exc: Exception, method: str, url: str) -> HTTPFailure:
        """Classify (and log) an httpx exception raised by a call to ``url``.

        The secrets are masked in the text of ``exc`` and of the exceptions chained under it
        (the failure's ``cause``, the ``__cause__`` of the error raised for it): h11 quotes a
        header value it refuses (``Illegal header value b'Bearer KEY\\n'``), and that text went
        out in the tracebacks of ``VendorAPIError`` that RoomKit logs.
        """
        _mask_exception_texts(exc, self._secrets)
        failure = failure_from_exception(exc, provider=self._provider)
        self._log(method, url, failure)
        return failure

    def _response_failure(
        self,
        response: httpx.Response,
        method: str,
        url: str,
        error_parser: ErrorParser | None = None,
    ) -> HTTPFailure:
        """Classify (and log) a non-2xx response whose body has been read."""
        failure = failure_from_response(
            response,
            error_parser,
            provider=self._provider,
            code_prefix=self._code_prefix,
            secrets=self._secrets,
        )
        self._log(method, url, failure)
        return failure

    def answer_failure(
        self,
        response: httpx.Response,
        message: str,
        *,
        error: str = "invalid_response",
        vendor_code: str | None = None,
    ) -> HTTPFailure:
        """The failure of a call whose 2xx answer still says it failed: by lacking what the
        call needs (``invalid_response``), or by carrying the vendor's own error (vendors that
        report errors with HTTP 200). ``message`` is shortened with the secrets masked."""
        return HTTPFailure(
            error,
            shorten(message, self._secrets),
            provider=self._provider,
            status_code=response.status_code,
            vendor_code=vendor_code,
        )

    async def read_answer(self, response: httpx.Response) -> bytes:
        """The whole body of a 2xx ``response`` held open by :meth:`stream`, for an answer
        that is not a stream after all; read up to :data:`MAX_ANSWER_BYTES`.

        Raises:
            VendorAPIError: ``invalid_response``, the answer is longer.
        """
        if not await _read_at_most(response, MAX_ANSWER_BYTES):
            message = f"the answer is larger than {MAX_ANSWER_BYTES} bytes"
            raise self.answer_failure(response, message).to_error()
        return response.content

    def masked(self, text: str) -> str:
        """``text`` (a vendor's message) shortened, with this client's secrets masked."""
        return shorten(text, self._secrets)

    def transport_error_as_text(self, failure: HTTPFailure) -> HTTPFailure:
        """``failure`` with the text of the httpx error behind it as its ``error``, when it is a
        ``network_error`` raised by httpx; any other failure unchanged.

        RoomKit 0.3.0's SMS / RCS providers answered a failed connection with
        ``ProviderResult(error=str(exc))`` (``"conn refused"``), and their callers may match
        on it; the providers that keep that contract call this (the others keep
        ``network_error``). The text has this client's secrets masked and is shortened; an
        error without text gives its class name. ``retryable`` and the rest are kept.
        """
        cause = failure.cause
        if failure.error != "network_error" or not isinstance(cause, self._httpx.HTTPError):
            return failure
        if isinstance(cause, self._httpx.LocalProtocolError):
            # A request h11 refused to write: its text quotes the refused header value, an
            # API key (with the newline that made it illegal) in ProviderResult.error, in
            # RoomKit's delivery warnings and in its delivery_failed event. The class name says
            # enough; no 0.3.0 caller matched on that text.
            return dataclasses.replace(failure, error=type(cause).__name__)
        text = shorten(str(cause), self._secrets) or type(cause).__name__
        return dataclasses.replace(failure, error=text)

    def _log(self, method: str, url: str, failure: HTTPFailure) -> None:
        self._logger.warning(
            "%s %s %s failed: %s%s (%s)",
            self._provider,
            method,
            # No userinfo (credentials) nor query (identifiers); no path for webhook URLs.
            loggable_url(url, with_path=self._log_path),
            failure.error,
            "" if failure.status_code is None else f" [HTTP {failure.status_code}]",
            failure.message,
        )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        error_parser: ErrorParser | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and hold its 2xx response open for streaming its body.

        A stream can fail after it started, so unlike :meth:`request` every failure raises,
        including a timeout or a dropped connection while the body is read inside the block.

        Raises:
            VendorAPIError: The client is closed, the request failed or was answered non-2xx.
        """
        if self._client.is_closed:
            raise self._closed_failure().to_error()
        send_options = _send_options(kwargs)
        request = self._build_request(method, url, kwargs)
        if isinstance(request, HTTPFailure):
            raise request.to_error()
        # The deadline covers the opening only: a stream of events may rightly last longer
        # than the timeout, which httpx still applies to each of its reads.
        with anyio.move_on_after(self._timeout) as deadline:
            opened = await self._exchange(
                request, method, url, error_parser, send_options, read_all=False
            )
        if deadline.cancelled_caught:
            raise self._deadline_failure(method, url).to_error()
        if isinstance(opened, HTTPFailure):
            raise opened.to_error()
        try:
            yield opened
        except (self._httpx.HTTPError, self._httpx.InvalidURL) as exc:
            raise self._exception_failure(exc, method, url).to_error() from exc
        finally:
            await _close(opened)

    async def aclose(self) -> None:
        """Close the client if it was created here (idempotent; a borrowed client stays open)."""
        if self._owns_client and not self._client.is_closed:
            await self._client.aclose()


def _send_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take out of ``kwargs`` the options that ``httpx.AsyncClient.send`` takes rather than
    ``build_request`` (``auth``, ``follow_redirects``)."""
    return {name: kwargs.pop(name) for name in ("auth", "follow_redirects") if name in kwargs}


async def _read_at_most(response: httpx.Response, limit: int) -> bool:
    """Read the (decoded) body of a streamed ``response`` into its ``content``, up to
    ``limit`` bytes; whether it was complete (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    complete = True
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunk)
        if size > limit:
            complete = False
            break
    # What ``aread`` stores, so that ``content``, ``text`` and ``json()`` read these bytes.
    response._content = b"".join(chunks)
    return complete


async def _close(response: httpx.Response) -> None:
    """Close ``response`` even when the call's deadline has cancelled it (the connection
    would otherwise be left half read)."""
    with anyio.CancelScope(shield=True):
        await response.aclose()
