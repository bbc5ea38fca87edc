"""WebhookHTTPProvider and parse_http_webhook through httpx.MockTransport (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import subprocess
import sys
from collections import UserDict
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from providers.errors import ProviderError
from providers.http import (
    HTTPProviderConfig,
    WebhookHTTPProvider,
    parse_http_webhook,
    verify_http_signature,
)
from roomkit import ChannelType, HTTPChannel, RoomKit
from roomkit.models.event import EventSource, MediaContent, RichContent, RoomEvent, TextContent
from tests.providers.http_support import Recorder, Reply, agent_room
from tests.roomkit.kit_helpers import text

URL = "https://hooks.example.com/roomkit"
SECRET = "whsec-test-secret"


def event(content: Any = None, **kwargs: Any) -> RoomEvent:
    return RoomEvent(
        room_id="room-1",
        source=EventSource(channel_id="web", channel_type=ChannelType.WEBSOCKET),
        content=content or TextContent(body="Hello there"),
        **kwargs,
    )


async def send_with(
    recorder: Recorder, content: Any = None, *, config: HTTPProviderConfig | None = None
) -> Any:
    config = config or HTTPProviderConfig(webhook_url=URL, secret=SECRET)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        provider = WebhookHTTPProvider(config, client=client)
        return await provider.send(event(content, metadata={"k": "v"}), to="user-42")


class TestSend:
    async def test_posts_signed_json(self) -> None:
        recorder = Recorder(httpx.Response(200, json={"message_id": "m-1"}))
        config = HTTPProviderConfig(
            webhook_url=URL, secret=SECRET, headers={"Authorization": "Token abc"}
        )
        result = await send_with(recorder, config=config)
        assert result.success
        assert result.provider_message_id == "m-1"
        (request,) = recorder.requests
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == "Token abc"
        assert json.loads(request.content) == {
            "recipient_id": "user-42",
            "channel_id": "web",
            "room_id": "room-1",
            "content": {"type": "text", "body": "Hello there"},
            "metadata": {"k": "v"},
        }
        expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        assert request.headers["x-roomkit-signature"] == expected
        # Written as 0.3.0 wrote it: a receiver checking the signature over the payload it
        # parsed, written again by json.dumps, refused every compact body.
        assert request.content == json.dumps(json.loads(request.content)).encode()

    def test_numbers_json_cannot_hold_are_sent_as_null(self) -> None:
        # The body held the bare token NaN (json.loads takes it from an inbound webhook):
        # not JSON, and a strict receiver refused the message.
        provider = WebhookHTTPProvider(HTTPProviderConfig(webhook_url=URL))
        metadata = {"score": math.nan, "range": [1.5, math.inf, (-math.inf,)], "n": 2}
        body = provider.build_body(event(metadata=metadata), "user-42")
        assert body is not None

        def refuse(token: str) -> None:
            raise ValueError(f"not JSON: {token}")

        sent = json.loads(body, parse_constant=refuse)
        assert sent["metadata"] == {"score": None, "range": [1.5, None, [None]], "n": 2}

    async def test_configured_headers_cannot_override_type_or_signature(self) -> None:
        recorder = Recorder()
        config = HTTPProviderConfig(
            webhook_url=URL,
            secret=SECRET,
            headers={"content-type": "text/plain", "X-RoomKit-Signature": "forged", "X-A": "1"},
        )
        await send_with(recorder, config=config)
        (request,) = recorder.requests
        assert request.headers.get_list("content-type") == ["application/json"]
        expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        assert request.headers.get_list("x-roomkit-signature") == [expected]
        assert request.headers["x-a"] == "1"

    async def test_an_empty_secret_signs_nothing_and_says_so(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """0.3.0 took ``secret=""`` (``os.getenv("X", "")``) and signed with an empty key,
        which anyone can: it is still taken, with a warning, and requests go unsigned."""
        recorder = Recorder(httpx.Response(200, json={}))
        config = HTTPProviderConfig(webhook_url=URL, secret="")
        assert (await send_with(recorder, config=config)).success
        assert "x-roomkit-signature" not in recorder.requests[0].headers
        assert "the secret is empty, requests go unsigned" in caplog.text

    async def test_no_secret_no_signature(self) -> None:
        recorder = Recorder(httpx.Response(204))
        result = await send_with(recorder, config=HTTPProviderConfig(webhook_url=URL))
        assert result.success
        assert result.provider_message_id is None
        assert "x-roomkit-signature" not in recorder.requests[0].headers

    async def test_rich_and_media_are_sent_as_text(self) -> None:
        recorder = Recorder(httpx.Response(200, text="ok"))
        rich = RichContent(body="<p>Hi <b>you</b></p>", format="html")
        assert (await send_with(recorder, rich)).success
        media = MediaContent(
            url="https://cdn.example.com/a.png", mime_type="image/png", caption="A"
        )
        assert (await send_with(recorder, media)).success
        bodies = [json.loads(r.content)["content"] for r in recorder.requests]
        assert bodies == [
            {"type": "text", "body": "Hi you"},
            {"type": "text", "body": "A\nhttps://cdn.example.com/a.png"},
        ]

    async def test_empty_message_is_not_sent(self) -> None:
        recorder = Recorder()
        result = await send_with(recorder, TextContent(body="   "))
        assert (result.success, result.error) == (False, "empty_message")
        assert recorder.requests == []

    @pytest.mark.parametrize(
        ("reply", "error", "retryable"),
        [
            (httpx.Response(401), "auth_error", False),
            (httpx.Response(403), "auth_error", False),
            (httpx.Response(404), "http_404", False),
            (httpx.Response(503, json={"message": "down"}), "http_503", True),
            (httpx.ReadTimeout, "timeout", True),
            (httpx.ConnectError, "network_error", True),
        ],
    )
    async def test_errors_become_results(self, reply: Reply, error: str, retryable: bool) -> None:
        result = await send_with(Recorder(reply))
        assert result.success is False
        assert result.error == error
        assert result.metadata["retryable"] is retryable

    async def test_rate_limit_carries_retry_after(self) -> None:
        result = await send_with(Recorder(httpx.Response(429, headers={"Retry-After": "12"})))
        assert result.error == "rate_limit"
        assert result.metadata["retry_after"] == 12.0
        assert result.metadata["status_code"] == 429

    async def test_secrets_stay_out_of_repr_and_logs(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        config = HTTPProviderConfig(
            webhook_url=URL,
            secret=SECRET,
            headers={
                "Authorization": "Token 987654321012",  # digits only: a credential all the same
                "X-Api-Key": "acme_live_8f2k",
                "X-Auth-Client": "acme",  # inside the key: masked after it, not first
                "X-Auth-Version": "v2.1",  # a credential's metadata, not one: kept
                "X-Tenant": "globex",
            },
        )
        # An endpoint that quotes what it refuses: the configured headers' credentials were
        # in the result and the log as they came.
        echo = "token 987654321012 expired; key acme_live_8f2k unknown; tenant globex, v2.1"
        results = [
            await send_with(Recorder(reply), config=config)
            for reply in (httpx.Response(500), httpx.Response(401, json={"error": echo}))
        ]
        shown_all = [repr(config), str(config), caplog.text]
        shown_all += [result.model_dump_json() for result in results]
        for shown in shown_all:
            assert SECRET not in shown
            assert "987654321012" not in shown and "_live_8f2k" not in shown
        assert "key *** unknown" in results[1].model_dump_json()
        assert "tenant globex, v2.1" in results[1].model_dump_json()

    async def test_a_header_with_a_non_ascii_character_is_a_failed_result(self) -> None:
        # A key pasted with a non-breaking space: httpx's UnicodeEncodeError (holding the
        # header) came out of send() instead of a failed result.
        config = HTTPProviderConfig(webhook_url=URL, headers={"X-Api-Key": "acme\u00a0live_8f2k"})
        recorder = Recorder()
        result = await send_with(recorder, config=config)
        assert (result.success, result.error) == (False, "network_error")
        assert "_live_8f2k" not in result.model_dump_json()
        assert recorder.requests == []

    async def test_logs_name_only_the_scheme_and_host_of_the_webhook(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # The URL's userinfo and path (a Slack-like token) were logged with each failure.
        caplog.set_level(logging.WARNING)
        url = "https://bot:PASSWORD123@hooks.example.com/services/T0/B0/PATHTOKEN456"
        config = HTTPProviderConfig(webhook_url=url)
        result = await send_with(Recorder(httpx.Response(500)), config=config)
        assert result.error == "http_500"
        assert "POST https://hooks.example.com failed" in caplog.text
        assert "PASSWORD123" not in caplog.text and "PATHTOKEN456" not in caplog.text

    async def test_close_closes_only_its_own_client(self) -> None:
        provider = WebhookHTTPProvider(HTTPProviderConfig(webhook_url=URL))
        client = provider._http.client
        async with provider:
            assert not client.is_closed
        assert client.is_closed
        async with httpx.AsyncClient() as injected:
            borrowed = WebhookHTTPProvider(HTTPProviderConfig(webhook_url=URL), client=injected)
            await borrowed.close()
            assert not injected.is_closed


class TestSignature:
    def test_accepts_signed_body_and_rejects_forgery(self) -> None:
        body = b'{"sender_id":"u1","body":"hi"}'
        good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert verify_http_signature(body, good, SECRET)
        assert verify_http_signature(body, good.upper(), SECRET)
        assert not verify_http_signature(body + b" ", good, SECRET)
        assert not verify_http_signature(body, good, "other-secret")
        assert not verify_http_signature(body, None, SECRET)
        assert not verify_http_signature(body, "", SECRET)
        assert not verify_http_signature(body, "é" * 64, SECRET)

    def test_text_body_like_bytes_and_malformed_values_false(self) -> None:
        body = '{"sender_id":"u1","body":"héllo"}'
        good = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        assert verify_http_signature(body, good, SECRET)
        assert verify_http_signature(body.encode(), good.encode(), SECRET)
        for bad_body in (None, 5, "\udc00"):
            assert verify_http_signature(bad_body, good, SECRET) is False  # type: ignore[arg-type]
        assert verify_http_signature(body, 5, SECRET) is False  # type: ignore[arg-type]

    def test_empty_secret_is_refused(self) -> None:
        body = b'{"sender_id":"u1","body":"hi"}'
        forged = hmac.new(b"", body, hashlib.sha256).hexdigest()
        with pytest.raises(ValueError, match="secret is not set"):
            verify_http_signature(body, forged, "")
        with pytest.raises(ValueError, match="secret is not set"):
            verify_http_signature(body, forged, SecretStr(""))
        assert HTTPProviderConfig(webhook_url=URL).secret is None


class TestParse:
    def test_full_payload(self) -> None:
        message = parse_http_webhook(
            {"sender_id": "u1", "body": "hi", "external_id": "x-9", "metadata": {"a": 1}}, "web"
        )
        assert message.channel_id == "web"
        assert message.sender_id == "u1"
        assert message.content == TextContent(body="hi")
        assert (message.external_id, message.idempotency_key) == ("x-9", "x-9")
        assert message.metadata == {"a": 1}  # the payload's own only, as in 0.3.0

    def test_a_lone_surrogate_becomes_a_replacement_character(self) -> None:
        # Half an emoji (valid JSON): the room refused the message (EventRefusedError) at each
        # of the vendor's retries, so it was lost; its lone surrogate is now U+FFFD.
        payload = json.loads(
            '{"sender_id": "u1", "body": "see you \\ud83d", "metadata": {"n": "\\udc00"}}'
        )
        message = parse_http_webhook(payload, "web")
        assert message.content == TextContent(body="see you \ufffd")
        assert message.metadata == {"n": "\ufffd"}

    def test_minimal_payload(self) -> None:
        message = parse_http_webhook({"sender_id": "u1", "body": "hi"}, "web")
        assert message.external_id is None
        assert message.idempotency_key is None

    @pytest.mark.parametrize("payload", [{"sender_id": "u1"}, {"sender_id": "u1", "body": None}])
    def test_no_body_is_an_empty_text_as_in_0_3_0(self, payload: dict[str, Any]) -> None:
        message = parse_http_webhook(payload, "web")
        assert message.content == TextContent(body="")
        assert message.metadata == {}
        assert parse_http_webhook({"sender_id": "u1", "body": ""}, "web").content.body == ""

    @pytest.mark.parametrize(
        "payload",
        [
            [],
            "text",
            {},
            {"body": "hi"},
            {"sender_id": 5, "body": "hi"},
            {"sender_id": "u1", "body": 5},
            {"sender_id": "u1", "body": "hi", "external_id": 7},
            {"sender_id": "u1", "body": "hi", "metadata": []},
        ],
    )
    def test_invalid_payloads(self, payload: Any) -> None:
        with pytest.raises(ProviderError):
            parse_http_webhook(payload, "web")
        # And what 0.3.0 raised for it, which a handler catches to answer 400: it escaped
        # such a handler as a ProviderError (a 500).
        with pytest.raises(ValueError):
            parse_http_webhook(payload, "web")

    def test_any_mapping_is_read_as_0_3_0_read_it(self) -> None:
        # A form's MultiDict, a read-only view: refused as "not a JSON object".
        payload = {"sender_id": "u1", "body": "hi", "metadata": MappingProxyType({"k": "v"})}
        for mapping in (MappingProxyType(payload), UserDict(payload)):
            message = parse_http_webhook(mapping, "web")
            assert (message.sender_id, message.metadata) == ("u1", {"k": "v"})

    def test_what_0_3_0_raised_is_still_raised(self) -> None:
        with pytest.raises(TypeError):
            parse_http_webhook("text", "web")
        with pytest.raises(KeyError, match="^HTTP webhook payload needs a sender_id string$"):
            parse_http_webhook({"body": "hi"}, "web")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "sender_id": json_values,
        "body": json_values,
        "external_id": json_values,
        "metadata": json_values,
    },
)


@given(st.one_of(json_values, shaped))
def test_parser_raises_only_provider_error(payload: Any) -> None:
    try:
        message = parse_http_webhook(payload, "web")
    except ProviderError:
        return
    assert message.sender_id == payload["sender_id"]


async def test_end_to_end_webhook_in_reply_out() -> None:
    recorder = Recorder(httpx.Response(200, json={"message_id": "hook-7"}))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client,
        RoomKit() as kit,
    ):
        provider = WebhookHTTPProvider(
            HTTPProviderConfig(webhook_url=URL, secret=SECRET), client=client
        )
        channel = HTTPChannel("hook", provider=provider)
        agent = await agent_room(kit, channel, {"recipient_id": "user-42"})

        inbound = parse_http_webhook(
            {"sender_id": "user-42", "body": "Help!", "external_id": "e1"}, "hook"
        )
        result = await kit.process_inbound(inbound)
        assert not result.blocked
        assert agent.texts() == ["Help!"]
        assert recorder.requests == []  # the sender's own channel gets no echo

        await kit.process_inbound(text("agent", "On it", sender="agent-1"))
        (request,) = recorder.requests
        body = json.loads(request.content)
        assert body["recipient_id"] == "user-42"
        assert body["room_id"] == "r1"
        assert body["channel_id"] == "agent"
        assert body["content"] == {"type": "text", "body": "On it"}
        signature = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        assert request.headers["x-roomkit-signature"] == signature


def test_vendor_packages_import_without_httpx_or_cryptography() -> None:
    """httpx and cryptography load when a provider is built or a token checked, not on import."""
    code = (
        "import sys, providers, providers.sendgrid, providers.elasticemail, "
        "providers.messenger.facebook, providers.teams.botframework, providers.teams.auth, "
        "providers.whatsapp.cloud, providers.whatsapp.personal, providers.http.webhook\n"
        "loaded = {'httpx', 'cryptography'} & set(sys.modules)\n"
        "assert not loaded, loaded"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
