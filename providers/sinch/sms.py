"""Sinch SMS / MMS over the XMS REST API (batches), with httpx (no Sinch SDK)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers._base import inbound_channel_id
from providers._http import HTTPFailure, accepted_id, bearer, code_and_message, response_json
from providers._vendor import VendorProvider
from providers.sinch.config import SinchConfig
from providers.sinch.signature import verify_sinch_signature
from providers.sinch.webhook import parse_sinch_webhook
from providers.sms._errors import SMSErrorStyle, sms_error_parser
from providers.sms._outbound import refusal, render_outbound
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
    return code_and_message(body.get("code"), body.get("text"))


_ERRORS = sms_error_parser(sinch_error, "sinch", SMSErrorStyle.VENDOR_CODE)


class SinchSMSProvider(VendorProvider[SinchConfig], SMSProvider):
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
        super().__init__(
            config,
            client=client,
            code_prefix="sinch",
            secrets=[config.api_token, config.webhook_secret],
            logger=logger,
        )

    def __repr__(self) -> str:
        return f"SinchSMSProvider(service_plan_id={self._config.service_plan_id!r})"

    @property
    def from_number(self) -> str:
        """The default sender."""
        return self._config.from_number

    @property
    def batches_url(self) -> str:
        """The batches endpoint of the service plan."""
        return self._config.api_url

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text (``mt_text``) or text and first attachment (``mt_media``).

        Returns:
            ``success=True`` with the batch id (None, with a warning logged, when Sinch's 2xx
            answer names none: the batch was accepted, and failing would have the router send
            it again), or ``success=False`` with ``error`` one of ``"empty_message"``,
            ``"missing_recipient"``, ``"timeout"``, ``"auth_error"`` (401), ``"rate_limit"``
            (429), a 400's code as ``"sinch_<code>"``
            (``"sinch_syntax_invalid_parameter_format"``), ``"invalid_request"`` (a 400
            without a JSON body), ``"http_<status>"`` (any other status, 403 included) or the
            text of a failed connection, as in RoomKit 0.3.0.
        """
        message = render_outbound(event.content)
        if (refused := refusal(message, to, ProviderResult)) is not None:
            return refused
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
            headers=bearer(config.api_token),
            error_parser=_ERRORS,
        )
        if isinstance(outcome, HTTPFailure):
            return self._http.transport_error_as_text(outcome).to_result(ProviderResult)
        data = response_json(outcome)
        found = data.get("id") if isinstance(data, dict) else None
        batch_id = accepted_id("sinch", found, outcome.status_code, what="batch")
        metadata: dict[str, Any] = {"type": body["type"]}
        if dropped:
            metadata["media_dropped"] = dropped
        return ProviderResult(success=True, provider_message_id=batch_id, metadata=metadata)

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """Turn an inbound (MO) callback into an :class:`InboundMessage`.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_sinch_webhook(payload, inbound_channel_id(self, channel_id))

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
            raise ValueError(
                "webhook_secret must be provided: SinchConfig.webhook_secret is not set"
            )
        return verify_sinch_signature(secret.get_secret_value(), payload, signature)
