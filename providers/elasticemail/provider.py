"""Elastic Email over its v2 HTTP API (``POST /v2/email/send``, form-encoded, API key in the body).

Elastic Email v2 answers HTTP 200 for most failures, with ``{"success": false, "error": "..."}``:
the result's ``error`` is that text, as in 0.3.0 (``"unknown_error"`` without one), and
``metadata["code"]`` says ``auth_error`` (a rejected API key) or ``elasticemail_error``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr

from providers._http import HTTPFailure, response_json
from providers._vendor import VendorProvider
from providers.email.base import EmailProvider
from providers.http._render import EmailParts, email_parts
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import EventContent, RichContent, RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["ElasticEmailConfig", "ElasticEmailProvider"]

logger = logging.getLogger("roomkit.providers.elasticemail")


class ElasticEmailConfig(BaseModel):
    """Settings of :class:`ElasticEmailProvider`.

    Attributes:
        api_key: Elastic Email API key (kept secret in reprs and logs).
        from_email: Default sender address.
        from_name: Sender display name.
        default_subject: Subject when neither ``send`` nor the binding gives one.
        is_transactional: Send as transactional mail (not subject to marketing unsubscribes).
        base_url: The send endpoint, as in 0.3.0; an API root (``.../v2``) is taken too, and
            ``/email/send`` added to it.
        timeout: Seconds before a request times out.
    """

    api_key: SecretStr
    from_email: str
    from_name: str | None = None
    default_subject: str = "New message"
    is_transactional: bool = True
    base_url: str = "https://api.elasticemail.com/v2/email/send"
    timeout: float = Field(default=30.0, gt=0)  # 0.3.0's default

    @property
    def send_url(self) -> str:
        """Where messages are posted: ``base_url``, or its ``/email/send`` for an API root."""
        url = self.base_url.rstrip("/")
        return url if url.endswith("/email/send") else f"{url}/email/send"


def _elastic_parts(content: EventContent) -> EmailParts:
    """The email body of ``content``: rich content as 0.3.0 sent it, the rest by
    :func:`email_parts`.

    0.3.0 sent a rich body, Markdown (the default format) or HTML alike, as ``bodyHtml`` with
    an empty ``bodyText``, and apps written for it put HTML in ``RichContent(body=...)``
    without a format: sent as text, recipients would read the tags. The author's own
    ``plain_text``, which 0.3.0 ignored, is the text alternative when given.
    """
    if isinstance(content, RichContent):
        return EmailParts(text=content.plain_text or "", html=content.body or None)
    return email_parts(content)


class ElasticEmailProvider(VendorProvider[ElasticEmailConfig], EmailProvider):
    """Sends email through Elastic Email.

    Args:
        config: Credentials and defaults.
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self, config: ElasticEmailConfig, *, client: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__(config, client=client, secrets=[config.api_key], logger=logger)

    async def send(
        self,
        event: RoomEvent,
        to: str,
        from_: str | None = None,
        subject: str | None = None,
    ) -> ProviderResult:
        """Send ``event``'s content as one email.

        Text goes to ``bodyText``; rich content (either format) to ``bodyHtml`` as in 0.3.0,
        with its ``plain_text`` as ``bodyText``; ``data:`` media are attached (multipart
        upload); linked media are written as links.

        Returns:
            ``provider_message_id`` = the ``transactionid`` as in 0.3.0 (also
            ``metadata["transaction_id"]``; the ``messageid``, when given, in
            ``metadata["message_id"]``); failures as ``success=False`` with an error code.
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        parts = _elastic_parts(event.content)
        if parts.is_empty:
            return ProviderResult(success=False, error="empty_message")
        cfg = self._config
        form: dict[str, str] = {
            "apikey": cfg.api_key.get_secret_value(),
            "from": from_ or cfg.from_email,
            "to": to,
            "subject": subject or cfg.default_subject,
            "bodyText": parts.text,
        }
        if parts.html is not None:
            form["bodyHtml"] = parts.html
        form["isTransactional"] = "true" if cfg.is_transactional else "false"
        if cfg.from_name:
            form["fromName"] = cfg.from_name
        request: dict[str, Any] = {"data": form}
        if parts.attachments:
            request["files"] = [
                ("attachments", (a.filename, a.data, a.mime_type)) for a in parts.attachments
            ]
        outcome = await self._http.request("POST", cfg.send_url, **request)
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        return self._result(outcome)

    def _result(self, response: httpx.Response) -> ProviderResult:
        body = response_json(response)
        if not isinstance(body, dict):
            failure = self._http.answer_failure(response, "Elastic Email answered no JSON object")
            return failure.to_result(ProviderResult)
        if body.get("success") is not True:
            # Masked: an answer to a bad key may quote it ("Incorrect apikey <the key>").
            message = self._http.masked(str(body.get("error") or "unknown_error"))
            lowered = message.lower()
            code = (
                "auth_error"
                if "apikey" in lowered or "api key" in lowered or "access denied" in lowered
                else "elasticemail_error"
            )
            logger.warning("elastic email refused the message: %s (%s)", code, message)
            said: dict[str, Any] = {"provider": self.name, "code": code, "detail": message}
            if code == "auth_error":
                # Every message of the channel is refused: counted by its circuit breaker.
                said["retryable"] = False
            elif body.get("error"):
                # This message refused (a bad address, a suppressed recipient), as other
                # vendors' 4xx: not sent again, and not counted against the channel (a few
                # bad addresses opened its breaker for every room).
                said["retryable"] = False
                said["status_code"] = response.status_code
            return ProviderResult(success=False, error=message, metadata=said)
        data = body.get("data")
        data = data if isinstance(data, dict) else {}
        # The transaction id is the message's id, as in 0.3.0: apps stored it to match
        # Elastic Email's delivery notifications and logs.
        transaction_id = data.get("transactionid")
        message_id = data.get("messageid")
        metadata: dict[str, str] = {}
        if transaction_id:
            metadata["transaction_id"] = str(transaction_id)
        if message_id:
            metadata["message_id"] = str(message_id)
        return ProviderResult(
            success=True,
            provider_message_id=metadata.get("transaction_id"),
            metadata=metadata,
        )
