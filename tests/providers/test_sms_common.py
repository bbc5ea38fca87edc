"""What the SMS vendors share: WebhookMeta and extract_sms_meta, inbound content, phone numbers,
outbound rendering and text splitting, HTTP failure mapping, lazy imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.sms import phone
from providers.sms._outbound import OutboundMedia, render_outbound, split_text
from providers.sms.meta import (
    WebhookMedia,
    WebhookMeta,
    build_inbound_content,
    extract_media_urls,
    extract_sms_meta,
    extract_text_body,
    get_str,
)
from providers.sms.mock import MockSMSProvider
from providers.sms.phone import is_valid_phone, normalize_phone
from roomkit import RoomKit, SMSChannel
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    LocationContent,
    MediaContent,
    SystemContent,
    TemplateContent,
    TextContent,
    VideoContent,
)
from tests.providers.sms_support import json_values

E164 = re.compile(r"\+[1-9]\d{6,14}")


class TestWebhookMeta:
    def test_inbound(self) -> None:
        meta = WebhookMeta(
            provider="twilio",
            direction="inbound",
            sender="+15145550100",
            recipient="+15005550006",
            body="hi",
            message_id="SM1",
            timestamp="2024-05-10T12:00:00Z",
            extra={"num_segments": "1"},
        )
        assert meta.is_inbound and not meta.is_status
        assert meta.external_id == "SM1"
        # A datetime, as in 0.3.0 (the ISO text given is read into one).
        assert meta.timestamp == datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
        message = meta.to_inbound("sms")
        assert message.metadata == {
            "provider": "twilio",
            "recipient": "+15005550006",
            "timestamp": "2024-05-10T12:00:00+00:00",
            "num_segments": "1",
        }
        # 0.3.0 answered a status "unknown" rather than raising.
        assert meta.to_status().status == "unknown"

    def test_inbound_metadata_timestamp_is_set_when_none(self) -> None:
        meta = WebhookMeta(provider="x", direction="inbound", sender="+1", body="hi")
        assert meta.to_inbound("sms").metadata == {
            "provider": "x",
            "recipient": "",
            "timestamp": None,
        }

    def test_timestamp_text_must_be_iso(self) -> None:
        naive = WebhookMeta(provider="x", timestamp="2024-03-01 12:00:00")
        assert naive.timestamp == datetime(2024, 3, 1, 12, 0)
        with pytest.raises(ValueError, match="ISO 8601"):
            WebhookMeta(provider="x", timestamp="yesterday")

    def test_to_status_answers_as_0_3_0(self) -> None:
        received = WebhookMeta(
            provider="telnyx", direction="inbound", sender="+1", event_type="message.received"
        )
        assert received.to_status().status == "received"
        # A Telnyx event name wins over the recipient's status (kept on the meta and in raw).
        finalized = WebhookMeta(
            provider="telnyx",
            direction="outbound",
            message_id="m1",
            status="delivered",
            event_type="message.finalized",
        )
        assert (finalized.status, finalized.to_status().status) == ("delivered", "finalized")
        # A status 0.3.0 did not read (Twilio's, Sinch's) is given as is.
        twilio = WebhookMeta(provider="twilio", message_id="SM1", status="undelivered")
        assert twilio.to_status().status == "undelivered"

    def test_to_status_reads_the_error_of_a_meta_built_by_hand(self) -> None:
        # As 0.3.0 did for any meta: the first error of a Telnyx-shaped raw payload.
        failed = WebhookMeta(
            provider="custom",
            direction="outbound",
            message_id="X1",
            event_type="message.failed",
            raw={"data": {"payload": {"errors": [{"code": 30007, "detail": "filtered"}]}}},
        )
        status = failed.to_status()
        assert (status.status, status.error_code, status.error_message) == (
            "failed",
            "30007",
            "filtered",
        )
        # The meta's own error wins; a raw payload of another shape gives none.
        own = WebhookMeta(provider="x", raw=failed.raw, error_code="1", error_message="own")
        assert (own.to_status().error_code, own.to_status().error_message) == ("1", "own")
        for raw in [{}, {"data": []}, {"data": {"payload": {"errors": []}}}, {"data": "x"}]:
            other = WebhookMeta(provider="x", raw=raw).to_status()
            assert (other.error_code, other.error_message) == (None, None)

    def test_outbound_is_not_inbound(self) -> None:
        meta = WebhookMeta(provider="x", direction="outbound", sender="+1", body="hi")
        assert not meta.is_inbound and not meta.is_status
        with pytest.raises(
            ValueError, match="^Cannot convert outbound webhook.*direction='outbound'"
        ):
            meta.to_inbound("sms")

    def test_inbound_needs_a_sender(self) -> None:
        assert not WebhookMeta(provider="x", direction="inbound").is_inbound

    def test_pending_is_neither(self) -> None:
        meta = WebhookMeta(
            provider="x", direction="inbound", sender="+1", pending=True, status="sent"
        )
        assert not meta.is_inbound and not meta.is_status
        with pytest.raises(ValueError, match="pending"):
            meta.to_inbound("sms")

    def test_status_needs_id_and_status(self) -> None:
        assert not WebhookMeta(provider="x", status="delivered").is_status
        assert not WebhookMeta(provider="x", message_id="1").is_status
        assert WebhookMeta(provider="x", message_id="1", status="delivered").is_status

    def test_frozen(self) -> None:
        meta = WebhookMeta(provider="x")
        with pytest.raises(ValueError):
            meta.body = "changed"  # type: ignore[misc]

    def test_made_as_0_3_0_made_it(self) -> None:
        # Positionally, in 0.3.0's order, without a direction: an inbound message, as then.
        when = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
        media = [{"url": "https://x.example/a.jpg", "mime_type": None}]
        meta = WebhookMeta("twilio", "+15145550100", "+15005550006", "hi", "SM1", when, {}, media)
        assert (meta.message_id, meta.external_id, meta.direction) == ("SM1", "SM1", None)
        assert meta.media_urls == [{"url": "https://x.example/a.jpg", "mime_type": "image/jpeg"}]
        assert meta.is_inbound and not meta.is_status
        message = meta.to_inbound("sms")
        assert (message.external_id, message.idempotency_key) == ("SM1", "SM1")
        assert message.metadata["timestamp"] == "2024-05-10T12:00:00+00:00"
        assert isinstance(message.content, MediaContent) and message.content.caption == "hi"
        # By name; a status event type of an outbound message makes a status.
        status = WebhookMeta(
            provider="telnyx",
            sender="+1",
            recipient="+2",
            body="",
            external_id="m1",
            timestamp=None,
            raw={},
            direction="outbound",
            event_type="message.delivered",
        )
        assert status.is_status and not status.is_inbound
        assert (status.to_status().status, status.to_status().message_id) == ("delivered", "m1")
        sent = WebhookMeta(provider="telnyx", sender="+1", event_type="message.sent")
        assert not sent.is_inbound  # a message we sent, as 0.3.0 read it

    @pytest.mark.parametrize(
        "fields",
        [
            {"status": "delivered"},  # a status given, no direction
            {"event_type": "message.delivered"},  # 0.3.0's status event, no direction
            {"event_type": "message.failed", "direction": "outbound"},
        ],
    )
    def test_a_status_without_an_inbound_direction_is_a_status(
        self, fields: dict[str, Any]
    ) -> None:
        # Not an (empty) inbound message: the status handlers would never have seen it.
        meta = WebhookMeta(provider="x", sender="+15145550100", message_id="m-42", **fields)
        assert meta.is_status and not meta.is_inbound
        assert meta.to_status().message_id == "m-42"

    def test_0_3_0_arguments_are_checked_not_dropped(self) -> None:
        for entry in ({"url": "/relative.jpg"}, "https://x.example/a.jpg", {"mime_type": "x"}):
            with pytest.raises(ValueError, match="media_urls entry"):
                WebhookMeta(provider="x", media_urls=[entry])
        with pytest.raises(ValueError, match="extra|not permitted"):
            WebhookMeta(provider="x", media_url="https://x.example/a.jpg")  # a typo
        with pytest.raises(TypeError, match="multiple values"):
            WebhookMeta("x", provider="y")
        with pytest.raises(TypeError, match="at most 10"):
            WebhookMeta(*range(11))
        with pytest.raises(ValueError, match="one field"):
            WebhookMeta(provider="x", external_id="a", message_id="b")

    def test_a_vendor_payload_that_says_neither_is_neither(self) -> None:
        meta = extract_sms_meta("twilio", {"From": "+15145550100"})  # no body, no status
        assert meta.direction == "unknown"
        assert not meta.is_inbound and not meta.is_status

    @pytest.mark.parametrize("provider", ["TWILIO", " telnyx ", "Sinch", "voicemeup"])
    def test_dispatch_is_case_insensitive(self, provider: str) -> None:
        assert extract_sms_meta(provider, {}).provider == provider.strip().lower()

    def test_unknown_provider(self) -> None:
        with pytest.raises(ValueError, match="^Unknown SMS provider: nexmo "):
            extract_sms_meta("nexmo", {})

    @pytest.mark.parametrize(
        ("provider", "raw"),
        [
            (
                "telnyx",
                b'{"data":{"event_type":"message.received","id":"e1","payload":{"id":"m1",'
                b'"direction":"inbound","from":{"phone_number":"+15551112222"},'
                b'"to":[{"phone_number":"+15553334444"}],"text":"see you \\ud83d"}}}',
            ),
            (
                "sinch",
                b'{"type":"mo_text","id":"01","from":"15551112222","to":"12345",'
                b'"body":"see you \\ud83d"}',
            ),
        ],
        ids=["telnyx", "sinch"],
    )
    async def test_a_lone_surrogate_does_not_lose_the_message(
        self, provider: str, raw: bytes
    ) -> None:
        # Half an emoji (valid JSON, a vendor cutting UTF-16 text): the room refused the
        # message with EventRefusedError at each of the vendor's retries, so it was lost.
        meta = extract_sms_meta(provider, json.loads(raw))
        assert meta.body == "see you \ufffd"
        async with RoomKit() as kit:
            kit.register_channel(SMSChannel("sms", provider=MockSMSProvider()))
            with anyio.fail_after(10):
                result = await kit.process_webhook(meta, "sms")
        assert result is not None and result.event is not None
        assert result.event.content == TextContent(body="see you \ufffd")

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from(["twilio", "telnyx", "sinch"]), json_values)
    def test_any_payload_value(self, provider: str, payload: Any) -> None:
        # Non-mappings are refused with ValueError; mappings never raise.
        try:
            meta = extract_sms_meta(provider, payload)
        except ValueError:
            assert not isinstance(payload, dict)
        else:
            assert isinstance(payload, dict)
            assert isinstance(meta, WebhookMeta)


class TestInboundContent:
    def test_text(self) -> None:
        assert build_inbound_content("hi") == TextContent(body="hi")

    def test_one_media_with_caption(self) -> None:
        content = build_inbound_content(
            "caption", [WebhookMedia(url="https://x.example/a.jpg", mime_type="image/jpeg")]
        )
        assert content == MediaContent(
            url="https://x.example/a.jpg", mime_type="image/jpeg", caption="caption"
        )

    def test_composite_and_non_http_skipped(self) -> None:
        media = [
            WebhookMedia(url="https://x.example/a.jpg", mime_type="image/jpeg"),
            WebhookMedia(url="ftp://x.example/b.jpg", mime_type="image/jpeg"),
            WebhookMedia(url="https://x.example/c.ogg", mime_type="audio/ogg"),
        ]
        content = build_inbound_content("", media)
        assert isinstance(content, CompositeContent)
        assert [p.url for p in content.parts] == [  # type: ignore[union-attr]
            "https://x.example/a.jpg",
            "https://x.example/c.ogg",
        ]

    def test_only_bad_urls_is_text(self) -> None:
        media = [WebhookMedia(url="javascript:alert(1)")]
        assert build_inbound_content("x", media) == TextContent(body="x")

    def test_0_3_0_media_dicts(self) -> None:
        one = build_inbound_content("hi", [{"url": "https://x/a.jpg", "mime_type": "image/jpeg"}])
        assert one == MediaContent(url="https://x/a.jpg", mime_type="image/jpeg", caption="hi")
        several = build_inbound_content(
            "",
            [
                {"url": "https://x/a.jpg"},  # no type: octet-stream, as 0.3.0
                {"url": None},  # no URL: skipped, as 0.3.0
                {"url": "https://x/b.png", "mime_type": "image/png"},
            ],
        )
        assert several == CompositeContent(
            parts=[
                MediaContent(url="https://x/a.jpg", mime_type="application/octet-stream"),
                MediaContent(url="https://x/b.png", mime_type="image/png"),
            ]
        )
        with pytest.raises(TypeError, match="WebhookMedia or a dict"):
            build_inbound_content("", ["https://x/a.jpg"])  # type: ignore[list-item]


class TestContentHelpers:
    """``extract_text_body`` / ``extract_media_urls`` take 0.3.0's content as well."""

    def test_text_of_contents(self) -> None:
        media = MediaContent(url="https://x/a.jpg", mime_type="image/jpeg", caption="look")
        composite = CompositeContent(
            parts=[
                TextContent(body="two"),
                media,
                MediaContent(url="https://x/b", mime_type="x/y"),
            ]
        )
        assert extract_text_body(TextContent(body="hello")) == "hello"
        assert extract_text_body(content=SystemContent(body="sys")) == "sys"
        assert extract_text_body(media) == "look"
        assert extract_text_body(composite) == "two look"
        assert extract_text_body(LocationContent(latitude=1, longitude=2)) == ""

    def test_media_urls_of_contents(self) -> None:
        media = MediaContent(url="https://x/a.jpg", mime_type="image/jpeg")
        composite = CompositeContent(parts=[TextContent(body="t"), media])
        assert extract_media_urls(media) == ["https://x/a.jpg"]
        assert extract_media_urls(content=composite) == ["https://x/a.jpg"]
        assert extract_media_urls(TextContent(body="t")) == []

    def test_webhook_form_still_works(self) -> None:
        payload = {"MessageSid": "SM1", "From": "+1", "Body": "hi", "MediaUrl0": "https://x/a.png"}
        assert extract_text_body("twilio", payload) == "hi"
        assert extract_text_body(provider="twilio", payload=payload) == "hi"
        assert extract_media_urls("twilio", payload) == [
            WebhookMedia(url="https://x/a.png", mime_type="image/png")
        ]

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((), {}),
            (("twilio",), {}),
            (({"Body": "x"},), {}),
            ((TextContent(body="x"), {}), {"content": TextContent(body="x")}),
            (("twilio", {}, "extra"), {}),
            (("twilio",), {"provider": "telnyx", "payload": {}}),
            ((), {"payload": {}, "other": 1}),
        ],
    )
    def test_neither_form_is_a_type_error(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        for helper in (extract_text_body, extract_media_urls):
            with pytest.raises(TypeError):
                helper(*args, **kwargs)


class TestGetStr:
    def test_reading_untrusted_values(self) -> None:
        payload = {"a": None, "b": True, "c": 12, "d": ["x", "y"], "e": "", "f": {"k": 1}}
        assert get_str(payload, "a", "b", "c") == "12"
        assert get_str(payload, "d") == "x"
        assert get_str(payload, "e", "f") == ""
        assert get_str("not a mapping", "a") == ""
        assert get_str({"big": 10**5000}, "big") == ""


class TestPhone:
    @pytest.fixture(params=["phonenumbers", "fallback"])
    def engine(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
        if request.param == "fallback":
            monkeypatch.setattr(phone, "_phonenumbers", lambda: None)
        else:
            pytest.importorskip("phonenumbers")  # an optional extra
        return str(request.param)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("+1 (514) 555-0100", "+15145550100"),
            ("514.555.0100", "+15145550100"),
            ("1-514-555-0100", "+15145550100"),
            ("+44 20 7946 0958", "+442079460958"),
            ("011 44 20 7946 0958", "+442079460958"),
        ],
    )
    def test_normalize(self, engine: str, raw: str, expected: str) -> None:
        assert normalize_phone(raw) == expected

    def test_international_prefix_depends_on_region(self, engine: str) -> None:
        assert normalize_phone("0044 20 7946 0958", "FR") == "+442079460958"
        with pytest.raises(ValueError):
            normalize_phone("0044 20 7946 0958", "US")

    @pytest.mark.parametrize("raw", ["", "   ", "hello", "+", "12", "+0123456789"])
    def test_normalize_rejects(self, engine: str, raw: str) -> None:
        with pytest.raises(ValueError):
            normalize_phone(raw)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("442079460958", "+442079460958"), ("4915123456789", "+4915123456789")],
    )
    def test_an_international_number_written_without_its_plus(
        self, engine: str, raw: str, expected: str
    ) -> None:
        # As Sinch and VoiceMeUp write them; 0.3.0 read them so. They raised ValueError.
        assert normalize_phone(raw) == expected
        assert is_valid_phone(raw)

    def test_a_national_number_comes_before_the_digits_of_an_international_one(
        self, engine: str
    ) -> None:
        assert normalize_phone("4155550100") == "+14155550100"
        assert normalize_phone("15145550100") == "+15145550100"

    @pytest.mark.parametrize("region", ["DE", "AT", "IT"])
    def test_digits_not_written_as_the_region_writes_its_numbers_are_international(
        self, region: str
    ) -> None:
        # As 0.3.0 read them: there nearly any digits make a valid national number (written
        # with a trunk 0), and a French number written without its + was read as a German one.
        pytest.importorskip("phonenumbers")
        assert normalize_phone("33612345678", region) == "+33612345678"
        assert normalize_phone("15145550100", region) == "+15145550100"

    @pytest.mark.parametrize(
        "digits", ["33612345678", "34612345678", "32470123456", "351912345678", "358401234567"]
    )
    def test_digits_longer_than_the_regions_numbers_are_international(self, digits: str) -> None:
        # European mobiles as Sinch and VoiceMeUp write them: eleven or twelve digits make a
        # valid Italian number too, but Italian mobiles have ten; read as Italian, they were.
        pytest.importorskip("phonenumbers")
        assert normalize_phone(digits, "IT") == "+" + digits
        assert normalize_phone("3123456789", "IT") == "+393123456789"  # an Italian mobile

    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [("15012345678", "CN", "+8615012345678"), ("41911382025", "BR", "+5541911382025")],
    )
    def test_digits_written_as_the_region_writes_its_numbers_are_national(
        self, raw: str, region: str, expected: str
    ) -> None:
        # Read first as international (0.3.0's order), a Chinese mobile was a US number.
        pytest.importorskip("phonenumbers")
        assert normalize_phone(raw, region) == expected

    @pytest.mark.parametrize("raw", ["(555) 123-4567", "+1 555 0100"])
    def test_a_number_the_numbering_plan_does_not_allow_is_refused(self, raw: str) -> None:
        # 0.3.0 refused them ("Invalid phone number"): apps use it to validate. They were
        # taken as long as they were possible.
        pytest.importorskip("phonenumbers")
        assert not is_valid_phone(raw)
        with pytest.raises(ValueError, match="^Invalid phone number: "):
            normalize_phone(raw)

    def test_national_number_of_other_regions(self, engine: str) -> None:
        if engine == "phonenumbers":
            assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
        else:
            with pytest.raises(ValueError, match="phonenumbers"):
                normalize_phone("020 7946 0958", "GB")

    @pytest.mark.parametrize(
        ("raw", "valid"),
        [
            ("+15145550100", True),
            ("(514) 555-0100", True),
            ("+442079460958", True),
            ("+1 123 555 0100", False),  # NANP area codes never start with 1
            ("+1514555010", False),
            ("not a number", False),
            ("", False),
        ],
    )
    def test_is_valid(self, engine: str, raw: str, valid: bool) -> None:
        assert is_valid_phone(raw) is valid

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet="+0123456789 -().x", max_size=20) | st.text(max_size=20))
    def test_never_raises_anything_else(self, raw: str) -> None:
        for engine in (phone._phonenumbers, lambda: None):
            original = phone._phonenumbers
            phone._phonenumbers = engine  # type: ignore[assignment]
            try:
                is_valid_phone(raw)
                try:
                    result = normalize_phone(raw)
                except ValueError:
                    continue
                assert E164.fullmatch(result), result
            finally:
                phone._phonenumbers = original  # type: ignore[assignment]


