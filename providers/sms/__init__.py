"""SMS providers: the :class:`SMSProvider` contract and a mock."""

from __future__ import annotations

from providers.sms.base import SMSProvider
from providers.sms.mock import MockSMSProvider

__all__ = ["MockSMSProvider", "SMSProvider"]
