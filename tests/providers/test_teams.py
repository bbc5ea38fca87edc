"""BotFrameworkTeamsProvider over the Bot Framework REST API, activity parsing and the JWT check.

HTTP goes through httpx.MockTransport; tokens are signed with an RSA key generated here.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.errors import ProviderError
from providers.teams import (
    BotFrameworkTeamsProvider,
    ConversationReferenceStore,
    InMemoryConversationReferenceStore,
    TeamsConfig,
    TeamsJWTError,
    conversation_reference_from_activity,
    is_bot_added,
    parse_teams_activity,
    parse_teams_webhook,
    strip_mentions,
    verify_teams_jwt,
)
from roomkit import ChannelType, RoomKit, TeamsChannel
from roomkit.models.event import (
    CompositeContent,
    MediaContent,
    RichContent,
    TextContent,
)
from tests.providers import http_support
from tests.providers.http_support import event
from tests.roomkit.kit_helpers import SimpleChannel, text

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "client-secret~value"
TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
SERVICE_URL = "https://smba.trafficmanager.net/amer/"
CONVERSATION = "a:1Xyz-personal-conversation"
BOT = {"id": f"28:{APP_ID}", "name": "RoomKit Bot"}


def activities_url(conversation: str = CONVERSATION) -> str:
    encoded = conversation.replace(":", "%3A").replace(";", "%3B").replace("=", "%3D")
    encoded = encoded.replace("@", "%40")
    return f"https://smba.trafficmanager.net/amer/v3/conversations/{encoded}/activities"


def message_activity(text_: str = "<at>RoomKit Bot</at> hello", **extra: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "type": "message",
        "id": "1700000000001",
        "timestamp": "2024-11-14T22:13:20.000Z",
        "serviceUrl": SERVICE_URL,
        "channelId": "msteams",
        "from": {"id": "29:1user", "name": "Megan Bowen", "aadObjectId": "aad-megan"},
        "conversation": {
            "id": CONVERSATION,
            "conversationType": "personal",
            "tenantId": "tenant-1",
        },
        "recipient": BOT,
        "text": text_,
        "textFormat": "plain",
        "locale": "en-US",
        "entities": [{"type": "mention", "text": "<at>RoomKit Bot</at>", "mentioned": BOT}],
        "channelData": {"tenant": {"id": "tenant-1"}},
    }
    activity.update(extra)
    return activity


class BotFramework(http_support.Recorder):
    """MockTransport handler playing the identity platform and the Bot Connector (whose replies
    are the script)."""

    default = httpx.Response(201, json={"id": "1700000000999"})

    def __init__(self, *connector_replies: httpx.Response | type[Exception]) -> None:
        super().__init__(*connector_replies)
        self.token_replies: list[httpx.Response] = []
        self.token_requests: list[httpx.Request] = []
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "login.microsoftonline.com":
            self.token_requests.append(request)
            if self.token_replies:
                return self.token_replies.pop(0)
            self.issued += 1
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": f"bf-token-{self.issued}",
                },
            )
        return super().__call__(request)


def config(**overrides: Any) -> TeamsConfig:
    return TeamsConfig(**{"app_id": APP_ID, "app_password": PASSWORD, **overrides})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def provider_with(
    fake: BotFramework, client: httpx.AsyncClient, **kwargs: Any
) -> BotFrameworkTeamsProvider:
    provider = BotFrameworkTeamsProvider(config(), client=client, **kwargs)
    await provider.save_conversation_reference(message_activity())
    return provider


class TestSend:
    async def test_token_then_activity(self) -> None:
        fake = BotFramework()
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            result = await provider.send(event(TextContent(body="Hi Megan")), CONVERSATION)
        assert result.success
        assert result.provider_message_id == "1700000000999"
        (token_request,) = fake.token_requests
        assert token_request.method == "POST"
        assert str(token_request.url) == TOKEN_URL
        assert parse_qs(token_request.content.decode()) == {
            "grant_type": ["client_credentials"],
            "client_id": [APP_ID],
            "client_secret": [PASSWORD],
            "scope": ["https://api.botframework.com/.default"],
        }
        (request,) = fake.requests
        assert request.method == "POST"
        assert str(request.url) == activities_url()
        assert request.headers["authorization"] == "Bearer bf-token-1"
        assert json.loads(request.content) == {
            "type": "message",
            "conversation": {"id": CONVERSATION},
            "textFormat": "plain",
            "text": "Hi Megan",
            "from": BOT,
        }

    @pytest.mark.parametrize(
        ("tenant", "url"),
        [
            (None, TOKEN_URL),  # 0.3.0's default, "common": a multi-tenant bot
            ("common", TOKEN_URL),
            ("botframework.com", TOKEN_URL),
            ("tenant-1", TOKEN_URL.replace("botframework.com", "tenant-1")),
        ],
    )
    async def test_the_token_tenant(self, tenant: str | None, url: str) -> None:
        fake = BotFramework()
        overrides = {} if tenant is None else {"tenant_id": tenant}
        assert config(**overrides).tenant_id == (tenant or "common")
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = BotFrameworkTeamsProvider(config(**overrides), client=client)
            await provider.save_conversation_reference(message_activity())
            assert (await provider.send(event(TextContent(body="Hi")), CONVERSATION)).success
        assert [str(r.url) for r in fake.token_requests] == [url]

    async def test_token_cached_until_expiry(self) -> None:
        fake, clock = BotFramework(), Clock()
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client, clock=clock)
            for _ in range(3):
                await provider.send(event(TextContent(body="x")), CONVERSATION)
            assert len(fake.token_requests) == 1
            clock.now += 3599 - 300 - 1  # still inside the refresh margin
            await provider.send(event(TextContent(body="x")), CONVERSATION)
            assert len(fake.token_requests) == 1
            clock.now += 2
            await provider.send(event(TextContent(body="x")), CONVERSATION)
        assert len(fake.token_requests) == 2
        tokens = [r.headers["authorization"] for r in fake.requests]
        assert tokens == ["Bearer bf-token-1"] * 4 + ["Bearer bf-token-2"]

    async def test_concurrent_sends_share_one_token_request(self) -> None:
        fake = BotFramework()
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(provider.send, event(TextContent(body=str(i))), CONVERSATION)
        assert len(fake.token_requests) == 1
        assert len(fake.requests) == 5

    async def test_rich_media_and_cards(self) -> None:
        fake = BotFramework()
        content = CompositeContent(
            parts=[
                RichContent(
                    body="**Pick** one",
                    buttons=[
                        {"title": "Yes", "payload": "yes"},
                        {"title": "Docs", "url": "https://d.example"},
                    ],
                    cards=[{"type": "AdaptiveCard", "version": "1.5", "body": []}],
                    quick_replies=["Later"],
                ),
                MediaContent(
                    url="https://cdn.example.com/r.png",
                    mime_type="image/png",
                    filename="r.png",
                    caption="Chart",
                ),
            ]
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            assert (await provider.send(event(content), CONVERSATION)).success
        activity = json.loads(fake.requests[0].content)
        assert activity["text"] == "**Pick** one\n\nChart"
        assert activity["textFormat"] == "markdown"
        assert activity["suggestedActions"] == {
            "actions": [{"type": "imBack", "title": "Later", "value": "Later"}]
        }
        assert activity["attachments"] == [
            {
                "contentType": "application/vnd.microsoft.card.hero",
                "content": {
                    "buttons": [
                        {"type": "imBack", "title": "Yes", "value": "yes"},
                        {"type": "openUrl", "title": "Docs", "value": "https://d.example"},
                    ]
                },
            },
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {"type": "AdaptiveCard", "version": "1.5", "body": []},
            },
            {
                "contentType": "image/png",
                "contentUrl": "https://cdn.example.com/r.png",
                "name": "r.png",
            },
        ]

    async def test_html_is_sent_as_xml(self) -> None:
        fake = BotFramework()
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            await provider.send(event(RichContent(body="<b>hi</b>", format="html")), CONVERSATION)
        activity = json.loads(fake.requests[0].content)
        assert (activity["text"], activity["textFormat"]) == ("<b>hi</b>", "xml")

    async def test_refusals_before_any_request(self) -> None:
        fake = BotFramework()
        store = InMemoryConversationReferenceStore()
        await store.save("evil", {"serviceUrl": "http://attacker.example/", "conversation": {}})
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = BotFrameworkTeamsProvider(config(), conversation_store=store, client=client)
            await provider.save_conversation_reference(message_activity())
            results = [
                await provider.send(event(TextContent(body="x")), "unknown-conversation"),
                await provider.send(event(TextContent(body="x")), "evil"),
                await provider.send(event(TextContent(body=" ")), CONVERSATION),
                await provider.send(event(TextContent(body="x")), ""),
            ]
        assert [r.error for r in results] == [
            "conversation_reference_not_found",
            "invalid_service_url",
            "empty_message",
            "missing_recipient",
        ]
        assert fake.requests == [] and fake.token_requests == []

    async def test_close_closes_created_client_only(self) -> None:
        provider = BotFrameworkTeamsProvider(config())
        client = provider._http.client
        await provider.close()
        assert client.is_closed


class TestErrors:
    async def test_bad_credentials(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        fake = BotFramework()
        fake.token_replies.append(
            httpx.Response(
                400,
                json={
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret.\r\nTrace ID: x",
                },
            )
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            result = await provider.send(event(TextContent(body="x")), CONVERSATION)
        assert (result.success, result.error) == (False, "auth_error")
        assert result.metadata["vendor_code"] == "invalid_client"
        assert fake.requests == []
        for shown in (caplog.text, result.model_dump_json(), repr(config())):
            assert PASSWORD not in shown

    async def test_connector_401_sends_again_with_a_fresh_token(self) -> None:
        # The message was failed (auth_error, not retried) though its cause was mended: the
        # next message went out with the fresh token.
        denied = {"error": {"code": "Unauthorized", "message": "denied"}}
        fake = BotFramework(
            httpx.Response(401, json=denied), httpx.Response(201, json={"id": "2"})
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            result = await provider.send(event(TextContent(body="x")), CONVERSATION)
        assert (result.success, result.provider_message_id) == (True, "2")
        assert [r.headers["authorization"] for r in fake.requests] == [
            "Bearer bf-token-1",
            "Bearer bf-token-2",
        ]
        assert json.loads(fake.requests[0].content) == json.loads(fake.requests[1].content)

    async def test_connector_401_with_a_fresh_token_too_fails_once(self) -> None:
        denied = {"error": {"code": "Unauthorized", "message": "denied"}}
        refused = (httpx.Response(401, json=denied) for _ in range(2))
        fake = BotFramework(*refused, httpx.Response(201, json={"id": "3"}))
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            first = await provider.send(event(TextContent(body="x")), CONVERSATION)
            second = await provider.send(event(TextContent(body="x")), CONVERSATION)
        assert (first.error, first.metadata["vendor_code"]) == ("auth_error", "Unauthorized")
        assert first.metadata["retryable"] is False
        assert len(fake.requests) == 3 and second.success
        assert len(fake.token_requests) == 3  # the refused two, and one for the next message

    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            (httpx.Response(429, headers={"Retry-After": "4"}), "rate_limit", True),
            (
                httpx.Response(
                    404, json={"error": {"code": "ConversationNotFound", "message": "?"}}
                ),
                "http_404",
                False,
            ),
            (httpx.Response(502), "http_502", True),
            (httpx.ReadTimeout, "timeout", True),
        ],
    )
    async def test_connector_errors(self, reply: Any, error: str, retryable: bool) -> None:
        fake = BotFramework(reply)
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = await provider_with(fake, client)
            result = await provider.send(event(TextContent(body="x")), CONVERSATION)
        assert (result.success, result.error) == (False, error)
        assert result.metadata["retryable"] is retryable
        if error == "rate_limit":
            assert result.metadata["retry_after"] == 4.0


class TestChannelConversation:
    async def test_create_posts_and_saves_reference(self) -> None:
        fake = BotFramework(
            httpx.Response(
                201, json={"id": "19:chan@thread.tacv2;messageid=17", "activityId": "17"}
            )
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = BotFrameworkTeamsProvider(config(), client=client)
            conversation_id = await provider.create_channel_conversation(
                SERVICE_URL, "19:chan@thread.tacv2", "New incident", tenant_id="tenant-1"
            )
            reference = await provider.conversation_store.get(conversation_id)
        assert conversation_id == "19:chan@thread.tacv2;messageid=17"
        (request,) = fake.requests
        assert str(request.url) == "https://smba.trafficmanager.net/amer/v3/conversations"
        assert request.headers["authorization"] == "Bearer bf-token-1"
        assert json.loads(request.content) == {
            "isGroup": True,
            "bot": {"id": f"28:{APP_ID}"},
            "channelData": {
                "channel": {"id": "19:chan@thread.tacv2"},
                "tenant": {"id": "tenant-1"},
            },
            "activity": {"type": "message", "text": "New incident", "textFormat": "plain"},
        }
        assert reference is not None
        assert reference["serviceUrl"] == SERVICE_URL
        assert reference["conversation"]["conversationType"] == "channel"

    async def test_create_takes_0_3_0_s_arguments(self) -> None:
        """``create_channel_conversation(service_url, channel_id, *, tenant_id=None)``: an
        empty first message, and the config's tenant when it names one."""
        for tenant_config, tenant_sent in [("common", None), ("tenant-9", "tenant-9")]:
            fake = BotFramework(httpx.Response(201, json={"id": "19:c;messageid=1"}))
            async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
                provider = BotFrameworkTeamsProvider(
                    config(tenant_id=tenant_config), client=client
                )
                made = await provider.create_channel_conversation(SERVICE_URL, channel_id="19:c")
                reference = await provider.conversation_store.get(made)
            (request,) = fake.requests
            body = json.loads(request.content)
            assert body["activity"] == {"type": "message", "text": "", "textFormat": "plain"}
            assert body["channelData"].get("tenant") == (
                None if tenant_sent is None else {"id": tenant_sent}
            )
            assert reference is not None
            assert reference["conversation"].get("tenantId") == tenant_sent

    async def test_create_failures_raise(self) -> None:
        fake = BotFramework(
            httpx.Response(403, json={"error": {"code": "BotNotInConversationRoster"}})
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
            provider = BotFrameworkTeamsProvider(config(), client=client)
            with pytest.raises(ProviderError) as info:
                await provider.create_channel_conversation(SERVICE_URL, "19:c", "hi")
            assert info.value.status_code == 403
            with pytest.raises(ProviderError):
                await provider.create_channel_conversation("ftp://x", "19:c", "hi")


class TestReferences:
    async def test_in_memory_store_contract(self) -> None:
        store: ConversationReferenceStore = InMemoryConversationReferenceStore()
        reference = conversation_reference_from_activity(message_activity())
        await store.save("c1", reference)
        await store.save("c2", {"serviceUrl": SERVICE_URL})
        got = await store.get("c1")
        assert got == reference
        assert got is not None
        got["serviceUrl"] = "changed"  # callers cannot mutate the stored copy
        assert (await store.get("c1")) == reference
        everything = await store.list_all()  # by conversation id, as in 0.3.0
        assert list(everything) == ["c1", "c2"]
        assert everything["c1"] == reference
        everything["c2"]["serviceUrl"] = "changed"
        assert (await store.get("c2")) == {"serviceUrl": SERVICE_URL}
        assert await store.delete("c1") is True
        assert await store.delete("c1") is False
        assert await store.get("c1") is None

    def test_reference_shape(self) -> None:
        assert conversation_reference_from_activity(message_activity()) == {
            "activityId": "1700000000001",
            "channelId": "msteams",
            "serviceUrl": SERVICE_URL,
            "conversation": {
                "id": CONVERSATION,
                "conversationType": "personal",
                "tenantId": "tenant-1",
            },
            "user": {"id": "29:1user", "name": "Megan Bowen", "aadObjectId": "aad-megan"},
            "bot": BOT,
            "locale": "en-US",
        }

    async def test_unusable_activities(self) -> None:
        async with httpx.AsyncClient() as client:
            provider = BotFrameworkTeamsProvider(config(), client=client)
            for bad in ({"type": "message"}, message_activity(serviceUrl="http://evil.example")):
                with pytest.raises(ProviderError):
                    await provider.save_conversation_reference(bad)


class TestActivities:
    def test_a_lone_surrogate_becomes_a_replacement_character(self) -> None:
        # Half an emoji (valid JSON): the room refused the message (EventRefusedError) at each
        # of the vendor's retries, so it was lost; its lone surrogate is now U+FFFD.
        text_ = json.loads('"see you \\ud83d"')
        (msg,) = parse_teams_webhook(message_activity(text_), "teams")
        assert msg.content == TextContent(body="see you \ufffd")

    def test_message_with_bot_mention(self) -> None:
        (msg,) = parse_teams_webhook(
            message_activity("<at>RoomKit Bot</at> ask <at>Adele</at> please"), "teams"
        )
        assert msg.content == TextContent(body="ask Adele please")
        assert msg.sender_id == "29:1user"
        assert (msg.external_id, msg.idempotency_key) == ("1700000000001", "1700000000001")
        assert msg.thread_id == CONVERSATION
        assert msg.metadata == {
            "teams_conversation_id": CONVERSATION,
            "conversation_id": CONVERSATION,
            "service_url": SERVICE_URL,
            "tenant_id": "tenant-1",
            "conversation_type": "personal",
            "is_group": False,
            "bot_mentioned": True,
            "sender_name": "Megan Bowen",
            "aad_object_id": "aad-megan",
            "bot_id": BOT["id"],
        }

    @pytest.mark.parametrize(
        ("conversation", "entities", "is_group", "mentioned"),
        [
            # 0.3.0: a personal chat always addresses the bot, mention or not.
            ({"conversationType": "personal"}, [], False, True),
            # A channel or group chat is a group even without isGroup; there only a mention
            # entity naming the bot says the message is addressed to it.
            ({"conversationType": "channel"}, None, True, True),
            ({"conversationType": "groupChat"}, [], True, False),
            (
                {"isGroup": True},
                [{"type": "mention", "mentioned": {"id": "28:other"}}],
                True,
                False,
            ),
        ],
    )
    def test_group_and_mention_metadata_as_0_3_0(
        self,
        conversation: dict[str, Any],
        entities: list[dict[str, Any]] | None,
        is_group: bool,
        mentioned: bool,
    ) -> None:
        extra: dict[str, Any] = {"conversation": {"id": "19:c@thread.v2", **conversation}}
        if entities is not None:
            extra["entities"] = entities
        (msg,) = parse_teams_webhook(message_activity("hi all", **extra), "teams")
        assert msg.metadata["is_group"] is is_group
        assert msg.metadata["bot_mentioned"] is mentioned
        assert msg.metadata["conversation_id"] == "19:c@thread.v2"
        assert parse_teams_activity(message_activity(**extra))["is_group"] is is_group

    def test_0_3_0_keys_are_present_when_the_activity_lacks_them(self) -> None:
        bare = {"type": "message", "id": "1", "text": "hi", "from": {"id": "29:a"}}
        (msg,) = parse_teams_webhook({**bare, "conversation": {"id": "a:1"}}, "teams")
        assert msg.metadata == {
            "teams_conversation_id": "a:1",
            "conversation_id": "a:1",
            "conversation_type": "personal",
            "is_group": False,
            "bot_mentioned": True,
            "sender_name": "",
            "service_url": "",
            "tenant_id": "",
        }

    def test_text_is_trimmed_as_in_0_3_0(self) -> None:
        (msg,) = parse_teams_webhook(message_activity("  Hello bot \n "), "teams")
        assert msg.content == TextContent(body="Hello bot")
        group = {"conversation": {"id": "19:c", "conversationType": "channel"}}
        (msg,) = parse_teams_webhook(message_activity(" \n hi all  ", **group), "teams")
        assert msg.content == TextContent(body="hi all")

    def test_parse_activity_defaults_as_0_3_0(self) -> None:
        fields = parse_teams_activity({})
        for key in (
            "activity_type",
            "conversation_id",
            "service_url",
            "tenant_id",
            "sender_id",
            "sender_name",
            "bot_id",
        ):
            assert fields[key] == "", key
        assert fields["conversation_type"] == "personal"
        assert fields["is_group"] is False
        assert (fields["members_added"], fields["members_removed"]) == ([], [])

    def test_mentions_without_entities_are_all_removed(self) -> None:
        (msg,) = parse_teams_webhook(
            message_activity("<at>Bot</at>  hi <AT>x</AT>", entities=None), "teams"
        )
        assert msg.content == TextContent(body="hi")

    def test_text_is_kept_as_sent_apart_from_removed_mentions(self) -> None:
        code = "Steps:\n1. restart\n2. retry\n\n```\nif x:\n    y()\n```"
        (msg,) = parse_teams_webhook(message_activity(code), "teams")
        assert msg.content == TextContent(body=code)
        (msg,) = parse_teams_webhook(message_activity(f"<at>RoomKit Bot</at>\n{code}"), "teams")
        assert msg.content == TextContent(body=code)
        bot = [{"type": "mention", "text": "<at>Bot</at>", "mentioned": {"id": "b"}}]
        cases = {
            "hi <at>Bot</at> there": "hi there",
            "hi\t<at>Bot</at>, thanks": "hi, thanks",
            "line 1\n<at>Bot</at>  line 2\n    indented": "line 1\nline 2\n    indented",
            "a  b <at>Bot</at>": "a  b",
            "ask <at>Adele</at>  please": "ask Adele  please",  # not the bot's: kept as is
        }
        for sent, expected in cases.items():
            assert strip_mentions(sent, bot, "b") == expected
        assert parse_teams_webhook(message_activity("<at>RoomKit Bot</at> \n "), "teams") == []

    @pytest.mark.parametrize("piece", ["<at>", "<at ", "<AT x>y", "<at></a"])
    def test_unclosed_tags_are_scanned_in_linear_time(self, piece: str) -> None:
        # No wall clock: count the characters the scan looks at. The regex it replaces
        # searched the rest of the text again for each "<at", quadratic in the length.
        class Counted(str):
            scanned = 0

            def lower(self) -> Counted:
                return Counted(str.lower(self))

            def find(self, sub: str, start: Any = None, end: Any = None) -> int:
                found = str.find(self, sub, start, end)
                Counted.scanned += (found if found >= 0 else len(self)) - (start or 0)
                return found

        text = Counted(piece * 4000)
        assert strip_mentions(text) == text
        assert 0 < Counted.scanned <= 3 * len(text)

    @settings(max_examples=300)
    @given(st.text(alphabet="<>/atAT x\n", max_size=40))
    def test_the_scan_finds_what_the_old_regex_found(self, sent: str) -> None:
        import re

        expected = re.sub(r"<at[^>]*>(.*?)</at>", r"\1", sent, flags=re.IGNORECASE | re.DOTALL)
        everyone = [{"type": "mention", "text": "<nobody>", "mentioned": {"id": "b"}}]
        # With a bot mention that matches no tag, every tag is unwrapped to its name.
        assert strip_mentions(sent, everyone, "b") == expected

    def test_non_messages_and_empty_text(self) -> None:
        assert parse_teams_webhook(message_activity("<at>RoomKit Bot</at>"), "teams") == []
        assert parse_teams_webhook(message_activity(type="typing"), "teams") == []
        assert parse_teams_webhook(message_activity(**{"from": None}), "teams") == []
        with pytest.raises(ProviderError):
            parse_teams_webhook("nope", "teams")

    def test_parse_activity_fields(self) -> None:
        fields = parse_teams_activity(message_activity(replyToId="1699"))
        assert fields["activity_type"] == "message"
        assert fields["text"] == "hello"
        assert fields["raw_text"] == "<at>RoomKit Bot</at> hello"
        assert fields["conversation_id"] == CONVERSATION
        assert fields["service_url"] == SERVICE_URL
        assert fields["tenant_id"] == "tenant-1"
        assert fields["bot_id"] == BOT["id"]
        assert fields["reply_to_id"] == "1699"
        assert fields["members_added"] == []

    def test_is_bot_added(self) -> None:
        update = {
            "type": "conversationUpdate",
            "membersAdded": [{"id": "29:someone"}, {"id": BOT["id"]}],
            "recipient": BOT,
            "conversation": {"id": "19:general@thread.tacv2", "conversationType": "channel"},
            "serviceUrl": SERVICE_URL,
        }
        assert is_bot_added(update)
        assert not is_bot_added({**update, "membersAdded": [{"id": "29:someone"}]})
        assert is_bot_added({"type": "installationUpdate", "action": "add"})
        assert not is_bot_added({"type": "installationUpdate", "action": "remove"})
        assert not is_bot_added(message_activity())
        assert not is_bot_added(["not", "a", "dict"])
        # 0.3.0's bot_id: the bot's own id, when the recipient is not it (or is missing).
        assert is_bot_added(update, bot_id="29:someone")
        assert not is_bot_added(update, bot_id="28:another-bot")
        assert is_bot_added({**update, "recipient": {}}, BOT["id"])


# ---------------------------------------------------------------------------------------------
# JWT


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = make_key()
OTHER_KEY = make_key()


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes(3, "big")),
        **extra,
    }


