"""Microsoft Teams through the Bot Framework Connector REST API, called directly with httpx.

Two endpoints matter:

- the Microsoft identity platform token endpoint,
  ``POST {login}/{tenant}/oauth2/v2.0/token`` (form: ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``, ``scope=https://api.botframework.com/.default``), whose
  bearer token is cached until shortly before ``expires_in`` runs out;
- the Bot Connector of the conversation's region, ``POST {serviceUrl}/v3/conversations/{id}/
  activities`` to send, ``POST {serviceUrl}/v3/conversations`` to start a channel thread.

The ``serviceUrl`` of a conversation comes with the activities Teams posts to the bot, so the
provider sends only to conversations whose reference was saved
(:meth:`BotFrameworkTeamsProvider.save_conversation_reference`). Since the bot's token is sent to
that URL, verify incoming activities (:func:`providers.teams.auth.verify_teams_jwt` with
``service_url=``) before saving their reference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
from pydantic import BaseModel, Field, SecretStr

from providers._http import ErrorDetail, HTTPFailure, VendorAPIError, bearer, response_json
from providers._vendor import VendorProvider
from providers.errors import ProviderError
from providers.http._render import (
    Unsendable,
    content_text,
    public_url,
    rich_buttons,
    rich_text,
)
from providers.teams.activity import conversation_reference_from_activity
from providers.teams.auth import verify_teams_jwt
from providers.teams.base import TeamsProvider
from providers.teams.references import (
    ConversationReferenceStore,
    InMemoryConversationReferenceStore,
)
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    MediaContent,
    RichContent,
    TextContent,
    VideoContent,
)

if TYPE_CHECKING:
    import httpx

    from roomkit.models.event import RoomEvent

__all__ = ["BotFrameworkTeamsProvider", "TeamsConfig"]

logger = logging.getLogger("roomkit.providers.teams")

_HERO_CARD = "application/vnd.microsoft.card.hero"
_ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
# Refresh a token this long before it expires, so a send never races the expiry.
_TOKEN_MARGIN = 300.0
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class TeamsConfig(BaseModel):
    """Settings of :class:`BotFrameworkTeamsProvider`.

    Attributes:
        app_id: The bot's Microsoft app (client) id.
        app_password: The app's client secret (kept secret in reprs and logs).
        tenant_id: Token tenant: the bot's Entra ID tenant id for a single-tenant bot. The
            default, ``"common"`` as in 0.3.0, means a multi-tenant bot, whose tokens come
            from the ``botframework.com`` tenant (0.3.0 left the tenant to the SDK then).
        login_url: Microsoft identity platform root, without a trailing slash.
        scope: OAuth scope of Bot Connector tokens.
        timeout: Seconds before a request times out.
    """

    app_id: str
    app_password: SecretStr
    tenant_id: str = "common"
    login_url: str = "https://login.microsoftonline.com"
    scope: str = "https://api.botframework.com/.default"
    timeout: float = Field(default=10.0, gt=0)


def _token_tenant(tenant_id: str) -> str:
    """The tenant that issues the bot's tokens: ``common`` (0.3.0's default) stands for a
    multi-tenant bot, whose tokens the ``botframework.com`` tenant issues (a client-credentials
    token is asked of a named tenant)."""
    return "botframework.com" if tenant_id == "common" else tenant_id


def _card_attachment(card: Mapping[str, Any]) -> dict[str, Any]:
    """A ``RichContent.cards`` entry as an attachment: as is when it names its content type."""
    if "contentType" in card:
        return dict(card)
    if card.get("type") == "AdaptiveCard":
        return {"contentType": _ADAPTIVE_CARD, "content": dict(card)}
    return {"contentType": _HERO_CARD, "content": dict(card)}


def _collect(
    content: EventContent, texts: list[str], attachments: list[dict[str, Any]]
) -> dict[str, Any]:
    """Add ``content``'s text and attachments; return activity fields it sets (format, actions)."""
    extra: dict[str, Any] = {}
    if isinstance(content, RichContent):
        texts.append(content.body if content.format == "html" else rich_text(content))
        extra["textFormat"] = "xml" if content.format == "html" else "markdown"
        buttons = rich_buttons(content.buttons)
        if buttons:
            actions = [
                {"type": "openUrl", "title": b.title, "value": b.url}
                if b.url
                else {"type": "imBack", "title": b.title, "value": b.payload}
                for b in buttons
            ]
            attachments.append({"contentType": _HERO_CARD, "content": {"buttons": actions}})
        attachments.extend(_card_attachment(c) for c in content.cards)
        if content.quick_replies:
            extra["suggestedActions"] = {
                "actions": [
                    {"type": "imBack", "title": r, "value": r} for r in content.quick_replies
                ]
            }
    elif isinstance(content, MediaContent | AudioContent | VideoContent):
        attachment = {"contentType": content.mime_type, "contentUrl": public_url(content.url)}
        if isinstance(content, MediaContent):
            if content.filename:
                attachment["name"] = content.filename
            if content.caption:
                texts.append(content.caption)
        attachments.append(attachment)
    elif isinstance(content, CompositeContent):
        for part in content.parts:
            extra.update(_collect(part, texts, attachments))
    else:
        texts.append(content.body if isinstance(content, TextContent) else content_text(content))
    return extra


