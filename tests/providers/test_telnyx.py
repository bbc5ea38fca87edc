"""Telnyx SMS and RCS over httpx.MockTransport: requests, error mapping, webhooks, Ed25519."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import given, settings

from providers.rcs.base import RCSDeliveryResult
from providers.sms.meta import extract_sms_meta
from providers.telnyx import (
    TelnyxConfig,
    TelnyxRCSConfig,
    TelnyxRCSProvider,
    TelnyxSMSProvider,
    extract_telnyx_meta,
    extract_telnyx_rcs_meta,
    parse_telnyx_rcs_webhook,
    parse_telnyx_webhook,
    verify_telnyx_signature,
)
from roomkit.models.delivery import DeliveryStatus
from roomkit.models.enums import ChannelType
from roomkit.models.event import CompositeContent, LocationContent, MediaContent, TextContent
from tests.providers.sms_support import (
    Recorder,
    body_json,
    event,
    mock_client,
    nested_payloads,
    payloads,
    sms_kit,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

API_KEY = "KEY0123456789ABCDEF_s3cr3t"
MESSAGES_URL = "https://api.telnyx.com/v2/messages"
MESSAGE_ID = "40385f64-5717-4562-b3fc-2c963f66afa6"


def accepted(message_type: str = "SMS", **extra: Any) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": {
                "record_type": "message",
                "direction": "outbound",
                "id": MESSAGE_ID,
                "type": message_type,
                "messaging_profile_id": "16fd2706-8baf-433b-82eb-8c7fada847da",
                "from": {"phone_number": "+18445550001", "carrier": "Telnyx", "line_type": "VoIP"},
                "to": [
                    {
                        "phone_number": "+15145550100",
                        "status": "queued",
                        "carrier": "T-MOBILE USA, INC.",
                        "line_type": "Wireless",
                    }
                ],
                "text": "Hi",
                "media": [],
                "parts": 1,
                **extra,
            }
        },
    )


def config(**overrides: Any) -> TelnyxConfig:
    values: dict[str, Any] = {"api_key": API_KEY, "from_number": "+18445550001"}
    values.update(overrides)
    return TelnyxConfig(**values)


def inbound(**overrides: Any) -> dict[str, Any]:
    """A ``message.received`` webhook as Telnyx documents it."""
    message: dict[str, Any] = {
        "completed_at": None,
        "cost": None,
        "direction": "inbound",
        "encoding": "GSM-7",
        "errors": [],
        "from": {
            "carrier": "T-Mobile USA",
            "line_type": "long_code",
            "phone_number": "+15145550100",
            "status": "webhook_delivered",
        },
        "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
        "media": [],
        "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
        "parts": 1,
        "received_at": "2024-05-10T20:16:07.503+00:00",
        "record_type": "message",
        "sent_at": None,
        "tags": [],
        "text": "Hello there!",
        "to": [
            {
                "carrier": "Telnyx",
                "line_type": "Wireless",
                "phone_number": "+18445550001",
                "status": "webhook_delivered",
            }
        ],
        "type": "SMS",
        "valid_until": None,
        "webhook_failover_url": None,
        "webhook_url": "https://example.com/telnyx",
    }
    message.update(overrides)
    return {
        "data": {
            "event_type": "message.received",
            "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "occurred_at": "2024-05-10T20:16:07.588+00:00",
            "payload": message,
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://example.com/telnyx"},
    }


def finalized(status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "data": {
            "event_type": "message.finalized",
            "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
            "occurred_at": "2024-05-10T20:17:00.000+00:00",
            "payload": {
                "completed_at": "2024-05-10T20:16:59.000+00:00",
                "direction": "outbound",
                "errors": errors or [],
                "from": {"phone_number": "+18445550001"},
                "id": MESSAGE_ID,
                "record_type": "message",
                "sent_at": "2024-05-10T20:16:58.000+00:00",
                "text": "Hi",
                "to": [{"phone_number": "+15145550100", "status": status}],
                "type": "SMS",
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://example.com/telnyx"},
    }


class TestSend:
    async def test_text_request(self) -> None:
        recorder = Recorder([accepted()])
        async with mock_client(recorder) as client:
            provider = TelnyxSMSProvider(config(), client=client)
            result = await provider.send(event("Hi"), to="+15145550100")
        assert result.success
        assert result.provider_message_id == MESSAGE_ID
        assert result.metadata == {"status": "queued", "type": "SMS"}
        request = recorder.last
        assert (request.method, str(request.url)) == ("POST", MESSAGES_URL)
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.headers["content-type"] == "application/json"
        assert body_json(request) == {"from": "+18445550001", "to": "+15145550100", "text": "Hi"}

    async def test_profile_webhook_and_sender(self) -> None:
        recorder = Recorder([accepted()])
        cfg = config(
            messaging_profile_id="16fd2706-8baf-433b-82eb-8c7fada847da",
            webhook_url="https://example.com/telnyx/status",
        )
        async with mock_client(recorder) as client:
            await TelnyxSMSProvider(cfg, client=client).send(
                event("Hi"), to="+15145550100", from_="+18445550002"
            )
        assert body_json(recorder.last) == {
            "from": "+18445550002",
            "to": "+15145550100",
            "text": "Hi",
            "messaging_profile_id": "16fd2706-8baf-433b-82eb-8c7fada847da",
            "webhook_url": "https://example.com/telnyx/status",
        }

    async def test_media_urls(self) -> None:
        recorder = Recorder([accepted("MMS")])
        content = CompositeContent(
            parts=[
                TextContent(body="two pics"),
                MediaContent(url="https://cdn.example.com/1.jpg", mime_type="image/jpeg"),
                MediaContent(url="https://cdn.example.com/2.jpg", mime_type="image/jpeg"),
            ]
        )
        async with mock_client(recorder) as client:
            result = await TelnyxSMSProvider(config(), client=client).send(
                event(content), to="+15145550100"
            )
        assert result.metadata["type"] == "MMS"
        assert body_json(recorder.last)["media_urls"] == [
            "https://cdn.example.com/1.jpg",
            "https://cdn.example.com/2.jpg",
        ]
        assert body_json(recorder.last)["text"] == "two pics"

    async def test_empty_message(self) -> None:
        recorder = Recorder([accepted()])
        async with mock_client(recorder) as client:
            result = await TelnyxSMSProvider(config(), client=client).send(event(""), to="+1")
        assert (result.success, result.error, recorder.requests) == (False, "empty_message", [])


class TestErrors:
    async def send_with(self, answer: httpx.Response | Exception) -> Any:
        async with mock_client(Recorder([answer])) as client:
            return await TelnyxSMSProvider(config(), client=client).send(event("x"), to="+1")

    async def test_401(self) -> None:
        result = await self.send_with(
            httpx.Response(
                401,
                json={
                    "errors": [
                        {
                            "code": "10009",
                            "title": "Authentication failed",
                            "detail": "Could not understand the provided credentials.",
                        }
                    ]
                },
            )
        )
        assert result.error == "auth_error"
        assert result.metadata["vendor_code"] == "10009"

    async def test_429_with_retry_after(self) -> None:
        result = await self.send_with(
            httpx.Response(429, headers={"Retry-After": "12"}, json={"errors": []})
        )
        assert (result.error, result.metadata["retry_after"]) == ("rate_limit", 12.0)

    async def test_vendor_code(self) -> None:
        result = await self.send_with(
            httpx.Response(
                422,
                json={
                    "errors": [
                        {
                            "code": "40310",
                            "title": "Invalid 'to' address",
                            "detail": "The 'to' address should be in E.164 format.",
                            "source": {"pointer": "/to"},
                        }
                    ]
                },
            )
        )
        # 0.3.0 named it by its status; Telnyx' code and text stay in the metadata.
        assert result.error == "http_422"
        assert result.metadata["vendor_code"] == "40310"
        assert result.metadata["detail"] == "The 'to' address should be in E.164 format."

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            # 0.3.0's Telnyx SMS codes: every 400 is invalid_request, 403 is not an auth error.
            (httpx.Response(400, json={"errors": [{"code": "40310"}]}), "invalid_request"),
            (httpx.Response(400, text="not json"), "invalid_request"),
            (httpx.Response(403, json={"errors": [{"code": "10010"}]}), "http_403"),
        ],
    )
    async def test_0_3_0_codes(self, answer: httpx.Response, error: str) -> None:
        result = await self.send_with(answer)
        assert (result.success, result.error) == (False, error)

    async def test_5xx_and_timeout(self) -> None:
        assert (await self.send_with(httpx.Response(500))).error == "http_500"
        assert (await self.send_with(httpx.ConnectTimeout("slow"))).error == "timeout"

    async def test_network_error_is_its_text(self) -> None:
        result = await self.send_with(httpx.ConnectError(f"refused ({API_KEY})"))
        assert (result.error, result.metadata["retryable"]) == ("refused (***)", True)

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(200, json={"data": {}}),
            httpx.Response(200, json={}),
            httpx.Response(200, text="{not json"),
        ],
    )
    async def test_2xx_without_id_is_sent(
        self, answer: httpx.Response, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Telnyx accepted it: a failure would have the router send it again.
        for provider_type in (TelnyxSMSProvider, TelnyxRCSProvider):
            async with mock_client(Recorder([answer])) as client:
                settings = config() if provider_type is TelnyxSMSProvider else rcs_config()
                provider = provider_type(settings, client=client)  # type: ignore[arg-type]
                result = await provider.send(event("x"), to="+1")
            assert (result.success, result.provider_message_id) == (True, None)
        assert "without naming its id" in caplog.text

    async def test_a_key_with_a_newline_is_never_echoed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A key read from a file with its newline: h11 refuses the header and quotes it,
        # escaped, in its error; that text was the result's error (and so RoomKit's delivery
        # warning and delivery_failed event), marked retryable.
        caplog.set_level(logging.DEBUG)

        def h11_refuses(request: httpx.Request) -> httpx.Response:
            for _, value in request.headers.raw:
                if b"\n" in value:
                    raise httpx.LocalProtocolError(f"Illegal header value {value!r}")
            return accepted()

        transport = httpx.MockTransport(h11_refuses)
        async with httpx.AsyncClient(transport=transport) as client:
            provider = TelnyxSMSProvider(config(api_key=API_KEY + "\n"), client=client)
            result = await provider.send(event("x"), to="+1")
        assert (result.error, result.metadata["retryable"]) == ("LocalProtocolError", False)
        assert API_KEY not in repr(result) and API_KEY not in caplog.text

    async def test_a_base_url_without_scheme_is_not_retryable(self) -> None:
        def httpcore_refuses(request: httpx.Request) -> httpx.Response:
            # What httpcore's pool says of such a URL (MockTransport takes any).
            assert request.url.scheme not in ("http", "https")
            raise httpx.UnsupportedProtocol(
                "Request URL is missing an 'http://' or 'https://' protocol."
            )

        transport = httpx.MockTransport(httpcore_refuses)
        async with httpx.AsyncClient(transport=transport) as client:
            provider = TelnyxSMSProvider(config(base_url="api.telnyx.com"), client=client)
            result = await provider.send(event("x"), to="+1")
        # 0.3.0's text of the httpx error is kept; it would fail again, though.
        assert result.error == "Request URL is missing an 'http://' or 'https://' protocol."
        assert result.metadata["retryable"] is False

    async def test_secret_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        for answer in (httpx.Response(401), httpx.Response(429), httpx.ReadTimeout("t")):
            result = await self.send_with(answer)
            assert API_KEY not in repr(result)
        assert API_KEY not in repr(config())
        assert API_KEY not in caplog.text


class TestWebhooks:
    def test_inbound_text(self) -> None:
        message = parse_telnyx_webhook(inbound(), "sms")
        assert message.sender_id == "+15145550100"
        assert message.content == TextContent(body="Hello there!")
        assert message.external_id == "84cca175-9755-4859-b67f-4730d7f58aa3"
        assert message.idempotency_key == message.external_id
        assert message.metadata["recipient"] == "+18445550001"
        # 0.3.0's isoformat() of the time, and its keys with Telnyx' own text.
        assert message.metadata["timestamp"] == "2024-05-10T20:16:07.503000+00:00"
        assert message.metadata["destination_number"] == "+18445550001"
        assert message.metadata["received_at"] == "2024-05-10T20:16:07.503+00:00"
        assert message.metadata["message_type"] == "SMS"
        assert message.metadata["telnyx_event_id"] == "b301ed3f-1490-491f-995f-6e64e69674d4"

    def test_inbound_mms(self) -> None:
        payload = inbound(
            type="MMS",
            text="",
            media=[
                {
                    "url": "https://media.telnyx.com/abc.jpg",
                    "content_type": "image/jpeg",
                    "hash_sha256": "e3b0c442",
                    "size": 12345,
                }
            ],
        )
        message = parse_telnyx_webhook(payload, "sms")
        assert message.content == MediaContent(
            url="https://media.telnyx.com/abc.jpg", mime_type="image/jpeg"
        )

    def test_delivered(self) -> None:
        meta = extract_sms_meta("telnyx", finalized("delivered"))
        assert meta.is_status and not meta.is_inbound
        assert meta.status == "delivered"  # the recipient's status, on the meta
        status = meta.to_status()
        # 0.3.0's DeliveryStatus: the event's name; the recipient's status stays in raw.
        assert (status.message_id, status.status, status.recipient, status.sender) == (
            MESSAGE_ID,
            "finalized",
            "+15145550100",
            "+18445550001",
        )
        assert status.raw["data"]["payload"]["to"][0]["status"] == "delivered"
        assert status.timestamp == "2024-05-10T20:16:59+00:00"
        with pytest.raises(ValueError):
            parse_telnyx_webhook(finalized("delivered"), "sms")
        # 0.3.0's strict=False converts it all the same (not recommended).
        loose = parse_telnyx_webhook(finalized("delivered"), "sms", strict=False)
        assert (loose.channel_id, loose.sender_id) == ("sms", "+18445550001")

    def test_delivery_failed_has_error(self) -> None:
        errors = [{"code": "40008", "title": "Undeliverable", "detail": "Handset unreachable"}]
        meta = extract_telnyx_meta(finalized("delivery_failed", errors))
        status = meta.to_status()
        assert (meta.status, status.status, status.error_code, status.error_message) == (
            "delivery_failed",
            "finalized",
            "40008",
            "Handset unreachable",
        )

    def test_inbound_to_status_is_0_3_0s(self) -> None:
        # 0.3.0 answered from the event type rather than raising.
        assert extract_telnyx_meta(inbound()).to_status().status == "received"

    def test_timestamp_is_a_datetime(self) -> None:
        meta = extract_telnyx_meta(inbound())
        assert meta.timestamp == datetime(2024, 5, 10, 20, 16, 7, 503000, tzinfo=UTC)
        # An unreadable time falls back to the event's occurred_at.
        assert extract_telnyx_meta(inbound(received_at="yesterday")).timestamp == datetime(
            2024, 5, 10, 20, 16, 7, 588000, tzinfo=UTC
        )
        no_time = inbound(received_at="yesterday")
        del no_time["data"]["occurred_at"]
        assert extract_telnyx_meta(no_time).timestamp is None  # unreadable: None, as 0.3.0

    def test_sent_event_without_recipient_status(self) -> None:
        payload = finalized("x")
        payload["data"]["event_type"] = "message.sent"
        payload["data"]["payload"]["to"] = [{"phone_number": "+15145550100"}]
        assert extract_telnyx_meta(payload).to_status().status == "sent"

    def test_other_events_are_ignored(self) -> None:
        meta = extract_telnyx_meta({"data": {"event_type": "call.initiated", "payload": {}}})
        assert not meta.is_inbound and not meta.is_status

    @settings(max_examples=200, deadline=None)
    @given(
        nested_payloads(
            ["data", "meta"],
            ["event_type", "id", "payload", "occurred_at"],
            "data",
        )
    )
    def test_parsers_only_raise_value_error(self, payload: dict[str, Any]) -> None:
        for extract in (extract_telnyx_meta, extract_telnyx_rcs_meta):
            meta = extract(payload)
            if meta.is_inbound:
                meta.to_inbound("sms")
            if meta.is_status:
                meta.to_status()
        for parse in (parse_telnyx_webhook, parse_telnyx_rcs_webhook):
            with contextlib.suppress(ValueError):
                parse(payload, "sms")

    @settings(max_examples=200, deadline=None)
    @given(
        payloads(["direction", "from", "to", "text", "media", "id", "type", "errors"]),
        payloads(["event_type", "id"]),
    )
    def test_message_objects_only_raise_value_error(
        self, message: dict[str, Any], data: dict[str, Any]
    ) -> None:
        payload = {"data": {**data, "payload": message}}
        meta = extract_telnyx_meta(payload)
        if meta.is_inbound:
            meta.to_inbound("sms")
        if meta.is_status:
            meta.to_status()


def _new_private_key() -> Ed25519PrivateKey:
    # cryptography is what verification needs; without it these tests are skipped, not failed.
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    key: Ed25519PrivateKey = ed25519.Ed25519PrivateKey.generate()
    return key


class TestSignature:
    @pytest.fixture
    def keys(self) -> tuple[Ed25519PrivateKey, str]:
        private = _new_private_key()
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return private, base64.b64encode(raw).decode()

    @staticmethod
    def sign(private: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
        return base64.b64encode(private.sign(timestamp.encode() + b"|" + body)).decode()

    def test_valid_signature(self, keys: tuple[Ed25519PrivateKey, str]) -> None:
        private, public = keys
        body = json.dumps(inbound()).encode()
        signature = self.sign(private, "1715372167", body)
        assert verify_telnyx_signature(public, body, signature, "1715372167", now=1715372170)

    def test_forgeries(self, keys: tuple[Ed25519PrivateKey, str]) -> None:
        private, public = keys
        body = json.dumps(inbound()).encode()
        signature = self.sign(private, "1715372167", body)
        now = 1715372170.0
        assert not verify_telnyx_signature(public, body + b" ", signature, "1715372167", now=now)
        assert not verify_telnyx_signature(public, body, signature, "1715372168", now=now)
        other = self.sign(_new_private_key(), "1715372167", body)
        assert not verify_telnyx_signature(public, body, other, "1715372167", now=now)
        assert not verify_telnyx_signature(public, body, "not base64!", "1715372167", now=now)
        assert not verify_telnyx_signature(public, body, "AAAA", "1715372167", now=now)
        assert not verify_telnyx_signature(public, body, signature, None, now=now)
        assert not verify_telnyx_signature(public, body, signature, "soon", now=now)

    @pytest.mark.parametrize(
        "timestamp",
        [
            "9" * 309,  # int() takes it; float(int) overflows
            "9" * 4300,
            "-" + "9" * 400,
            "9" * 13,
            "-1715372167",
            "+1715372167",
            "1_715_372_167",
            "\uff11\uff17\uff11\uff15",  # full-width digits: int() reads them
        ],
    )
    def test_timestamp_must_be_short_ascii_digits(
        self, keys: tuple[Ed25519PrivateKey, str], timestamp: str
    ) -> None:
        # Signed with the very timestamp: only the format check can refuse it.
        private, public = keys
        body = json.dumps(inbound()).encode()
        signature = self.sign(private, timestamp, body)
        for tolerance in (300.0, None):
            assert (
                verify_telnyx_signature(
                    public, body, signature, timestamp, now=1715372170, tolerance_seconds=tolerance
                )
                is False
            )

    async def test_overlong_timestamp_through_providers(
        self, keys: tuple[Ed25519PrivateKey, str]
    ) -> None:
        private, public = keys
        body = json.dumps(inbound()).encode()
        signature = self.sign(private, "1715372167", body)
        async with mock_client(Recorder([])) as client:
            for provider in (
                TelnyxSMSProvider(config(), public, client=client),
                TelnyxRCSProvider(rcs_config(), public, client=client),
            ):
                assert provider.verify_signature(body, signature, "9" * 400) is False
                assert provider.verify_signature(body, signature, "-" + "9" * 400) is False

    def test_bytes_and_text_alike_malformed_types_false(
        self, keys: tuple[Ed25519PrivateKey, str]
    ) -> None:
        private, public = keys
        body = json.dumps(inbound()).encode()
        stamp = "1715372167"
        signature = self.sign(private, stamp, body)
        now = 1715372170
        # Frameworks hand raw headers over as bytes, and the body as text or bytes.
        assert verify_telnyx_signature(public, body, signature.encode(), stamp.encode(), now=now)
        assert verify_telnyx_signature(public, body.decode(), signature, stamp, now=now)
        assert verify_telnyx_signature(public, bytearray(body), signature, stamp, now=now)
        bad: list[tuple[Any, Any, Any]] = [
            (None, signature, stamp),
            (12, signature, stamp),
            ("\udc00", signature, stamp),
            (body, None, stamp),
            (body, 5, stamp),
            (body, signature, 1715372167),
            (body, signature, b"\xff\xfe"),
        ]
        for payload, sig, ts in bad:
            assert verify_telnyx_signature(public, payload, sig, ts, now=now) is False

    def test_stale_timestamp(self, keys: tuple[Ed25519PrivateKey, str]) -> None:
        private, public = keys
        signature = self.sign(private, "1715372167", b"{}")
        later = 1715372167 + 301
        assert not verify_telnyx_signature(public, b"{}", signature, "1715372167", now=later)
        assert verify_telnyx_signature(
            public, b"{}", signature, "1715372167", now=later, tolerance_seconds=None
        )

    def test_pem_key(self, keys: tuple[Ed25519PrivateKey, str]) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        private, _ = keys
        pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        signature = self.sign(private, "100", b"{}")
        assert verify_telnyx_signature(pem.decode(), b"{}", signature, "100", now=100)

    def test_bad_key(self) -> None:
        pytest.importorskip("cryptography")
        with pytest.raises(ValueError):
            TelnyxSMSProvider(config(), "not-a-key")
        with pytest.raises(ValueError):
            verify_telnyx_signature(base64.b64encode(b"short").decode(), b"", "", "1")

    async def test_provider_method(self, keys: tuple[Ed25519PrivateKey, str]) -> None:
        import time

        private, public = keys
        timestamp = str(int(time.time()))
        body = json.dumps(inbound()).encode()
        signature = self.sign(private, timestamp, body)
        async with mock_client(Recorder([accepted()])) as client:
            provider = TelnyxSMSProvider(config(), public, client=client)
            assert provider.verify_signature(body, signature, timestamp)
            assert not provider.verify_signature(body, signature)
            rcs = TelnyxRCSProvider(rcs_config(), public, client=client)
            assert rcs.verify_signature(body, signature, timestamp)
            with pytest.raises(ValueError, match="public_key"):
                TelnyxSMSProvider(config(), client=client).verify_signature(body, signature, "1")


def rcs_config(**overrides: Any) -> TelnyxRCSConfig:
    values: dict[str, Any] = {"api_key": API_KEY, "agent_id": "acme_support_agent"}
    values.update(overrides)
    return TelnyxRCSConfig(**values)


class TestRCS:
    async def test_send(self) -> None:
        recorder = Recorder([accepted("RCS")])
        async with mock_client(recorder) as client:
            provider = TelnyxRCSProvider(rcs_config(messaging_profile_id="mp1"), client=client)
            result = await provider.send(event("Hi", ChannelType.RCS), to="+15145550100")
            await provider.send(event("Hi", ChannelType.RCS), to="+15145550100", fallback=False)
        assert isinstance(result, RCSDeliveryResult)
        assert (result.success, result.channel_used, result.fallback) == (True, "rcs", False)
        first, second = recorder.requests
        assert (first.method, str(first.url)) == ("POST", MESSAGES_URL)
        assert first.headers["authorization"] == f"Bearer {API_KEY}"
        assert body_json(first) == {
            "from": "acme_support_agent",
            "to": "+15145550100",
            "type": "RCS",
            "auto_detect": True,
            "text": "Hi",
            "messaging_profile_id": "mp1",
        }
        assert body_json(second)["auto_detect"] is False
        assert provider.sender_id == "acme_support_agent"

    async def test_sms_fallback(self) -> None:
        async with mock_client(Recorder([accepted("SMS")])) as client:
            result = await TelnyxRCSProvider(rcs_config(), client=client).send(
                event("Hi", ChannelType.RCS), to="+15145550100"
            )
        assert (result.channel_used, result.fallback) == ("sms", True)

    async def test_failure(self) -> None:
        answers = [
            httpx.Response(403),
            httpx.Response(400, json={"errors": [{"code": "40310", "detail": "bad to"}]}),
            httpx.Response(400, json={"errors": []}),
            httpx.Response(400, text="oops"),
            httpx.Response(401),
        ]
        results = []
        async with mock_client(Recorder(list(answers))) as client:
            provider = TelnyxRCSProvider(rcs_config(), client=client)
            for _ in answers:
                results.append(await provider.send(event("Hi", ChannelType.RCS), to="+1"))
        assert all(isinstance(r, RCSDeliveryResult) and not r.success for r in results)
        # 0.3.0's Telnyx RCS codes: a 400's code is read, 403 is not an auth error.
        assert [r.error for r in results] == [
            "http_403",
            "telnyx_40310",
            "telnyx_invalid_request",
            "invalid_request",
            "auth_error",
        ]

    async def test_check_capability(self) -> None:
        capable = httpx.Response(
            200,
            json={
                "data": {
                    "record_type": "rcs.capabilities",
                    "agent_id": "acme_support_agent",
                    "phone_number": "+15145550100",
                    "features": ["RICHCARD_STANDALONE", "ACTION_DIAL"],
                }
            },
        )
        none = httpx.Response(200, json={"data": {"features": []}})
        enabled = httpx.Response(200, json={"data": {"rcs_enabled": True}})
        disabled = httpx.Response(200, json={"data": {"rcs_enabled": False, "features": ["X"]}})
        silent = httpx.Response(200, json={"data": {"phone_number": "+15145550100"}})
        answers = [capable, none, httpx.Response(404), enabled, disabled, silent]
        recorder = Recorder(list(answers))
        async with mock_client(recorder) as client:
            provider = TelnyxRCSProvider(rcs_config(), client=client)
            seen = [await provider.check_capability("+15145550100") for _ in answers]
        # 0.3.0 read rcs_enabled (False when absent); Telnyx documents features.
        assert seen == [True, False, False, True, False, False]
        request = recorder.requests[0]
        assert request.method == "GET"
        assert str(request.url) == (
            "https://api.telnyx.com/v2/messaging/rcs/capabilities/"
            "acme_support_agent/%2B15145550100"
        )
        assert request.headers["authorization"] == f"Bearer {API_KEY}"

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(500),
            httpx.Response(401),
            httpx.Response(200, text="not json"),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
        ],
    )
    async def test_check_capability_failures_are_false(
        self, answer: httpx.Response | Exception, caplog: pytest.LogCaptureFixture
    ) -> None:
        # As 0.3.0: a failed check means "no RCS" (send SMS), not an exception.
        async with mock_client(Recorder([answer])) as client:
            provider = TelnyxRCSProvider(rcs_config(), client=client)
            assert await provider.check_capability("+15145550100") is False
        assert API_KEY not in caplog.text

    def test_inbound_rcs(self) -> None:
        payload = inbound(
            type="RCS",
            text="",
            suggestion_response={"text": "Track my order", "postback_data": "track"},
        )
        message = parse_telnyx_rcs_webhook(payload, "rcs")
        assert message.content == TextContent(body="Track my order")
        assert message.metadata["channel"] == "rcs"
        assert message.metadata["postback_data"] == "track"
        assert message.metadata["suggestion_response"] == {
            "text": "Track my order",
            "postback_data": "track",
        }

    def test_inbound_rcs_file_and_0_3_0_metadata(self) -> None:
        payload = inbound(
            type="RCS",
            text="here is the file",
            to={"agent_id": "acme_support_agent", "agent_name": "Acme"},
            user_file={
                "payload": {
                    "file_uri": "https://rcs.example/f.pdf",
                    "mime_type": "application/pdf",
                }
            },
        )
        message = parse_telnyx_rcs_webhook(payload, "rcs")
        assert message.content == MediaContent(
            url="https://rcs.example/f.pdf",
            mime_type="application/pdf",
            caption="here is the file",
        )
        assert {
            key: message.metadata[key]
            for key in (
                "agent_id",
                "agent_name",
                "received_at",
                "type",
                "suggestion_response",
                "location",
            )
        } == {
            "agent_id": "acme_support_agent",
            "agent_name": "Acme",
            "received_at": "2024-05-10T20:16:07.503+00:00",
            "type": "RCS",
            "suggestion_response": None,
            "location": None,
        }

    def test_inbound_rcs_location(self) -> None:
        where = {"latitude": 45.5, "longitude": -73.6}
        payload = inbound(type="RCS", text="", to={"agent_id": "a"}, location=where)
        message = parse_telnyx_rcs_webhook(payload, "rcs")
        assert message.metadata["location"] == where
        assert message.metadata["agent_name"] == ""
        # A point rather than 0.3.0's empty text.
        assert message.content == LocationContent(latitude=45.5, longitude=-73.6)


class TestEndToEnd:
    async def test_webhook_in_reply_out(self) -> None:
        recorder = Recorder([accepted()])
        async with mock_client(recorder) as client:
            provider = TelnyxSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                result = await kit.process_webhook(extract_sms_meta("telnyx", inbound()), "sms")
                assert result is not None and result.event is not None
                assert other.texts() == ["Hello there!"]
                await kit.send_event("r1", "other", TextContent(body="Hi back"))
                seen: list[DeliveryStatus] = []
                kit.on_delivery_status(seen.append)
                await kit.process_webhook(
                    extract_sms_meta("telnyx", finalized("delivered")), "sms"
                )
                assert [s.status for s in seen] == ["finalized"]
        assert len(recorder.requests) == 1
        assert body_json(recorder.last) == {
            "from": "+18445550001",
            "to": "+15145550100",
            "text": "Hi back",
        }
        assert recorder.last.headers["authorization"] == f"Bearer {API_KEY}"
