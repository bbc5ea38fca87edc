"""WhatsApp providers: the :class:`WhatsAppProvider` contract and a mock."""

from __future__ import annotations

from providers.whatsapp.base import WhatsAppProvider
from providers.whatsapp.mock import MockWhatsAppProvider

__all__ = ["MockWhatsAppProvider", "WhatsAppProvider"]
