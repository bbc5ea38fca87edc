"""HTTP webhook providers: the :class:`HTTPProvider` contract and a mock;
:class:`WebhookHTTPProvider` (JSON POSTs to a URL, needs httpx) and its inbound parser load on
first access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.http.base import HTTPProvider
from providers.http.mock import MockHTTPProvider

__all__ = ["MockHTTPProvider", "HTTPProvider"]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "HTTPProviderConfig": "providers.http.webhook",
    "WebhookHTTPProvider": "providers.http.webhook",
    "parse_http_webhook": "providers.http.webhook",
    "verify_http_signature": "providers.http.webhook",
}

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
