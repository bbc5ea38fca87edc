"""Telnyx SMS / MMS and RCS providers over httpx (no Telnyx SDK), webhook parsers and
Ed25519 signature checks."""

from __future__ import annotations

from providers.telnyx.config import TelnyxConfig, TelnyxRCSConfig
from providers.telnyx.rcs import TelnyxRCSProvider
from providers.telnyx.signature import load_telnyx_public_key, verify_telnyx_signature
from providers.telnyx.sms import TelnyxSMSProvider
from providers.telnyx.webhook import (
    extract_telnyx_meta,
    extract_telnyx_rcs_meta,
    parse_telnyx_rcs_webhook,
    parse_telnyx_webhook,
)

__all__ = [
    "TelnyxConfig",
    "TelnyxRCSConfig",
    "TelnyxRCSProvider",
    "TelnyxSMSProvider",
    "extract_telnyx_meta",
    "extract_telnyx_rcs_meta",
    "load_telnyx_public_key",
    "parse_telnyx_rcs_webhook",
    "parse_telnyx_webhook",
    "verify_telnyx_signature",
]
