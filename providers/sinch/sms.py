"""Sinch SMS / MMS over the XMS REST API (batches), with httpx (no Sinch SDK)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from providers.sinch.config import SinchConfig
from providers.sinch.signature import verify_sinch_signature
from providers.sinch.webhook import parse_sinch_webhook
from providers.sms._http import HTTPFailure, VendorHTTP, response_json
from providers.sms._outbound import render_outbound
from providers.sms.base import SMSProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["SinchSMSProvider"]

logger = logging.getLogger("roomkit.providers.sinch")


def sinch_error(body: Any) -> tuple[str | None, str | None]:
    """Sinch's ``(code, text)`` from an error body (``{"code": ..., "text": ...}``)."""
    if not isinstance(body, dict):
        return None, None
    code, text = body.get("code"), body.get("text")
    return (
        code if isinstance(code, str) and code else None,
        text if isinstance(text, str) else None,
    )


class SinchSMSProvider(SMSProvider):
    """Sends SMS / MMS as Sinch XMS batches of one recipient.

    ``POST https://{region}.sms.api.sinch.com/xms/v1/{service_plan_id}/batches`` with
    ``Authorization: Bearer <api token>``. Text goes as ``mt_text``; a message with media as
    ``mt_media`` carrying the first attachment's URL and the text as its ``message`` (Sinch MMS
    takes one attachment per batch; the rest are dropped with a warning).

    Args:
        config: Service plan, token, sender and region.
        client: An ``httpx.AsyncClient`` to use (the caller keeps ownership); when None, one is
            created and :meth:`close` closes it.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(self, config: SinchConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._http = VendorHTTP(
            "SinchSMSProvider",
            code_prefix="sinch",
            client=client,
            timeout=config.timeout,
            logger=logger,
        )

    def __repr__(self) -> str:
        return f"SinchSMSProvider(service_plan_id={self._config.service_plan_id!r})"

    @property
    def config(self) -> SinchConfig:
        """The provider's configuration (secrets stay ``SecretStr``)."""
        return self._config

    @property
    def from_number(self) -> str:
        """The default sender."""
        return self._config.from_number

    @property
    def batches_url(self) -> str:
        """The batches endpoint of the service plan."""
        plan = quote(self._config.service_plan_id, safe="")
        return f"{self._config.api_root}/xms/v1/{plan}/batches"

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text (``mt_text``) or text and first attachment (``mt_media``).

        Returns:
            ``success=True`` with the batch id, or ``success=False`` with ``error`` one of
            ``"empty_message"``, ``"missing_recipient"``, ``"timeout"``, ``"network_error"``,
            ``"auth_error"``, ``"rate_limit"``, ``"sinch_<code>"``
            (``"sinch_syntax_invalid_parameter_format"``) or ``"http_<status>"``.
        """
        message = render_outbound(event.content)
        if message.is_empty:
            return ProviderResult(success=False, error="empty_message")
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        config = self._config
        body: dict[str, Any] = {"from": from_ or config.from_number, "to": [to]}
        dropped = 0
        if message.media:
            media_body: dict[str, Any] = {"url": message.media[0].url}
            if message.text:
                media_body["message"] = message.text
            body.update(type="mt_media", body=media_body)
            dropped = len(message.media) - 1
            if dropped:
                logger.warning("sinch: MMS carries one attachment; %d dropped", dropped)
        else:
            body.update(type="mt_text", body=message.text)
        if config.delivery_report:
            body["delivery_report"] = config.delivery_report
        if config.callback_url:
            body["callback_url"] = config.callback_url
        outcome = await self._http.request(
            "POST",
            self.batches_url,
            json=body,
            headers={"Authorization": f"Bearer {config.api_token.get_secret_value()}"},
            extract_error=sinch_error,
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        data = response_json(outcome)
        batch_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(batch_id, str) or not batch_id:
            return HTTPFailure(
                "invalid_response",
                "Sinch answered without a batch id",
                provider=self._http.provider,
                status_code=outcome.status_code,
            ).to_result(ProviderResult)
        metadata: dict[str, Any] = {"type": body["type"]}
        if dropped:
            metadata["media_dropped"] = dropped
        logger.debug("sinch accepted batch %s", batch_id)
        return ProviderResult(success=True, provider_message_id=batch_id, metadata=metadata)

    async def parse_webhook(self, payload: dict[str, Any], channel_id: str) -> InboundMessage:
        """Turn an inbound (MO) callback into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_sinch_webhook(payload, channel_id)

    def verify_signature(
        self, payload: bytes, signature: str, timestamp: str | None = None
    ) -> bool:
        """Check a webhook signature: base64 HMAC-SHA1 of the raw body with
        ``config.webhook_secret``.

        Args:
            payload: The raw request body.
            signature: The signature header's value.
            timestamp: Unused (the signature covers the body only); kept for the ABC.

        Raises:
            ValueError: ``config.webhook_secret`` is not set.
        """
        secret = self._config.webhook_secret
        if secret is None or not secret.get_secret_value():
            raise ValueError("SinchConfig.webhook_secret is not set")
        return verify_sinch_signature(secret.get_secret_value(), payload, signature)

    async def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        await self._http.aclose()
