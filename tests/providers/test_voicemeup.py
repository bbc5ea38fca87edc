"""VoiceMeUp over httpx.MockTransport: queue_sms requests, long text, errors, webhooks and the
MMS aggregator (quirk 18: per-instance state, caller-owned timers)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings

from providers.sms.meta import WebhookMeta, extract_sms_meta
from providers.voicemeup import (
    VoiceMeUpConfig,
    VoiceMeUpMMSAggregator,
    VoiceMeUpSMSProvider,
    configure_voicemeup_mms,
    default_voicemeup_aggregator,
    extract_voicemeup_meta,
    mms,
    parse_voicemeup_webhook,
    read_voicemeup_payload,
)
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import CompositeContent, MediaContent, TextContent
from tests.providers.sms_support import Recorder, event, form, mock_client, payloads, sms_kit

TOKEN = "vmu-auth-t0ken-s3cret"
QUEUE_URL = "https://clients.voicemeup.com/api/v1.1/json/queue_sms"


def queued(sms_id: str = "8812345") -> httpx.Response:
    """VoiceMeUp's answer to ``queue_sms`` (the shape RoomKit 0.3.0 read)."""
    return httpx.Response(
        200,
        json={
            "response_details": {
                "response_status": "success",
                "response_messages": {
                    "message": [{"code": "queued_sms_hash", "_content": sms_id}]
                },
            }
        },
    )


def refused(messages: Any) -> httpx.Response:
    """A request error, which VoiceMeUp answers with HTTP 200."""
    return httpx.Response(
        200,
        json={
            "response_details": {
                "response_status": "error",
                "response_messages": {"message": messages},
            }
        },
    )


def config(**overrides: Any) -> VoiceMeUpConfig:
    values: dict[str, Any] = {
        "username": "acme",
        "auth_token": TOKEN,
        "from_number": "+15145550199",
    }
    values.update(overrides)
    return VoiceMeUpConfig(**values)


def incoming(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sms_id": "990001",
        "direction": "incoming",
        "source_number": "15145550100",
        "destination_number": "15145550199",
        "message": "Bonjour",
        "datetime_transmission": "2024-05-10 12:00:00",
    }
    payload.update(overrides)
    return payload


def picture(sms_id: str = "990002", name: str = "photo.jpg") -> dict[str, Any]:
    return incoming(
        sms_id=sms_id,
        message="",
        attachment=f"https://clients.voicemeup.com/mms/{name}",
        attachment_mime_type="image/jpeg",
    )


def base_form(**fields: str) -> dict[str, list[str]]:
    values = {
        "username": ["acme"],
        "auth_token": [TOKEN],
        "source_number": ["15145550199"],
        "destination_number": ["15145550100"],
    }
    values.update({key: [value] for key, value in fields.items()})
    return values


