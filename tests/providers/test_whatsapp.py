"""WhatsAppCloudProvider, its webhook parsers and signature check (MockTransport, no network),
and WhatsAppPersonalProvider with a fake client owner."""

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
from pydantic import ValidationError

from providers.errors import ProviderError
from providers.whatsapp import (
    WhatsAppCloudConfig,
    WhatsAppCloudProvider,
    WhatsAppPersonalProvider,
    parse_whatsapp_statuses,
    parse_whatsapp_webhook,
    verify_whatsapp_signature,
    verify_whatsapp_subscription,
)
from roomkit import RoomKit, WhatsAppChannel
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    TemplateContent,
    TextContent,
    VideoContent,
)
from tests.providers import http_support
from tests.providers.http_support import Reply, agent_room, event, json_values
from tests.roomkit.kit_helpers import text

TOKEN = "EAAJ-system-user-token"
APP_SECRET = "wa-app-secret"
PHONE_ID = "106540352242922"
URL = f"https://graph.facebook.com/v21.0/{PHONE_ID}/messages"
CUSTOMER = "16315551181"


def accepted(wamid: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": f"+{CUSTOMER}", "wa_id": CUSTOMER}],
            "messages": [{"id": wamid}],
        },
    )


class Recorder(http_support.Recorder):
    default = accepted("wamid.1")


def graph_error(status: int, code: int) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {"message": "boom", "type": "OAuthException", "code": code, "fbtrace_id": "A"}
        },
    )


def config(**overrides: Any) -> WhatsAppCloudConfig:
    values = {"access_token": TOKEN, "phone_number_id": PHONE_ID, "app_secret": APP_SECRET}
    return WhatsAppCloudConfig(**{**values, **overrides})


async def send(recorder: Recorder, content: EventContent, to: str = f"+{CUSTOMER}") -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        provider = WhatsAppCloudProvider(config(), client=client)
        return await provider.send(event(content), to)


def envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        **message,
    }


