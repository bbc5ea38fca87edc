"""A generic HTTP webhook transport: RoomKit POSTs messages to your URL, you POST replies back.

Outbound, each message is one ``POST`` of JSON to ``webhook_url``::

    {"recipient_id": "...", "channel_id": "...", "room_id": "...",
     "content": {"type": "text", "body": "..."}, "metadata": {...}}

signed, when a secret is configured, with ``X-RoomKit-Signature: <hex HMAC-SHA256 of the body>``
(:func:`verify_http_signature` checks it on the receiving side). A JSON answer with a
``message_id`` gives the provider message id.

Inbound, :func:`parse_http_webhook` reads ``{"sender_id", "body"?, "external_id"?, "metadata"?}``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr

from providers._http import HTTPFailure, response_json
from providers._signature import hmac_sha256_hex, verify_hmac_sha256_hex
from providers._text import clean_strings
from providers._vendor import VendorProvider
from providers.errors import ProviderError
from providers.http._render import content_text
from providers.http.base import HTTPProvider
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import TextContent

if TYPE_CHECKING:
    import httpx

    from roomkit.models.event import RoomEvent

__all__ = [
    "SIGNATURE_HEADER",
    "HTTPProviderConfig",
    "InvalidHTTPWebhook",
    "WebhookHTTPProvider",
    "parse_http_webhook",
    "verify_http_signature",
]

logger = logging.getLogger("roomkit.providers.http")

SIGNATURE_HEADER = "X-RoomKit-Signature"


class HTTPProviderConfig(BaseModel):
    """Settings of :class:`WebhookHTTPProvider`.

    Attributes:
        webhook_url: Where messages are POSTed.
        secret: Key of the ``X-RoomKit-Signature`` HMAC; no signature when None or empty (an
            empty key signs nothing anyone could not sign: a warning says so, where 0.3.0
            signed with it).
        headers: Extra request headers (e.g. an ``Authorization``); hidden from the repr since
            they often hold credentials.
        timeout: Seconds before a request times out.
    """

    webhook_url: str
    secret: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: float = Field(default=30.0, gt=0)  # 0.3.0's default


# Header names that carry credentials, by what they contain: their values are masked in the
# failure messages and logs (an endpoint refusing a token may quote it).
_CREDENTIAL_WORDS = ("auth", "token", "key", "secret", "password", "cookie", "signature")


# Headers whose names say they carry a credential's metadata, not one (``X-Auth-Version``).
_NOT_CREDENTIAL_WORDS = ("version", "date", "time", "expires")
# Shorter, a value is no credential (``X-Auth-Level: 2``): masked, every "2" of the
# endpoint's messages became "***".
_SHORTEST_CREDENTIAL = 4


def _header_credentials(headers: Mapping[str, str]) -> list[str]:
    """The values of ``headers`` that carry credentials, and the credential of an
    ``Authorization``-style value alone (``Bearer <token>``: the endpoint may echo the token
    only)."""
    found: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if not any(word in lowered for word in _CREDENTIAL_WORDS) or any(
            word in lowered for word in _NOT_CREDENTIAL_WORDS
        ):
            continue
        scheme, _, credential = value.partition(" ")
        for candidate in (value, credential.strip() if scheme.isalpha() else ""):
            if len(candidate) >= _SHORTEST_CREDENTIAL:
                found.append(candidate)
    return found


def verify_http_signature(
    body: bytes | str, signature: str | None, secret: SecretStr | str
) -> bool:
    """Whether ``signature`` (the ``X-RoomKit-Signature`` header) is the HMAC-SHA256 hex of the
    raw ``body`` keyed with ``secret`` (constant-time comparison).

    Raises:
        ValueError: ``secret`` is empty.
    """
    return verify_hmac_sha256_hex(secret, body, signature)


class WebhookHTTPProvider(VendorProvider[HTTPProviderConfig], HTTPProvider):
    """Posts messages as JSON to a webhook URL.

    Args:
        config: URL, signing secret, headers, timeout.
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self, config: HTTPProviderConfig, *, client: httpx.AsyncClient | None = None
    ) -> None:
        secrets = [config.secret, *map(SecretStr, _header_credentials(config.headers))]
        # No path in logs: a webhook URL's path may be its token (Slack, Discord, Teams).
        super().__init__(config, client=client, secrets=secrets, logger=logger, log_path=False)
        self._signing_key = (
            config.secret if config.secret and config.secret.get_secret_value() else None
        )
        if config.secret is not None and self._signing_key is None:
            logger.warning("HTTP webhook provider: the secret is empty, requests go unsigned")

    def build_body(self, event: RoomEvent, to: str) -> bytes | None:
        """The exact bytes POSTed (and signed) for ``event``; None when there is no text."""
        text = content_text(event.content)
        if not text.strip():
            return None
        payload = {
            "recipient_id": to,
            "channel_id": event.source.channel_id,
            "room_id": event.room_id,
            "content": {"type": "text", "body": text},
            "metadata": _finite(event.metadata),
        }
        # default=str: event metadata is free-form and may hold values JSON cannot encode.
        # allow_nan=False: a NaN written as the bare token NaN (not JSON) was refused by
        # strict receivers; ``_finite`` writes such numbers as null, as the event log does.
        # json.dumps's own separators, as 0.3.0 wrote the body: a receiver that checks the
        # signature over the parsed payload written again by json.dumps sees the same bytes.
        return json.dumps(payload, default=str, allow_nan=False).encode()

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """POST ``event``'s text to the webhook for recipient ``to``.

        Returns:
            ``provider_message_id`` = the answer's ``message_id`` (None when it has none);
            failures as ``success=False`` with ``empty_message``, ``auth_error``,
            ``rate_limit``, ``http_<status>``, ``timeout``, ``network_error``.
        """
        body = self.build_body(event, to)
        if body is None:
            return ProviderResult(success=False, error="empty_message")
        # The body's type and signature are ours to set; drop any configured variant of them.
        reserved = ("content-type", SIGNATURE_HEADER.lower())
        headers = {k: v for k, v in self._config.headers.items() if k.lower() not in reserved}
        headers["Content-Type"] = "application/json"
        if self._signing_key is not None:
            headers[SIGNATURE_HEADER] = hmac_sha256_hex(self._signing_key, body)
        outcome = await self._http.request(
            "POST", self._config.webhook_url, content=body, headers=headers
        )
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        answer = response_json(outcome)
        message_id = answer.get("message_id") if isinstance(answer, dict) else None
        return ProviderResult(
            success=True,
            provider_message_id=None if message_id is None else str(message_id),
        )


