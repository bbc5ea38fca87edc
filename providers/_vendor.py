"""The base of the providers that call a vendor's HTTP API: their config and their client.

Every vendor provider keeps its settings in ``_config`` and its client in ``_http``;
:class:`HTTPClientOwner` closes that client (``close()`` / ``async with``) and
:class:`VendorProvider` builds it from the config, so a provider only says which vendor it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

from pydantic import SecretStr

from providers._http import VendorHTTP

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTPClientOwner", "VendorProvider"]


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


class _Config(Protocol):
    @property
    def timeout(self) -> float: ...


ConfigT = TypeVar("ConfigT", bound=_Config)


class HTTPClientOwner:
    """Mixin: ``close()`` and ``async with`` for a provider holding its client in ``_http``."""

    _http: _Closeable

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


class VendorProvider(HTTPClientOwner, Generic[ConfigT]):
    """Mixin for a messaging provider over a vendor's HTTP API (put it before the kind's ABC).

    Args:
        config: The provider's settings; ``config.timeout`` bounds every request.
        client: An ``httpx.AsyncClient`` to use (e.g. on ``httpx.MockTransport``); the caller
            keeps ownership. When None, a client is created and :meth:`close` closes it.
        code_prefix: Prefix of the vendor's error codes in ``ProviderResult.error``
            (``"twilio"`` → ``twilio_21211``); "" when only error parsers name codes.
        secrets: Credentials to mask should the vendor echo them in an error.
        logger: The vendor's logger.
        log_path: Whether logs name the path of the URLs called (see :class:`VendorHTTP`).

    Raises:
        ImportError: httpx is not installed.
    """

    _http: VendorHTTP

    def __init__(
        self,
        config: ConfigT,
        *,
        client: httpx.AsyncClient | None,
        code_prefix: str = "",
        secrets: Iterable[SecretStr | None] = (),
        logger: logging.Logger | None = None,
        log_path: bool = True,
    ) -> None:
        self._config = config
        self._http = VendorHTTP(
            type(self).__name__,
            client=client,
            timeout=config.timeout,
            code_prefix=code_prefix,
            secrets=[secret.get_secret_value() for secret in secrets if secret is not None],
            logger=logger,
            log_path=log_path,
        )

    @property
    def config(self) -> ConfigT:
        """The provider's settings (secrets stay ``SecretStr``)."""
        return self._config