class TestSend:
    async def test_text_request(self) -> None:
        recorder = Recorder([queued()])
        async with mock_client(recorder) as client:
            result = await VoiceMeUpSMSProvider(config(), client=client).send(
                event("Salut"), to="+15145550100"
            )
        assert result.success
        assert result.provider_message_id == "8812345"
        assert result.metadata == {"message_ids": ["8812345"], "parts": 1}
        request = recorder.last
        assert (request.method, str(request.url)) == ("POST", QUEUE_URL)
        assert "authorization" not in request.headers
        assert TOKEN not in str(request.url)
        assert form(request) == base_form(message="Salut")

    @pytest.mark.parametrize("setting", [{"sandbox": True}, {"environment": "sandbox"}])
    async def test_sandbox_host(self, setting: dict[str, Any]) -> None:
        # environment="sandbox" is 0.3.0's way (its base_url property chose the host by it).
        recorder = Recorder([queued()])
        async with mock_client(recorder) as client:
            await VoiceMeUpSMSProvider(config(**setting), client=client).send(event("x"), to="+1")
        assert str(recorder.last.url) == (
            "https://dev-clients.voicemeup.com/api/v1.1/json/queue_sms"
        )

    def test_environment_defaults_to_production_as_in_0_3_0(self) -> None:
        default = config()
        assert (default.environment, default.sandbox) == ("production", False)
        assert default.api_root == "https://clients.voicemeup.com"
        assert default.queue_sms_url == QUEUE_URL
        # The default does not contradict sandbox=True: it follows it, naming the host used.
        sandbox = config(sandbox=True)
        assert sandbox.environment == "sandbox"
        assert sandbox.api_root == "https://dev-clients.voicemeup.com"
        assert VoiceMeUpConfig.model_validate(sandbox.model_dump()) == sandbox

    def test_an_unknown_environment_is_production(self, caplog: pytest.LogCaptureFixture) -> None:
        # 0.3.0 sent anything but "sandbox" to production; it is said in a warning here.
        assert config(environment="production").api_root == "https://clients.voicemeup.com"
        assert not caplog.records
        staging = config(environment="staging")
        assert (staging.environment, staging.api_root) == (
            "staging",
            "https://clients.voicemeup.com",
        )
        assert staging.queue_sms_url == QUEUE_URL
        assert "unknown environment 'staging'" in caplog.text
        with pytest.raises(ValueError, match="contradict"):
            config(environment="production", sandbox=True)
        with pytest.raises(ValueError, match="contradict"):
            config(environment="staging", sandbox=True)

    async def test_message_id_is_the_queued_sms_hash(self) -> None:
        async with mock_client(Recorder([queued("hash-ok")])) as client:
            result = await VoiceMeUpSMSProvider(config(), client=client).send(
                event("x"), to="+15145550100"
            )
        assert (result.success, result.provider_message_id) == (True, "hash-ok")
        one = httpx.Response(
            200,
            json={
                "response_details": {
                    "response_status": "success",
                    "response_messages": {"message": {"code": "queued_sms_hash", "_content": 7}},
                }
            },
        )
        flat = httpx.Response(200, json={"response_status": "success", "sms_id": "9"})
        for answer, expected in ((one, "7"), (flat, "9")):
            async with mock_client(Recorder([answer])) as client:
                provider = VoiceMeUpSMSProvider(config(), client=client)
                sent = await provider.send(event("x"), to="+1")
            assert sent.provider_message_id == expected

    async def test_long_text_is_split_between_words(self) -> None:
        recorder = Recorder([queued("1"), queued("2"), queued("3")])
        text = " ".join(f"word{i:02d}" for i in range(30))  # 30 * 7 - 1 = 209 chars
        async with mock_client(recorder) as client:
            provider = VoiceMeUpSMSProvider(config(max_message_length=80), client=client)
            result = await provider.send(event(text), to="+15145550100")
        parts = [form(r)["message"][0] for r in recorder.requests]
        assert len(parts) == 3
        assert all(len(part) <= 80 for part in parts)
        assert " ".join(parts) == text
        assert result.metadata == {"message_ids": ["1", "2", "3"], "parts": 3}

    async def test_media_with_caption_and_extra_media(self) -> None:
        recorder = Recorder([queued("1"), queued("2")])
        content = CompositeContent(
            parts=[
                TextContent(body="plans"),
                MediaContent(url="https://cdn.example.com/a.png", mime_type="image/png"),
                MediaContent(url="https://cdn.example.com/b.png", mime_type="image/png"),
            ]
        )
        async with mock_client(recorder) as client:
            result = await VoiceMeUpSMSProvider(config(), client=client).send(
                event(content), to="+15145550100"
            )
        # The media's URL in "attachment", the field 0.3.0 sent ("attachment_url" was ours).
        assert [form(r) for r in recorder.requests] == [
            base_form(message="plans", attachment="https://cdn.example.com/a.png"),
            base_form(attachment="https://cdn.example.com/b.png"),  # no caption: no message
        ]
        assert result.metadata["parts"] == 2

    async def test_empty(self) -> None:
        recorder = Recorder([queued()])
        async with mock_client(recorder) as client:
            result = await VoiceMeUpSMSProvider(config(), client=client).send(event(""), to="+1")
        assert result.error == "empty_message" and recorder.requests == []