class TestRenderOutbound:
    def test_kinds(self) -> None:
        assert render_outbound(SystemContent(body="sys")).text == "sys"
        assert render_outbound(TemplateContent(template_id="t", body="tpl")).text == "tpl"
        assert render_outbound(TemplateContent(template_id="t")).is_empty
        location = render_outbound(
            LocationContent(latitude=45.5017, longitude=-73.5673, label="Office")
        )
        assert location.text == "Office\n45.501700,-73.567300"
        audio = render_outbound(AudioContent(url="https://x.example/a.ogg"))
        video = render_outbound(VideoContent(url="https://x.example/v.mp4"))
        assert audio.media == (OutboundMedia("https://x.example/a.ogg", "audio/ogg"),)
        assert video.media == (OutboundMedia("https://x.example/v.mp4", "video/mp4"),)

    def test_composite_and_data_urls(self) -> None:
        content = CompositeContent(
            parts=[
                TextContent(body="one"),
                MediaContent(url="data:image/png;base64,AAAA", mime_type="image/png"),
                CompositeContent(parts=[TextContent(body="two")]),
            ]
        )
        rendered = render_outbound(content)
        assert rendered.text == "one\ntwo"
        assert rendered.media == ()


class TestSplitText:
    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from("ab \n\t"), max_size=300), st.integers(1, 40))
    def test_invariants(self, text: str, max_length: int) -> None:
        chunks = split_text(text, max_length)
        assert all(len(chunk) <= max_length for chunk in chunks)
        assert "".join("".join(chunks).split()) == "".join(text.split())

    def test_words_stay_whole(self) -> None:
        assert split_text("hello big world", 9) == ["hello big", "world"]
        assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
        assert split_text("short", 160) == ["short"]
        with pytest.raises(ValueError):
            split_text("x", 0)


