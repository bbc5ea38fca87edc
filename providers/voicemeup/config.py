"""Configuration of the VoiceMeUp SMS provider."""

from __future__ import annotations

import logging
from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator

__all__ = ["VoiceMeUpConfig"]

logger = logging.getLogger("roomkit.providers.voicemeup")

VOICEMEUP_API_BASE = "https://clients.voicemeup.com"
VOICEMEUP_SANDBOX_BASE = "https://dev-clients.voicemeup.com"


class VoiceMeUpConfig(BaseModel):
    """VoiceMeUp SMS / MMS settings.

    Args:
        username: API user name (sent in each request's form data).
        auth_token: API auth token (sent in the form data, never in the URL; a ``SecretStr``,
            plain strings are accepted).
        from_number: Default sender: one of the account's numbers (E.164 or digits).
        sandbox: Use the sandbox host instead of production.
        environment: RoomKit 0.3.0's way to say it: ``"sandbox"`` selects the sandbox host as
            ``sandbox=True`` does; anything else means production, as in 0.3.0 (a value
            other than ``"production"`` is kept as given, with a warning logged). The
            default is ``"production"``; left out, it follows ``sandbox``, so it always names
            the host in use (unless ``base_url`` overrides it).
        base_url: API root overriding ``sandbox`` (tests, other hosts).
        max_message_length: Longer texts are split into several messages of at most this
            many characters, cut between words.
        timeout: Per-request timeout in seconds.
    """

    username: str = Field(min_length=1)
    auth_token: SecretStr
    from_number: str = Field(min_length=1)
    sandbox: bool = False
    environment: str = "production"
    base_url: str | None = None
    max_message_length: int = Field(default=1000, gt=0)
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_environment(self) -> Self:
        # Only an environment the caller gave can contradict sandbox=True; the default
        # "production" then just follows it, so the field never names the wrong host.
        if "environment" not in self.model_fields_set:
            if self.sandbox:
                self.environment = "sandbox"
        elif self.sandbox and self.environment != "sandbox":
            raise ValueError(
                f"sandbox=True and environment={self.environment!r} contradict each other"
            )
        if self.environment not in ("production", "sandbox"):
            # 0.3.0 sent anything but "sandbox" to production; a typo must not go unnoticed.
            logger.warning(
                "VoiceMeUpConfig: unknown environment %r; using production", self.environment
            )
        return self

    @property
    def api_root(self) -> str:
        """The API root in use."""
        sandbox = self.sandbox or self.environment == "sandbox"
        default = VOICEMEUP_SANDBOX_BASE if sandbox else VOICEMEUP_API_BASE
        return (self.base_url or default).rstrip("/")

    @property
    def queue_sms_url(self) -> str:
        """The ``queue_sms`` endpoint."""
        return f"{self.api_root}/api/v1.1/json/queue_sms"
