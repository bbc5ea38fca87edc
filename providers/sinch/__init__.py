"""Sinch SMS / MMS provider over httpx (XMS REST API, no Sinch SDK), webhook parser and
signature check."""

from __future__ import annotations

from providers.sinch.config import SinchConfig
from providers.sinch.signature import compute_sinch_signature, verify_sinch_signature
from providers.sinch.sms import SinchSMSProvider
from providers.sinch.webhook import extract_sinch_meta, parse_sinch_webhook

__all__ = [
    "SinchConfig",
    "SinchSMSProvider",
    "compute_sinch_signature",
    "extract_sinch_meta",
    "parse_sinch_webhook",
    "verify_sinch_signature",
]