JWKS = {"keys": [jwk(OTHER_KEY, "other"), jwk(KEY, "key-1", endorsements=["msteams"])]}
NOW = 1_700_000_000.0


def sign(
    claims: dict[str, Any], *, key: rsa.RSAPrivateKey = KEY, header: dict[str, Any] | None = None
) -> str:
    head = b64url(json.dumps(header or {"alg": "RS256", "typ": "JWT", "kid": "key-1"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": "https://api.botframework.com",
        "aud": APP_ID,
        "exp": NOW + 3600,
        "nbf": NOW - 60,
        "serviceurl": SERVICE_URL,
    }
    values.update(overrides)
    return values


class TestJWT:
    def test_valid_token(self) -> None:
        token = sign(claims())
        result = verify_teams_jwt(
            f"Bearer {token}",
            app_id=APP_ID,
            jwks=JWKS,
            service_url=SERVICE_URL,
            channel_id="msteams",
            now=NOW,
        )
        assert result["aud"] == APP_ID

    def test_list_audience_and_clock_skew(self) -> None:
        token = sign(claims(aud=["other", APP_ID], exp=NOW - 200, nbf=NOW + 200))
        assert verify_teams_jwt(token, app_id=APP_ID, jwks=JWKS, now=NOW)["exp"] == NOW - 200

    async def test_provider_checks_its_own_audience(self) -> None:
        async with httpx.AsyncClient() as client:
            provider = BotFrameworkTeamsProvider(config(), client=client)
            assert provider.verify_jwt(sign(claims()), jwks=JWKS, now=NOW)["iss"]
            with pytest.raises(TeamsJWTError):
                provider.verify_jwt(sign(claims(aud="someone-else")), jwks=JWKS, now=NOW)

    @pytest.mark.parametrize(
        ("token", "reason", "kwargs"),
        [
            (sign(claims(), key=OTHER_KEY), "bad_signature", {}),
            (sign(claims(iss="https://sts.windows.net/evil/")), "wrong_issuer", {}),
            (sign(claims(aud="another-bot")), "wrong_audience", {}),
            (sign(claims(exp=NOW - 301)), "expired", {}),
            (sign(claims(exp="tomorrow")), "malformed", {}),
            (sign(claims(nbf=NOW + 301)), "not_yet_valid", {}),
            (sign(claims(), header={"alg": "RS256", "kid": "rotated"}), "unknown_key", {}),
            (sign(claims(), header={"alg": "HS256", "kid": "key-1"}), "unsupported_algorithm", {}),
            (sign(claims(), header={"alg": "none", "kid": "key-1"}), "unsupported_algorithm", {}),
            (sign(claims()), "service_url_mismatch", {"service_url": "https://evil.example/"}),
            (sign(claims()), "not_endorsed", {"channel_id": "webchat"}),
            ("abc.def", "malformed", {}),
            ("", "malformed", {}),
            ("!!!.???.***", "malformed", {}),
        ],
    )
    def test_rejections(self, token: str, reason: str, kwargs: dict[str, Any]) -> None:
        with pytest.raises(TeamsJWTError) as info:
            verify_teams_jwt(token, app_id=APP_ID, jwks=JWKS, now=NOW, **kwargs)
        assert info.value.reason == reason
        assert token[-20:] not in str(info.value) or not token

    def test_tampered_claims_fail_the_signature(self) -> None:
        head, _, signature = sign(claims()).split(".")
        forged_body = b64url(json.dumps(claims(aud=APP_ID, admin=True)).encode())
        with pytest.raises(TeamsJWTError) as info:
            verify_teams_jwt(
                f"{head}.{forged_body}.{signature}", app_id=APP_ID, jwks=JWKS, now=NOW
            )
        assert info.value.reason == "bad_signature"

    def test_expiry_uses_the_real_clock_by_default(self) -> None:
        token = sign(claims(exp=time.time() - 3600, nbf=None))
        with pytest.raises(TeamsJWTError, match="expired"):
            verify_teams_jwt(token, app_id=APP_ID, jwks=JWKS)

    def test_unusable_jwk(self) -> None:
        jwks = {"keys": [{"kty": "RSA", "kid": "key-1", "n": "AA", "e": 5}]}
        with pytest.raises(TeamsJWTError) as info:
            verify_teams_jwt(sign(claims()), app_id=APP_ID, jwks=jwks, now=NOW)
        assert info.value.reason == "invalid_key"


@settings(max_examples=200)
@given(st.text() | st.builds(lambda parts: ".".join(parts), st.lists(st.text(), max_size=4)))
def test_jwt_check_raises_only_teams_jwt_error(token: str) -> None:
    with pytest.raises(TeamsJWTError):
        verify_teams_jwt(token, app_id=APP_ID, jwks=JWKS, now=NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
activities = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "conversationUpdate", "installationUpdate"])
        | json_values,
        "id": json_values,
        "text": st.text() | json_values,
        "from": st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values}),
        "recipient": json_values,
        "conversation": st.fixed_dictionaries({}, optional={"id": json_values}) | json_values,
        "entities": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("mention")},
                optional={"text": json_values, "mentioned": json_values},
            ),
            max_size=3,
        )
        | json_values,
        "membersAdded": json_values,
        "serviceUrl": json_values,
        "channelData": json_values,
        "action": json_values,
    },
)


