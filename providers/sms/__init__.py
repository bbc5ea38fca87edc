"""SMS providers: the :class:`SMSProvider` contract and a mock, the vendor-neutral webhook view
and the phone helpers (all four as RoomKit 0.3.0's ``roomkit.providers.sms`` had them)."""

from __future__ import annotations

from providers.sms.base import SMSProvider
from providers.sms.meta import WebhookMeta, extract_sms_meta
from providers.sms.mock import MockSMSProvider
from providers.sms.phone import is_valid_phone, normalize_phone

__all__ = [
    "MockSMSProvider",
    "SMSProvider",
    "WebhookMeta",
    "extract_sms_meta",
    "is_valid_phone",
    "normalize_phone",
]
