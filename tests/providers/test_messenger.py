"""FacebookMessengerProvider, its webhook parser and signature check (MockTransport)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from providers.errors import ProviderError
from providers.messenger import (
    FacebookMessengerProvider,
    MessengerConfig,
    parse_messenger_webhook,
    verify_messenger_signature,
    verify_messenger_subscription,
)
from roomkit import MessengerChannel, RoomKit
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    MediaContent,
    RichContent,
    TextContent,
)
from tests.providers import http_support
from tests.providers.http_support import Reply, agent_room, event, json_values
from tests.roomkit.kit_helpers import text

TOKEN = "EAAG-page-token-secret"
APP_SECRET = "app-secret-123"
URL = "https://graph.facebook.com/v21.0/me/messages"
PSID = "6912345678901234"
PAGE_ID = "1122334455"


def sent(mid: str) -> httpx.Response:
    return httpx.Response(200, json={"recipient_id": PSID, "message_id": mid})


class Recorder(http_support.Recorder):
    default = sent("m_1")


def graph_error(status: int, code: int, **extra: Any) -> httpx.Response:
    error = {"message": "boom", "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}
    return httpx.Response(status, json={"error": {**error, **extra}})


def config(**overrides: Any) -> MessengerConfig:
    return MessengerConfig(**{"page_access_token": TOKEN, "app_secret": APP_SECRET, **overrides})


async def send(recorder: Recorder, content: Any, to: str = PSID) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        provider = FacebookMessengerProvider(config(), client=client)
        return await provider.send(event(content), to)


class TestSend:
    async def test_text(self) -> None:
        recorder = Recorder(sent("m_abc"))
        result = await send(recorder, TextContent(body="Hi there"))
        assert result.success
        assert result.provider_message_id == "m_abc"
        (request,) = recorder.requests
        assert request.method == "POST"
        assert str(request.url) == URL  # the token is never in the URL
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert json.loads(request.content) == {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hi there"},
        }

    async def test_buttons_and_quick_replies(self) -> None:
        recorder = Recorder()
        content = RichContent(
            body="Pick one",
            buttons=[
                {"title": "Track order", "payload": "TRACK"},
                {"title": "Website", "url": "https://shop.example.com"},
                {"text": "Talk to us"},
                {"title": "Fourth"},
                {"payload": "no title: skipped"},
            ],
            quick_replies=["Yes", "A much too long quick reply title"],
        )
        assert (await send(recorder, content)).success
        assert recorder.bodies()[0]["message"] == {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": "Pick one",
                    "buttons": [
                        {"type": "postback", "title": "Track order", "payload": "TRACK"},
                        {"type": "web_url", "url": "https://shop.example.com", "title": "Website"},
                        {"type": "postback", "title": "Talk to us", "payload": "Talk to us"},
                    ],
                },
            },
            "quick_replies": [
                {"content_type": "text", "title": "Yes", "payload": "Yes"},
                {
                    "content_type": "text",
                    "title": "A much too long quic",
                    "payload": "A much too long quick reply title",
                },
            ],
        }

    async def test_button_titles_are_cut_as_quick_reply_titles_are(self) -> None:
        # Sent whole, past Meta's 20 characters (WhatsApp cuts its button titles too).
        recorder = Recorder()
        content = RichContent(
            body="How can we help?",
            buttons=[
                {"title": "Schedule a callback tomorrow", "payload": "CB"},
                {"title": "Our opening hours and address", "url": "https://shop.example.com"},
            ],
        )
        assert (await send(recorder, content)).success
        buttons = recorder.bodies()[0]["message"]["attachment"]["payload"]["buttons"]
        assert buttons == [
            {"type": "postback", "title": "Schedule a callback ", "payload": "CB"},
            {
                "type": "web_url",
                "url": "https://shop.example.com",
                "title": "Our opening hours an",
            },
        ]

    async def test_rich_without_buttons_is_text(self) -> None:
        recorder = Recorder()
        await send(recorder, RichContent(body="<b>Bold</b> move", format="html"))
        assert recorder.bodies()[0]["message"] == {"text": "Bold move"}

    async def test_media_with_caption_is_two_messages(self) -> None:
        recorder = Recorder(sent("m_img"), sent("m_cap"))
        content = MediaContent(
            url="https://cdn.example.com/cat.jpg", mime_type="image/jpeg", caption="A cat"
        )
        result = await send(recorder, content)
        assert result.provider_message_id == "m_img"
        assert result.metadata["message_ids"] == ["m_img", "m_cap"]
        assert [b["message"] for b in recorder.bodies()] == [
            {
                "attachment": {
                    "type": "image",
                    "payload": {"url": "https://cdn.example.com/cat.jpg"},
                }
            },
            {"text": "A cat"},
        ]

    async def test_composite_audio_and_file(self) -> None:
        recorder = Recorder()
        content = CompositeContent(
            parts=[
                AudioContent(url="https://cdn.example.com/v.mp4", mime_type="audio/mp4"),
                MediaContent(url="https://cdn.example.com/r.pdf", mime_type="application/pdf"),
                TextContent(body=""),
            ]
        )
        assert (await send(recorder, content)).success
        kinds = [b["message"]["attachment"]["type"] for b in recorder.bodies()]
        assert kinds == ["audio", "file"]

    @pytest.mark.parametrize(
        ("content", "error"),
        [
            (TextContent(body="  "), "empty_message"),
            (RichContent(body=""), "empty_message"),
            # A button template needs its text: it was sent empty, and reported sent.
            (RichContent(body=" ", buttons=[{"title": "Yes"}]), "empty_message"),
            (
                MediaContent(url="data:image/png;base64,AAAA", mime_type="image/png"),
                "unsupported_media_url",
            ),
        ],
    )
    async def test_unsendable_content(self, content: Any, error: str) -> None:
        recorder = Recorder()
        result = await send(recorder, content)
        assert (result.success, result.error) == (False, error)
        assert recorder.requests == []

    async def test_missing_recipient(self) -> None:
        recorder = Recorder()
        assert (await send(recorder, TextContent(body="hi"), to="")).error == "missing_recipient"
        assert recorder.requests == []


class TestErrors:
    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            # 0.3.0's codes: graph_<Graph code>, else graph_<status> for a JSON object body,
            # else http_<status>; throttling codes and is_transient stay retryable.
            (graph_error(401, 190, error_subcode=463), "graph_190", False),
            (graph_error(400, 190), "graph_190", False),
            (graph_error(400, 613), "graph_613", True),
            (graph_error(400, 4), "graph_4", True),
            (graph_error(400, 551), "graph_551", False),
            (graph_error(400, 100), "graph_100", False),
            (graph_error(400, 2, is_transient=True), "graph_2", True),
            (graph_error(500, 1), "graph_1", True),
            (httpx.Response(429, json={}), "graph_429", True),
            (httpx.Response(400, json={"error": {"message": "no code"}}), "graph_400", False),
            (httpx.Response(403, json={"error": {"code": "OAuth"}}), "graph_OAuth", False),
            (httpx.Response(400, json={"error": {"code": None}}), "graph_400", False),
            (httpx.Response(400, json={"error": "bad"}), "http_400", False),
            (httpx.Response(400, json=[1]), "http_400", False),
            (httpx.Response(429), "http_429", True),
            (httpx.Response(503, text="unavailable"), "http_503", True),
            (httpx.ReadTimeout, "timeout", True),
            (httpx.ConnectError, "network_error", True),
        ],
    )
    async def test_mapping(self, reply: Reply, error: str, retryable: bool) -> None:
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert (result.success, result.error) == (False, error)
        assert result.metadata["retryable"] is retryable

    async def test_graph_code_and_retry_after(self) -> None:
        reply = graph_error(429, 32)
        reply.headers["Retry-After"] = "3"
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert result.error == "graph_32"
        assert result.metadata["retryable"] is True
        assert result.metadata["vendor_code"] == "32"
        assert result.metadata["retry_after"] == 3.0
        assert result.metadata["message"] == "boom"  # Graph's text, 0.3.0's key

    async def test_partial_failure_reports_what_was_sent(self) -> None:
        recorder = Recorder(sent("m_img"), graph_error(500, 2))
        content = MediaContent(
            url="https://cdn.example.com/a.png", mime_type="image/png", caption="c"
        )
        result = await send(recorder, content)
        assert result.success is False
        assert result.metadata["message_ids"] == ["m_img"]
        # A 500 is retryable, but the image went out: sent again whole, it came twice.
        assert result.metadata["retryable"] is False

    async def test_token_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        result = await send(Recorder(graph_error(401, 190)), TextContent(body="hi"))
        for shown in (caplog.text, repr(config()), result.model_dump_json()):
            assert TOKEN not in shown
            assert APP_SECRET not in shown


def webhook(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": 1700000000500, "messaging": list(items)}],
    }


def message_item(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "timestamp": 1700000000000,
        "message": message,
    }


class TestWebhook:
    def test_text_message(self) -> None:
        (msg,) = parse_messenger_webhook(
            webhook(message_item({"mid": "m_1", "text": "hello"})), "fb"
        )
        assert msg.channel_id == "fb"
        assert msg.sender_id == PSID
        assert msg.content == TextContent(body="hello")
        assert (msg.external_id, msg.idempotency_key) == ("m_1", "m_1")
        assert msg.metadata == {
            "facebook_user_id": PSID,
            "recipient_id": PAGE_ID,  # 0.3.0's key
            "page_id": PAGE_ID,
            "timestamp": 1700000000000,
        }

    def test_a_lone_surrogate_becomes_a_replacement_character(self) -> None:
        # Half an emoji (valid JSON): the room refused the message (EventRefusedError) at each
        # of the vendor's retries, so it was lost; its lone surrogate is now U+FFFD.
        payload = json.loads('{"mid": "m_1", "text": "see you \\ud83d"}')
        (msg,) = parse_messenger_webhook(webhook(message_item(payload)), "fb")
        assert msg.content == TextContent(body="see you \ufffd")

    def test_recipient_id_as_0_3_0(self) -> None:
        # From the entry's page id when the item has no recipient; "" when neither says.
        item = {"sender": {"id": PSID}, "message": {"mid": "m_1", "text": "hi"}}
        (msg,) = parse_messenger_webhook(webhook(item), "fb")
        assert msg.metadata["recipient_id"] == PAGE_ID
        (msg,) = parse_messenger_webhook(
            {"object": "page", "entry": [{"messaging": [item]}]}, "fb"
        )
        assert msg.metadata["recipient_id"] == ""

    def test_quick_reply_attachments_postback_and_skipped_events(self) -> None:
        payload = webhook(
            message_item({"mid": "m_2", "text": "Yes", "quick_reply": {"payload": "YES"}}),
            message_item(
                {
                    "mid": "m_3",
                    "text": "look",
                    "attachments": [
                        {"type": "image", "payload": {"url": "https://scontent.example/i.jpg"}},
                        {"type": "fallback", "payload": {"title": "link"}},
                    ],
                }
            ),
            message_item({"mid": "m_4", "text": "echo", "is_echo": True, "app_id": 1}),
            {
                "sender": {"id": PSID},
                "recipient": {"id": PAGE_ID},
                "timestamp": 1700000000001,
                "postback": {"title": "Track order", "payload": "TRACK", "mid": "m_5"},
            },
            {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "delivery": {"mids": ["m_1"]}},
            {"sender": {"id": PSID}, "read": {"watermark": 1}},
        )
        quick, photo, postback = parse_messenger_webhook(payload, "fb")
        assert quick.metadata["quick_reply_payload"] == "YES"
        assert photo.content == CompositeContent(
            parts=[
                TextContent(body="look"),
                MediaContent(url="https://scontent.example/i.jpg", mime_type="image/*"),
            ]
        )
        assert postback.content == TextContent(body="Track order")
        assert postback.metadata["postback_payload"] == "TRACK"
        assert postback.idempotency_key == "m_5"

    def test_an_attachment_that_is_not_on_the_web_is_left_out(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A data: URL (inline HTML labelled an image) was taken as a picture; an HTTPS:// one
        # in capitals was left out without a word.
        payload = webhook(
            message_item(
                {
                    "mid": "m_6",
                    "text": "see",
                    "attachments": [
                        {"type": "image", "payload": {"url": "data:text/html,<b>x</b>"}},
                        {"type": "image", "payload": {"url": "HTTPS://scontent.example/j.jpg"}},
                    ],
                }
            )
        )
        (msg,) = parse_messenger_webhook(payload, "fb")
        assert msg.content == CompositeContent(
            parts=[
                TextContent(body="see"),
                MediaContent(url="HTTPS://scontent.example/j.jpg", mime_type="image/*"),
            ]
        )
        assert "attachment left out: not an http(s) URL" in caplog.text

    def test_other_objects_and_empty(self) -> None:
        assert parse_messenger_webhook({"object": "whatsapp_business_account"}, "fb") == []
        assert parse_messenger_webhook({}, "fb") == []
        with pytest.raises(ProviderError):
            parse_messenger_webhook(["not", "an", "object"], "fb")

    async def test_provider_parse_webhook(self) -> None:
        async with httpx.AsyncClient() as client:
            provider = FacebookMessengerProvider(config(), client=client)
            msgs = provider.parse_webhook(webhook(message_item({"mid": "m", "text": "x"})), "fb")
        assert [m.content for m in msgs] == [TextContent(body="x")]


class TestSignature:
    BODY = json.dumps(webhook(message_item({"mid": "m_1", "text": "hello"}))).encode()

    def test_accepts_correct_and_rejects_forged(self) -> None:
        digest = hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        assert verify_messenger_signature(self.BODY, f"sha256={digest}", APP_SECRET)
        forged = hmac.new(b"wrong-secret", self.BODY, hashlib.sha256).hexdigest()
        assert not verify_messenger_signature(self.BODY, f"sha256={forged}", APP_SECRET)
        assert not verify_messenger_signature(self.BODY + b"\n", f"sha256={digest}", APP_SECRET)
        assert not verify_messenger_signature(self.BODY, digest, APP_SECRET)  # no prefix
        assert not verify_messenger_signature(self.BODY, f"sha1={digest}", APP_SECRET)
        assert not verify_messenger_signature(self.BODY, None, APP_SECRET)

    async def test_provider_uses_its_app_secret(self) -> None:
        digest = hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient() as client:
            provider = FacebookMessengerProvider(config(), client=client)
            assert provider.verify_signature(self.BODY, f"sha256={digest}")
            unsigned = FacebookMessengerProvider(config(app_secret=None), client=client)
            with pytest.raises(ValueError, match="app_secret"):
                unsigned.verify_signature(self.BODY, f"sha256={digest}")

    def test_subscription_handshake(self) -> None:
        params = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"}
        assert verify_messenger_subscription(params, "vt") == "1158201444"
        assert verify_messenger_subscription({**params, "hub.verify_token": "x"}, "vt") is None
        assert verify_messenger_subscription({**params, "hub.mode": "unsubscribe"}, "vt") is None

    def test_text_body_like_bytes(self) -> None:
        digest = hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        assert verify_messenger_signature(self.BODY.decode(), f"sha256={digest}", APP_SECRET)
        assert not verify_messenger_signature(None, f"sha256={digest}", APP_SECRET)  # type: ignore[arg-type]

    async def test_empty_secret_or_token_is_refused(self) -> None:
        forged = "sha256=" + hmac.new(b"", self.BODY, hashlib.sha256).hexdigest()
        with pytest.raises(ValueError, match="secret is not set"):
            verify_messenger_signature(self.BODY, forged, "")
        params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
        with pytest.raises(ValueError, match="verify token is not set"):
            verify_messenger_subscription(params, "")
        with pytest.raises(ValidationError):
            config(app_secret="")
        with pytest.raises(ValidationError):
            config(verify_token="")
        async with httpx.AsyncClient() as client:
            # A config built without validation still cannot verify with an empty secret.
            unchecked = MessengerConfig.model_construct(
                page_access_token=SecretStr(TOKEN), app_secret=SecretStr("")
            )
            provider = FacebookMessengerProvider(unchecked, client=client)
            with pytest.raises(ValueError, match="app_secret"):
                provider.verify_signature(self.BODY, forged)


items = st.fixed_dictionaries(
    {},
    optional={
        "sender": st.one_of(json_values, st.fixed_dictionaries({"id": json_values})),
        "recipient": json_values,
        "timestamp": json_values,
        "message": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "mid": json_values,
                    "text": json_values,
                    "is_echo": json_values,
                    "quick_reply": json_values,
                    "attachments": st.lists(
                        st.fixed_dictionaries(
                            {"type": st.sampled_from(["image", "video", "audio", "file", "x"])},
                            optional={"payload": st.fixed_dictionaries({"url": json_values})},
                        ),
                        max_size=3,
                    ),
                },
            ),
        ),
        "postback": json_values,
    },
)
payloads = st.one_of(
    json_values,
    st.builds(
        lambda entries: {"object": "page", "entry": entries},
        st.lists(
            st.fixed_dictionaries({"id": json_values, "messaging": st.lists(items, max_size=3)}),
            max_size=2,
        ),
    ),
)


@given(payloads)
def test_parser_raises_only_provider_error(payload: Any) -> None:
    try:
        messages = parse_messenger_webhook(payload, "fb")
    except ProviderError:
        assert not isinstance(payload, dict)
        return
    for message in messages:
        assert message.channel_id == "fb"
        assert message.sender_id


async def test_end_to_end_messenger() -> None:
    recorder = Recorder(sent("m_reply"))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client,
        RoomKit() as kit,
    ):
        provider = FacebookMessengerProvider(config(), client=client)
        channel = MessengerChannel("fb", provider=provider)
        agent = await agent_room(kit, channel, {"facebook_user_id": PSID})

        body = json.dumps(webhook(message_item({"mid": "m_in", "text": "Is it open?"}))).encode()
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert provider.verify_signature(body, signature)
        (inbound,) = parse_messenger_webhook(json.loads(body), "fb")
        assert not (await kit.process_inbound(inbound)).blocked
        assert agent.texts() == ["Is it open?"]
        # Meta retries webhooks: the same mid is recorded once.
        assert (await kit.process_inbound(inbound)).reason == "duplicate"

        await kit.process_inbound(text("agent", "Yes, until 6pm", sender="agent-1"))
        (request,) = recorder.requests
        assert str(request.url) == URL
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert json.loads(request.content) == {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Yes, until 6pm"},
        }
