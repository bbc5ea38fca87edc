"""Configuration of the Telnyx providers."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["TelnyxConfig", "TelnyxRCSConfig"]

TELNYX_API_BASE = "https://api.telnyx.com"


class TelnyxConfig(BaseModel):
    """Telnyx Messaging (SMS / MMS) settings.

    Args:
        api_key: API v2 key, sent as a Bearer token. A ``SecretStr`` (plain strings are
            accepted) so it never shows in reprs or logs.
        from_number: Default sender number (E.164).
        messaging_profile_id: Messaging profile to send with, when set.
        webhook_url: Per-message delivery-status webhook, overriding the profile's.
        base_url: API root (changed only for tests).
        timeout: Per-request timeout in seconds.
    """

    api_key: SecretStr
    from_number: str = Field(min_length=1)
    messaging_profile_id: str | None = None
    webhook_url: str | None = None
    base_url: str = TELNYX_API_BASE
    timeout: float = Field(default=10.0, gt=0)


class TelnyxRCSConfig(BaseModel):
    """Telnyx RCS settings.

    Args:
        api_key: API v2 key (``SecretStr``; plain strings are accepted).
        agent_id: The RCS agent that sends (the message's ``from``).
        messaging_profile_id: Messaging profile the agent belongs to, when set.
        webhook_url: Per-message delivery-status webhook.
        base_url: API root.
        timeout: Per-request timeout in seconds.
    """

    api_key: SecretStr
    agent_id: str = Field(min_length=1)
    messaging_profile_id: str | None = None
    webhook_url: str | None = None
    base_url: str = TELNYX_API_BASE
    timeout: float = Field(default=10.0, gt=0)
