"""ElasticEmailProvider through httpx.MockTransport (no network)."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from providers.elasticemail import ElasticEmailConfig, ElasticEmailProvider
from roomkit.core._failed_attempt import Health, channel_health, retryable
from roomkit.core.event_router import ProviderDeliveryError
from roomkit.models.event import (
    CompositeContent,
    MediaContent,
    RichContent,
    TextContent,
)
from tests.providers import http_support
from tests.providers.http_support import Reply, event

API_KEY = "ee-test-key-123456"
URL = "https://api.elasticemail.com/v2/email/send"
OK = httpx.Response(
    200, json={"success": True, "data": {"transactionid": "tx-1", "messageid": "msg-1"}}
)


class Recorder(http_support.Recorder):
    default = OK


def config(**overrides: Any) -> ElasticEmailConfig:
    values: dict[str, Any] = {"api_key": API_KEY, "from_email": "bot@example.com"}
    values.update(overrides)
    return ElasticEmailConfig(**values)


async def send(
    recorder: Recorder, content: Any, cfg: ElasticEmailConfig | None = None, **kwargs: Any
) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        provider = ElasticEmailProvider(cfg or config(), client=client)
        return await provider.send(event(content), "alice@example.com", **kwargs)


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode(), keep_blank_values=True).items()}


class TestRequests:
    async def test_text_email_is_a_form_post(self) -> None:
        recorder = Recorder()
        result = await send(recorder, TextContent(body="Hello Alice"), config(from_name="Support"))
        assert result.success
        # 0.3.0's id: the transaction id.
        assert result.provider_message_id == "tx-1"
        assert result.metadata == {"transaction_id": "tx-1", "message_id": "msg-1"}
        (request,) = recorder.requests
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form(request) == {
            "apikey": API_KEY,
            "from": "bot@example.com",
            "fromName": "Support",
            "to": "alice@example.com",
            "subject": "New message",
            "bodyText": "Hello Alice",
            "isTransactional": "true",
        }

    @pytest.mark.parametrize(
        "base_url",
        [
            "https://proxy.example.com/v2/email/send",  # 0.3.0: the send endpoint
            "https://proxy.example.com/v2/email/send/",
            "https://proxy.example.com/v2",  # an API root
        ],
    )
    async def test_base_url_as_0_3_0_gave_it_or_an_api_root(self, base_url: str) -> None:
        assert config().base_url == URL  # 0.3.0's default
        recorder = Recorder()
        assert (await send(recorder, TextContent(body="Hi"), config(base_url=base_url))).success
        (request,) = recorder.requests
        assert str(request.url) == "https://proxy.example.com/v2/email/send"

    async def test_overrides_and_html(self) -> None:
        recorder = Recorder()
        content = RichContent(body="<h1>Hi</h1><p>there</p>", format="html")
        await send(
            recorder,
            content,
            config(is_transactional=False),
            from_="ops@example.com",
            subject="Hello",
        )
        fields = form(recorder.requests[0])
        assert fields["from"] == "ops@example.com"
        assert fields["subject"] == "Hello"
        assert fields["isTransactional"] == "false"
        assert fields["bodyHtml"] == "<h1>Hi</h1><p>there</p>"
        assert fields["bodyText"] == ""  # as 0.3.0 sent it

    @pytest.mark.parametrize("fmt", ["markdown", "html"])
    async def test_rich_content_goes_out_as_0_3_0_sent_it(self, fmt: str) -> None:
        # 0.3.0 sent any rich body (Markdown is the default format) as bodyHtml, bodyText empty:
        # apps wrote HTML without naming the format.
        recorder = Recorder()
        body = "<p>Hello <b>world</b></p>"
        assert (await send(recorder, RichContent(body=body, format=fmt))).success  # type: ignore[arg-type]
        fields = form(recorder.requests[0])
        assert (fields["bodyHtml"], fields["bodyText"]) == (body, "")
        assert list(fields) == [
            "apikey",
            "from",
            "to",
            "subject",
            "bodyText",
            "bodyHtml",
            "isTransactional",
        ]
        # The author's own text alternative (0.3.0 ignored it) goes in bodyText.
        recorder = Recorder()
        await send(recorder, RichContent(body=body, format=fmt, plain_text="Hello world"))  # type: ignore[arg-type]
        assert form(recorder.requests[0])["bodyText"] == "Hello world"

    async def test_id_without_message_id_and_without_any(self) -> None:
        only_tx = httpx.Response(200, json={"success": True, "data": {"transactionid": "tx-9"}})
        result = await send(Recorder(only_tx), TextContent(body="hi"))
        assert (result.provider_message_id, result.metadata) == (
            "tx-9",
            {"transaction_id": "tx-9"},
        )
        no_id = httpx.Response(200, json={"success": True, "data": {"messageid": "m-9"}})
        result = await send(Recorder(no_id), TextContent(body="hi"))
        assert (result.success, result.provider_message_id) == (True, None)
        assert result.metadata == {"message_id": "m-9"}

    async def test_data_media_is_uploaded_as_multipart(self) -> None:
        png = b"\x89PNG\r\n\x1a\nfake"
        content = CompositeContent(
            parts=[
                TextContent(body="See attached"),
                MediaContent(
                    url="data:image/png;base64," + base64.b64encode(png).decode(),
                    mime_type="image/png",
                    filename="chart.png",
                ),
            ]
        )
        recorder = Recorder()
        assert (await send(recorder, content)).success
        request = recorder.requests[0]
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert b'name="attachments"; filename="chart.png"' in request.content
        assert png in request.content
        assert b'name="bodyText"\r\n\r\nSee attached' in request.content

    async def test_empty_message(self) -> None:
        recorder = Recorder()
        result = await send(recorder, TextContent(body=""))
        assert (result.success, result.error) == (False, "empty_message")
        assert recorder.requests == []


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "error", "code", "health"),
        [
            (
                {"success": False, "error": "Incorrect apikey"},
                "Incorrect apikey",
                "auth_error",
                Health.FAILING,
            ),
            (
                {"success": False, "error": "Access denied."},
                "Access denied.",
                "auth_error",
                Health.FAILING,
            ),
            (
                {"success": False, "error": "Recipient is on the suppression list"},
                "Recipient is on the suppression list",
                "elasticemail_error",
                Health.ANSWERING,
            ),
            ({"success": False}, "unknown_error", "elasticemail_error", Health.FAILING),
        ],
    )
    async def test_vendor_failures_in_a_200(
        self, body: dict[str, Any], error: str, code: str, health: Health
    ) -> None:
        # The vendor's text is the error, as in 0.3.0; the kind of failure is in metadata. A
        # refusal of the message was sent again and counted by the breaker, and a few bad
        # addresses opened it for every room.
        result = await send(Recorder(httpx.Response(200, json=body)), TextContent(body="hi"))
        assert (result.success, result.error, result.metadata["code"]) == (False, error, code)
        failed = ProviderDeliveryError(result)  # as the kit's router reads it
        assert channel_health(failed) is health
        assert retryable(failed) is (body.get("error") is None)

    async def test_non_json_answer(self) -> None:
        result = await send(Recorder(httpx.Response(200, text="ok")), TextContent(body="hi"))
        assert result.error == "invalid_response"

    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            (httpx.Response(401), "auth_error", False),
            (httpx.Response(500), "http_500", True),
            (httpx.Response(429, headers={"Retry-After": "5"}), "rate_limit", True),
            (httpx.ReadTimeout, "timeout", True),
        ],
    )
    async def test_http_failures(self, reply: Reply, error: str, retryable: bool) -> None:
        result = await send(Recorder(reply), TextContent(body="hi"))
        assert (result.success, result.error) == (False, error)
        assert result.metadata["retryable"] is retryable
        if error == "rate_limit":
            assert result.metadata["retry_after"] == 5.0

    async def test_key_not_in_logs_or_results(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        results = [
            await send(Recorder(reply), TextContent(body="hi"))
            for reply in (
                httpx.Response(500),
                httpx.ReadTimeout,
                OK,
                # An answer to a bad key that quotes it: it was the result's error as is.
                httpx.Response(
                    200, json={"success": False, "error": f"Incorrect apikey {API_KEY}"}
                ),
            )
        ]
        assert results[-1].error == "Incorrect apikey ***"
        for shown in (caplog.text, repr(config()), *(r.model_dump_json() for r in results)):
            assert API_KEY not in shown
