"""SendGrid over its v3 Web API (``POST /v3/mail/send``, JSON, ``Authorization: Bearer``).

A send is accepted with ``202 Accepted`` and an ``X-Message-Id`` header; errors come as
``{"errors": [{"message", "field", "help"}]}``. On 429 SendGrid gives the end of the rate-limit
window in ``X-RateLimit-Reset`` (epoch seconds), which becomes ``retry_after``.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr

from providers._http import ErrorDetail, HTTPFailure, bearer, response_json
from providers._vendor import VendorProvider
from providers.email.base import EmailProvider
from providers.http._render import email_parts
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["SendGridConfig", "SendGridProvider"]

logger = logging.getLogger("roomkit.providers.sendgrid")


class SendGridConfig(BaseModel):
    """Settings of :class:`SendGridProvider`.

    Attributes:
        api_key: SendGrid API key (kept secret in reprs and logs).
        from_email: Default sender address (a verified sender of the account).
        from_name: Sender display name.
        default_subject: Subject when neither ``send`` nor the binding gives one.
        sandbox_mode: Ask SendGrid to validate the request without delivering it.
        base_url: API root, without a trailing slash.
        timeout: Seconds before a request times out.
    """

    api_key: SecretStr
    from_email: str
    from_name: str | None = None
    default_subject: str = "New message"
    sandbox_mode: bool = False
    base_url: str = "https://api.sendgrid.com/v3"
    timeout: float = Field(default=10.0, gt=0)


def _sendgrid_error(response: httpx.Response) -> ErrorDetail:
    body = response_json(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    message = ""
    if isinstance(errors, list):
        message = "; ".join(
            str(e["message"]) for e in errors if isinstance(e, dict) and e.get("message")
        )
    retry_after = None
    reset = response.headers.get("x-ratelimit-reset")
    if response.status_code == 429 and reset:
        try:
            retry_after = max(float(reset) - time.time(), 0.0)
        except ValueError:
            retry_after = None
    return ErrorDetail(message=message, retry_after=retry_after)


class SendGridProvider(VendorProvider[SendGridConfig], EmailProvider):
    """Sends email through SendGrid.

    Args:
        config: Credentials and defaults.
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(self, config: SendGridConfig, *, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, client=client, secrets=[config.api_key], logger=logger)

    def build_payload(
        self,
        event: RoomEvent,
        to: str,
        from_: str | None = None,
        subject: str | None = None,
    ) -> dict[str, Any] | None:
        """The ``mail/send`` JSON body for ``event`` (None when there is nothing to send)."""
        parts = email_parts(event.content)
        if parts.is_empty:
            return None
        cfg = self._config
        sender: dict[str, str] = {"email": from_ or cfg.from_email}
        if cfg.from_name:
            sender["name"] = cfg.from_name
        # SendGrid wants at least one non-empty content entry, text/plain first.
        text = parts.text or ", ".join(a.filename for a in parts.attachments)
        content = [{"type": "text/plain", "value": text}]
        if parts.html is not None:
            content.append({"type": "text/html", "value": parts.html})
        payload: dict[str, Any] = {
            "personalizations": [{"to": [{"email": to}]}],
            "from": sender,
            "subject": subject or cfg.default_subject,
            "content": content,
        }
        if parts.attachments:
            payload["attachments"] = [
                {
                    "content": base64.b64encode(a.data).decode("ascii"),
                    "type": a.mime_type,
                    "filename": a.filename,
                    "disposition": "attachment",
                }
                for a in parts.attachments
            ]
        if cfg.sandbox_mode:
            payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return payload

    async def send(
        self,
        event: RoomEvent,
        to: str,
        from_: str | None = None,
        subject: str | None = None,
    ) -> ProviderResult:
        """Send ``event``'s content as one email.

        Text becomes the ``text/plain`` part; HTML rich content adds a ``text/html`` part;
        ``data:`` media are attached (base64); linked media are written as links.

        Returns:
            ``provider_message_id`` = the ``X-Message-Id`` header; failures as
            ``success=False`` with an error code.
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        payload = self.build_payload(event, to, from_, subject)
        if payload is None:
            return ProviderResult(success=False, error="empty_message")
        outcome = await self._http.request(
            "POST",
            f"{self._config.base_url}/mail/send",
            json=payload,
            headers=bearer(self._config.api_key),
            error_parser=_sendgrid_error,
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        return ProviderResult(
            success=True, provider_message_id=outcome.headers.get("x-message-id")
        )