class TestErrors:
    async def send_with(self, *answers: httpx.Response | Exception, text: str = "x") -> Any:
        recorder = Recorder(list(answers))
        async with mock_client(recorder) as client:
            provider = VoiceMeUpSMSProvider(config(max_message_length=10), client=client)
            return await provider.send(event(text), to="+15145550100")

    async def test_http_statuses(self) -> None:
        # 0.3.0 named every failed VoiceMeUp answer by its status.
        assert (await self.send_with(httpx.Response(401))).error == "http_401"
        assert (await self.send_with(httpx.Response(403))).error == "http_403"
        assert (await self.send_with(httpx.Response(400, text="no"))).error == "http_400"
        limited = await self.send_with(httpx.Response(429, headers={"Retry-After": "30"}))
        assert (limited.error, limited.metadata["retry_after"]) == ("http_429", 30.0)
        assert limited.metadata["retryable"] is True
        assert (await self.send_with(httpx.Response(500))).error == "http_500"
        assert (await self.send_with(httpx.ReadTimeout("t"))).error == "timeout"

    async def test_network_error_is_its_text(self) -> None:
        result = await self.send_with(httpx.ConnectError(f"refused, token={TOKEN}"))
        assert (result.error, result.metadata["retryable"]) == ("refused, token=***", True)

    async def test_error_in_a_200_answer(self) -> None:
        one = refused({"code": "invalid_destination", "_content": "Bad number"})
        result = await self.send_with(one)
        # 0.3.0: a failure named by VoiceMeUp's code, its text as the description.
        assert (result.success, result.error) == (False, "invalid_destination")
        assert result.metadata["description"] == "Bad number"
        assert result.metadata["vendor_code"] == "invalid_destination"
        listed = refused([{"code": "missing_message", "_content": "No text"}])
        assert (await self.send_with(listed)).error == "missing_message"
        assert (await self.send_with(refused([]))).error == "unknown_error"
        flat = httpx.Response(
            200, json={"response_status": "error", "response_messages": [{"code": "x1"}]}
        )
        assert (await self.send_with(flat)).error == "x1"

    async def test_other_200_answers_are_sent(self, caplog: pytest.LogCaptureFixture) -> None:
        # 0.3.0 took any answer but "error" as sent; failing it would send it again.
        for answer in (
            httpx.Response(200, json={"response_details": {"response_status": "queued"}}),
            httpx.Response(200, text="{not json"),
        ):
            result = await self.send_with(answer)
            assert (result.success, result.provider_message_id) == (True, None)
        assert "without naming its id" in caplog.text

    async def test_stops_at_first_failed_part(self) -> None:
        result = await self.send_with(
            queued("1"), httpx.Response(503), text="one two three four five"
        )
        assert (result.success, result.error) == (False, "http_503")
        assert result.metadata["message_ids"] == ["1"]
        assert result.metadata["parts"] == 3
        # A 503 is retryable, but a part went out: sent again whole, it came twice.
        assert result.metadata["retryable"] is False
        first = await self.send_with(httpx.Response(503), text="one")
        assert first.metadata["retryable"] is True  # nothing went out

    async def test_secret_never_leaks(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        for answer in (httpx.Response(401), httpx.ReadTimeout("t"), httpx.Response(500)):
            assert TOKEN not in repr(await self.send_with(answer))
        assert TOKEN not in repr(config())
        assert TOKEN not in caplog.text


class TestWebhooks:
    def test_the_id_is_0_3_0_s_sms_hash_when_there_is_one(self) -> None:
        # Another field came first: a message's id (its idempotency key) was no longer the
        # one 0.3.0 recorded, and a retry across the upgrade was recorded twice.
        payload = incoming(sms_hash="h-77")
        message = parse_voicemeup_webhook(payload, "sms", aggregator=VoiceMeUpMMSAggregator())
        assert message is not None and message.external_id == message.idempotency_key == "h-77"

    def test_inbound_text(self) -> None:
        message = parse_voicemeup_webhook(incoming(), "sms", aggregator=VoiceMeUpMMSAggregator())
        assert message is not None
        assert message.sender_id == "15145550100"
        assert message.content == TextContent(body="Bonjour")
        assert message.external_id == message.idempotency_key == "990001"
        assert message.metadata["recipient"] == "15145550199"
        # 0.3.0's isoformat() of the time, and its keys with VoiceMeUp's own values.
        assert message.metadata["timestamp"] == "2024-05-10T12:00:00"
        keys = ("destination_number", "direction", "datetime_transmission", "has_attachment")
        assert {key: message.metadata[key] for key in keys} == {
            "destination_number": "15145550199",
            "direction": "incoming",
            "datetime_transmission": "2024-05-10 12:00:00",
            "has_attachment": False,
        }

    def test_0_3_0_metadata_defaults_and_attachment(self) -> None:
        bare = {"source_number": "15145550100", "message": "hi"}
        message = parse_voicemeup_webhook(bare, "sms", aggregator=VoiceMeUpMMSAggregator())
        assert message is not None
        assert (
            message.metadata["direction"],
            message.metadata["datetime_transmission"],
            message.metadata["timestamp"],
        ) == ("inbound", "", None)
        shown = parse_voicemeup_webhook(picture(), "sms", aggregator=VoiceMeUpMMSAggregator())
        assert shown is not None and shown.metadata["has_attachment"] is True

    def test_merged_mms_has_attachment(self) -> None:
        aggregator = VoiceMeUpMMSAggregator()
        aggregator.expired()  # someone drains it: attachments are held for their text
        assert extract_voicemeup_meta(picture(), aggregator=aggregator).pending
        message = parse_voicemeup_webhook(incoming(), "sms", aggregator=aggregator)
        assert message is not None and isinstance(message.content, MediaContent)
        assert message.metadata["has_attachment"] is True

    def test_outgoing_echo_is_not_inbound(self) -> None:
        meta = read_voicemeup_payload(incoming(direction="outgoing"))
        assert not meta.is_inbound and not meta.is_status
        with pytest.raises(ValueError, match="not an inbound message"):
            parse_voicemeup_webhook(
                incoming(direction="outgoing"), "sms", aggregator=VoiceMeUpMMSAggregator()
            )

    def test_form_encoded_strings(self) -> None:
        payload = {key: [value] for key, value in incoming().items()}
        assert read_voicemeup_payload(payload).body == "Bonjour"

    @settings(max_examples=300, deadline=None)
    @given(
        payloads(
            [
                "sms_id",
                "direction",
                "source_number",
                "destination_number",
                "message",
                "attachment",
                "attachment_mime_type",
            ]
        )
    )
    def test_parsers_only_raise_value_error(self, payload: dict[str, Any]) -> None:
        aggregator = VoiceMeUpMMSAggregator()
        meta = extract_voicemeup_meta(payload, aggregator=aggregator)
        if meta.is_inbound:
            meta.to_inbound("sms")
        with contextlib.suppress(ValueError):
            parse_voicemeup_webhook(payload, "sms", aggregator=aggregator)
        aggregator.expired(now=float("inf"))


def holding(**kwargs: Any) -> VoiceMeUpMMSAggregator:
    """An aggregator that holds attachments: its caller drains it (``expired``), which gives
    held parts a way out."""
    aggregator = VoiceMeUpMMSAggregator(on_timeout=lambda meta: None, **kwargs)
    aggregator.expired()
    return aggregator


class TestMMSAggregator:
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        # The aggregator is pure anyio (no asyncio.create_task): it runs under trio too.
        return str(request.param)

    def test_picture_then_text_merge(self) -> None:
        aggregator = holding(timeout_seconds=5)
        first = extract_voicemeup_meta(picture(), aggregator=aggregator)
        assert first.pending and not first.is_inbound and not first.is_status
        assert (
            parse_voicemeup_webhook(picture("990003", "b.jpg"), "sms", aggregator=aggregator)
            is None
        )
        message = parse_voicemeup_webhook(incoming(), "sms", aggregator=aggregator)
        assert message is not None
        assert isinstance(message.content, CompositeContent)
        text, one, two = message.content.parts
        assert text == TextContent(body="Bonjour")
        assert isinstance(one, MediaContent) and one.url.endswith("photo.jpg")
        assert isinstance(two, MediaContent) and two.url.endswith("b.jpg")
        assert message.metadata["mms_part_ids"] == ["990002", "990003", "990001"]
        assert aggregator.pending == 0

    def test_text_with_its_wrapper_then_picture_merge_as_0_3_0_documented(self) -> None:
        # VoiceMeUp's order: the text with a ".mms.html" wrapper page, then the picture. The
        # wrapper reached the room as a picture of its own, and the real one came apart.
        aggregator = holding()
        first = incoming(
            attachment="https://clients.voicemeup.com/mms/x.mms.html",
            attachment_mime_type="text/html",
        )
        assert parse_voicemeup_webhook(first, "sms", aggregator=aggregator) is None
        assert parse_voicemeup_webhook(first, "sms", aggregator=aggregator) is None  # retried
        message = parse_voicemeup_webhook(picture(), "sms", aggregator=aggregator)
        assert message is not None
        assert message.content == MediaContent(
            url="https://clients.voicemeup.com/mms/photo.jpg",
            mime_type="image/jpeg",
            caption="Bonjour",
        )
        assert message.external_id == message.idempotency_key == "990001+990002"  # 0.3.0's
        assert message.metadata["mms_part_ids"] == ["990001", "990002"]
        assert aggregator.pending == 0

    def test_the_two_parts_merge_in_either_order(self) -> None:
        # Sent at once, the picture may come first: the text pushed it out alone (as on a
        # timeout) and waited in vain for another.
        aggregator = holding()
        assert parse_voicemeup_webhook(picture(), "sms", aggregator=aggregator) is None
        first = incoming(attachment="https://clients.voicemeup.com/mms/x.mms.html")
        message = parse_voicemeup_webhook(first, "sms", aggregator=aggregator)
        assert message is not None
        assert message.content == MediaContent(
            url="https://clients.voicemeup.com/mms/photo.jpg",
            mime_type="image/jpeg",
            caption="Bonjour",
        )
        # The id of the documented order (text first), whatever the order: a retried part
        # must be recognised as the same message.
        assert message.external_id == message.idempotency_key == "990001+990002"
        assert message.metadata["mms_part_ids"] == ["990001", "990002"]
        assert aggregator.pending == 0

    def test_two_mms_of_one_pair_keep_their_own_pictures(self) -> None:
        # Keyed by sender and recipient only, the second text took the first one's place
        # and got its picture. 0.3.0's key has the time of transmission too.
        aggregator = holding()
        wrapper = "https://clients.voicemeup.com/mms/x.mms.html"
        cat = incoming(sms_id="A1", message="the cat", attachment=wrapper)
        dog = incoming(
            sms_id="B1",
            message="the dog",
            attachment=wrapper,
            datetime_transmission="2024-05-10 12:00:05",
        )
        assert parse_voicemeup_webhook(cat, "sms", aggregator=aggregator) is None
        assert parse_voicemeup_webhook(dog, "sms", aggregator=aggregator) is None
        message = parse_voicemeup_webhook(picture("A2", "cat.jpg"), "sms", aggregator=aggregator)
        assert message is not None and message.external_id == "A1+A2"
        assert isinstance(message.content, MediaContent)
        assert (message.content.url, message.content.caption) == (
            "https://clients.voicemeup.com/mms/cat.jpg",
            "the cat",
        )
        assert aggregator.pending == 1  # the dog's text still waits for its picture

    async def test_a_text_whose_picture_never_comes_is_released_without_its_wrapper(
        self,
    ) -> None:
        released: list[WebhookMeta] = []
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=5, on_timeout=released.append)
        aggregator.expired()  # a caller that drains: parts are held from now on
        first = incoming(attachment="https://clients.voicemeup.com/mms/x.mms.html")
        assert extract_voicemeup_meta(first, aggregator=aggregator).pending
        await aggregator.flush_expired(now=_now() + 6)
        assert [m.to_inbound("sms").content for m in released] == [TextContent(body="Bonjour")]

    def test_a_wrapper_is_never_media_even_when_nothing_holds_parts(self) -> None:
        aggregator = VoiceMeUpMMSAggregator()  # nobody drains it: nothing is held
        first = incoming(attachment="https://clients.voicemeup.com/mms/x.mms.html")
        message = parse_voicemeup_webhook(first, "sms", aggregator=aggregator)
        assert message is not None and message.content == TextContent(body="Bonjour")

    def test_single_picture_becomes_captioned_media(self) -> None:
        aggregator = holding()
        extract_voicemeup_meta(picture(), aggregator=aggregator)
        message = parse_voicemeup_webhook(incoming(), "sms", aggregator=aggregator)
        assert message is not None
        assert message.content == MediaContent(
            url="https://clients.voicemeup.com/mms/photo.jpg",
            mime_type="image/jpeg",
            caption="Bonjour",
        )

    def test_text_alone_is_never_delayed(self) -> None:
        aggregator = VoiceMeUpMMSAggregator()
        assert extract_voicemeup_meta(incoming(), aggregator=aggregator).is_inbound
        assert aggregator.pending == 0

    def test_pairs_are_kept_apart(self) -> None:
        aggregator = holding()
        extract_voicemeup_meta(picture(), aggregator=aggregator)
        other = extract_voicemeup_meta(
            incoming(source_number="15145550111"), aggregator=aggregator
        )
        assert other.media == []
        assert aggregator.pending == 1

    async def test_lone_picture_times_out_through_the_callback(self) -> None:
        released: list[WebhookMeta] = []

        async def on_timeout(meta: WebhookMeta) -> None:
            released.append(meta)

        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=5, on_timeout=on_timeout)
        assert aggregator.expired() == []  # a caller that drains: parts are held from now on
        extract_voicemeup_meta(picture(), aggregator=aggregator)
        assert await aggregator.flush_expired(now=_now() + 4) == []
        flushed = await aggregator.flush_expired(now=_now() + 6)
        assert released == flushed
        assert len(released) == 1 and released[0].is_inbound
        assert released[0].to_inbound("sms").content == MediaContent(
            url="https://clients.voicemeup.com/mms/photo.jpg", mime_type="image/jpeg"
        )
        assert aggregator.pending == 0

    async def test_late_text_is_not_merged(self) -> None:
        clock = [100.0]
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=5, clock=lambda: clock[0])
        assert aggregator.expired() == []  # a caller that drains: parts are held from now on
        extract_voicemeup_meta(picture(), aggregator=aggregator)
        clock[0] = 106.0
        late = extract_voicemeup_meta(incoming(), aggregator=aggregator)
        assert late.media == []
        assert [m.message_id for m in aggregator.expired()] == ["990002"]

    async def test_callback_errors_do_not_stop_the_flush(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str | None] = []

        def on_timeout(meta: WebhookMeta) -> None:
            calls.append(meta.message_id)
            raise RuntimeError("boom")

        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=1, on_timeout=on_timeout)
        assert aggregator.expired(now=0) == []
        aggregator.add(read_voicemeup_payload(picture()), now=0)
        aggregator.add(
            read_voicemeup_payload(picture("7", "x.jpg") | {"source_number": "1"}), now=0
        )
        assert len(await aggregator.flush_expired(now=2)) == 2
        assert calls == ["990002", "7"]
        assert "on_timeout failed" in caplog.text

    async def test_defaults_hold_nothing_that_nobody_would_release(self) -> None:
        # No on_timeout and nobody flushing: a held picture-only MMS would never come out.
        async with mock_client(Recorder([])) as client:
            provider = VoiceMeUpSMSProvider(config(), client=client)
            photo = await provider.parse_webhook(picture(), "sms")
            assert photo is not None
            assert photo.content == MediaContent(
                url="https://clients.voicemeup.com/mms/photo.jpg", mime_type="image/jpeg"
            )
            text = await provider.parse_webhook(incoming(), "sms")
            assert text is not None and text.content == TextContent(body="Bonjour")
            assert provider.aggregator.pending == 0
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=5.0, on_timeout=None)
        assert parse_voicemeup_webhook(picture(), "sms", aggregator=aggregator) is not None
        assert aggregator.pending == 0

    def test_module_defaults_hold_nothing(self) -> None:
        default = default_voicemeup_aggregator()
        before = (default.timeout_seconds, default.on_timeout)
        try:
            configure_voicemeup_mms()
            assert parse_voicemeup_webhook(picture(), "sms") is not None
            assert default.pending == 0
        finally:
            default.clear()
            configure_voicemeup_mms(*before)

    async def test_configure_voicemeup_mms_s_callback_gets_a_message_as_in_0_3_0(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # 0.3.0's example, ``async def handle(message): await kit.process_inbound(message)``,
        # was handed a WebhookMeta: process_inbound refused it, and the picture was lost.
        monkeypatch.setattr(mms, "_default_aggregator", VoiceMeUpMMSAggregator())
        released: list[object] = []
        aggregator = configure_voicemeup_mms(timeout_seconds=5, on_timeout=released.append)
        aggregator.expired()  # a caller that drains: parts are held from now on
        assert parse_voicemeup_webhook(picture(), "sms") is None
        await aggregator.flush_expired(now=_now() + 6)
        (message,) = released
        assert isinstance(message, InboundMessage) and message.channel_id == "sms"
        assert isinstance(message.content, MediaContent)
        # Its own aggregator API hands on the part, whose channel it was not told.
        aggregator.configure(timeout_seconds=5, on_timeout=released.append)
        assert extract_voicemeup_meta(picture("990003"), aggregator=aggregator).pending
        await aggregator.flush_expired(now=_now() + 6)
        assert isinstance(released[-1], WebhookMeta)

    def test_on_timeout_alone_holds_nothing(self) -> None:
        """``on_timeout`` is called only by ``flush_expired``: with nobody draining, a held
        picture-only MMS would never come out (0.3.0 style ``configure(on_timeout=cb)``)."""
        released: list[object] = []
        aggregator = VoiceMeUpMMSAggregator(on_timeout=released.append)
        assert not extract_voicemeup_meta(picture(), aggregator=aggregator).pending
        assert aggregator.pending == 0

    def test_a_retried_part_is_merged_once(self) -> None:
        aggregator = holding()
        assert extract_voicemeup_meta(picture(), aggregator=aggregator).pending
        assert extract_voicemeup_meta(picture(), aggregator=aggregator).pending  # retry
        merged = extract_voicemeup_meta(incoming(), aggregator=aggregator)
        assert [m.url for m in merged.media] == ["https://clients.voicemeup.com/mms/photo.jpg"]
        assert merged.extra["mms_part_ids"] == ["990002", "990001"]

    def test_a_part_retried_once_merged_is_the_merged_message_again(self) -> None:
        # Held again, it came out alone on its timeout: a second message in the room.
        wrapper = "https://clients.voicemeup.com/mms/x.mms.html"
        for order in ("text first", "picture first"):
            aggregator = holding()
            first, second = incoming(attachment=wrapper), picture()
            if order == "picture first":
                first, second = second, first
            assert extract_voicemeup_meta(first, aggregator=aggregator).pending
            merged = extract_voicemeup_meta(second, aggregator=aggregator)
            assert merged.message_id == "990001+990002"
            for retried in (first, second):
                again = extract_voicemeup_meta(retried, aggregator=aggregator)
                assert not again.pending and again == merged, order
            assert aggregator.pending == 0

    async def test_parts_held_when_run_stops_are_handed_on(self) -> None:
        # VoiceMeUp had its answer for the held text and does not send it again: it was lost.
        released: list[WebhookMeta] = []
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=60, on_timeout=released.append)
        wrapper = "https://clients.voicemeup.com/mms/x.mms.html"
        async with anyio.create_task_group() as tg:
            await tg.start(aggregator.run)
            assert extract_voicemeup_meta(
                incoming(attachment=wrapper), aggregator=aggregator
            ).pending
            tg.cancel_scope.cancel()
        assert [m.message_id for m in released] == ["990001"]
        assert aggregator.pending == 0

    async def test_parts_of_a_round_cut_short_by_the_stop_are_handed_on(self) -> None:
        # run() took the round's parts out before handing them on: stopped while the first
        # was handed on, the others were lost without a word.
        started: list[str | None] = []

        async def slow(meta: WebhookMeta) -> None:
            started.append(meta.message_id)
            await anyio.sleep(0.3)  # kit.process_webhook(meta, "sms")

        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=0.01, on_timeout=slow)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(aggregator.run, 0.02)
                for n in range(3):
                    payload = picture(f"99000{n}") | {"source_number": f"1514555000{n}"}
                    assert extract_voicemeup_meta(payload, aggregator=aggregator).pending
                while not started:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert set(started) == {"990000", "990001", "990002"}
        assert aggregator.pending == 0

    async def test_releases_at_once_hand_each_part_on_once(self) -> None:
        # Kept first among the released ones while handed on, a part was taken again by a
        # flush at the same time (twice), or by its own on_timeout flushing (for ever).
        handed: list[str | None] = []
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=0.01)

        async def slow(meta: WebhookMeta) -> None:
            handed.append(meta.message_id)
            await aggregator.flush_expired()  # takes the others, not this one again
            await anyio.sleep(0.05)

        aggregator.configure(timeout_seconds=0.01, on_timeout=slow)
        aggregator.expired()  # drained from now on: parts are held
        for n in range(2):
            payload = picture(f"99000{n}") | {"source_number": f"1514555000{n}"}
            assert extract_voicemeup_meta(payload, aggregator=aggregator).pending
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(aggregator.flush_expired, _now() + 1)
                tg.start_soon(aggregator.flush_expired, _now() + 1)
        assert sorted(handed) == ["990000", "990001"]

    async def test_clear_forgets_a_part_whose_handing_on_was_cut_short(self) -> None:
        # Its flush cancelled in on_timeout, a part stayed among those being handed on:
        # clear() kept it, and run() handed it on again as it stopped.
        handed: list[str | None] = []

        async def slow(meta: WebhookMeta) -> None:
            handed.append(meta.message_id)
            if len(handed) == 1:
                await anyio.sleep(10)  # cut short by the flush's caller

        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=0.01, on_timeout=slow)
        aggregator.expired()  # drained from now on: parts are held
        assert extract_voicemeup_meta(picture(), aggregator=aggregator).pending
        with anyio.move_on_after(0.1):
            await aggregator.flush_expired(_now() + 1)
        assert handed == ["990002"]
        aggregator.clear()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(aggregator.run, 0.02)
                tg.cancel_scope.cancel()
        assert handed == ["990002"]

    async def test_clear_while_a_part_is_handed_on_leaves_run_going(self) -> None:
        # clear() forgot the part being handed on: run() failed on it as the callback
        # returned, and handed nothing on after.
        handed: list[str | None] = []
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=0.01)

        async def clearing(meta: WebhookMeta) -> None:
            handed.append(meta.message_id)
            if len(handed) == 1:
                aggregator.clear()

        aggregator.configure(timeout_seconds=0.01, on_timeout=clearing)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(aggregator.run, 0.02)
                for n in range(2):
                    payload = picture(f"99000{n}") | {"source_number": f"1514555000{n}"}
                    assert extract_voicemeup_meta(payload, aggregator=aggregator).pending
                    while len(handed) <= n:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert handed == ["990000", "990001"]

    def test_disabled_with_zero_timeout(self) -> None:
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=0)
        assert extract_voicemeup_meta(picture(), aggregator=aggregator).is_inbound

    def test_bounded(self) -> None:
        aggregator = holding(max_pending=3)
        for i in range(5):
            payload = picture(str(i)) | {"source_number": f"1514555000{i}"}
            aggregator.add(read_voicemeup_payload(payload), now=0)
        assert aggregator.pending == 3

    async def test_run_is_a_task_the_caller_owns(self) -> None:
        clock = [0.0]
        released = anyio.Event()
        aggregator = VoiceMeUpMMSAggregator(
            timeout_seconds=5, on_timeout=lambda meta: released.set(), clock=lambda: clock[0]
        )
        async with anyio.create_task_group() as tg:
            await tg.start(aggregator.run, 0.001)
            assert extract_voicemeup_meta(picture(), aggregator=aggregator).pending
            clock[0] = 10.0
            with anyio.fail_after(5):
                await released.wait()
            tg.cancel_scope.cancel()
        assert aggregator.pending == 0

    async def test_run_without_on_timeout_holds_nothing(self) -> None:
        # run() passes expired parts to on_timeout alone: without one, a picture held back
        # was released to nobody, lost without a word.
        aggregator = VoiceMeUpMMSAggregator(timeout_seconds=5)
        async with anyio.create_task_group() as tg:
            await tg.start(aggregator.run, 0.001)
            meta = extract_voicemeup_meta(picture(), aggregator=aggregator)
            assert meta.is_inbound and not meta.pending  # the room gets it alone
            tg.cancel_scope.cancel()
        assert aggregator.pending == 0

    async def test_providers_do_not_share_state(self) -> None:
        async with mock_client(Recorder([queued()])) as client:
            a = VoiceMeUpSMSProvider(config(), client=client, aggregator=holding())
            b = VoiceMeUpSMSProvider(config(), client=client)
            assert a.aggregator is not b.aggregator
            assert await a.parse_webhook(picture(), "sms") is None
            message = await b.parse_webhook(incoming(), "sms")
            assert message is not None and message.content == TextContent(body="Bonjour")
            assert a.aggregator.pending == 1 and b.aggregator.pending == 0

    def test_module_level_api_uses_the_default_instance(self) -> None:
        default = default_voicemeup_aggregator()
        before = (default.timeout_seconds, default.on_timeout)
        drained = default._drained
        try:
            returned = configure_voicemeup_mms(timeout_seconds=2.0, on_timeout=print)
            assert returned is default
            assert (default.timeout_seconds, default.on_timeout) == (2.0, print)
            assert not extract_sms_meta("voicemeup", picture()).pending  # nobody drains yet
            default.expired()
            assert extract_sms_meta("voicemeup", picture()).pending
            assert extract_sms_meta("voicemeup", incoming()).media
        finally:
            default.clear()
            default._drained = drained
            configure_voicemeup_mms(*before)


