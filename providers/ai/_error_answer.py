"""The ``ProviderError`` for an error object a vendor answers with a 2xx or puts in a stream.

Each vendor reads its own status and retry rules from the object; the rest (the detail with
secrets masked, the message's wording) is one rule for all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers._http import vendor_error_message
from providers.errors import ProviderError

__all__ = ["error_answer"]


def error_answer(
    data: dict[str, Any],
    *,
    provider: str,
    secrets: Iterable[str],
    stream: bool,
    status: int | None,
    retryable: bool,
    retry_after: float | None = None,
) -> ProviderError:
    """The error for ``data`` (an answer or stream event holding an ``error``): the vendor's
    detail, prefixed ``"stream error: "`` in a stream and ``"error: "`` otherwise."""
    detail = vendor_error_message(data, secrets) or "unknown error"
    return ProviderError(
        f"stream error: {detail}" if stream else f"error: {detail}",
        retryable=retryable,
        provider=provider,
        status_code=status,
        retry_after=retry_after,
    )
