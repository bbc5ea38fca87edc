"""Configuration of the Twilio providers."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, model_validator

__all__ = ["TwilioConfig", "TwilioRCSConfig"]

TWILIO_API_BASE = "https://api.twilio.com"


def messages_url(base_url: str, account_sid: str) -> str:
    """The Messages.json URL of an account."""
    account = quote(account_sid, safe="")
    return f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"


class TwilioConfig(BaseModel):
    """Twilio Programmable Messaging (SMS / MMS) settings.

    Args:
        account_sid: Account SID (``AC…``), the Basic-auth user.
        auth_token: Auth token, the Basic-auth password and the webhook signing key. Kept as a
            ``SecretStr`` (plain strings are accepted) so it never shows in reprs or logs.
        from_number: Default sender number (E.164).
        messaging_service_sid: Messaging Service (``MG…``); when set, every send goes through
            the service (``MessagingServiceSid``), a ``from_`` given to ``send`` included, as in
            RoomKit 0.3.0.
        status_callback: URL Twilio posts delivery statuses to (``StatusCallback``).
        base_url: API root (changed only for Twilio edge locations or tests).
        timeout: Per-request timeout in seconds.

    Raises:
        ValueError: Neither ``from_number`` nor ``messaging_service_sid`` is set.
    """

    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    from_number: str = ""
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    base_url: str = TWILIO_API_BASE
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioConfig:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("TwilioConfig needs from_number or messaging_service_sid")
        return self

    @property
    def api_url(self) -> str:
        """The account's ``Messages.json`` endpoint, where messages are sent (as in 0.3.0)."""
        return messages_url(self.base_url, self.account_sid)


class TwilioRCSConfig(BaseModel):
    """Twilio RCS settings: RCS goes through a Messaging Service that has an RCS sender.

    Args:
        account_sid: Account SID (``AC…``).
        auth_token: Auth token (``SecretStr``; plain strings are accepted).
        messaging_service_sid: The RCS-enabled Messaging Service (``MG…``); Twilio falls back to
            the service's SMS senders when the recipient cannot receive RCS.
        status_callback: URL Twilio posts delivery statuses to.
        base_url: API root.
        timeout: Per-request timeout in seconds.
    """

    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    messaging_service_sid: str = Field(min_length=1)
    status_callback: str | None = None
    base_url: str = TWILIO_API_BASE
    timeout: float = Field(default=10.0, gt=0)

    @property
    def api_url(self) -> str:
        """The account's ``Messages.json`` endpoint, where messages are sent."""
        return messages_url(self.base_url, self.account_sid)