def _now() -> float:
    import time

    return time.monotonic()


class TestEndToEnd:
    async def test_mms_webhooks_in_reply_out(self) -> None:
        recorder = Recorder([queued("771")])
        async with mock_client(recorder) as client:
            provider = VoiceMeUpSMSProvider(config(), client=client, aggregator=holding())
            async with sms_kit(provider, "+15145550100") as (kit, other):
                meta = extract_sms_meta("voicemeup", picture(), aggregator=provider.aggregator)
                assert await kit.process_webhook(meta, "sms") is None
                assert other.delivered == []
                meta = extract_sms_meta("voicemeup", incoming(), aggregator=provider.aggregator)
                result = await kit.process_webhook(meta, "sms")
                assert result is not None and result.event is not None
                assert result.event.source.channel_type == "mms"
                assert [e.content for e in other.delivered] == [
                    MediaContent(
                        url="https://clients.voicemeup.com/mms/photo.jpg",
                        mime_type="image/jpeg",
                        caption="Bonjour",
                    )
                ]
                await kit.send_event("r1", "other", TextContent(body="Merci!"))
        assert len(recorder.requests) == 1
        assert str(recorder.last.url) == QUEUE_URL
        assert form(recorder.last) == base_form(message="Merci!")

    async def test_a_part_retried_once_merged_is_a_duplicate_in_the_room(self) -> None:
        async with mock_client(Recorder([])) as client:
            provider = VoiceMeUpSMSProvider(config(), client=client, aggregator=holding())
            async with sms_kit(provider, "+15145550100") as (kit, other):
                for payload in (picture(), incoming(), picture()):
                    meta = extract_sms_meta("voicemeup", payload, aggregator=provider.aggregator)
                    result = await kit.process_webhook(meta, "sms")
                assert result is not None and result.reason == "duplicate"
                assert await provider.aggregator.flush_expired(now=_now() + 10) == []
                assert len(other.delivered) == 1

    async def test_picture_only_mms_reaches_the_room_with_defaults(self) -> None:
        async with mock_client(Recorder([queued()])) as client:
            provider = VoiceMeUpSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                meta = extract_sms_meta("voicemeup", picture(), aggregator=provider.aggregator)
                await kit.process_webhook(meta, "sms")
                assert [e.content for e in other.delivered] == [
                    MediaContent(
                        url="https://clients.voicemeup.com/mms/photo.jpg", mime_type="image/jpeg"
                    )
                ]

    async def test_timed_out_picture_reaches_the_room(self) -> None:
        async with mock_client(Recorder([queued()])) as client:
            provider = VoiceMeUpSMSProvider(config(), client=client)
            async with sms_kit(provider, "+15145550100") as (kit, other):
                provider.aggregator.configure(
                    timeout_seconds=5, on_timeout=lambda meta: kit.process_webhook(meta, "sms")
                )
                meta = extract_sms_meta("voicemeup", picture(), aggregator=provider.aggregator)
                await kit.process_webhook(meta, "sms")
                await provider.aggregator.flush_expired(now=_now() + 10)
                assert len(other.delivered) == 1
                assert isinstance(other.delivered[0].content, MediaContent)


def test_numbers_are_kept_as_given() -> None:
    # 0.3.0 kept VoiceMeUp's digits (no "+" added): bindings are made with them.
    meta = read_voicemeup_payload(incoming())
    assert (meta.sender, meta.recipient) == ("15145550100", "15145550199")
    message = parse_voicemeup_webhook(incoming(), "sms", aggregator=VoiceMeUpMMSAggregator())
    assert message is not None and message.sender_id == "15145550100"
    assert read_voicemeup_payload(incoming(source_number="12345")).sender == "12345"
