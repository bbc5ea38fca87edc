"""VoiceMeUp SMS / MMS over its JSON API (``queue_sms``), with httpx."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers._http import HTTPFailure, body_error_parser, code_and_message, response_json
from providers._vendor import VendorProvider
from providers.sms._outbound import refusal, render_outbound, split_text
from providers.sms.base import SMSProvider
from providers.voicemeup.config import VoiceMeUpConfig
from providers.voicemeup.mms import VoiceMeUpMMSAggregator
from providers.voicemeup.webhook import parse_voicemeup_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["VoiceMeUpSMSProvider"]

logger = logging.getLogger("roomkit.providers.voicemeup")

_SUCCESS = frozenset({"success", "ok"})
_ID_KEYS = ("sms_id", "message_id", "id", "sms_hash")


def voicemeup_error(body: Any) -> tuple[str | None, str | None]:
    """VoiceMeUp's ``(code, message)`` from a response body.

    Errors come as ``{"response_status": "error", "response_messages": ...}`` where the
    messages are a list or a mapping of ``{"code", "message"}`` objects or plain strings.
    """
    if not isinstance(body, dict):
        return None, None
    messages = body.get("response_messages")
    if isinstance(messages, dict):
        messages = list(messages.values())
    first = messages[0] if isinstance(messages, list) and messages else None
    if isinstance(first, list) and first:
        first = first[0]
    if isinstance(first, dict):
        return code_and_message(first.get("code"), first.get("message") or first.get("text"))
    if isinstance(first, str):
        return None, first
    return None, None


_ERRORS = body_error_parser(voicemeup_error)


def _message_id(body: Any) -> str | None:
    """The queued message's id, wherever VoiceMeUp put it (top level or one level down)."""
    if not isinstance(body, dict):
        return None
    candidates = [body, *(value for value in body.values() if isinstance(value, dict))]
    for candidate in candidates:
        for key in _ID_KEYS:
            value = candidate.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return str(value)
    return None


def _digits(number: str) -> str:
    """VoiceMeUp takes numbers as digits (``+15145550100`` → ``15145550100``)."""
    return number[1:] if number.startswith("+") else number


class VoiceMeUpSMSProvider(VendorProvider[VoiceMeUpConfig], SMSProvider):
    """Sends SMS / MMS through VoiceMeUp and reads its webhooks.

    ``POST {root}/api/v1.1/json/queue_sms``, form data: ``username``, ``auth_token``,
    ``source_number``, ``destination_number``, ``message`` and, for MMS, ``attachment_url``.
    Credentials go in the form body (never the URL). A text longer than
    ``config.max_message_length`` is sent as several messages cut between words. Each
    attachment is its own message; a text that fits in one message goes with the first
    attachment, a longer one is sent before the attachments.

    Args:
        config: Credentials, sender and host.
        client: An ``httpx.AsyncClient`` to use (the caller keeps ownership); when None, one is
            created and :meth:`close` closes it.
        aggregator: Where MMS parts of inbound webhooks wait for each other (see
            :mod:`providers.voicemeup.mms`); a new one, private to this provider, when None.

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self,
        config: VoiceMeUpConfig,
        *,
        client: httpx.AsyncClient | None = None,
        aggregator: VoiceMeUpMMSAggregator | None = None,
    ) -> None:
        super().__init__(
            config,
            client=client,
            code_prefix="voicemeup",
            secrets=[config.auth_token],
            logger=logger,
        )
        self.aggregator = aggregator if aggregator is not None else VoiceMeUpMMSAggregator()

    def __repr__(self) -> str:
        return f"VoiceMeUpSMSProvider(username={self._config.username!r})"

    @property
    def from_number(self) -> str:
        """The default sender number."""
        return self._config.from_number

    async def send(self, event: RoomEvent, to: str, from_: str | None = None) -> ProviderResult:
        """Send ``event``'s text (split when long) and attachments, one ``queue_sms`` each.

        Stops at the first failure.

        Returns:
            ``success=True`` with the first message's id (all ids in
            ``metadata["message_ids"]``, the count in ``metadata["parts"]``), or
            ``success=False`` with ``error`` one of ``"empty_message"``,
            ``"missing_recipient"``, ``"timeout"``, ``"network_error"``, ``"auth_error"``,
            ``"rate_limit"``, ``"voicemeup_<code>"``,
            ``"voicemeup_error"`` (an error answer without a code) or ``"http_<status>"``;
            ``metadata["message_ids"]`` then lists the parts already queued.
        """
        message = render_outbound(event.content)
        if (refused := refusal(message, to, ProviderResult)) is not None:
            return refused
        config = self._config
        texts = split_text(message.text, config.max_message_length) if message.text else []
        urls = [item.url for item in message.media]
        requests: list[tuple[str, str | None]]
        if len(texts) == 1 and urls:
            # A short text rides with the first attachment, as its caption.
            requests = [(texts[0], urls[0]), *(("", url) for url in urls[1:])]
        else:
            requests = [*((text, None) for text in texts), *(("", url) for url in urls)]
        sender, recipient = _digits(from_ or config.from_number), _digits(to)
        ids: list[str] = []
        for text, media_url in requests:
            form = {
                "username": config.username,
                "auth_token": config.auth_token.get_secret_value(),
                "source_number": sender,
                "destination_number": recipient,
                "message": text,
            }
            if media_url:
                form["attachment_url"] = media_url
            outcome = await self._queue(form)
            if isinstance(outcome, HTTPFailure):
                return outcome.to_result(
                    ProviderResult, metadata={"message_ids": ids, "parts": len(requests)}
                )
            ids.append(outcome)
        logger.debug("voicemeup queued %d message(s)", len(ids))
        return ProviderResult(
            success=True,
            provider_message_id=ids[0] or None,
            metadata={"message_ids": ids, "parts": len(ids)},
        )

    async def _queue(self, form: dict[str, str]) -> str | HTTPFailure:
        """One ``queue_sms`` call; the message id ("" when VoiceMeUp gave none)."""
        outcome = await self._http.request(
            "POST", self._config.queue_sms_url, data=form, error_parser=_ERRORS
        )
        if isinstance(outcome, HTTPFailure):
            return outcome
        body = response_json(outcome)
        status = body.get("response_status") if isinstance(body, dict) else None
        if isinstance(status, str) and status.lower() not in _SUCCESS:
            # VoiceMeUp reports request errors in a 200 answer.
            code, text = voicemeup_error(body)
            failure = self._http.answer_failure(
                outcome,
                text or status,
                error=f"voicemeup_{code}" if code else "voicemeup_error",
                vendor_code=code,
            )
            logger.warning("voicemeup refused a message: %s (%s)", failure.error, failure.message)
            return failure
        return _message_id(body) or ""

    async def parse_webhook(  # type: ignore[override]
        self, payload: dict[str, Any], channel_id: str
    ) -> InboundMessage | None:
        """Turn an inbound webhook into an :class:`InboundMessage`, merging MMS parts with
        this provider's :attr:`aggregator`.

        Returns:
            The message, or None while an MMS attachment waits for its text.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_voicemeup_webhook(payload, channel_id, aggregator=self.aggregator)
