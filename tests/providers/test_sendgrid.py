"""SendGridProvider through httpx.MockTransport (no network), and an email round trip in a kit."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import httpx
import pytest

from providers.sendgrid import SendGridConfig, SendGridProvider
from roomkit import EmailChannel, InboundMessage, RoomKit
from roomkit.models.event import (
    CompositeContent,
    MediaContent,
    RichContent,
    TextContent,
)
from tests.providers import http_support
from tests.providers.http_support import Reply, agent_room, event
from tests.roomkit.kit_helpers import text

API_KEY = "SG.test-key-abcdef"
URL = "https://api.sendgrid.com/v3/mail/send"


class Recorder(http_support.Recorder):
    default = httpx.Response(202)


def config(**overrides: Any) -> SendGridConfig:
    values: dict[str, Any] = {"api_key": API_KEY, "from_email": "bot@example.com"}
    values.update(overrides)
    return SendGridConfig(**values)


async def send(
    recorder: Recorder, content: Any, cfg: SendGridConfig | None = None, **kwargs: Any
) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        provider = SendGridProvider(cfg or config(), client=client)
        return await provider.send(event(content), kwargs.pop("to", "alice@example.com"), **kwargs)


class TestRequests:
    async def test_text_email(self) -> None:
        recorder = Recorder(httpx.Response(202, headers={"X-Message-Id": "sg-123"}))
        result = await send(recorder, TextContent(body="Hello Alice"), config(from_name="Support"))
        assert result.success
        assert result.provider_message_id == "sg-123"
        (request,) = recorder.requests
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert json.loads(request.content) == {
            "personalizations": [{"to": [{"email": "alice@example.com"}]}],
            "from": {"email": "bot@example.com", "name": "Support"},
            "subject": "New message",
            "content": [{"type": "text/plain", "value": "Hello Alice"}],
        }

    async def test_sender_subject_and_sandbox(self) -> None:
        recorder = Recorder()
        await send(
            recorder,
            TextContent(body="x"),
            config(sandbox_mode=True),
            from_="ops@example.com",
            subject="Ticket #4",
        )
        body = json.loads(recorder.requests[0].content)
        assert body["from"] == {"email": "ops@example.com"}
        assert body["subject"] == "Ticket #4"
        assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}

    async def test_html_with_plain_alternative_and_attachment(self) -> None:
        pdf = b"%PDF-1.4 tiny"
        data_url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
        content = CompositeContent(
            parts=[
                RichContent(body="<p>Your <b>invoice</b> &amp; receipt</p>", format="html"),
                MediaContent(url=data_url, mime_type="application/pdf", filename="invoice.pdf"),
                MediaContent(url="https://cdn.example.com/logo.png", mime_type="image/png"),
            ]
        )
        recorder = Recorder()
        assert (await send(recorder, content)).success
        body = json.loads(recorder.requests[0].content)
        plain, html = body["content"]
        assert plain == {
            "type": "text/plain",
            "value": "Your invoice & receipt\n\nhttps://cdn.example.com/logo.png",
        }
        assert html["type"] == "text/html"
        assert html["value"].startswith("<p>Your <b>invoice</b> &amp; receipt</p>")
        assert "https://cdn.example.com/logo.png" in html["value"]
        assert body["attachments"] == [
            {
                "content": base64.b64encode(pdf).decode(),
                "type": "application/pdf",
                "filename": "invoice.pdf",
                "disposition": "attachment",
            }
        ]

    async def test_empty_and_missing_recipient_send_nothing(self) -> None:
        recorder = Recorder()
        empty = await send(recorder, TextContent(body=" \n"))
        nobody = await send(recorder, TextContent(body="hi"), to="")
        assert (empty.error, nobody.error) == ("empty_message", "missing_recipient")
        assert recorder.requests == []


class TestErrors:
    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            (
                httpx.Response(401, json={"errors": [{"message": "authorization grant invalid"}]}),
                "auth_error",
                False,
            ),
            (
                httpx.Response(403, json={"errors": [{"message": "no access"}]}),
                "auth_error",
                False,
            ),
            (
                httpx.Response(400, json={"errors": [{"message": "bad from", "field": "from"}]}),
                "http_400",
                False,
            ),
            (httpx.Response(500), "http_500", True),
            (httpx.Response(502, text="<html>bad gateway</html>"), "http_502", True),
            (httpx.ReadTimeout, "timeout", True),
            (httpx.ConnectTimeout, "timeout", True),
            (httpx.ConnectError, "network_error", True),
        ],
    )
    async def test_mapping(self, reply: Reply, error: str, retryable: bool) -> None:
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert (result.success, result.error) == (False, error)
        assert result.metadata["retryable"] is retryable
        assert result.metadata["provider"] == "SendGridProvider"

    async def test_vendor_message_kept_as_detail(self) -> None:
        reply = httpx.Response(400, json={"errors": [{"message": "The from address is invalid"}]})
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert "The from address is invalid" in result.metadata["detail"]
        assert result.metadata["status_code"] == 400

    async def test_rate_limit_retry_after_header(self) -> None:
        reply = httpx.Response(429, headers={"Retry-After": "30"})
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert result.error == "rate_limit"
        assert result.metadata["retry_after"] == 30.0

    async def test_rate_limit_from_reset_header(self) -> None:
        reset = int(time.time()) + 60
        reply = httpx.Response(429, headers={"X-RateLimit-Reset": str(reset)})
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert result.error == "rate_limit"
        assert 50 <= result.metadata["retry_after"] <= 61

    async def test_api_key_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        cfg = config()
        result = await send(Recorder(httpx.Response(401)), TextContent(body="hi"), cfg)
        async with httpx.AsyncClient() as client:
            provider = SendGridProvider(cfg, client=client)
            shown = [repr(cfg), str(cfg), repr(provider), caplog.text, result.model_dump_json()]
        for item in shown:
            assert API_KEY not in item

    async def test_plain_string_key_becomes_secret(self) -> None:
        assert config().api_key.get_secret_value() == API_KEY
        assert "**" in repr(config())


async def test_close_closes_the_created_client() -> None:
    provider = SendGridProvider(config())
    client = provider._http.client
    await provider.close()
    assert client.is_closed
    await provider.close()  # idempotent


async def test_end_to_end_email_reply() -> None:
    """An email (parsed upstream, e.g. by an inbound-parse hook) reaches the agent; the agent's
    reply goes out through SendGrid to the address and with the subject of the binding."""
    recorder = Recorder(httpx.Response(202, headers={"X-Message-Id": "sg-9"}))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client,
        RoomKit() as kit,
    ):
        channel = EmailChannel("email", provider=SendGridProvider(config(), client=client))
        agent = await agent_room(
            kit, channel, {"email_address": "alice@example.com", "subject": "Re: your order"}
        )

        inbound = InboundMessage(
            channel_id="email",
            sender_id="alice@example.com",
            content=TextContent(body="Where is my order?"),
            idempotency_key="<msg-1@example.com>",
        )
        assert not (await kit.process_inbound(inbound)).blocked
        assert agent.texts() == ["Where is my order?"]

        await kit.process_inbound(text("agent", "It ships today.", sender="agent-1"))
        (request,) = recorder.requests
        assert str(request.url) == URL
        body = json.loads(request.content)
        assert body["personalizations"] == [{"to": [{"email": "alice@example.com"}]}]
        assert body["subject"] == "Re: your order"
        assert body["content"] == [{"type": "text/plain", "value": "It ships today."}]
