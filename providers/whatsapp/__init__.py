"""WhatsApp providers: the :class:`WhatsAppProvider` contract and a mock; the Cloud API provider
(:class:`WhatsAppCloudProvider`, needs httpx) with its webhook helpers and the personal-account
provider (:class:`WhatsAppPersonalProvider`, through a caller-supplied client owner) load on
first access."""

from __future__ import annotations

import importlib
from typing import Any

from providers.whatsapp.base import WhatsAppProvider
from providers.whatsapp.mock import MockWhatsAppProvider

__all__ = ["MockWhatsAppProvider", "WhatsAppProvider"]

# Vendor implementations load on first access (PEP 562), so that importing the package
# (and ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "WhatsAppCloudConfig": "providers.whatsapp.cloud",
    "WhatsAppCloudProvider": "providers.whatsapp.cloud",
    "parse_whatsapp_statuses": "providers.whatsapp.cloud_webhook",
    "parse_whatsapp_webhook": "providers.whatsapp.cloud_webhook",
    "verify_whatsapp_signature": "providers.whatsapp.cloud_webhook",
    "verify_whatsapp_subscription": "providers.whatsapp.cloud_webhook",
    "WhatsAppPersonalProvider": "providers.whatsapp.personal",
    "WhatsAppPersonalSource": "providers.whatsapp.personal",
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