class TestSend:
    async def test_text(self) -> None:
        recorder = Recorder(accepted("wamid.HBgL"))
        result = await send(recorder, TextContent(body="Your order shipped"), "+1 (631) 555-1181")
        assert result.success
        assert result.provider_message_id == "wamid.HBgL"
        (request,) = recorder.requests
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert json.loads(request.content) == envelope(
            {"type": "text", "text": {"body": "Your order shipped", "preview_url": False}}
        )

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (
                MediaContent(
                    url="https://cdn.example.com/a.jpg", mime_type="image/jpeg", caption="Look"
                ),
                {
                    "type": "image",
                    "image": {"link": "https://cdn.example.com/a.jpg", "caption": "Look"},
                },
            ),
            (
                MediaContent(
                    url="https://cdn.example.com/i.pdf",
                    mime_type="application/pdf",
                    filename="invoice.pdf",
                    caption="Invoice",
                ),
                {
                    "type": "document",
                    "document": {
                        "link": "https://cdn.example.com/i.pdf",
                        "caption": "Invoice",
                        "filename": "invoice.pdf",
                    },
                },
            ),
            (
                AudioContent(url="https://cdn.example.com/v.ogg"),
                {"type": "audio", "audio": {"link": "https://cdn.example.com/v.ogg"}},
            ),
            (
                VideoContent(url="https://cdn.example.com/v.mp4"),
                {"type": "video", "video": {"link": "https://cdn.example.com/v.mp4"}},
            ),
            (
                LocationContent(
                    latitude=45.5, longitude=-73.56, label="Office", address="1 Main St"
                ),
                {
                    "type": "location",
                    "location": {
                        "latitude": 45.5,
                        "longitude": -73.56,
                        "name": "Office",
                        "address": "1 Main St",
                    },
                },
            ),
            (
                TemplateContent(
                    template_id="order_update",
                    language="en_US",
                    parameters={"2": "today", "1": "A-7"},
                ),
                {
                    "type": "template",
                    "template": {
                        "name": "order_update",
                        "language": {"code": "en_US"},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {"type": "text", "text": "A-7"},
                                    {"type": "text", "text": "today"},
                                ],
                            }
                        ],
                    },
                },
            ),
            (
                TemplateContent(template_id="welcome", parameters={"first_name": "Kerry"}),
                {
                    "type": "template",
                    "template": {
                        "name": "welcome",
                        "language": {"code": "en"},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {
                                        "type": "text",
                                        "parameter_name": "first_name",
                                        "text": "Kerry",
                                    }
                                ],
                            }
                        ],
                    },
                },
            ),
            (
                RichContent(
                    body="Confirm delivery?",
                    buttons=[
                        {"title": "Yes", "payload": "confirm"},
                        {"title": "Track", "url": "https://t.example/1"},
                    ],
                    quick_replies=["Reschedule", "Cancel", "Too many"],
                ),
                {
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": "Confirm delivery?\nTrack: https://t.example/1"},
                        "action": {
                            "buttons": [
                                {"type": "reply", "reply": {"id": "confirm", "title": "Yes"}},
                                {
                                    "type": "reply",
                                    "reply": {"id": "Reschedule", "title": "Reschedule"},
                                },
                                {"type": "reply", "reply": {"id": "Cancel", "title": "Cancel"}},
                            ]
                        },
                    },
                },
            ),
            (
                RichContent(body="**bold** text"),
                {"type": "text", "text": {"body": "**bold** text", "preview_url": False}},
            ),
        ],
    )
    async def test_message_types(self, content: EventContent, message: dict[str, Any]) -> None:
        recorder = Recorder()
        assert (await send(recorder, content)).success
        assert recorder.bodies() == [envelope(message)]

    async def test_composite_sends_each_part(self) -> None:
        recorder = Recorder(accepted("wamid.a"), accepted("wamid.b"))
        content = CompositeContent(
            parts=[
                TextContent(body="Here it is"),
                MediaContent(url="https://cdn.example.com/a.png", mime_type="image/png"),
            ]
        )
        result = await send(recorder, content)
        assert result.metadata["message_ids"] == ["wamid.a", "wamid.b"]
        assert [b["type"] for b in recorder.bodies()] == ["text", "image"]

    @pytest.mark.parametrize(
        ("content", "error"),
        [
            (TextContent(body=""), "empty_message"),
            (
                MediaContent(url="data:image/png;base64,AAAA", mime_type="image/png"),
                "unsupported_media_url",
            ),
            (CompositeContent(parts=[TextContent(body=" ")]), "empty_message"),
        ],
    )
    async def test_unsendable(self, content: EventContent, error: str) -> None:
        recorder = Recorder()
        assert (await send(recorder, content)).error == error
        assert recorder.requests == []

    async def test_template_reaction_read_and_media_lookup(self) -> None:
        recorder = Recorder(
            accepted("wamid.t"),
            accepted("wamid.r"),
            httpx.Response(200, json={"success": True}),
            httpx.Response(
                200,
                json={
                    "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
                    "mime_type": "image/jpeg",
                    "id": "1234",
                },
            ),
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            provider = WhatsAppCloudProvider(config(), client=client)
            template = await provider.send_template(CUSTOMER, "hello_world")
            reaction = await provider.send_reaction(CUSTOMER, "ignored", "wamid.in", "👍")
            read = await provider.mark_read("wamid.in")
            url = await provider.get_media_url("1234")
        assert (template.provider_message_id, reaction.provider_message_id) == (
            "wamid.t",
            "wamid.r",
        )
        assert read.success
        assert url.startswith("https://lookaside.fbsbx.com/")
        bodies = [json.loads(r.content) for r in recorder.requests[:3]]
        assert bodies[0]["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
        assert bodies[1]["reaction"] == {"message_id": "wamid.in", "emoji": "👍"}
        assert bodies[2] == {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": "wamid.in",
        }
        lookup = recorder.requests[3]
        assert (lookup.method, str(lookup.url)) == ("GET", "https://graph.facebook.com/v21.0/1234")
        assert lookup.headers["authorization"] == f"Bearer {TOKEN}"

    @pytest.mark.parametrize(
        ("media_id", "path"),
        [
            (
                "../../me/accounts?fields=access_token",
                "/v21.0/..%2F..%2Fme%2Faccounts%3Ffields%3Daccess_token",
            ),
            ("123#frag", "/v21.0/123%23frag"),
            ("..", "/v21.0/%2E%2E"),
        ],
    )
    async def test_media_lookup_keeps_the_media_id_in_one_path_segment(
        self, media_id: str, path: str
    ) -> None:
        # The id comes from a webhook: put in the path as it came, "../../me/accounts?..."
        # sent the lookup, and the access token with it, to another Graph path.
        recorder = Recorder(httpx.Response(200, json={"url": "https://lookaside.example/x"}))
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            await WhatsAppCloudProvider(config(), client=client).get_media_url(media_id)
        (lookup,) = recorder.requests
        assert (lookup.url.host, lookup.url.raw_path.decode()) == ("graph.facebook.com", path)
        message = inbound("image", {"id": media_id, "mime_type": "image/jpeg"})
        (parsed,) = parse_whatsapp_webhook(
            webhook({"contacts": CONTACTS, "messages": [message]}), "wa"
        )
        assert isinstance(parsed.content, MediaContent)
        assert httpx.URL(parsed.content.url).raw_path.decode() == path
        assert parsed.metadata["media_id"] == media_id


class TestErrors:
    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            (graph_error(401, 190), "auth_error", False),
            (graph_error(400, 131026), "whatsapp_131026", False),
            (graph_error(400, 131047), "whatsapp_131047", False),
            (graph_error(400, 130429), "rate_limit", True),
            (graph_error(400, 131056), "rate_limit", True),
            (httpx.Response(429, headers={"Retry-After": "60"}), "rate_limit", True),
            (httpx.Response(500), "http_500", True),
            (httpx.ReadTimeout, "timeout", True),
        ],
    )
    async def test_mapping(self, reply: Reply, error: str, retryable: bool) -> None:
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert (result.success, result.error) == (False, error)
        assert result.metadata["retryable"] is retryable
        if reply is not httpx.ReadTimeout and error.startswith("whatsapp_"):
            assert result.metadata["vendor_code"] == error.removeprefix("whatsapp_")

    async def test_media_lookup_failure_raises(self) -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(Recorder(graph_error(404, 100)))
        ) as c:
            with pytest.raises(ProviderError):
                await WhatsAppCloudProvider(config(), client=c).get_media_url("1")

    async def test_token_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        result = await send(Recorder(graph_error(401, 190)), TextContent(body="hi"))
        for shown in (caplog.text, repr(config()), result.model_dump_json()):
            assert TOKEN not in shown
            assert APP_SECRET not in shown


