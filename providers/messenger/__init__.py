"""Messenger providers: the :class:`MessengerProvider` contract and a mock; Facebook Messenger over
the Graph API (:class:`FacebookMessengerProvider`, needs httpx) and its webhook helpers load on
first access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.messenger.base import MessengerProvider
from providers.messenger.mock import MockMessengerProvider

# The lazy names too, as 0.3.0 listed its vendor classes: ``from roomkit.providers.X import *``
# brings them (and loads the vendor modules, as importing 0.3.0's package did).
__all__ = [
    "FacebookMessengerProvider",
    "MessengerConfig",
    "MessengerProvider",
    "MockMessengerProvider",
    "parse_messenger_webhook",
    "verify_messenger_signature",
    "verify_messenger_subscription",
]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``, which re-exports only the contract and the mock) stays light.
_VENDOR_EXPORTS: dict[str, str] = {
    "FacebookMessengerProvider": "providers.messenger.facebook",
    "MessengerConfig": "providers.messenger.facebook",
    "parse_messenger_webhook": "providers.messenger.facebook_webhook",
    "verify_messenger_signature": "providers.messenger.facebook_webhook",
    "verify_messenger_subscription": "providers.messenger.facebook_webhook",
}

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
