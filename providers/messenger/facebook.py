"""Facebook Messenger over the Graph API Send API (``POST /{version}/me/messages``).

The page access token travels in an ``Authorization: Bearer`` header rather than the documented
``access_token`` query parameter: both are accepted by the Graph API, and a header never shows up
in URLs that httpx and proxies log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr

from providers._http import ErrorDetail, response_json
from providers._meta import GraphProvider, graph_error_parser
from providers.http._render import Unsendable, content_text, public_url, rich_buttons, rich_text
from providers.messenger.base import MessengerProvider
from providers.messenger.facebook_webhook import parse_messenger_webhook
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    SystemContent,
    TemplateContent,
    TextContent,
    VideoContent,
)

if TYPE_CHECKING:
    import httpx

    from roomkit.models.event import RoomEvent

__all__ = ["FacebookMessengerProvider", "MessengerConfig"]

logger = logging.getLogger("roomkit.providers.messenger")

MAX_BUTTONS = 3  # button template limit
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_BUTTON_TITLE = 20  # the button template's title limit, as for quick replies
MAX_BUTTON_TEXT = 640  # the button template's text limit


class MessengerConfig(BaseModel):
    """Settings of :class:`FacebookMessengerProvider`.

    Attributes:
        page_access_token: Page access token (kept secret in reprs and logs).
        app_secret: App secret, to check ``X-Hub-Signature-256`` on webhooks.
        verify_token: Token you chose for the webhook subscription handshake.
        api_version: Graph API version.
        base_url: Graph API root, without a trailing slash.
        messaging_type: ``RESPONSE`` (reply within 24 h), ``UPDATE`` or ``MESSAGE_TAG``.
        timeout: Seconds before a request times out.
    """

    page_access_token: SecretStr
    # Not empty: an empty app secret or verify token would let anyone forge webhooks.
    app_secret: SecretStr | None = Field(default=None, min_length=1)
    verify_token: SecretStr | None = Field(default=None, min_length=1)
    api_version: str = "v21.0"
    base_url: str = "https://graph.facebook.com"
    messaging_type: str = "RESPONSE"
    timeout: float = Field(default=30.0, gt=0)  # 0.3.0's default


def _attachment(kind: str, url: str) -> dict[str, Any]:
    # Graph fetches attachments by URL; a data: URL would need the Attachment Upload API.
    return {"attachment": {"type": kind, "payload": {"url": public_url(url)}}}


def _media_kind(mime_type: str) -> str:
    major = mime_type.partition("/")[0]
    return major if major in ("image", "video", "audio") else "file"


def _rich_message(content: RichContent) -> dict[str, Any]:
    text = rich_text(content)
    buttons = rich_buttons(content.buttons)
    message: dict[str, Any]
    if buttons:
        if not text.strip():
            # The template's text is required: sent empty, the message was reported sent
            # (WhatsApp refuses the same content up front, as done here).
            raise Unsendable("empty_message")
        if len(buttons) > MAX_BUTTONS:
            logger.info("messenger shows at most %d buttons; dropping the rest", MAX_BUTTONS)
        message = {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": text[:MAX_BUTTON_TEXT],
                    "buttons": [
                        # Titles cut as quick replies' are: they were sent whole, past
                        # Meta's limit.
                        {"type": "web_url", "url": b.url, "title": b.title[:MAX_BUTTON_TITLE]}
                        if b.url
                        else {
                            "type": "postback",
                            "title": b.title[:MAX_BUTTON_TITLE],
                            "payload": b.payload,
                        }
                        for b in buttons[:MAX_BUTTONS]
                    ],
                },
            }
        }
    else:
        if not text.strip():
            raise Unsendable("empty_message")
        message = {"text": text}
    if content.quick_replies:
        message["quick_replies"] = [
            {"content_type": "text", "title": reply[:MAX_QUICK_REPLY_TITLE], "payload": reply}
            for reply in content.quick_replies[:MAX_QUICK_REPLIES]
        ]
    return message


def _messenger_messages(content: EventContent) -> list[dict[str, Any]]:
    """The Send API ``message`` objects for ``content``, in sending order.

    Rich content with buttons becomes a button template, quick replies become
    ``quick_replies``; media become attachments (a caption follows as a text message, since
    Messenger attachments have none); composites send each part.

    Raises:
        Unsendable: Nothing to send, or content Messenger cannot express.
    """
    if isinstance(content, TextContent | SystemContent):
        if not content.body.strip():
            raise Unsendable("empty_message")
        return [{"text": content.body}]
    if isinstance(content, RichContent):
        return [_rich_message(content)]
    if isinstance(content, MediaContent):
        messages = [_attachment(_media_kind(content.mime_type), content.url)]
        if content.caption:
            messages.append({"text": content.caption})
        return messages
    if isinstance(content, AudioContent):
        return [_attachment("audio", content.url)]
    if isinstance(content, VideoContent):
        return [_attachment("video", content.url)]
    if isinstance(content, LocationContent | TemplateContent):
        # Messenger templates are not WhatsApp-style approved templates: send their text.
        text = content_text(content)
        if not text.strip():
            raise Unsendable("empty_message")
        return [{"text": text}]
    if isinstance(content, CompositeContent):
        combined: list[dict[str, Any]] = []
        for part in content.parts:
            try:
                combined.extend(_messenger_messages(part))
            except Unsendable as exc:
                if exc.code != "empty_message":
                    raise
        if not combined:
            raise Unsendable("empty_message")
        return combined
    raise Unsendable("unsupported_content")  # pragma: no cover - the union is exhaustive


_graph_detail = graph_error_parser("messenger")


def _messenger_error(response: httpx.Response) -> ErrorDetail:
    """The error of a non-2xx Send API answer, coded as 0.3.0 coded it.

    ``graph_<code>`` when the body is a JSON object whose ``error`` object gives a code,
    ``graph_<HTTP status>`` when it gives none (or the body has no ``error``), ``http_<HTTP
    status>`` when the body is not such JSON: apps written for 0.3.0 branch on these strings
    (``graph_190``: renew the page token). Throttling codes and ``is_transient`` still make the
    failure retryable, as Graph's ``Retry-After`` header still sets ``retry_after``.
    """
    detail = _graph_detail(response)
    status = response.status_code
    body = response_json(response)
    error = body.get("error", {}) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        code = f"http_{status}"
    else:
        raw = error.get("code")
        valid = isinstance(raw, int | str) and not isinstance(raw, bool) and raw != ""
        code = f"graph_{raw if valid else status}"
    return ErrorDetail(
        message=detail.message,
        vendor_code=detail.vendor_code,
        code=code,
        retryable=detail.retryable or detail.code == "rate_limit",
        retry_after=detail.retry_after,
    )


def _message_id(body: Any) -> str | None:
    message_id = body.get("message_id") if isinstance(body, dict) else None
    return message_id if isinstance(message_id, str) else None


class FacebookMessengerProvider(GraphProvider[MessengerConfig], MessengerProvider):
    """Sends Messenger messages from a Facebook page.

    Args:
        config: Page token, app secret and API settings.
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self, config: MessengerConfig, *, client: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__(
            config,
            client=client,
            token=config.page_access_token,
            code_prefix="messenger",
            logger=logger,
        )
        self._url = f"{config.base_url}/{config.api_version}/me/messages"
        self._errors = _messenger_error

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content to the page-scoped user id ``to``.

        Content that needs several Send API calls (media with a caption, composites) is sent in
        order and stops at the first failure.

        Returns:
            ``provider_message_id`` = the first message's ``message_id`` (all ids in
            ``metadata["message_ids"]``); failures as ``success=False`` with 0.3.0's error
            codes (``graph_<Graph code>``, else ``graph_<status>`` or ``http_<status>``, see
            :func:`_messenger_error`; ``timeout``) or ours (``network_error``, ...).
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        try:
            messages = _messenger_messages(event.content)
        except Unsendable as exc:
            return ProviderResult(success=False, error=exc.code)
        payloads = (
            {"recipient": {"id": to}, "messaging_type": self._config.messaging_type, "message": m}
            for m in messages
        )
        return await self._post_all(self._url, payloads, _message_id)

    def parse_webhook(self, payload: Any, channel_id: str) -> list[InboundMessage]:
        """Same as :func:`parse_messenger_webhook`."""
        return parse_messenger_webhook(payload, channel_id)