def _teams_activity(content: EventContent, conversation_id: str) -> dict[str, Any]:
    """The message activity for ``content`` (without ``from``, which comes from the reference).

    Text is sent with ``textFormat`` ``plain``; Markdown rich content as ``markdown``, HTML as
    ``xml``; buttons become a hero card, ``cards`` attachments (adaptive when they say so),
    quick replies ``suggestedActions``; media become attachments with a ``contentUrl``.

    Raises:
        Unsendable: Nothing to send, or media without an http(s) URL.
    """
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    extra = _collect(content, texts, attachments)
    text = "\n\n".join(t for t in texts if t.strip())
    if not text and not attachments:
        raise Unsendable("empty_message")
    activity: dict[str, Any] = {
        "type": "message",
        "conversation": {"id": conversation_id},
        "textFormat": "plain",
    }
    activity.update(extra)
    if text:
        activity["text"] = text
    if attachments:
        activity["attachments"] = attachments
    return activity


def _token_error(response: httpx.Response) -> ErrorDetail:
    body = response_json(response)
    error = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    # The identity platform answers 400 (not 401) for a wrong client id or secret.
    code = "auth_error" if response.status_code in (400, 401, 403) else None
    return ErrorDetail(
        message=description.split("\r\n")[0] if isinstance(description, str) else "",
        vendor_code=error if isinstance(error, str) else None,
        code=code,
    )


def _connector_error(response: httpx.Response) -> ErrorDetail:
    body = response_json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ErrorDetail()
    code, message = error.get("code"), error.get("message")
    return ErrorDetail(
        message=message if isinstance(message, str) else "",
        vendor_code=code if isinstance(code, str) else None,
    )


