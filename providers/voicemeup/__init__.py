"""VoiceMeUp SMS / MMS provider over httpx, webhook parser and MMS re-assembly."""

from __future__ import annotations

from providers.voicemeup.config import VoiceMeUpConfig
from providers.voicemeup.mms import (
    VoiceMeUpMMSAggregator,
    configure_voicemeup_mms,
    default_voicemeup_aggregator,
)
from providers.voicemeup.sms import VoiceMeUpSMSProvider
from providers.voicemeup.webhook import (
    extract_voicemeup_meta,
    parse_voicemeup_webhook,
    read_voicemeup_payload,
)

__all__ = [
    "VoiceMeUpConfig",
    "VoiceMeUpMMSAggregator",
    "VoiceMeUpSMSProvider",
    "configure_voicemeup_mms",
    "default_voicemeup_aggregator",
    "extract_voicemeup_meta",
    "parse_voicemeup_webhook",
    "read_voicemeup_payload",
]
