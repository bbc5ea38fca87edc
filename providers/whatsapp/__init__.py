"""WhatsApp providers: the :class:`WhatsAppProvider` contract and a mock; the Cloud API provider
(:class:`WhatsAppCloudProvider`, needs httpx) with its webhook helpers and the personal-account
provider (:class:`WhatsAppPersonalProvider`, through a caller-supplied client owner) load on
first access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.whatsapp.base import WhatsAppProvider
from providers.whatsapp.mock import MockWhatsAppProvider

__all__ = ["MockWhatsAppProvider", "WhatsAppProvider"]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
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

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