def _valid_service_url(url: Any) -> bool:
    """https, or http on loopback (the Bot Framework Emulator); anything else is refused
    because the bot's bearer token is sent there."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


class BotFrameworkTeamsProvider(VendorProvider[TeamsConfig], TeamsProvider):
    """Sends Teams messages as a Bot Framework bot.

    Args:
        config: The bot's app credentials.
        conversation_store: Where conversation references live (in memory by default).
        client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by
            :meth:`close`).
        clock: Monotonic clock in seconds for the token cache (tests pass a fake one).

    Raises:
        ImportError: httpx is not installed.
    """

    def __init__(
        self,
        config: TeamsConfig,
        *,
        conversation_store: ConversationReferenceStore | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, client=client, secrets=[config.app_password], logger=logger)
        self._store = conversation_store or InMemoryConversationReferenceStore()
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        # One refresh at a time: concurrent sends after expiry share a single token request.
        self._token_lock = anyio.Lock()

    @property
    def conversation_store(self) -> ConversationReferenceStore:
        """The store of conversation references."""
        return self._store

    async def get_token(self) -> str:
        """A Bot Connector bearer token, from the cache while it is fresh.

        Raises:
            VendorAPIError: The token request failed (``auth_error`` for bad credentials).
        """
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            cfg = self._config
            outcome = await self._http.request(
                "POST",
                f"{cfg.login_url}/{_token_tenant(cfg.tenant_id)}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": cfg.app_id,
                    "client_secret": cfg.app_password.get_secret_value(),
                    "scope": cfg.scope,
                },
                error_parser=_token_error,
            )
            if isinstance(outcome, HTTPFailure):
                raise outcome.to_error()
            body = response_json(outcome)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                failure = HTTPFailure(
                    "auth_error", "token response has no access_token", provider=self.name
                )
                raise failure.to_error()
            lifetime = body.get("expires_in", 3600) if isinstance(body, dict) else 3600
            try:
                seconds = float(lifetime)
            except (TypeError, ValueError):
                seconds = 3600.0
            self._token = token
            self._token_expires_at = self._clock() + max(seconds - _TOKEN_MARGIN, seconds / 2)
            logger.debug("fetched a bot connector token valid for %.0f s", seconds)
            return token

    def invalidate_token(self) -> None:
        """Drop the cached token (the next call fetches a new one)."""
        self._token = None
        self._token_expires_at = 0.0

    async def _connector_request(
        self, url: str, payload: dict[str, Any]
    ) -> httpx.Response | HTTPFailure:
        """POST ``payload`` to the Bot Connector; once more with a fresh token when the
        connector refuses the cached one (401: revoked or rotated), rather than failing a
        message whose cause is already mended.

        Raises:
            VendorAPIError: No token could be had.
        """
        for attempt in range(2):
            token = await self.get_token()
            outcome = await self._http.request(
                "POST", url, json=payload, headers=bearer(token), error_parser=_connector_error
            )
            if not isinstance(outcome, HTTPFailure) or outcome.status_code != 401:
                break
            if self._token == token:  # not already replaced by a concurrent send
                self.invalidate_token()
            if attempt == 0:
                logger.info("teams: the connector refused the cached token; fetching a new one")
        return outcome

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content to the Teams conversation ``to``.

        The conversation's reference must have been saved (it holds the ``serviceUrl``).

        Returns:
            ``provider_message_id`` = the new activity id; failures as ``success=False`` with
            ``conversation_reference_not_found``, ``invalid_service_url``, ``empty_message``,
            ``auth_error``, ``rate_limit``, ``http_<status>``, ``timeout``, ...
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        reference = await self._store.get(to)
        if reference is None:
            logger.warning("no conversation reference saved for a teams conversation")
            return ProviderResult(success=False, error="conversation_reference_not_found")
        service_url = reference.get("serviceUrl")
        if not isinstance(service_url, str) or not _valid_service_url(service_url):
            return ProviderResult(success=False, error="invalid_service_url")
        try:
            activity = _teams_activity(event.content, to)
        except Unsendable as exc:
            return ProviderResult(success=False, error=exc.code)
        if isinstance(reference.get("bot"), dict):
            activity["from"] = reference["bot"]
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(to, safe='')}/activities"
        try:
            outcome = await self._connector_request(url, activity)
        except VendorAPIError as exc:
            return exc.to_result()
        if isinstance(outcome, HTTPFailure):
            return outcome.to_result(ProviderResult)
        body = response_json(outcome)
        activity_id = body.get("id") if isinstance(body, dict) else None
        return ProviderResult(
            success=True,
            provider_message_id=activity_id if isinstance(activity_id, str) else None,
        )

    async def save_conversation_reference(self, activity_dict: dict[str, Any]) -> str:
        """Remember how to reach the conversation of an incoming activity.

        Args:
            activity_dict: The activity Teams posted (verify its JWT first); 0.3.0's name.

        Returns:
            The conversation id (use it as the binding's ``teams_conversation_id``).

        Raises:
            ProviderError: The activity lacks a conversation id or a usable ``serviceUrl``.
        """
        reference = conversation_reference_from_activity(activity_dict)
        if not _valid_service_url(reference["serviceUrl"]):
            raise ProviderError("Teams activity has an unusable serviceUrl", provider=self.name)
        conversation_id: str = reference["conversation"]["id"]
        await self._store.save(conversation_id, reference)
        return conversation_id

    async def create_channel_conversation(
        self,
        service_url: str,
        channel_id: str,
        text: str = "",
        *,
        tenant_id: str | None = None,
    ) -> str:
        """Start a new thread in a Teams channel by posting ``text``, and save its reference.

        Args:
            service_url: The Bot Connector URL of the team's region (from any activity of it).
            channel_id: The Teams channel id (``19:...@thread.tacv2``).
            text: The thread's first message; empty by default, as 0.3.0 posted it (a
                channel conversation starts with an activity).
            tenant_id: The team's tenant id; by default the config's ``tenant_id`` when it
                names one (a single-tenant bot), as in 0.3.0.

        Returns:
            The new conversation id (send further messages to it).

        Raises:
            ProviderError: ``service_url`` is unusable, or the request failed
                (a :class:`~providers._http.VendorAPIError` with its error code).
        """
        if not _valid_service_url(service_url):
            raise ProviderError("unusable Teams serviceUrl", provider=self.name)
        bot = {"id": f"28:{self._config.app_id}"}
        channel_data: dict[str, Any] = {"channel": {"id": channel_id}}
        if tenant_id is None and _token_tenant(self._config.tenant_id) != "botframework.com":
            tenant_id = self._config.tenant_id
        if tenant_id:
            channel_data["tenant"] = {"id": tenant_id}
        payload = {
            "isGroup": True,
            "bot": bot,
            "channelData": channel_data,
            "activity": {"type": "message", "text": text, "textFormat": "plain"},
        }
        outcome = await self._connector_request(
            f"{service_url.rstrip('/')}/v3/conversations", payload
        )
        if isinstance(outcome, HTTPFailure):
            raise outcome.to_error()
        body = response_json(outcome)
        conversation_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ProviderError("Bot Connector returned no conversation id", provider=self.name)
        conversation: dict[str, Any] = {
            "id": conversation_id,
            "isGroup": True,
            "conversationType": "channel",
        }
        if tenant_id:
            conversation["tenantId"] = tenant_id
        reference: dict[str, Any] = {
            "channelId": "msteams",
            "serviceUrl": service_url,
            "conversation": conversation,
            "bot": bot,
        }
        if isinstance(body, dict) and isinstance(body.get("activityId"), str):
            reference["activityId"] = body["activityId"]
        await self._store.save(conversation_id, reference)
        return conversation_id

    def verify_jwt(
        self,
        token: str,
        *,
        jwks: Mapping[str, Any],
        service_url: str | None = None,
        channel_id: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """:func:`~providers.teams.auth.verify_teams_jwt` with this bot's app id as audience."""
        return verify_teams_jwt(
            token,
            app_id=self._config.app_id,
            jwks=jwks,
            service_url=service_url,
            channel_id=channel_id,
            now=now,
        )
