"""VoiceMeUp SMS / MMS over its JSON API (``queue_sms``), with httpx."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from providers._base import inbound_channel_id
from providers._http import HTTPFailure, accepted_id, code_and_message, response_json
from providers._vendor import VendorProvider
from providers.sms._errors import SMSErrorStyle, sms_error_parser
from providers.sms._outbound import refusal, render_outbound, split_text
from providers.sms.base import SMSProvider
from providers.voicemeup.config import VoiceMeUpConfig
from providers.voicemeup.mms import VoiceMeUpMMSAggregator, configure_voicemeup_mms
from providers.voicemeup.webhook import parse_voicemeup_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    import httpx

# configure_voicemeup_mms: importable from here too, where RoomKit 0.3.0 defined it.
__all__ = ["VoiceMeUpSMSProvider", "configure_voicemeup_mms"]

logger = logging.getLogger("roomkit.providers.voicemeup")

# 0.3.0 took any other status word for a success: a 2xx answer is not retried on a guess.
_FAILURE = frozenset({"error", "failure", "failed"})
_ID_KEYS = ("sms_id", "message_id", "id", "sms_hash")


def _details(body: Any) -> dict[str, Any]:
    """The part of an answer holding its status: ``response_details`` (VoiceMeUp's JSON API:
    ``{"response_details": {"response_status", "response_messages": {"message": [...]}}}``),
    or the answer itself when it is flat."""
    if not isinstance(body, dict):
        return {}
    details = body.get("response_details")
    return details if isinstance(details, dict) else body


def _messages(details: dict[str, Any]) -> list[Any]:
    """The ``response_messages`` of an answer as a list: VoiceMeUp sends one message as an
    object and several as a list, under ``message``."""
    messages = details.get("response_messages")
    if isinstance(messages, dict):
        messages = messages["message"] if "message" in messages else list(messages.values())
    if isinstance(messages, dict):
        return [messages]
    return messages if isinstance(messages, list) else []


def voicemeup_error(body: Any) -> tuple[str | None, str | None]:
    """VoiceMeUp's ``(code, message)`` from an answer: its first response message's ``code`` and
    ``_content`` (a message may also be a bare string)."""
    messages = _messages(_details(body))
    first = messages[0] if messages else None
    if isinstance(first, list) and first:
        first = first[0]
    if isinstance(first, dict):
        text = first.get("_content") or first.get("message") or first.get("text")
        return code_and_message(first.get("code"), text)
    if isinstance(first, str):
        return None, first
    return None, None


# 0.3.0 named every failed VoiceMeUp answer by its status (http_401, http_429, ...).
_ERRORS = sms_error_parser(voicemeup_error, "voicemeup", SMSErrorStyle.STATUS)


def _message_id(body: Any) -> str | None:
    """The queued message's id: the ``_content`` of the ``queued_sms_hash`` response message
    (as 0.3.0 read it), else an id field at the top level or one level down."""
    details = _details(body)
    for message in _messages(details):
        if isinstance(message, dict) and message.get("code") == "queued_sms_hash":
            value = message.get("_content")
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return str(value)
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
    ``source_number``, ``destination_number``, ``message`` and, for MMS, ``attachment`` (the
    media's URL: the field RoomKit 0.3.0 sent).
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
            ``success=True`` with the first message's id (its ``queued_sms_hash``; all ids in
            ``metadata["message_ids"]``, the count in ``metadata["parts"]``), or
            ``success=False`` with ``error`` one of ``"empty_message"``,
            ``"missing_recipient"``, ``"timeout"``, ``"http_<status>"`` (any non-2xx answer,
            401 and 429 included), VoiceMeUp's own code when its answer says
            ``response_status: "error"`` (``"invalid_destination"``; ``"unknown_error"``
            without one; its text in ``metadata["description"]``), or the text of a failed
            connection, as in RoomKit 0.3.0; ``metadata["message_ids"]`` then lists the parts
            already queued (if any, ``metadata["retryable"]`` is False: the kit does not send
            them again).
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
            }
            if text or not media_url:  # an attachment without a caption goes without one
                form["message"] = text
            if media_url:
                form["attachment"] = media_url
            outcome = await self._queue(form)
            if isinstance(outcome, HTTPFailure):
                metadata: dict[str, Any] = {"message_ids": ids, "parts": len(requests)}
                if ids:  # parts went out: sent again whole, the recipient got them twice
                    metadata["retryable"] = False
                if outcome.status_code is not None and 200 <= outcome.status_code < 300:
                    # 0.3.0's key for the text of an error answered with HTTP 200.
                    metadata["description"] = outcome.message
                return outcome.to_result(ProviderResult, metadata=metadata)
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
            return self._http.transport_error_as_text(outcome)
        body = response_json(outcome)
        status = _details(body).get("response_status")
        if isinstance(status, str) and status.lower() in _FAILURE:
            # VoiceMeUp reports request errors in a 200 answer; 0.3.0 gave its code as is.
            code, text = voicemeup_error(body)
            code = code or "unknown_error"
            failure = self._http.answer_failure(
                outcome, text or code, error=code, vendor_code=code
            )
            logger.warning("voicemeup refused a message: %s (%s)", failure.error, failure.message)
            return failure
        return accepted_id("voicemeup", _message_id(body), outcome.status_code) or ""

    async def parse_webhook(  # type: ignore[override]
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage | None:
        """Turn an inbound webhook into an :class:`InboundMessage`, merging MMS parts with
        this provider's :attr:`aggregator`.

        Returns:
            The message, or None while an MMS attachment waits for its text.

        Raises:
            ValueError: ``payload`` is not an inbound message.
        """
        return parse_voicemeup_webhook(
            payload, inbound_channel_id(self, channel_id), aggregator=self.aggregator
        )