@given(st.one_of(json_values, activities))
def test_activity_parsers_raise_only_provider_error(payload: Any) -> None:
    assert is_bot_added(payload) in (True, False)
    try:
        messages = parse_teams_webhook(payload, "teams")
    except ProviderError:
        assert not isinstance(payload, dict)
        return
    for message in messages:
        assert message.content.body  # type: ignore[union-attr]


async def test_end_to_end_teams() -> None:
    fake = BotFramework(httpx.Response(201, json={"id": "reply-1"}))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client,
        RoomKit() as kit,
    ):
        provider = BotFrameworkTeamsProvider(config(), client=client)
        kit.register_channel(TeamsChannel("teams", provider=provider))
        agent = SimpleChannel("agent", ChannelType.WEBSOCKET)
        kit.register_channel(agent)

        # The messaging endpoint: verify the JWT, remember the conversation, route the message.
        activity = message_activity("<at>RoomKit Bot</at> my laptop is broken")
        token = sign(claims())
        provider.verify_jwt(token, jwks=JWKS, service_url=activity["serviceUrl"], now=NOW)
        conversation_id = await provider.save_conversation_reference(activity)
        await kit.create_room(room_id="r1")
        await kit.attach_channel(
            "r1", "teams", metadata={"teams_conversation_id": conversation_id}
        )
        await kit.attach_channel("r1", "agent")
        (inbound,) = parse_teams_webhook(activity, "teams")
        assert not (await kit.process_inbound(inbound)).blocked
        assert agent.texts() == ["my laptop is broken"]

        await kit.process_inbound(text("agent", "A technician is on the way", sender="agent-1"))
        (request,) = fake.requests
        assert str(request.url) == activities_url()
        assert request.headers["authorization"] == "Bearer bf-token-1"
        body = json.loads(request.content)
        assert body["text"] == "A technician is on the way"
        assert body["conversation"] == {"id": CONVERSATION}
        assert body["from"] == BOT
