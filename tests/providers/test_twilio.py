"""Twilio SMS and RCS over httpx.MockTransport: requests, error mapping, webhooks, signatures."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.rcs.base import RCSDeliveryResult
from providers.sms.meta import WebhookMedia, extract_sms_meta
from providers.twilio import (
    TwilioConfig,
    TwilioRCSConfig,
    TwilioRCSProvider,
    TwilioSMSProvider,
    compute_twilio_signature,
    extract_twilio_meta,
    parse_twilio_rcs_webhook,
    parse_twilio_webhook,
    verify_twilio_signature,
)
from roomkit.models.delivery import DeliveryStatus
from roomkit.models.enums import ChannelType, EventType
from roomkit.models.event import (
    CompositeContent,
    LocationContent,
    MediaContent,
    RichContent,
    TextContent,
)
from tests.providers.sms_support import Recorder, event, form, mock_client, payloads, sms_kit

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "s3cr3t-auth-token"
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


def created(sid: str = "SM1234567890abcdef1234567890abcdef", **extra: Any) -> httpx.Response:
    body = {
        "sid": sid,
        "status": "queued",
        "from": "+15005550006",
        "to": "+15145550100",
        "num_segments": "1",
        "error_code": None,
        **extra,
    }
    return httpx.Response(201, json=body)


def config(**overrides: Any) -> TwilioConfig:
    values: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": "+15005550006",
    }
    values.update(overrides)
    return TwilioConfig(**values)


def inbound_form(**overrides: str) -> dict[str, str]:
    """An inbound SMS webhook as Twilio documents it."""
    fields = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": "SM7c8e2f8a5b1d4e6f9a0b1c2d3e4f5a6b",
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "H2X",
        "SmsSid": "SM7c8e2f8a5b1d4e6f9a0b1c2d3e4f5a6b",
        "FromState": "QC",
        "SmsStatus": "received",
        "FromCity": "MONTREAL",
        "Body": "Hello from my phone",
        "FromCountry": "CA",
        "To": "+15005550006",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": "SM7c8e2f8a5b1d4e6f9a0b1c2d3e4f5a6b",
        "AccountSid": SID,
        "From": "+15145550100",
        "ApiVersion": "2010-04-01",
    }
    fields.update(overrides)
    return fields


class TestSend:
    async def test_text_request(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(), client=client)
            result = await provider.send(event("Hi there"), to="+15145550100")
        assert result.success
        assert result.provider_message_id == "SM1234567890abcdef1234567890abcdef"
        assert result.metadata == {"status": "queued"}
        request = recorder.last
        assert request.method == "POST"
        assert str(request.url) == MESSAGES_URL
        assert request.headers["authorization"] == BASIC
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form(request) == {
            "To": ["+15145550100"],
            "From": ["+15005550006"],
            "Body": ["Hi there"],
        }

    async def test_messaging_service_wins_over_explicit_sender(self) -> None:
        # As 0.3.0: a configured service sends every message (SMSChannel passes from_).
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(messaging_service_sid="MG999"), client=client)
            await provider.send(event("a"), to="+15145550100")
            await provider.send(event("b"), to="+15145550100", from_="+15005550009")
        for sent in (form(r) for r in recorder.requests):
            assert sent["MessagingServiceSid"] == ["MG999"]
            assert "From" not in sent

    async def test_explicit_sender_without_messaging_service(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(), client=client)
            await provider.send(event("b"), to="+15145550100", from_="+15005550009")
        assert form(recorder.last)["From"] == ["+15005550009"]
        assert "MessagingServiceSid" not in form(recorder.last)

    async def test_status_callback(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(
                config(status_callback="https://example.com/twilio/status"), client=client
            )
            await provider.send(event("a"), to="+15145550100")
        assert form(recorder.last)["StatusCallback"] == ["https://example.com/twilio/status"]

    async def test_media_with_caption(self) -> None:
        recorder = Recorder([created()])
        content = MediaContent(
            url="https://cdn.example.com/cat.jpg", mime_type="image/jpeg", caption="my cat"
        )
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(), client=client)
            result = await provider.send(event(content), to="+15145550100")
        assert result.success
        fields = form(recorder.last)
        assert fields["Body"] == ["my cat"]
        assert fields["MediaUrl"] == ["https://cdn.example.com/cat.jpg"]

    async def test_at_most_ten_media_urls(self) -> None:
        recorder = Recorder([created()])
        parts: list[Any] = [TextContent(body="album")]
        parts += [
            MediaContent(url=f"https://cdn.example.com/{i}.png", mime_type="image/png")
            for i in range(12)
        ]
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(), client=client)
            result = await provider.send(event(CompositeContent(parts=parts)), to="+1514555")
        fields = form(recorder.last)
        assert fields["MediaUrl"] == [f"https://cdn.example.com/{i}.png" for i in range(10)]
        assert fields["Body"] == ["album"]
        assert result.metadata["media_dropped"] == 2

    async def test_media_only_has_no_body(self) -> None:
        recorder = Recorder([created()])
        content = MediaContent(url="https://cdn.example.com/a.pdf", mime_type="application/pdf")
        async with mock_client(recorder) as client:
            await TwilioSMSProvider(config(), client=client).send(event(content), to="+1")
        assert "Body" not in form(recorder.last)

    async def test_rich_text_uses_plain_text(self) -> None:
        recorder = Recorder([created()])
        content = RichContent(body="**bold**", plain_text="bold")
        async with mock_client(recorder) as client:
            await TwilioSMSProvider(config(), client=client).send(event(content), to="+1")
        assert form(recorder.last)["Body"] == ["bold"]

    @pytest.mark.parametrize(
        "content",
        [
            TextContent(body="   "),
            MediaContent(url="data:image/png;base64,AAAA", mime_type="image/png"),
        ],
    )
    async def test_empty_message_is_not_sent(self, content: Any) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            result = await TwilioSMSProvider(config(), client=client).send(event(content), to="+1")
        assert not result.success
        assert result.error == "empty_message"
        assert recorder.requests == []


class TestErrors:
    async def send_with(self, answer: httpx.Response | Exception) -> Any:
        recorder = Recorder([answer])
        async with mock_client(recorder) as client:
            return await TwilioSMSProvider(config(), client=client).send(event("x"), to="+1")

    async def test_401_is_auth_error(self) -> None:
        result = await self.send_with(
            httpx.Response(401, json={"code": 20003, "message": "Authenticate", "status": 401})
        )
        assert not result.success
        assert result.error == "auth_error"
        assert result.metadata["status_code"] == 401
        assert result.metadata["vendor_code"] == "20003"
        assert result.metadata["retryable"] is False

    async def test_429_is_rate_limit_with_retry_after(self) -> None:
        result = await self.send_with(
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"code": 20429, "message": "Too Many Requests", "status": 429},
            )
        )
        assert result.error == "rate_limit"
        assert result.metadata["retry_after"] == 7.0
        assert result.metadata["retryable"] is True

    async def test_429_without_retry_after(self) -> None:
        result = await self.send_with(httpx.Response(429))
        assert result.error == "rate_limit"
        assert "retry_after" not in result.metadata

    async def test_vendor_code(self) -> None:
        result = await self.send_with(
            httpx.Response(
                400,
                json={
                    "code": 21211,
                    "message": "The 'To' number +1 is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400,
                },
            )
        )
        assert result.error == "twilio_21211"
        assert "not a valid phone number" in result.metadata["detail"]
        # 0.3.0's key for it too (it was missing).
        assert result.metadata["message"] == result.metadata["detail"]
        assert result.metadata["retryable"] is False

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            # 0.3.0's codes: 403 is not an auth error, only a 400 carries Twilio's code, and a
            # 400 that is not a JSON object is a plain invalid request.
            (httpx.Response(403, json={"code": 20003, "message": "Forbidden"}), "http_403"),
            (httpx.Response(404, json={"code": 20404, "message": "Not found"}), "http_404"),
            (httpx.Response(400, text="not json"), "invalid_request"),
            (httpx.Response(400, json=["not", "an", "object"]), "invalid_request"),
            (httpx.Response(400, json={"message": "no code"}), "twilio_invalid_request"),
        ],
    )
    async def test_0_3_0_codes(self, answer: httpx.Response, error: str) -> None:
        result = await self.send_with(answer)
        assert (result.success, result.error) == (False, error)

    async def test_5xx(self) -> None:
        result = await self.send_with(httpx.Response(503, text="upstream down"))
        assert result.error == "http_503"
        assert result.metadata["retryable"] is True

    async def test_404_without_body(self) -> None:
        result = await self.send_with(httpx.Response(404))
        assert result.error == "http_404"

    async def test_timeout(self) -> None:
        result = await self.send_with(httpx.ReadTimeout("timed out"))
        assert result.error == "timeout"
        assert result.metadata["retryable"] is True

    async def test_network_error_is_its_text(self) -> None:
        # 0.3.0's error: the exception's text (secrets masked), still retryable.
        result = await self.send_with(httpx.ConnectError("connection refused"))
        assert result.error == "connection refused"
        assert result.metadata["retryable"] is True
        masked = await self.send_with(httpx.ConnectError(f"refused for {TOKEN}"))
        assert masked.error == "refused for ***"

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(201, json={"status": "queued"}),
            httpx.Response(201, json={}),
            httpx.Response(200, text="{not json"),
        ],
    )
    async def test_2xx_without_sid_is_sent(
        self, answer: httpx.Response, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Twilio accepted it: a failure would have the router send it again.
        result = await self.send_with(answer)
        assert (result.success, result.provider_message_id, result.error) == (True, None, None)
        assert "without naming its id" in caplog.text

    async def test_2xx_with_json_nested_past_the_parser_is_sent_once(self) -> None:
        # json raised RecursionError out of send: the router took Twilio's 201 for a failure
        # and sent the SMS again at each retry.
        deep = b"[" * 100_000 + b"]" * 100_000
        recorder = Recorder([httpx.Response(201, content=deep)])
        async with mock_client(recorder) as client:
            result = await TwilioSMSProvider(config(), client=client).send(event("x"), to="+1")
        assert (result.success, result.provider_message_id) == (True, None)
        assert len(recorder.requests) == 1

    async def test_secret_echoed_encoded_never_leaks(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A vendor (or a proxy) echoing the request: the token URL-encoded, the Basic header
        # in base64. Only the token as it is was masked.
        caplog.set_level(logging.DEBUG)
        token = "tok/en+with=odd&chars"
        credentials = base64.b64encode(f"{SID}:{token}".encode()).decode()
        echoed = f"bad request: auth={quote(token, safe='')} header=Basic {credentials}"
        answer = httpx.Response(400, json={"code": 21211, "message": echoed})
        async with mock_client(Recorder([answer])) as client:
            provider = TwilioSMSProvider(config(auth_token=token), client=client)
            result = await provider.send(event("x"), to="+1")
        assert not result.success
        for secret in (quote(token, safe=""), credentials):
            assert secret not in repr(result)
            assert secret not in caplog.text
        assert "***" in repr(result)

    async def test_secret_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        provider_config = config()
        for answer in (httpx.Response(401), httpx.ReadTimeout("t"), httpx.Response(500)):
            result = await self.send_with(answer)
            assert TOKEN not in repr(result)
        async with mock_client(Recorder([created()])) as client:
            provider = TwilioSMSProvider(provider_config, client=client)
            assert TOKEN not in repr(provider)
        assert TOKEN not in repr(provider_config)
        assert TOKEN not in str(provider_config.model_dump())
        assert TOKEN not in caplog.text
        assert caplog.records  # failures were logged

    async def test_timeout_is_configurable(self) -> None:
        seen: list[Any] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return created()

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await TwilioSMSProvider(config(timeout=2.5), client=client).send(event("x"), to="+1")
        assert seen[0]["read"] == 2.5


class TestClientOwnership:
    async def test_own_client_is_closed(self) -> None:
        provider = TwilioSMSProvider(config())
        assert provider._http.owns_client
        await provider.close()
        assert provider._http.client.is_closed
        result = await provider.send(event("x"), to="+1")
        assert result.error == "client_closed"

    async def test_injected_client_stays_open(self) -> None:
        async with mock_client(Recorder([created()])) as client:
            provider = TwilioSMSProvider(config(), client=client)
            await provider.close()
            assert not client.is_closed

    def test_config_needs_a_sender(self) -> None:
        with pytest.raises(ValueError, match="from_number or messaging_service_sid"):
            TwilioConfig(account_sid=SID, auth_token=TOKEN)
        assert TwilioConfig(account_sid=SID, auth_token=TOKEN, messaging_service_sid="MG1")

    def test_config_api_url_is_the_messages_endpoint_as_in_0_3_0(self) -> None:
        assert config().api_url == MESSAGES_URL
        edge = config(base_url="https://api.dublin.ie1.twilio.com/")
        assert edge.api_url == MESSAGES_URL.replace("api.twilio.com", "api.dublin.ie1.twilio.com")


class TestWebhooks:
    def test_inbound_text(self) -> None:
        message = parse_twilio_webhook(inbound_form(), "sms")
        assert message.channel_id == "sms"
        assert message.sender_id == "+15145550100"
        assert message.content == TextContent(body="Hello from my phone")
        assert message.external_id == "SM7c8e2f8a5b1d4e6f9a0b1c2d3e4f5a6b"
        assert message.idempotency_key == message.external_id
        assert message.metadata["provider"] == "twilio"
        assert message.metadata["recipient"] == "+15005550006"
        assert message.metadata["from_city"] == "MONTREAL"

    def test_inbound_metadata_has_0_3_0_keys(self) -> None:
        # 0.3.0 set these keys always (None / "" / "0" when Twilio left the field out).
        metadata = parse_twilio_webhook(inbound_form(NumMedia="1"), "sms").metadata
        assert {key: metadata[key] for key in ("to", "num_media", "from_country")} == {
            "to": "+15005550006",
            "num_media": "1",
            "from_country": "CA",
        }
        bare = {"MessageSid": "SM1", "From": "+15145550100", "Body": "hi"}
        metadata = parse_twilio_webhook(bare, "sms").metadata
        keys = ("to", "account_sid", "num_media", "from_city", "from_state", "from_country")
        assert {key: metadata[key] for key in keys} == {
            "to": "",
            "account_sid": "",
            "num_media": "0",
            "from_city": None,
            "from_state": None,
            "from_country": None,
        }

    def test_inbound_mms_with_two_images(self) -> None:
        payload = inbound_form(
            Body="look",
            NumMedia="2",
            MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            MediaContentType0="image/jpeg",
            MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
            MediaContentType1="image/png",
        )
        message = parse_twilio_webhook(payload, "sms")
        assert isinstance(message.content, CompositeContent)
        text, first, second = message.content.parts
        assert text == TextContent(body="look")
        assert isinstance(first, MediaContent) and first.mime_type == "image/jpeg"
        assert isinstance(second, MediaContent) and second.url.endswith("/ME2")

    def test_inbound_media_url_scheme_in_any_case(self, caplog: pytest.LogCaptureFixture) -> None:
        # A scheme is case-insensitive: "HTTPS://" was left out without a word, and a picture
        # without text recorded as an empty text.
        payload = inbound_form(
            Body="", NumMedia="1", MediaUrl0=" HTTPS://api.twilio.com/media/ME1"
        )
        message = parse_twilio_webhook(payload, "sms")
        assert isinstance(message.content, MediaContent)
        assert message.content.url == "HTTPS://api.twilio.com/media/ME1"
        refused = inbound_form(Body="see", NumMedia="1", MediaUrl0="ftp://x.example/a.png")
        assert parse_twilio_webhook(refused, "sms").content == TextContent(body="see")
        assert "webhook media left out: not an http(s) URL: 'ftp://x.example/a.png'" in (
            caplog.text
        )

    def test_inbound_mms_single_image_gets_caption(self) -> None:
        payload = inbound_form(
            Body="",
            NumMedia="1",
            MediaUrl0="https://api.twilio.com/media/ME1",
            MediaContentType0="image/gif",
        )
        message = parse_twilio_webhook(payload, "sms")
        assert message.content == MediaContent(
            url="https://api.twilio.com/media/ME1", mime_type="image/gif", caption=None
        )

    def test_form_values_as_lists(self) -> None:
        payload = {key: [value] for key, value in inbound_form().items()}
        assert parse_twilio_webhook(payload, "sms").sender_id == "+15145550100"  # type: ignore[arg-type]

    def test_delivery_status(self) -> None:
        payload = {
            "SmsSid": "SM1234567890abcdef1234567890abcdef",
            "SmsStatus": "delivered",
            "MessageStatus": "delivered",
            "To": "+15145550100",
            "MessagingServiceSid": "MG999",
            "MessageSid": "SM1234567890abcdef1234567890abcdef",
            "AccountSid": SID,
            "From": "+15005550006",
            "ApiVersion": "2010-04-01",
        }
        meta = extract_sms_meta("twilio", payload)
        assert meta.is_status and not meta.is_inbound
        status = meta.to_status()
        assert status == DeliveryStatus(
            provider="twilio",
            message_id="SM1234567890abcdef1234567890abcdef",
            status="delivered",
            recipient="+15145550100",
            sender="+15005550006",
            raw=payload,
        )
        with pytest.raises(ValueError, match="not an inbound message"):
            meta.to_inbound("sms")
        with pytest.raises(ValueError, match="not an inbound message"):
            parse_twilio_webhook(payload, "sms")

    def test_failed_status_has_error_code(self) -> None:
        payload = {
            "MessageSid": "SM1",
            "MessageStatus": "undelivered",
            "ErrorCode": "30003",
            "To": "+15145550100",
            "From": "+15005550006",
        }
        status = extract_twilio_meta(payload).to_status()
        assert (status.status, status.error_code) == ("undelivered", "30003")

    def test_inbound_is_not_a_status(self) -> None:
        meta = extract_twilio_meta(inbound_form())
        assert meta.is_inbound and not meta.is_status
        # 0.3.0 answered rather than raising: a status "unknown".
        assert meta.to_status().status == "unknown"

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ValueError, match="mapping"):
            extract_twilio_meta(["From", "+1"])  # type: ignore[arg-type]

    def test_extract_helpers(self) -> None:
        from providers.sms.meta import extract_media_urls, extract_text_body

        payload = inbound_form(MediaUrl0="https://x.example/a.png", NumMedia="1")
        assert extract_text_body("twilio", payload) == "Hello from my phone"
        assert extract_media_urls("twilio", payload) == [
            WebhookMedia(url="https://x.example/a.png", mime_type="image/png")
        ]

    @settings(max_examples=200, deadline=None)
    @given(
        payloads(
            [
                "MessageSid",
                "SmsSid",
                "From",
                "To",
                "Body",
                "NumMedia",
                "MediaUrl0",
                "MediaContentType0",
                "SmsStatus",
                "MessageStatus",
                "ErrorCode",
            ]
        )
    )
    def test_parsers_only_raise_value_error(self, payload: dict[str, Any]) -> None:
        meta = extract_twilio_meta(payload)
        if meta.is_inbound:
            meta.to_inbound("sms")
        if meta.is_status:
            meta.to_status()
        for parse in (parse_twilio_webhook, parse_twilio_rcs_webhook):
            with contextlib.suppress(ValueError):
                parse(payload, "sms")

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(st.text(), st.text() | st.lists(st.text(), max_size=3)))
    def test_form_shaped_input(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(ValueError):
            parse_twilio_webhook(payload, "sms")


class TestSignature:
    # Twilio's documented example (security docs): auth token 12345, this URL and these
    # parameters are signed "GvWf1cFY/Q7PnoempGyD5oXAezc=".
    URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
    PARAMS = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    EXPECTED = "GvWf1cFY/Q7PnoempGyD5oXAezc="

    def test_documented_example(self) -> None:
        assert compute_twilio_signature("12345", self.URL, self.PARAMS) == self.EXPECTED
        assert verify_twilio_signature("12345", self.URL, self.PARAMS, self.EXPECTED)

    def test_raw_body(self) -> None:
        body = urlencode(self.PARAMS).encode()
        assert verify_twilio_signature("12345", self.URL, body, self.EXPECTED)

    def test_a_framework_s_url_object(self) -> None:
        # request.url as web frameworks give it: it raised AttributeError (a 500 to Twilio).
        url = httpx.URL(self.URL)
        assert verify_twilio_signature("12345", url, self.PARAMS, self.EXPECTED)  # type: ignore[arg-type]
        assert verify_twilio_signature("12345", self.URL.encode(), self.PARAMS, self.EXPECTED)  # type: ignore[arg-type]
        assert not verify_twilio_signature("12345", 123, self.PARAMS, self.EXPECTED)  # type: ignore[arg-type]

    def test_forgeries_are_rejected(self) -> None:
        tampered = {**self.PARAMS, "Digits": "9999"}
        assert not verify_twilio_signature("12345", self.URL, tampered, self.EXPECTED)
        assert not verify_twilio_signature("54321", self.URL, self.PARAMS, self.EXPECTED)
        other_url = "https://mycompany.com/myapp.php?foo=1&bar=3"
        assert not verify_twilio_signature("12345", other_url, self.PARAMS, self.EXPECTED)
        assert not verify_twilio_signature("12345", self.URL, self.PARAMS, "")
        assert not verify_twilio_signature("12345", self.URL, self.PARAMS, "bm9wZQ==")

    def test_default_port_either_way(self) -> None:
        with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
        signed_with_port = compute_twilio_signature("12345", with_port, self.PARAMS)
        assert verify_twilio_signature("12345", self.URL, self.PARAMS, signed_with_port)
        assert verify_twilio_signature("12345", with_port, self.PARAMS, self.EXPECTED)

    def test_json_body_with_body_sha256(self) -> None:
        body = b'{"MessageSid": "SM1"}'
        url = f"https://example.com/hook?bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = compute_twilio_signature(TOKEN, url)
        assert verify_twilio_signature(TOKEN, url, body, signature)
        assert not verify_twilio_signature(TOKEN, url, b'{"MessageSid": "SM2"}', signature)

    @pytest.mark.parametrize("payload", [5, 1.5, None, [("Digits", "1234")], object()])
    def test_payload_of_another_type_is_false(self, payload: Any) -> None:
        assert verify_twilio_signature("12345", self.URL, payload, self.EXPECTED) is False

    def test_text_bytes_and_header_bytes_alike(self) -> None:
        body = urlencode(self.PARAMS)
        assert verify_twilio_signature("12345", self.URL, body, self.EXPECTED)
        assert verify_twilio_signature("12345", self.URL, bytearray(body.encode()), self.EXPECTED)
        assert verify_twilio_signature("12345", self.URL, body, self.EXPECTED.encode())

    async def test_provider_method(self) -> None:
        body = urlencode(inbound_form()).encode()
        url = "https://example.com/twilio/sms"
        signature = compute_twilio_signature(TOKEN, url, inbound_form())
        async with mock_client(Recorder([created()])) as client:
            provider = TwilioSMSProvider(config(), client=client)
            assert provider.verify_signature(body, signature, url=url)
            assert not provider.verify_signature(body + b"&x=1", signature, url=url)
            # As 0.3.0: False (a handler checking every provider alike answers 403, not 500).
            assert provider.verify_signature(body, signature) is False


def rcs_config(**overrides: Any) -> TwilioRCSConfig:
    values: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "messaging_service_sid": "MGrcs",
    }
    values.update(overrides)
    return TwilioRCSConfig(**values)


class TestRCS:
    async def test_send_with_fallback(self) -> None:
        recorder = Recorder([created(**{"from": "rcs:acme_agent"})])
        async with mock_client(recorder) as client:
            provider = TwilioRCSProvider(rcs_config(), client=client)
            result = await provider.send(event("hello", ChannelType.RCS), to="+15145550100")
        assert isinstance(result, RCSDeliveryResult)
        assert result.success and result.channel_used == "rcs" and not result.fallback
        request = recorder.last
        assert str(request.url) == MESSAGES_URL
        assert request.headers["authorization"] == BASIC
        assert form(request) == {
            "To": ["+15145550100"],
            "MessagingServiceSid": ["MGrcs"],
            "Body": ["hello"],
        }
        assert provider.sender_id == "MGrcs"

    async def test_send_without_fallback_addresses_rcs(self) -> None:
        recorder = Recorder([created()])
        async with mock_client(recorder) as client:
            provider = TwilioRCSProvider(rcs_config(), client=client)
            await provider.send(event("x", ChannelType.RCS), to="+15145550100", fallback=False)
            await provider.send(event("x", ChannelType.RCS), to="rcs:+15145550100", fallback=False)
        assert [form(r)["To"] for r in recorder.requests] == [["rcs:+15145550100"]] * 2

    async def test_sms_fallback_is_reported(self) -> None:
        recorder = Recorder([created(**{"from": "+15005550006"})])
        async with mock_client(recorder) as client:
            result = await TwilioRCSProvider(rcs_config(), client=client).send(
                event("x", ChannelType.RCS), to="+15145550100"
            )
        assert (result.channel_used, result.fallback) == ("sms", True)

    async def test_errors_are_rcs_results(self) -> None:
        recorder = Recorder([httpx.Response(429, headers={"Retry-After": "3"})])
        async with mock_client(recorder) as client:
            provider = TwilioRCSProvider(rcs_config(), client=client)
            result = await provider.send(event("x", ChannelType.RCS), to="+1")
            empty = await provider.send(event(" ", ChannelType.RCS), to="+1")
        assert isinstance(result, RCSDeliveryResult)
        assert (result.success, result.error, result.metadata["retry_after"]) == (
            False,
            "rate_limit",
            3.0,
        )
        assert empty.error == "empty_message"

    async def test_media(self) -> None:
        recorder = Recorder([created()])
        content = MediaContent(url="https://cdn.example.com/p.png", mime_type="image/png")
        async with mock_client(recorder) as client:
            await TwilioRCSProvider(rcs_config(), client=client).send(
                event(content, ChannelType.RCS), to="+1"
            )
        assert form(recorder.last)["MediaUrl"] == ["https://cdn.example.com/p.png"]

    async def test_inbound_rcs(self) -> None:
        payload = inbound_form(
            From="rcs:+15145550100",
            To="rcs:acme_agent",
            Body="",
            ButtonText="Yes please",
            ButtonPayload="confirm_yes",
        )
        message = parse_twilio_rcs_webhook(payload, "rcs")
        # Addresses as Twilio wrote them, as 0.3.0 kept them.
        assert message.sender_id == "rcs:+15145550100"
        assert message.content == TextContent(body="Yes please")
        assert message.metadata["channel"] == "rcs"
        assert message.metadata["button_payload"] == "confirm_yes"
        assert message.metadata["recipient"] == "rcs:acme_agent"
        assert (message.metadata["to"], message.metadata["messaging_service_sid"]) == (
            "rcs:acme_agent",
            "",
        )
        async with mock_client(Recorder([created()])) as client:
            provider = TwilioRCSProvider(rcs_config(), client=client)
            assert (await provider.parse_webhook(payload, "rcs")) == message

    def test_inbound_rcs_channel_is_twilios_or_rcs(self) -> None:
        # 0.3.0: Twilio's Channel field, "rcs" when absent (even from a plain number).
        plain = parse_twilio_rcs_webhook(inbound_form(), "rcs")
        assert (plain.sender_id, plain.metadata["channel"]) == ("+15145550100", "rcs")
        told = parse_twilio_rcs_webhook(inbound_form(Channel="sms"), "rcs")
        assert told.metadata["channel"] == "sms"


class TestEndToEnd:
    async def test_webhook_in_reply_out(self) -> None:
        recorder = Recorder([created("SMreply")])
        async with mock_client(recorder) as client:
            provider = TwilioSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                result = await kit.process_webhook(
                    extract_sms_meta("twilio", inbound_form()), "sms"
                )
                assert result is not None and result.event is not None
                assert result.event.source.channel_type == ChannelType.SMS
                assert result.event.source.participant_id == "+15145550100"
                assert other.texts() == ["Hello from my phone"]

                # A duplicate webhook (Twilio retries) is recorded once.
                await kit.process_webhook(extract_sms_meta("twilio", inbound_form()), "sms")
                timeline = await kit.get_timeline("r1")
                assert sum(e.type == EventType.MESSAGE for e in timeline) == 1

                await kit.send_event("r1", "other", TextContent(body="Thanks, we got it"))
            assert len(recorder.requests) == 1
            request = recorder.last
            assert str(request.url) == MESSAGES_URL
            assert request.headers["authorization"] == BASIC
            assert form(request) == {
                "To": ["+15145550100"],
                "From": ["+15005550006"],
                "Body": ["Thanks, we got it"],
            }

    async def test_status_webhook_reaches_handlers(self) -> None:
        async with mock_client(Recorder([created()])) as client:
            provider = TwilioSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, _):
                seen: list[DeliveryStatus] = []
                kit.on_delivery_status(seen.append)
                payload = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+1"}
                assert (
                    await kit.process_webhook(extract_sms_meta("twilio", payload), "sms") is None
                )
                assert [s.status for s in seen] == ["delivered"]


class TestLocation:
    """Twilio's WhatsApp sends a shared location as ``Latitude`` / ``Longitude`` (``Label``,
    ``Address``) with an empty ``Body``: it was an empty text message, the place lost."""

    def test_a_shared_location_is_location_content(self) -> None:
        form = inbound_form(
            Body="", Latitude="45.5017", Longitude="-73.5673", Label="Office", Address="1 Main"
        )
        message = parse_twilio_webhook(form, "whatsapp")
        assert message.content == LocationContent(
            latitude=45.5017, longitude=-73.5673, label="Office", address="1 Main"
        )

    @pytest.mark.parametrize(
        ("latitude", "longitude"),
        [("", "1"), ("abc", "1"), ("nan", "1"), ("91", "0"), ("0", "181")],
    )
    def test_coordinates_that_are_not_a_point_stay_text(
        self, latitude: str, longitude: str
    ) -> None:
        form = inbound_form(Body="", Latitude=latitude, Longitude=longitude)
        assert parse_twilio_webhook(form, "whatsapp").content == TextContent(body="")

    def test_a_text_with_coordinates_stays_text(self) -> None:
        form = inbound_form(Body="here", Latitude="1", Longitude="2")
        assert parse_twilio_webhook(form, "whatsapp").content == TextContent(body="here")
