"""Messenger providers: the :class:`MessengerProvider` contract and a mock; Facebook Messenger over
the Graph API (:class:`FacebookMessengerProvider`, needs httpx) and its webhook helpers load on
first access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.messenger.base import MessengerProvider
from providers.messenger.mock import MockMessengerProvider

__all__ = ["MockMessengerProvider", "MessengerProvider"]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "FacebookMessengerProvider": "providers.messenger.facebook",
    "MessengerConfig": "providers.messenger.facebook",
    "parse_messenger_webhook": "providers.messenger.facebook_webhook",
    "verify_messenger_signature": "providers.messenger.facebook_webhook",
    "verify_messenger_subscription": "providers.messenger.facebook_webhook",
}

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