_NAME = "WebhookHTTP"


class InvalidHTTPWebhook(ProviderError, ValueError):
    """A payload ``parse_http_webhook`` cannot read (0.3.0 raised a ``ValueError``, pydantic's
    validation error, for most of them)."""


class _NotAnObject(InvalidHTTPWebhook, TypeError):
    """Not a JSON object (0.3.0: ``TypeError``)."""


class _NoSenderId(InvalidHTTPWebhook, KeyError):
    """No ``sender_id`` (0.3.0: ``KeyError``)."""

    def __str__(self) -> str:  # KeyError's own puts the text in quotes
        return self.message


def parse_http_webhook(payload: Any, channel_id: str) -> InboundMessage:
    """Turn ``{"sender_id", "body"?, "external_id"?, "metadata"?}`` into an inbound message.

    Without a ``body`` (or with null) the message is an empty text, as in 0.3.0: clients post
    such messages (a "user joined" ping, say). The external id, when given, is also the
    idempotency key (a re-posted message is recorded once).

    Raises:
        InvalidHTTPWebhook: (a ``ProviderError`` and a ``ValueError``) ``payload`` is not an
            object (also a ``TypeError``), ``sender_id`` is missing (also a ``KeyError``) or
            not a non-empty string, ``body`` is not a string, ``external_id`` is not a string,
            or ``metadata`` not an object. 0.3.0 raised those three for them: a handler
            catching them answers such a request as before.
    """
    if not isinstance(payload, Mapping):  # any mapping, as 0.3.0 read it (a form's MultiDict)
        raise _NotAnObject("HTTP webhook payload must be a JSON object", provider=_NAME)
    # Lone surrogates as U+FFFD: one (half an emoji) in a text made the room refuse the
    # message at each of the vendor's retries, so it was lost.
    payload = clean_strings(payload)
    sender, body = payload.get("sender_id"), payload.get("body")
    if sender is None and "sender_id" not in payload:
        raise _NoSenderId("HTTP webhook payload needs a sender_id string", provider=_NAME)
    if not isinstance(sender, str) or not sender:
        raise InvalidHTTPWebhook("HTTP webhook payload needs a sender_id string", provider=_NAME)
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise InvalidHTTPWebhook("HTTP webhook body must be a string", provider=_NAME)
    external_id = payload.get("external_id")
    if external_id is not None and not isinstance(external_id, str):
        raise InvalidHTTPWebhook("external_id must be a string", provider=_NAME)
    metadata = payload.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InvalidHTTPWebhook("metadata must be a JSON object", provider=_NAME)
    return InboundMessage(
        channel_id=channel_id,
        sender_id=sender,
        content=TextContent(body=body),
        external_id=external_id or None,
        idempotency_key=external_id or None,
        metadata=dict(metadata),  # the payload's own, as in 0.3.0
    )


def _finite(value: Any) -> Any:
    """``value`` with its NaN and infinite floats (in dicts, lists and tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
