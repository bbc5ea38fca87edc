"""HTTP webhook providers: the :class:`HTTPProvider` contract and a mock;
:class:`WebhookHTTPProvider` (JSON POSTs to a URL, needs httpx) and its inbound parser load on
first access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.http.base import HTTPProvider
from providers.http.mock import MockHTTPProvider

# The lazy names too, as 0.3.0 listed its vendor classes: ``from roomkit.providers.X import *``
# brings them (and loads the vendor modules, as importing 0.3.0's package did).
__all__ = [
    "HTTPProvider",
    "HTTPProviderConfig",
    "MockHTTPProvider",
    "WebhookHTTPProvider",
    "parse_http_webhook",
    "verify_http_signature",
]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``, which re-exports only the contract and the mock) stays light.
_VENDOR_EXPORTS: dict[str, str] = {
    "HTTPProviderConfig": "providers.http.webhook",
    "WebhookHTTPProvider": "providers.http.webhook",
    "parse_http_webhook": "providers.http.webhook",
    "verify_http_signature": "providers.http.webhook",
}

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
