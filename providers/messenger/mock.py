"""A Messenger provider that records what it is asked to send."""

from __future__ import annotations

from providers._base import RecordingProvider
from providers.messenger.base import MessengerProvider

__all__ = ["MockMessengerProvider"]


class MockMessengerProvider(RecordingProvider, MessengerProvider):
    """Records every send in ``sent``; no network (see
    :class:`~providers._base.RecordingProvider` for ``simulate_failure``)."""
