"""HTTP webhook providers: the :class:`HTTPProvider` contract and a mock;
:class:`WebhookHTTPProvider` (JSON POSTs to a URL, needs httpx) and its inbound parser load on
first access."""

from __future__ import annotations

import importlib
from typing import Any

from providers.http.base import HTTPProvider
from providers.http.mock import MockHTTPProvider

__all__ = ["MockHTTPProvider", "HTTPProvider"]

# Vendor implementations load on first access (PEP 562), so that importing the package
# (and ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "HTTPProviderConfig": "providers.http.webhook",
    "WebhookHTTPProvider": "providers.http.webhook",
    "parse_http_webhook": "providers.http.webhook",
    "verify_http_signature": "providers.http.webhook",
}


def __getattr__(name: str) -> Any:
    module = _VENDOR_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_VENDOR_EXPORTS})
