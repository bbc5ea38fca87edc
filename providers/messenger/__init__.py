"""Messenger providers: the :class:`MessengerProvider` contract and a mock; Facebook Messenger over
the Graph API (:class:`FacebookMessengerProvider`, needs httpx) and its webhook helpers load on
first access."""

from __future__ import annotations

import importlib
from typing import Any

from providers.messenger.base import MessengerProvider
from providers.messenger.mock import MockMessengerProvider

__all__ = ["MockMessengerProvider", "MessengerProvider"]

# Vendor implementations load on first access (PEP 562), so that importing the package
# (and ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "FacebookMessengerProvider": "providers.messenger.facebook",
    "MessengerConfig": "providers.messenger.facebook",
    "parse_messenger_webhook": "providers.messenger.facebook_webhook",
    "verify_messenger_signature": "providers.messenger.facebook_webhook",
    "verify_messenger_subscription": "providers.messenger.facebook_webhook",
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
