"""Twilio SMS / MMS and RCS providers over httpx (no Twilio SDK), webhook parsers and
signature checks."""

from __future__ import annotations

from providers.twilio.config import TwilioConfig, TwilioRCSConfig
from providers.twilio.rcs import TwilioRCSProvider
from providers.twilio.signature import compute_twilio_signature, verify_twilio_signature
from providers.twilio.sms import TwilioSMSProvider
from providers.twilio.webhook import (
    extract_twilio_meta,
    extract_twilio_rcs_meta,
    parse_twilio_rcs_webhook,
    parse_twilio_webhook,
)

__all__ = [
    "TwilioConfig",
    "TwilioRCSConfig",
    "TwilioRCSProvider",
    "TwilioSMSProvider",
    "compute_twilio_signature",
    "extract_twilio_meta",
    "extract_twilio_rcs_meta",
    "parse_twilio_rcs_webhook",
    "parse_twilio_webhook",
    "verify_twilio_signature",
]
