"""A WhatsApp provider that records what it is asked to send."""

from __future__ import annotations

from providers._base import RecordingProvider
from providers.whatsapp.base import WhatsAppProvider

__all__ = ["MockWhatsAppProvider"]


class MockWhatsAppProvider(RecordingProvider, WhatsAppProvider):
    """Records every send in ``sent``; no network (see
    :class:`~providers._base.RecordingProvider` for ``simulate_failure``)."""
