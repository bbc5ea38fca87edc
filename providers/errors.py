"""The providers package's error root.

Exception tree::

    Exception
     └── ProviderError        a provider call failed (network, auth, quota, bad payload, ...)

Vendor providers translate their SDK's or httpx's exceptions into :class:`ProviderError` at the
boundary (``raise ProviderError(...) from exc``) so callers handle one type. Outbound ``send``
methods of messaging providers report failures as ``ProviderResult(success=False, error=...)``
instead of raising; ``ProviderError`` is for calls that must return a value (AI generation,
capability checks, webhook parsing).
"""

from __future__ import annotations

__all__ = ["ProviderError"]


class ProviderError(Exception):
    """A provider call failed.

    Args:
        message: Human-readable description of the failure.
        retryable: Whether repeating the same call may succeed (rate limit, 5xx, timeout).
        provider: Name of the provider that failed (usually its class name).
        status_code: HTTP status code of the vendor's response, when there was one.
        retry_after: Seconds the vendor asked us to wait before retrying, when it said so.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, retryable={self.retryable!r}, "
            f"provider={self.provider!r}, status_code={self.status_code!r}, "
            f"retry_after={self.retry_after!r})"
        )
