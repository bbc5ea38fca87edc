"""What the AI providers over a vendor's HTTP API share: the session, the one-shot call, and the
translation of mapping errors into :class:`~providers.errors.ProviderError`.

Each vendor keeps what is its own: the URL and headers, the request and response mapping, and
the loop over its stream's events (which end and fail differently per vendor).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import SecretStr, ValidationError

from providers._vendor import HTTPClientOwner
from providers.ai._http import Sleep, VendorClient
from providers.ai._text import clean_text
from providers.ai.base import AIProvider, AIResponse
from providers.errors import ProviderError

if TYPE_CHECKING:
    import httpx

    from providers._http import ErrorParser

__all__ = ["HTTPAIProvider"]


class _AIConfig(Protocol):
    @property
    def api_key(self) -> SecretStr: ...

    @property
    def model(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    @property
    def max_retries(self) -> int: ...


C = TypeVar("C", bound=_AIConfig)

# What a mapping function raises on an answer without the documented shape.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class HTTPAIProvider(HTTPClientOwner, AIProvider, Generic[C]):
    """Base of the AI vendor providers.

    Args:
        config: API key, model, endpoint and limits.
        client: A client to borrow, or None to create one (see the vendor providers).
        headers: The vendor's headers (authentication, API version).
        logger: The vendor's logger.
        error_parser: Reads the vendor's error bodies when the generic reader is not enough.
        sleep: Waits between retries (``config.max_retries``); ``anyio.sleep`` when None.

    Raises:
        ImportError: httpx is not installed.
    """

    vendor: ClassVar[str] = ""
    """The ``provider`` of the errors raised: 0.3.0's names (``"openai"``, ``"anthropic"``,
    ``"gemini"``), which applications compare with; :attr:`name` stays the class name, as in
    0.3.0. The class name when empty."""

    _http: VendorClient

    def __init__(
        self,
        config: C,
        *,
        client: httpx.AsyncClient | None,
        headers: dict[str, str],
        logger: logging.Logger,
        error_parser: ErrorParser | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._config = config
        self._logger = logger
        self._secrets = [config.api_key.get_secret_value()]
        self._vendor = self.vendor or self.name
        self._http = VendorClient(
            provider=self._vendor,
            headers=headers,
            timeout=config.timeout,
            secrets=self._secrets,
            client=client,
            error_parser=error_parser,
            max_retries=config.max_retries,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._config.model!r})"

    @property
    def model_name(self) -> str:
        """The configured model id."""
        return self._config.model

    def _request_body(self, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The request body ``build`` maps from a context.

        Raises:
            ProviderError: The context cannot be mapped (``build`` raised ValueError).
        """
        try:
            return build()
        except ValueError as exc:
            raise ProviderError(f"invalid AI context: {exc}", provider=self._vendor) from exc

    async def _generate(
        self, url: str, body: dict[str, Any], parse: Callable[[dict[str, Any]], AIResponse]
    ) -> AIResponse:
        """POST ``body`` and ``parse`` the answer into a reply, its text made storable.

        Raises:
            ProviderError: HTTP failure, an error object in a 2xx answer (``parse`` raises it),
                or an answer ``parse`` cannot read.
        """
        data = await self._http.post_json(url, body)
        try:
            response = parse(data)
        except _SHAPE_ERRORS as exc:
            raise ProviderError(
                f"unexpected response: {type(exc).__name__}", provider=self._vendor
            ) from exc
        content = clean_text(response.content)
        if content != response.content:
            self._logger.warning("reply from %s had lone surrogates: replaced", self.model_name)
            response = response.model_copy(update={"content": content})
        self._logger.debug(
            "reply from %s: finish_reason=%s usage=%s",
            self._config.model,
            response.finish_reason,
            response.usage,
        )
        return response

    def _stream_step(
        self, apply: Callable[[dict[str, Any]], str | None], data: dict[str, Any], *, what: str
    ) -> str | None:
        """``apply`` one stream event's data to the stream's state; the text it adds.

        Raises:
            ProviderError: The event does not have the documented shape (``what`` names it).
        """
        try:
            return apply(data)
        except _SHAPE_ERRORS as exc:
            raise ProviderError(f"unexpected {what}", provider=self._vendor) from exc

    def _streamed_response(self, build: Callable[[], AIResponse]) -> AIResponse:
        """The reply assembled from a finished stream.

        Raises:
            ProviderError: The streamed tool arguments are not a JSON object, or the stream
                gave a field of the wrong type.
        """
        try:
            return build()
        except ValidationError as exc:
            # Checked before ValueError, its base: a field of the wrong type, not the arguments.
            raise ProviderError("unexpected stream content", provider=self._vendor) from exc
        except _SHAPE_ERRORS as exc:
            raise ProviderError(
                "invalid tool arguments in the stream", provider=self._vendor
            ) from exc
