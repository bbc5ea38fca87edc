"""Configuration of the Sinch SMS provider."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr

__all__ = ["SinchConfig"]


class SinchConfig(BaseModel):
    """Sinch SMS (XMS REST API) settings.

    Args:
        service_plan_id: The service plan the batches are sent under.
        api_token: The plan's API token, sent as a Bearer token (``SecretStr``; plain strings
            are accepted).
        from_number: Default sender (number, short code or alphanumeric id).
        region: API region: ``us``, ``eu``, ``au``, ``br`` or ``ca`` (the host is
            ``{region}.sms.api.sinch.com``).
        webhook_secret: Shared secret of webhook signatures (``SecretStr``), needed by
            ``verify_signature``.
        delivery_report: Delivery report level asked for each batch (``none``, ``summary``,
            ``full``, ``per_recipient``, ``per_recipient_final``); Sinch's default when None.
        callback_url: Where Sinch posts delivery reports of the batches, when set.
        base_url: API root overriding ``region`` (tests, private endpoints).
        timeout: Per-request timeout in seconds.
    """

    service_plan_id: str = Field(min_length=1)
    api_token: SecretStr
    from_number: str = Field(min_length=1)
    region: str = Field(default="us", pattern=r"^[a-z]{2,8}$")
    webhook_secret: SecretStr | None = None
    delivery_report: str | None = None
    callback_url: str | None = None
    base_url: str | None = None
    timeout: float = Field(default=10.0, gt=0)

    @property
    def api_root(self) -> str:
        """The API root in use (``base_url`` or the region's host)."""
        return (self.base_url or f"https://{self.region}.sms.api.sinch.com").rstrip("/")

    @property
    def api_url(self) -> str:
        """The service plan's batches endpoint, where messages are sent (as in 0.3.0)."""
        return f"{self.api_root}/xms/v1/{quote(self.service_plan_id, safe='')}/batches"
