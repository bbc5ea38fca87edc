"""The Telnyx v2 Messages API, shared by the SMS and RCS providers.

``POST {base}/v2/messages`` with ``Authorization: Bearer <api key>`` and a JSON body (``from``,
``to``, ``text``, ``media_urls``, ``messaging_profile_id``, ``webhook_url``; RCS adds
``type: "RCS"`` and ``auto_detect``). Success answers ``{"data": {"id": ..., "type": "SMS",
"to": [{"phone_number": ..., "status": "queued"}], ...}}``; errors answer
``{"errors": [{"code": "40310", "title": ..., "detail": ...}]}``. Webhooks are signed with
Ed25519 (``telnyx-signature-ed25519`` over ``timestamp|body``).

Failures keep RoomKit 0.3.0's codes (:mod:`providers.sms._errors`: a 400 is
``invalid_request`` for SMS and ``telnyx_<code>`` for RCS; a failed connection gives the
exception's text). A ``2xx`` answer is a sent message even without an id (None, with a
warning logged): Telnyx accepted it, so failing would make the router send it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from providers._http import (
    ErrorParser,
    HTTPFailure,
    accepted_id,
    bearer,
    code_and_message,
    response_json,
)
from providers._vendor import VendorProvider
from providers.sms._errors import SMSErrorStyle, sms_error_parser
from providers.telnyx.config import TelnyxConfig, TelnyxRCSConfig
from providers.telnyx.signature import load_telnyx_public_key, verify_telnyx_signature

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from providers.sms._outbound import OutboundMessage

__all__ = ["TelnyxMessagingProvider", "TelnyxSent", "telnyx_error"]

logger = logging.getLogger("roomkit.providers.telnyx")

C = TypeVar("C", bound=TelnyxConfig | TelnyxRCSConfig)


def telnyx_error(body: Any) -> tuple[str | None, str | None]:
    """Telnyx' ``(code, detail or title)`` of the first error in an error body."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    first = errors[0]
    return code_and_message(first.get("code"), first.get("detail") or first.get("title"))


@dataclass(frozen=True, slots=True)
class TelnyxSent:
    """A message Telnyx accepted: its id (None when its answer named none) and the ``data``
    object."""

    id: str | None
    data: dict[str, Any]

    @property
    def status(self) -> str | None:
        """The first recipient's status (``queued``, ...)."""
        to = self.data.get("to")
        if isinstance(to, list) and to and isinstance(to[0], dict):
            status = to[0].get("status")
            return status if isinstance(status, str) else None
        return None


class TelnyxMessagingProvider(VendorProvider[C]):
    """Mixin of the Telnyx providers: their client, message creation and webhook signature
    check. Constructor arguments as for :class:`~providers.telnyx.TelnyxSMSProvider`."""

    error_style: ClassVar[SMSErrorStyle] = SMSErrorStyle.VENDOR_CODE
    """How failed calls are named: 0.3.0's Telnyx SMS provider called every 400
    ``invalid_request``, its RCS provider read Telnyx' code (``telnyx_40310``)."""

    def __init__(
        self,
        config: C,
        public_key: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._errors: ErrorParser = sms_error_parser(telnyx_error, "telnyx", self.error_style)
        self._public_key: Ed25519PublicKey | None = (
            None if public_key is None else load_telnyx_public_key(public_key)
        )
        super().__init__(
            config, client=client, code_prefix="telnyx", secrets=[config.api_key], logger=logger
        )

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response | HTTPFailure:
        """One authenticated Telnyx API call (see :meth:`VendorHTTP.request`)."""
        outcome = await self._http.request(
            method, url, headers=bearer(self._config.api_key), error_parser=self._errors, **kwargs
        )
        if isinstance(outcome, HTTPFailure):
            return self._http.transport_error_as_text(outcome)
        return outcome

    async def _create_message(
        self, fields: dict[str, Any], message: OutboundMessage
    ) -> TelnyxSent | HTTPFailure:
        """Create one message: ``fields`` (``from``, ``to``, ...), then ``message``'s text and
        media and the configured messaging profile and webhook."""
        config = self._config
        body = dict(fields)
        if message.text:
            body["text"] = message.text
        if message.media:
            body["media_urls"] = [item.url for item in message.media]
        if config.messaging_profile_id:
            body["messaging_profile_id"] = config.messaging_profile_id
        if config.webhook_url:
            body["webhook_url"] = config.webhook_url
        outcome = await self._call("POST", f"{config.base_url.rstrip('/')}/v2/messages", json=body)
        if isinstance(outcome, HTTPFailure):
            return outcome
        answer = response_json(outcome)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            data = {}
        message_id = accepted_id("telnyx", data.get("id"), outcome.status_code)
        return TelnyxSent(id=message_id, data=data)

    def verify_signature(
        self, payload: bytes, signature: str, timestamp: str | None = None
    ) -> bool:
        """Check the ``telnyx-signature-ed25519`` header of a webhook.

        Args:
            payload: The raw request body.
            signature: The ``telnyx-signature-ed25519`` header.
            timestamp: The ``telnyx-timestamp`` header; a missing or stale (over five
                minutes) timestamp fails verification.

        Raises:
            ValueError: The provider was created without ``public_key``.
        """
        if self._public_key is None:
            raise ValueError(f"{type(self).__name__} needs public_key= to verify signatures")
        return verify_telnyx_signature(self._public_key, payload, signature, timestamp)