def webhook(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_ID,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


CONTACTS = [{"profile": {"name": "Kerry Fisher"}, "wa_id": CUSTOMER}]


def inbound(kind: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "from": CUSTOMER,
        "id": f"wamid.{kind}",
        "timestamp": "1700000000",
        "type": kind,
        kind: body,
        **extra,
    }


class TestWebhook:
    def test_a_lone_surrogate_becomes_a_replacement_character(self) -> None:
        # Half an emoji (valid JSON): the room refused the message (EventRefusedError) at each
        # of the vendor's retries, so it was lost; its lone surrogate is now U+FFFD.
        contacts = [{"profile": json.loads('{"name": "Kerry \\udc00"}'), "wa_id": CUSTOMER}]
        message = inbound("text", json.loads('{"body": "see you \\ud83d"}'))
        (msg,) = parse_whatsapp_webhook(
            webhook({"contacts": contacts, "messages": [message]}), "wa"
        )
        assert msg.content == TextContent(body="see you \ufffd")
        assert msg.metadata["sender_name"] == "Kerry \ufffd"

    def test_text(self) -> None:
        (msg,) = parse_whatsapp_webhook(
            webhook({"contacts": CONTACTS, "messages": [inbound("text", {"body": "Hello"})]}), "wa"
        )
        assert msg.channel_id == "wa"
        assert msg.sender_id == CUSTOMER
        assert msg.content == TextContent(body="Hello")
        assert (msg.external_id, msg.idempotency_key) == ("wamid.text", "wamid.text")
        assert msg.metadata == {
            "phone_number": CUSTOMER,
            "phone_number_id": PHONE_ID,
            "display_phone_number": "15550783881",
            "sender_name": "Kerry Fisher",
            "timestamp": "1700000000",
        }

    def test_media_location_and_replies(self) -> None:
        messages = [
            inbound(
                "image",
                {"caption": "Broken", "mime_type": "image/jpeg", "sha256": "x", "id": "111"},
            ),
            inbound("audio", {"mime_type": "audio/ogg; codecs=opus", "id": "222", "voice": True}),
            inbound(
                "document", {"filename": "r.pdf", "mime_type": "application/pdf", "id": "333"}
            ),
            inbound("location", {"latitude": 45.5, "longitude": -73.5, "name": "Home"}),
            inbound(
                "interactive",
                {"type": "button_reply", "button_reply": {"id": "confirm", "title": "Yes"}},
                context={"from": "15550783881", "id": "wamid.question"},
            ),
            inbound("button", {"text": "Stop promotions", "payload": "STOP"}),
            inbound("reaction", {"message_id": "wamid.x", "emoji": "👍"}),
            inbound("unsupported", {}),
            inbound("location", {"latitude": 200, "longitude": 0}),
        ]
        image, audio, document, location, reply, button = parse_whatsapp_webhook(
            webhook({"contacts": CONTACTS, "messages": messages}), "wa"
        )
        assert image.content == MediaContent(
            url="https://graph.facebook.com/v21.0/111", mime_type="image/jpeg", caption="Broken"
        )
        assert image.metadata["media_id"] == "111"
        assert audio.content == AudioContent(
            url="https://graph.facebook.com/v21.0/222", mime_type="audio/ogg; codecs=opus"
        )
        assert audio.metadata["voice_note"] is True
        assert document.content == MediaContent(
            url="https://graph.facebook.com/v21.0/333",
            mime_type="application/pdf",
            filename="r.pdf",
        )
        assert location.content == LocationContent(latitude=45.5, longitude=-73.5, label="Home")
        assert reply.content == TextContent(body="Yes")
        assert reply.metadata["interactive_reply_id"] == "confirm"
        assert reply.metadata["reply_to"] == "wamid.question"
        assert button.metadata["button_payload"] == "STOP"

    def test_statuses(self) -> None:
        payload = webhook(
            {
                "statuses": [
                    {
                        "id": "wamid.o1",
                        "status": "delivered",
                        "timestamp": "1700000005",
                        "recipient_id": CUSTOMER,
                    },
                    {
                        "id": "wamid.o2",
                        "status": "failed",
                        "timestamp": "1700000006",
                        "recipient_id": CUSTOMER,
                        "errors": [{"code": 131047, "title": "Re-engagement message"}],
                    },
                ]
            }
        )
        assert parse_whatsapp_webhook(payload, "wa") == []
        delivered, failed = parse_whatsapp_statuses(payload)
        assert (delivered.message_id, delivered.status, delivered.recipient) == (
            "wamid.o1",
            "delivered",
            CUSTOMER,
        )
        assert delivered.sender == "15550783881"
        assert delivered.timestamp == "1700000005"
        assert (failed.status, failed.error_code, failed.error_message) == (
            "failed",
            "131047",
            "Re-engagement message",
        )

    async def test_provider_parse_webhook_returns_first_or_raises(self) -> None:
        async with httpx.AsyncClient() as client:
            provider = WhatsAppCloudProvider(config(), client=client)
            payload = webhook(
                {"messages": [inbound("text", {"body": "a"}), inbound("text", {"body": "b"})]}
            )
            assert (await provider.parse_webhook(payload, "wa")).content == TextContent(body="a")
            with pytest.raises(ProviderError):
                await provider.parse_webhook(webhook({"statuses": []}), "wa")

    async def test_provider_parse_webhook_warns_of_the_messages_it_drops(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        three = [inbound("text", {"body": body}, id=f"wamid.{body}") for body in "abc"]
        async with httpx.AsyncClient() as client:
            provider = WhatsAppCloudProvider(config(), client=client)
            with caplog.at_level(logging.WARNING, logger="roomkit.providers.whatsapp"):
                await provider.parse_webhook(webhook({"messages": three[:1]}), "wa")
                assert caplog.records == []
                first = await provider.parse_webhook(webhook({"messages": three}), "wa")
        assert first.content == TextContent(body="a")
        (record,) = caplog.records
        assert record.levelno == logging.WARNING
        assert "drops 2" in record.getMessage()
        assert "parse_whatsapp_webhook" in record.getMessage()

    def test_not_an_object(self) -> None:
        with pytest.raises(ProviderError):
            parse_whatsapp_webhook("x", "wa")
        with pytest.raises(ProviderError):
            parse_whatsapp_statuses(None)
        assert parse_whatsapp_webhook({"object": "page", "entry": []}, "wa") == []


class TestSignature:
    BODY = json.dumps(webhook({"messages": [inbound("text", {"body": "hi"})]})).encode()

    def test_accepts_correct_rejects_forged(self) -> None:
        good = "sha256=" + hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        forged = "sha256=" + hmac.new(b"guess", self.BODY, hashlib.sha256).hexdigest()
        assert verify_whatsapp_signature(self.BODY, good, APP_SECRET)
        assert not verify_whatsapp_signature(self.BODY, forged, APP_SECRET)
        assert not verify_whatsapp_signature(self.BODY.replace(b"hi", b"ho"), good, APP_SECRET)

    async def test_provider_signature_and_subscription(self) -> None:
        good = "sha256=" + hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient() as client:
            assert WhatsAppCloudProvider(config(), client=client).verify_signature(self.BODY, good)
            with pytest.raises(ValueError):
                WhatsAppCloudProvider(config(app_secret=None), client=client).verify_signature(
                    self.BODY, good
                )
        params = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "42"}
        assert verify_whatsapp_subscription(params, "tok") == "42"
        assert verify_whatsapp_subscription(params, "other") is None

    def test_text_body_like_bytes(self) -> None:
        good = "sha256=" + hmac.new(APP_SECRET.encode(), self.BODY, hashlib.sha256).hexdigest()
        assert verify_whatsapp_signature(self.BODY.decode(), good, APP_SECRET)
        assert not verify_whatsapp_signature(None, good, APP_SECRET)  # type: ignore[arg-type]

    def test_empty_secret_or_token_is_refused(self) -> None:
        forged = "sha256=" + hmac.new(b"", self.BODY, hashlib.sha256).hexdigest()
        with pytest.raises(ValueError, match="secret is not set"):
            verify_whatsapp_signature(self.BODY, forged, "")
        params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}
        with pytest.raises(ValueError, match="verify token is not set"):
            verify_whatsapp_subscription(params, "")
        with pytest.raises(ValidationError):
            config(app_secret="")
        with pytest.raises(ValidationError):
            config(verify_token="")


