"""Messenger providers: the :class:`MessengerProvider` contract and a mock."""

from __future__ import annotations

from providers.messenger.base import MessengerProvider
from providers.messenger.mock import MockMessengerProvider

__all__ = ["MockMessengerProvider", "MessengerProvider"]
