"""Sinch SMS over httpx.MockTransport: batches, error mapping, callbacks, signatures."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given, settings

from providers.sinch import (
    SinchConfig,
    SinchSMSProvider,
    compute_sinch_signature,
    extract_sinch_meta,
    parse_sinch_webhook,
    verify_sinch_signature,
)
from providers.sms.meta import WebhookMeta, extract_sms_meta
from roomkit.models.delivery import DeliveryStatus
from roomkit.models.event import CompositeContent, MediaContent, TextContent
from tests.providers.sms_support import (
    Recorder,
    body_json,
    event,
    mock_client,
    payloads,
    sms_kit,
)

PLAN = "a1b2c3d4e5f6"
TOKEN = "sinch-api-t0ken-s3cret"
SECRET = "webhook-shared-s3cret"
BATCHES_URL = f"https://us.sms.api.sinch.com/xms/v1/{PLAN}/batches"
BATCH_ID = "01FC66621XXXXX119Z8PMV1QPQ"


def created(kind: str = "mt_text") -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "id": BATCH_ID,
            "to": ["15145550100"],
            "from": "12345",
            "canceled": False,
            "body": "Hi",
            "type": kind,
            "created_at": "2024-05-10T12:00:00.000Z",
            "modified_at": "2024-05-10T12:00:00.000Z",
            "delivery_report": "none",
            "expire_at": "2024-05-13T12:00:00.000Z",
            "flash_message": False,
        },
    )


def config(**overrides: Any) -> SinchConfig:
    values: dict[str, Any] = {"service_plan_id": PLAN, "api_token": TOKEN, "from_number": "12345"}
    values.update(overrides)
    return SinchConfig(**values)


def mo_text(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "01FC66621VHDBN119Z8PMV1AHY",
        "from": "+15145550100",
        "to": "12345",
        "body": "Hello Sinch",
        "type": "mo_text",
        "received_at": "2024-05-10T12:01:02.000Z",
        "operator_id": "31026",
    }
    payload.update(overrides)
    return payload


class TestSend:
    async def test_text_request(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = SinchSMSProvider(config(), client=client)
            result = await provider.send(event("Hi"), to="+15145550100")
        assert result.success
        assert result.provider_message_id == BATCH_ID
        request = recorder.last
        assert (request.method, str(request.url)) == ("POST", BATCHES_URL)
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert body_json(request) == {
            "from": "12345",
            "to": ["+15145550100"],
            "type": "mt_text",
            "body": "Hi",
        }

    async def test_region_reports_and_sender(self) -> None:
        recorder = Recorder([created()])
        cfg = config(
            region="eu",
            delivery_report="per_recipient",
            callback_url="https://example.com/sinch/dlr",
        )
        async with mock_client(recorder) as client:
            await SinchSMSProvider(cfg, client=client).send(event("Hi"), to="+1", from_="Acme")
        assert str(recorder.last.url) == f"https://eu.sms.api.sinch.com/xms/v1/{PLAN}/batches"
        body = body_json(recorder.last)
        assert body["from"] == "Acme"
        assert body["delivery_report"] == "per_recipient"
        assert body["callback_url"] == "https://example.com/sinch/dlr"

    async def test_mms_uses_first_media(self) -> None:
        recorder = Recorder([created("mt_media")])
        content = CompositeContent(
            parts=[
                TextContent(body="receipt attached"),
                MediaContent(url="https://cdn.example.com/r.png", mime_type="image/png"),
                MediaContent(url="https://cdn.example.com/s.png", mime_type="image/png"),
            ]
        )
        async with mock_client(recorder) as client:
            result = await SinchSMSProvider(config(), client=client).send(
                event(content), to="+15145550100"
            )
        assert body_json(recorder.last) == {
            "from": "12345",
            "to": ["+15145550100"],
            "type": "mt_media",
            "body": {"url": "https://cdn.example.com/r.png", "message": "receipt attached"},
        }
        assert result.metadata == {"type": "mt_media", "media_dropped": 1}

    async def test_empty_message(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            result = await SinchSMSProvider(config(), client=client).send(event("\n"), to="+1")
        assert result.error == "empty_message"
        assert recorder.requests == []


def test_config_api_url_is_the_batches_endpoint_as_in_0_3_0() -> None:
    assert config().api_url == BATCHES_URL
    assert config(region="eu").api_url == BATCHES_URL.replace("//us.", "//eu.")


class TestErrors:
    async def send_with(self, answer: httpx.Response | Exception) -> Any:
        async with mock_client(Recorder([answer])) as client:
            return await SinchSMSProvider(config(), client=client).send(event("x"), to="+1")

    async def test_401(self) -> None:
        result = await self.send_with(
            httpx.Response(401, json={"code": "unauthorized", "text": "Unauthorized"})
        )
        assert (result.error, result.metadata["vendor_code"]) == ("auth_error", "unauthorized")

    async def test_429(self) -> None:
        result = await self.send_with(httpx.Response(429, headers={"Retry-After": "1.5"}))
        assert (result.error, result.metadata["retry_after"]) == ("rate_limit", 1.5)

    async def test_vendor_code(self) -> None:
        result = await self.send_with(
            httpx.Response(
                400,
                json={
                    "code": "syntax_invalid_parameter_format",
                    "text": "Parameter 'to' has invalid format",
                },
            )
        )
        assert result.error == "sinch_syntax_invalid_parameter_format"
        assert result.metadata["detail"] == "Parameter 'to' has invalid format"
        assert result.metadata["message"] == "Parameter 'to' has invalid format"  # 0.3.0's key

    async def test_5xx_timeout(self) -> None:
        assert (await self.send_with(httpx.Response(502))).error == "http_502"
        assert (await self.send_with(httpx.WriteTimeout("t"))).error == "timeout"

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            # 0.3.0's Sinch codes: 403 is not an auth error, a 400 without JSON is plain.
            (httpx.Response(403, json={"code": "forbidden"}), "http_403"),
            (httpx.Response(400, text="bad"), "invalid_request"),
            (httpx.Response(400, json={"text": "no code"}), "sinch_invalid_request"),
            (httpx.Response(404, json={"code": "not_found"}), "http_404"),
        ],
    )
    async def test_0_3_0_codes(self, answer: httpx.Response, error: str) -> None:
        result = await self.send_with(answer)
        assert (result.success, result.error) == (False, error)

    async def test_network_error_is_its_text(self) -> None:
        result = await self.send_with(httpx.ConnectError(f"refused {TOKEN}"))
        assert (result.error, result.metadata["retryable"]) == ("refused ***", True)

    @pytest.mark.parametrize(
        "answer", [httpx.Response(201, text="ok"), httpx.Response(201, json={"to": ["+1"]})]
    )
    async def test_2xx_without_batch_id_is_sent(
        self, answer: httpx.Response, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Sinch accepted the batch: a failure would have the router send it again.
        result = await self.send_with(answer)
        assert (result.success, result.provider_message_id, result.error) == (True, None, None)
        assert "without naming its id" in caplog.text

    async def test_secrets_never_leak(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        for answer in (httpx.Response(401), httpx.ReadTimeout("t")):
            assert TOKEN not in repr(await self.send_with(answer))
        cfg = config(webhook_secret=SECRET)
        assert TOKEN not in repr(cfg) and SECRET not in repr(cfg)
        assert TOKEN not in caplog.text


class TestWebhooks:
    def test_inbound_text(self) -> None:
        message = parse_sinch_webhook(mo_text(), "sms")
        assert message.sender_id == "+15145550100"
        assert message.content == TextContent(body="Hello Sinch")
        assert message.external_id == "01FC66621VHDBN119Z8PMV1AHY"
        assert message.idempotency_key == message.external_id
        assert message.metadata["recipient"] == "12345"
        assert message.metadata["operator_id"] == "31026"
        assert message.metadata["timestamp"] == "2024-05-10T12:01:02+00:00"
        # 0.3.0's keys: Sinch's own text, None when absent.
        assert (message.metadata["to"], message.metadata["received_at"]) == (
            "12345",
            "2024-05-10T12:01:02.000Z",
        )
        assert message.metadata["client_reference"] is None

    def test_inbound_media(self) -> None:
        payload = mo_text(
            type="mo_media",
            body={
                "subject": "Photo",
                "message": "at the beach",
                "media": [
                    {"url": "https://mms.sinch.com/m/1.jpg", "content_type": "image/jpeg"},
                    {"url": "https://mms.sinch.com/m/2.mp4", "content_type": "video/mp4"},
                ],
            },
        )
        message = parse_sinch_webhook(payload, "sms")
        assert isinstance(message.content, CompositeContent)
        assert [type(p).__name__ for p in message.content.parts] == [
            "TextContent",
            "MediaContent",
            "MediaContent",
        ]
        assert message.metadata["subject"] == "Photo"

    def test_inbound_single_media_url(self) -> None:
        payload = mo_text(type="mo_media", body={"url": "https://mms.sinch.com/m/1.png"})
        message = parse_sinch_webhook(payload, "sms")
        assert message.content == MediaContent(
            url="https://mms.sinch.com/m/1.png", mime_type="image/png"
        )

    def test_inbound_binary(self) -> None:
        payload = mo_text(type="mo_binary", body="AAECAw==", udh="050003CC0201")
        message = parse_sinch_webhook(payload, "sms")
        assert message.content == TextContent(body="")
        assert message.metadata["binary_body"] == "AAECAw=="

    def test_recipient_delivery_report(self) -> None:
        payload = {
            "type": "recipient_delivery_report_sms",
            "batch_id": BATCH_ID,
            "recipient": "+15145550100",
            "code": 0,
            "status": "Delivered",
            "at": "2024-05-10T12:00:05.000Z",
            "operator_status_at": "2024-05-10T12:00:04.000Z",
        }
        meta = extract_sms_meta("sinch", payload)
        assert meta.is_status and not meta.is_inbound
        assert meta.to_status() == DeliveryStatus(
            provider="sinch",
            message_id=BATCH_ID,
            status="delivered",
            recipient="+15145550100",
            timestamp="2024-05-10T12:00:05+00:00",
            raw=payload,
        )
        with pytest.raises(ValueError):
            parse_sinch_webhook(payload, "sms")

    def test_failed_report_has_code(self) -> None:
        payload = {
            "type": "recipient_delivery_report_sms",
            "batch_id": BATCH_ID,
            "recipient": "+15145550100",
            "code": 402,
            "status": "Failed",
        }
        status = extract_sinch_meta(payload).to_status()
        assert (status.status, status.error_code) == ("failed", "402")

    def test_batch_delivery_report(self) -> None:
        payload = {
            "type": "delivery_report_sms",
            "batch_id": BATCH_ID,
            "total_message_count": 1,
            "statuses": [
                {"code": 0, "status": "Delivered", "count": 1, "recipients": ["+15145550100"]}
            ],
        }
        status = extract_sinch_meta(payload).to_status()
        assert (status.message_id, status.status, status.recipient) == (
            BATCH_ID,
            "delivered",
            "+15145550100",
        )

    def test_unknown_type(self) -> None:
        meta = extract_sinch_meta({"type": "something_else", "id": "1"})
        assert not meta.is_inbound and not meta.is_status
        assert not extract_sinch_meta({"id": "1", "to": "12345"}).is_inbound  # no sender

    def test_an_inbound_message_without_a_type_as_0_3_0_read_it(self) -> None:
        # The shape 0.3.0 documented and tested: no "type", attachments in a top-level
        # "media" list. Read as unknown, it was refused ("not an inbound message").
        payload = {
            "id": "msg-1",
            "from": "+15145551111",
            "to": "12345",
            "body": "look",
            "media": [{"url": "https://x.test/a.jpg", "mimeType": "image/jpeg"}, "junk"],
        }
        message = parse_sinch_webhook(payload, "sms")
        assert message.sender_id == "+15145551111" and message.external_id == "msg-1"
        assert message.content == MediaContent(
            url="https://x.test/a.jpg", mime_type="image/jpeg", caption="look"
        )
        plain = parse_sinch_webhook({"id": "m2", "from": "+1", "body": "hi"}, "sms")
        assert plain.content == TextContent(body="hi")

    @settings(max_examples=300, deadline=None)
    @given(
        payloads(
            [
                "type",
                "id",
                "from",
                "to",
                "body",
                "batch_id",
                "statuses",
                "recipient",
                "status",
                "code",
                "received_at",
            ]
        )
    )
    def test_parsers_only_raise_value_error(self, payload: dict[str, Any]) -> None:
        meta = extract_sinch_meta(payload)
        if meta.is_inbound:
            meta.to_inbound("sms")
        if meta.is_status:
            meta.to_status()
        with contextlib.suppress(ValueError):
            parse_sinch_webhook(payload, "sms")


class TestSignature:
    BODY = json.dumps(mo_text()).encode()

    def test_valid_signature(self) -> None:
        # Computed independently with the documented algorithm.
        expected = base64.b64encode(
            hmac.new(SECRET.encode(), self.BODY, hashlib.sha1).digest()
        ).decode()
        assert compute_sinch_signature(SECRET, self.BODY) == expected
        assert verify_sinch_signature(SECRET, self.BODY, expected)

    def test_forgeries(self) -> None:
        signature = compute_sinch_signature(SECRET, self.BODY)
        assert not verify_sinch_signature(SECRET, self.BODY + b" ", signature)
        assert not verify_sinch_signature("other", self.BODY, signature)
        assert not verify_sinch_signature(SECRET, self.BODY, "")
        assert not verify_sinch_signature(SECRET, self.BODY, "Zm9yZ2Vk")

    async def test_provider_method(self) -> None:
        signature = compute_sinch_signature(SECRET, self.BODY)
        async with mock_client(Recorder([created()])) as client:
            provider = SinchSMSProvider(config(webhook_secret=SECRET), client=client)
            assert provider.verify_signature(self.BODY, signature)
            assert not provider.verify_signature(b"{}", signature)
            unsigned = SinchSMSProvider(config(), client=client)
            with pytest.raises(ValueError, match="^webhook_secret must be provided"):
                unsigned.verify_signature(self.BODY, signature)


class TestEndToEnd:
    async def test_webhook_in_reply_out(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = SinchSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                result = await kit.process_webhook(extract_sms_meta("sinch", mo_text()), "sms")
                assert result is not None and result.event is not None
                assert result.event.source.provider == "SinchSMSProvider"
                assert other.texts() == ["Hello Sinch"]
                await kit.send_event("r1", "other", TextContent(body="Got it"))
        assert len(recorder.requests) == 1
        assert str(recorder.last.url) == BATCHES_URL
        assert recorder.last.headers["authorization"] == f"Bearer {TOKEN}"
        assert body_json(recorder.last) == {
            "from": "12345",
            "to": ["+15145550100"],
            "type": "mt_text",
            "body": "Got it",
        }

    async def test_a_webhook_meta_made_the_0_3_0_way_reaches_the_room(self) -> None:
        # 0.3.0's dataclass, positionally and without a direction: it used to be ignored.
        meta = WebhookMeta("sinch", "+15145550100", "12345", "Hello", "01W4", None, {})
        async with mock_client(Recorder([created()])) as client:
            provider = SinchSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                result = await kit.process_webhook(meta, "sms")
                assert result is not None and result.event is not None
                assert result.event.idempotency_key == "01W4"
                assert other.texts() == ["Hello"]