kinds = st.sampled_from(
    ["text", "image", "audio", "video", "document", "sticker", "location", "interactive", "button"]
)
messages = st.builds(
    lambda kind, body, extra: {"type": kind, kind: body, **extra},
    kinds,
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "body": json_values,
            "id": json_values,
            "mime_type": json_values,
            "latitude": json_values,
            "longitude": json_values,
            "type": json_values,
        },
    ),
    st.fixed_dictionaries(
        {}, optional={"from": json_values, "id": json_values, "context": json_values}
    ),
)
values = st.fixed_dictionaries(
    {},
    optional={
        "metadata": json_values,
        "contacts": json_values,
        "messages": st.lists(messages, max_size=3) | json_values,
        "statuses": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values,
                    "status": json_values,
                    "errors": json_values,
                    "timestamp": json_values,
                },
            ),
            max_size=3,
        )
        | json_values,
    },
)
payloads = st.one_of(
    json_values,
    st.builds(
        lambda vals: {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": v} for v in vals]}],
        },
        st.lists(values, max_size=3),
    ),
)


@given(payloads)
def test_parsers_raise_only_provider_error(payload: Any) -> None:
    try:
        parsed = parse_whatsapp_webhook(payload, "wa")
        statuses = parse_whatsapp_statuses(payload)
    except ProviderError:
        assert not isinstance(payload, dict)
        return
    assert all(m.sender_id for m in parsed)
    assert all(s.message_id for s in statuses)