def test_importing_providers_loads_no_optional_dependency() -> None:
    code = (
        "import sys\n"
        "import providers, providers.sms.meta, providers.sms.phone\n"
        "import providers.twilio, providers.telnyx, providers.sinch, providers.voicemeup\n"
        "loaded = [m for m in ('httpx', 'cryptography', 'phonenumbers', 'nacl')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class TestSendGuards:
    @pytest.mark.parametrize("vendor", ["twilio", "telnyx", "sinch", "voicemeup"])
    async def test_missing_recipient_is_not_sent(self, vendor: str) -> None:
        from tests.providers.sms_support import Recorder, event, mock_client

        recorder = Recorder([httpx.Response(500)])
        async with mock_client(recorder) as client:
            provider = _provider(vendor, client)
            result = await provider.send(event("hello"), to="")
        assert (result.success, result.error) == (False, "missing_recipient")
        assert recorder.requests == []


def _provider(vendor: str, client: httpx.AsyncClient) -> Any:
    if vendor == "twilio":
        from providers.twilio import TwilioConfig, TwilioSMSProvider

        return TwilioSMSProvider(
            TwilioConfig(account_sid="AC1", auth_token="t", from_number="+1"), client=client
        )
    if vendor == "telnyx":
        from providers.telnyx import TelnyxConfig, TelnyxSMSProvider

        return TelnyxSMSProvider(TelnyxConfig(api_key="k", from_number="+1"), client=client)
    if vendor == "sinch":
        from providers.sinch import SinchConfig, SinchSMSProvider

        config = SinchConfig(service_plan_id="p", api_token="t", from_number="+1")
        return SinchSMSProvider(config, client=client)
    from providers.voicemeup import VoiceMeUpConfig, VoiceMeUpSMSProvider

    config = VoiceMeUpConfig(username="u", auth_token="t", from_number="+1")
    return VoiceMeUpSMSProvider(config, client=client)


class TestSignaturesNeverRaise:
    @settings(max_examples=150, deadline=None)
    @given(
        st.binary(max_size=64) | st.text(max_size=64), st.text(max_size=40), st.text(max_size=60)
    )
    def test_twilio(self, payload: bytes | str, signature: str, url: str) -> None:
        from providers.twilio import verify_twilio_signature

        assert verify_twilio_signature("token", url, payload, signature) in (True, False)
        assert not verify_twilio_signature(
            "token", "https://x.example/?bodySHA256=ab", payload, signature
        )

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=64), st.text(max_size=90), st.none() | st.text(max_size=12))
    def test_telnyx(self, payload: bytes, signature: str, timestamp: str | None) -> None:
        pytest.importorskip("cryptography")
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from providers.telnyx import verify_telnyx_signature

        key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
        result = verify_telnyx_signature(
            key, payload, signature, timestamp, tolerance_seconds=None
        )
        assert result is False

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=64) | st.text(max_size=64), st.text(max_size=40))
    def test_sinch(self, payload: bytes | str, signature: str) -> None:
        from providers.sinch import verify_sinch_signature

        assert verify_sinch_signature("secret", payload, signature) in (True, False)
