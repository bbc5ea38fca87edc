"""WhatsApp Business through Meta's Cloud API (``POST /{version}/{phone_number_id}/messages``).

Every message is ``{"messaging_product": "whatsapp", "recipient_type": "individual", "to",
"type", <type>: {...}}`` with an ``Authorization: Bearer`` system-user or app token; the answer
is ``{"contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}``. Errors are Graph
errors (``{"error": {"code", "message", ...}}``): 190 means a bad token, 130429 / 131056 / 80007
throttling, others become ``whatsapp_<code>``.

Free-form messages are only delivered within 24 hours of the user's last message; outside that
window Meta requires a template (:class:`~roomkit.models.event.TemplateContent` or
:meth:`WhatsAppCloudProvider.send_template`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr

from providers._base import inbound_channel_id
from providers._http import HTTPFailure, response_json
from providers._meta import GraphProvider
from providers.errors import ProviderError
from providers.http._render import Unsendable, content_text, public_url, rich_buttons, rich_text
from providers.whatsapp.base import WhatsAppProvider
from providers.whatsapp.cloud_webhook import media_path, parse_whatsapp_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    TemplateContent,
    VideoContent,
)

if TYPE_CHECKING:
    import httpx

    from roomkit.models.event import RoomEvent

__all__ = ["WhatsAppCloudConfig", "WhatsAppCloudProvider"]

logger = logging.getLogger("roomkit.providers.whatsapp")

MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_INTERACTIVE_BODY = 1024


class WhatsAppCloudConfig(BaseModel):
    """Settings of :class:`WhatsAppCloudProvider`.

    Attributes:
        access_token: System-user or app access token (kept secret in reprs and logs).
        phone_number_id: The business phone number's id (not the number itself).
        app_secret: App secret, to check ``X-Hub-Signature-256`` on webhooks.
        verify_token: Token you chose for the webhook subscription handshake.
        api_version: Graph API version.
        base_url: Graph API root, without a trailing slash.
        template_language: Language code for :meth:`WhatsAppCloudProvider.send_template`.
        preview_url: Let WhatsApp render link previews in text messages.
        timeout: Seconds before a request times out.
    """

    access_token: SecretStr
    phone_number_id: str
    # Not empty: an empty app secret or verify token would let anyone forge webhooks.
    app_secret: SecretStr | None = Field(default=None, min_length=1)
    verify_token: SecretStr | None = Field(default=None, min_length=1)
    api_version: str = "v21.0"
    base_url: str = "https://graph.facebook.com"
    template_language: str = "en_US"
    preview_url: bool = False
    timeout: float = Field(default=10.0, gt=0)


def _text(body: str, preview_url: bool) -> dict[str, Any]:
    if not body.strip():
        raise Unsendable("empty_message")
    return {"type": "text", "text": {"body": body, "preview_url": preview_url}}


def _media(content: MediaContent | AudioContent | VideoContent) -> dict[str, Any]:
    # The Cloud API fetches media by link; data: URLs would need the media upload API.
    if isinstance(content, AudioContent):
        return {"type": "audio", "audio": {"link": public_url(content.url)}}
    if isinstance(content, VideoContent):
        return {"type": "video", "video": {"link": public_url(content.url)}}
    major = content.mime_type.partition("/")[0]
    kind = major if major in ("image", "video", "audio") else "document"
    media: dict[str, Any] = {"link": public_url(content.url)}
    if content.caption and kind != "audio":  # audio messages have no caption
        media["caption"] = content.caption
    if kind == "document" and content.filename:
        media["filename"] = content.filename
    return {"type": kind, kind: media}


def _rich(content: RichContent, preview_url: bool) -> dict[str, Any]:
    text = rich_text(content)
    buttons = rich_buttons(content.buttons)
    # Reply buttons carry an id back; URL buttons cannot be reply buttons, so they become links.
    links = [f"{b.title}: {b.url}" for b in buttons if b.url]
    replies = [(b.payload, b.title) for b in buttons if not b.url]
    replies += [(r, r) for r in content.quick_replies]
    body = "\n".join([text, *links]) if links else text
    if not replies:
        return _text(body, preview_url)
    if not body.strip():
        raise Unsendable("empty_message")  # an interactive message needs a body
    if len(replies) > MAX_REPLY_BUTTONS:
        logger.info(
            "whatsapp shows at most %d reply buttons; dropping the rest", MAX_REPLY_BUTTONS
        )
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body[:MAX_INTERACTIVE_BODY]},
            "action": {
                "buttons": [
                    {
                        "type": "reply",
                        "reply": {"id": rid[:256], "title": title[:MAX_BUTTON_TITLE]},
                    }
                    for rid, title in replies[:MAX_REPLY_BUTTONS]
                ]
            },
        },
    }


def template_message(
    name: str, language: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ``template`` message; digit keys (``"1"``, ``"2"``) are positional body parameters in
    numeric order, other keys named parameters (``parameter_name``)."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        if all(key.isdigit() for key in parameters):
            ordered = sorted(parameters.items(), key=lambda item: int(item[0]))
            params = [{"type": "text", "text": value} for _, value in ordered]
        else:
            params = [
                {"type": "text", "parameter_name": key, "text": value}
                for key, value in parameters.items()
            ]
        template["components"] = [{"type": "body", "parameters": params}]
    return {"type": "template", "template": template}


def _whatsapp_messages(
    content: EventContent, *, preview_url: bool = False
) -> list[dict[str, Any]]:
    """The Cloud API message bodies (without ``messaging_product`` / ``to``) for ``content``.

    Raises:
        Unsendable: Nothing to send, or media without an http(s) URL.
    """
    if isinstance(content, RichContent):
        return [_rich(content, preview_url)]
    if isinstance(content, MediaContent | AudioContent | VideoContent):
        return [_media(content)]
    if isinstance(content, LocationContent):
        location: dict[str, Any] = {
            "latitude": content.latitude,
            "longitude": content.longitude,
        }
        if content.label:
            location["name"] = content.label
        if content.address:
            location["address"] = content.address
        return [{"type": "location", "location": location}]
    if isinstance(content, TemplateContent):
        return [template_message(content.template_id, content.language, content.parameters)]
    if isinstance(content, CompositeContent):
        messages: list[dict[str, Any]] = []
        for part in content.parts:
            try:
                messages.extend(_whatsapp_messages(part, preview_url=preview_url))
            except Unsendable as exc:
                if exc.code != "empty_message":
                    raise
        if not messages:
            raise Unsendable("empty_message")
        return messages
    return [_text(content_text(content), preview_url)]


def _recipient(to: str) -> str:
    """The Cloud API's ``to``: the number's digits (``+1 (631) 555-1181`` → ``16315551181``)."""
    digits = "".join(ch for ch in to if ch.isdigit())
    return digits or to


def _message_id(body: Any) -> str | None:
    sent = body.get("messages") if isinstance(body, dict) else None
    first = sent[0] if isinstance(sent, list) and sent else None
    message_id = first.get("id") if isinstance(first, dict) else None
    return message_id if isinstance(message_id, str) else None


class WhatsAppCloudProvider(GraphProvider[WhatsAppCloudConfig], WhatsAppProvider):
    """Sends WhatsApp Business messages through the Cloud API.

    Args:
        config: Token, phone number id and API settings.
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self, config: WhatsAppCloudConfig, *, client: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__(
            config, client=client, token=config.access_token, code_prefix="whatsapp", logger=logger
        )
        self._graph_url = f"{config.base_url}/{config.api_version}"
        self._messages_url = f"{self._graph_url}/{config.phone_number_id}/messages"

    async def _post(self, to: str, messages: list[dict[str, Any]]) -> ProviderResult:
        """Send ``messages`` to ``to`` in order, stopping at the first failure."""
        envelope = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        payloads = ({**envelope, "to": _recipient(to), **m} for m in messages)
        return await self._post_all(self._messages_url, payloads, _message_id)

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content to the WhatsApp number ``to``.

        Text, rich content (reply buttons when it has buttons or quick replies), media by link
        (image, video, audio, document), location and templates map to their message types;
        composites send each part in order.

        Returns:
            ``provider_message_id`` = the first ``wamid`` (all in ``metadata["message_ids"]``);
            failures as ``success=False`` with ``auth_error``, ``rate_limit``,
            ``whatsapp_<code>``, ``http_<status>``, ``timeout``, ``empty_message``, ...
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        try:
            messages = _whatsapp_messages(event.content, preview_url=self._config.preview_url)
        except Unsendable as exc:
            return ProviderResult(success=False, error=exc.code)
        return await self._post(to, messages)

    async def send_template(
        self, to: str, template_name: str, params: dict[str, str] | None = None
    ) -> ProviderResult:
        """Send the approved template ``template_name`` in ``config.template_language``."""
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        message = template_message(template_name, self._config.template_language, params)
        return await self._post(to, [message])

    async def send_reaction(
        self, chat: str, sender: str, message_id: str, emoji: str
    ) -> ProviderResult:
        """React to ``message_id`` in the chat with number ``chat`` (``""`` removes it).

        ``sender`` is unused: the Cloud API reacts as the business number.
        """
        reaction = {"type": "reaction", "reaction": {"message_id": message_id, "emoji": emoji}}
        return await self._post(chat, [reaction])

    async def mark_read(self, message_id: str) -> ProviderResult:
        """Mark an inbound message (and earlier ones) as read (blue ticks)."""
        payload = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        outcome = await self._graph("POST", self._messages_url, json=payload)
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        return ProviderResult(success=True, provider_message_id=message_id)

    async def get_media_url(self, media_id: str) -> str:
        """The short-lived download URL of an inbound media id (fetch it with the token too).

        Raises:
            ProviderError: The lookup failed (a ``VendorAPIError`` with its error code).
        """
        outcome = await self._graph("GET", f"{self._graph_url}/{media_path(media_id)}")
        if isinstance(outcome, HTTPFailure):
            raise outcome.to_error()
        body = response_json(outcome)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError("WhatsApp media lookup returned no url", provider=self.name)
        return url

    async def parse_webhook(
        self, payload: dict[str, Any], channel_id: str | None = None
    ) -> InboundMessage:
        """The first inbound message of a webhook body (see :func:`parse_whatsapp_webhook`).

        The :class:`WhatsAppProvider` contract (0.3.0's) returns one message, but Meta batches
        several in one webhook under load: the others are dropped here, with a warning. Use
        :func:`parse_whatsapp_webhook` (all messages, in order) to keep them.

        Raises:
            ProviderError: The payload is not an object or carries no inbound message.
        """
        messages = parse_whatsapp_webhook(
            payload, inbound_channel_id(self, channel_id), media_base_url=self._graph_url
        )
        if not messages:
            raise ProviderError("WhatsApp webhook carries no inbound message", provider=self.name)
        if len(messages) > 1:
            logger.warning(
                "whatsapp webhook batched %d messages; parse_webhook returns the first and "
                "drops %d: use parse_whatsapp_webhook to process them all",
                len(messages),
                len(messages) - 1,
            )
        return messages[0]