class FakeSource:
    """A client owner as WhatsAppPersonalProvider expects (stands in for a neonize adapter)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.connected = True
        self.sent: list[tuple[str, EventContent]] = []
        self.presence: list[tuple[str, str]] = []

    async def send(self, to: str, content: EventContent) -> str:
        if self.fail:
            raise ConnectionError("socket closed")
        self.sent.append((to, content))
        return f"3EB0{len(self.sent)}"

    async def send_composing(self, chat: str) -> None:
        self.presence.append(("composing", chat))

    async def send_paused(self, chat: str) -> None:
        self.presence.append(("paused", chat))

    async def send_composing_audio(self, chat: str) -> None:
        self.presence.append(("recording", chat))


class TestPersonal:
    def test_needs_a_source(self) -> None:
        with pytest.raises(ValueError, match="needs a source"):
            WhatsAppPersonalProvider(None)
        with pytest.raises(TypeError, match="has no send"):
            WhatsAppPersonalProvider(object())

    async def test_sends_through_the_source(self) -> None:
        source = FakeSource()
        provider = WhatsAppPersonalProvider(source)
        result = await provider.send(event(TextContent(body="hi")), CUSTOMER)
        assert (result.success, result.provider_message_id) == (True, "3EB01")
        assert source.sent == [(CUSTOMER, TextContent(body="hi"))]
        # 0.3.0's signatures: send_typing(to, *, is_typing, media), mark_read(ids, chat, sender).
        await provider.send_typing(CUSTOMER)
        await provider.send_typing(CUSTOMER, is_typing=False)
        await provider.send_typing(CUSTOMER, media="audio")  # no send_recording: typing
        assert source.presence == [
            ("composing", CUSTOMER),
            ("paused", CUSTOMER),
            ("composing", CUSTOMER),
        ]
        source.send_recording = source.send_composing_audio  # type: ignore[attr-defined]
        await provider.send_typing(to=CUSTOMER, media="audio")
        assert source.presence[-1] == ("recording", CUSTOMER)
        with pytest.raises(NotImplementedError):
            await provider.send_reaction(CUSTOMER, CUSTOMER, "3EB01", "👍")
        with pytest.raises(NotImplementedError):
            await provider.mark_read(["3EB01"], CUSTOMER, CUSTOMER)
        read: list[tuple[str, str, list[str]]] = []

        async def mark_read(chat: str, sender: str, message_ids: list[str]) -> None:
            read.append((chat, sender, message_ids))

        source.mark_read = mark_read  # type: ignore[attr-defined]
        await provider.mark_read(["3EB01"], "chat@g.us", CUSTOMER)
        assert read == [("chat@g.us", CUSTOMER, ["3EB01"])]
        with pytest.raises(TypeError, match="message_ids"):
            await provider.mark_read("chat@g.us", CUSTOMER, ["3EB01"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="media"):
            await provider.send_typing(CUSTOMER, media="video")

    async def test_failures_are_results(self) -> None:
        failing = WhatsAppPersonalProvider(FakeSource(fail=True))
        assert (await failing.send(event(TextContent(body="x")), CUSTOMER)).error == "send_failed"
        offline_source = FakeSource()
        offline_source.connected = False
        offline = WhatsAppPersonalProvider(offline_source)
        assert (
            await offline.send(event(TextContent(body="x")), CUSTOMER)
        ).error == "not_connected"
        assert (await offline.send(event(TextContent(body="x")), "")).error == "missing_recipient"


async def test_end_to_end_whatsapp() -> None:
    recorder = Recorder(accepted("wamid.reply"))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client,
        RoomKit() as kit,
    ):
        provider = WhatsAppCloudProvider(config(), client=client)
        channel = WhatsAppChannel("wa", provider=provider)
        agent = await agent_room(kit, channel, {"phone_number": f"+{CUSTOMER}"})

        body = json.dumps(
            webhook(
                {"contacts": CONTACTS, "messages": [inbound("text", {"body": "Order status?"})]}
            )
        ).encode()
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert provider.verify_signature(body, signature)
        (message,) = parse_whatsapp_webhook(json.loads(body), "wa")
        assert not (await kit.process_inbound(message)).blocked
        assert agent.texts() == ["Order status?"]

        await kit.process_inbound(text("agent", "Shipped yesterday", sender="agent-1"))
        (request,) = recorder.requests
        assert str(request.url) == URL
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert json.loads(request.content) == envelope(
            {"type": "text", "text": {"body": "Shipped yesterday", "preview_url": False}}
        )
