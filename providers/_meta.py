"""Meta's Graph API, shared by Facebook Messenger and WhatsApp Cloud.

Both send with ``POST`` and an ``Authorization: Bearer`` token, answer errors as
``{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`` (often
with HTTP 400 even for throttling, so the code decides), sign webhooks with the app secret in
``X-Hub-Signature-256: sha256=<hex>`` and check subscriptions with ``hub.*`` query parameters.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import SecretStr

from providers._http import (
    ErrorDetail,
    ErrorParser,
    HTTPFailure,
    bearer,
    response_json,
    secret_value,
)
from providers._signature import verify_hmac_sha256_hex
from providers._vendor import VendorProvider
from roomkit.models.delivery import ProviderResult

if TYPE_CHECKING:
    import httpx

__all__ = [
    "GraphProvider",
    "graph_error_parser",
    "verify_meta_signature",
    "verify_meta_subscription",
]

# Token errors: 190 (invalid or expired token), 102 (session).
_GRAPH_AUTH_CODES = frozenset({102, 190})
# App / user / page / WABA-level throttling and WhatsApp throughput / pair-rate limits.
_GRAPH_RATE_CODES = frozenset({4, 17, 32, 613, 80004, 80006, 80007, 130429, 131048, 131056})


def graph_error_parser(prefix: str) -> ErrorParser:
    """An :data:`~providers._http.ErrorParser` for Graph API errors: token codes are
    ``auth_error``, throttling codes ``rate_limit``, other codes ``<prefix>_<code>``."""

    def parse(response: httpx.Response) -> ErrorDetail:
        body = response_json(response)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return ErrorDetail()
        raw_code = error.get("code")
        is_int = isinstance(raw_code, int) and not isinstance(raw_code, bool)
        code_num = raw_code if is_int else None
        message = error.get("message")
        code: str | None = None
        if code_num in _GRAPH_AUTH_CODES:
            code = "auth_error"
        elif code_num in _GRAPH_RATE_CODES:
            code = "rate_limit"
        elif code_num is not None and response.status_code not in (401, 403, 429):
            code = f"{prefix}_{code_num}"
        return ErrorDetail(
            message=message if isinstance(message, str) else "",
            vendor_code=None if code_num is None else str(code_num),
            code=code,
            retryable=error.get("is_transient") is True,
        )

    return parse


def verify_meta_signature(
    body: bytes | str, signature: str | None, app_secret: SecretStr | str
) -> bool:
    """Whether ``signature`` (the ``X-Hub-Signature-256`` header, ``sha256=<hex>``) is the
    HMAC-SHA256 of the raw ``body`` with the app secret (constant-time comparison).

    Raises:
        ValueError: ``app_secret`` is empty.
    """
    return verify_hmac_sha256_hex(app_secret, body, signature, prefix="sha256=")


def verify_meta_subscription(
    params: Mapping[str, str], verify_token: SecretStr | str
) -> str | None:
    """Answer Meta's webhook subscription check (``GET`` with ``hub.*`` query parameters).

    Returns:
        The ``hub.challenge`` to echo with HTTP 200 when ``hub.mode`` is ``subscribe`` and
        ``hub.verify_token`` matches; None otherwise (answer 403).

    Raises:
        ValueError: ``verify_token`` is empty: a request with an empty ``hub.verify_token``
            would match it, so anyone could subscribe the webhook.
    """
    if verify_token is None or not secret_value(verify_token):
        raise ValueError("webhook verify token is not set")
    token = params.get("hub.verify_token")
    if params.get("hub.mode") != "subscribe" or not isinstance(token, str):
        return None
    expected = secret_value(verify_token).encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected):
        return None
    challenge = params.get("hub.challenge")
    return challenge if isinstance(challenge, str) else None


class _GraphConfig(Protocol):
    @property
    def app_secret(self) -> SecretStr | None: ...

    @property
    def timeout(self) -> float: ...


C = TypeVar("C", bound=_GraphConfig)


class GraphProvider(VendorProvider[C]):
    """Mixin of the providers that send through the Graph API.

    Args:
        config: The provider's settings (``app_secret`` signs webhooks).
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).
        token: The access token sent as ``Authorization: Bearer``.
        code_prefix: Prefix of unmapped Graph error codes (``"messenger"`` → ``messenger_551``).
        logger: The vendor's logger.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self,
        config: C,
        *,
        client: httpx.AsyncClient | None,
        token: SecretStr,
        code_prefix: str,
        logger: logging.Logger,
    ) -> None:
        super().__init__(config, client=client, secrets=[token, config.app_secret], logger=logger)
        self._token = token
        self._errors = graph_error_parser(code_prefix)

    async def _graph(self, method: str, url: str, **kwargs: Any) -> httpx.Response | HTTPFailure:
        """One authenticated Graph API call (see :meth:`VendorHTTP.request`)."""
        return await self._http.request(
            method, url, headers=bearer(self._token), error_parser=self._errors, **kwargs
        )

    async def _post_all(
        self,
        url: str,
        payloads: Iterable[dict[str, Any]],
        message_id: Callable[[Any], str | None],
    ) -> ProviderResult:
        """POST each payload in order, stopping at the first failure.

        Args:
            url: The send endpoint.
            payloads: The request bodies.
            message_id: Reads the sent message's id from a decoded answer.

        Returns:
            ``provider_message_id`` = the first id (all in ``metadata["message_ids"]``); a
            failure also lists in ``metadata["message_ids"]`` the messages already sent, and
            is then not ``retryable``.
        """
        ids: list[str] = []
        for payload in payloads:
            outcome = await self._graph("POST", url, json=payload)
            if isinstance(outcome, HTTPFailure):
                # Parts went out: sent again whole, the recipient got them twice.
                sent: dict[str, Any] = {"message_ids": ids, "retryable": False} if ids else {}
                if outcome.status_code is not None and outcome.message:
                    sent["message"] = outcome.message  # Graph's text, under 0.3.0's key
                return outcome.to_result(ProviderResult, metadata=sent)
            if (sent_id := message_id(response_json(outcome))) is not None:
                ids.append(sent_id)
        return ProviderResult(
            success=True,
            provider_message_id=ids[0] if ids else None,
            metadata={"message_ids": ids},
        )

    def verify_signature(self, payload: bytes | str, signature: str | None) -> bool:
        """Check a webhook's ``X-Hub-Signature-256`` header against the raw body.

        Raises:
            ValueError: ``config.app_secret`` is not set (or empty).
        """
        app_secret = self._config.app_secret
        if app_secret is None or not app_secret.get_secret_value():
            config_name = type(self._config).__name__
            raise ValueError(f"{config_name}.app_secret is required to verify signatures")
        return verify_meta_signature(payload, signature, app_secret)
