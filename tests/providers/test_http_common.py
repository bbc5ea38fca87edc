"""The HTTP layer every vendor provider shares (``providers._http``): failure classification,
Retry-After, vendor error messages and masking, the client's ownership, requests and streams;
and the lazy re-exports of the provider packages (``providers._lazy``)."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import h11
import httpx
import pytest

from providers._http import (
    HTTPFailure,
    VendorAPIError,
    VendorHTTP,
    bearer,
    body_error_parser,
    code_and_message,
    failure_from_exception,
    failure_from_response,
    loggable_url,
    parse_retry_after,
    redact,
    retry_after_from_headers,
    vendor_error_message,
)
from providers._http._client import MAX_ANSWER_BYTES
from providers._lazy import lazy_exports
from providers.errors import ProviderError
from roomkit.models.delivery import ProviderResult
from tests.providers.ai_support import FakeAPI


class TestHTTPFailures:
    def test_retry_after(self) -> None:
        assert parse_retry_after("5") == 5.0
        assert parse_retry_after(" 2.5 ") == 2.5
        assert parse_retry_after("-3") == 0.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
        assert parse_retry_after("soon") is None
        assert parse_retry_after("nan") is None
        assert parse_retry_after(None) is None

    def test_classification(self) -> None:
        def code(body: Any) -> tuple[str | None, str | None]:
            return ("E1", "bad") if body else (None, None)

        def failure(status: int, body: Any = None) -> HTTPFailure:
            response = httpx.Response(status, json=body) if body else httpx.Response(status)
            return failure_from_response(
                response, body_error_parser(code), provider="P", code_prefix="vendor"
            )

        assert failure(403, {"x": 1}).error == "auth_error"
        assert failure(429).retryable
        assert failure(400, {"x": 1}).error == "vendor_E1"
        assert failure(400).error == "http_400"
        assert failure(408).retryable
        assert failure(502, {"x": 1}).error == "http_502"
        error = failure(503).to_error()
        assert (error.provider, error.status_code, error.retryable) == ("P", 503, True)

    def test_broken_extractor_does_not_hide_the_failure(self) -> None:
        def broken(body: Any) -> tuple[str | None, str | None]:
            raise KeyError("oops")

        response = httpx.Response(400, json={"a": 1})
        assert failure_from_response(response, body_error_parser(broken)).error == "http_400"

    async def test_vendor_http_closes_only_its_own_client(self) -> None:
        import logging

        own = VendorHTTP("P", code_prefix="p", client=None, timeout=1, logger=logging.getLogger())
        assert own.owns_client
        await own.aclose()
        await own.aclose()  # idempotent
        assert own.client.is_closed


class TestRetryAfter:
    def test_seconds_milliseconds_and_dates(self) -> None:
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert retry_after_from_headers({"retry-after": "30"}) == 30.0
        assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
        date = "Wed, 01 Jan 2025 12:00:20 GMT"
        assert retry_after_from_headers({"retry-after": date}, now=now) == 20.0
        assert (
            retry_after_from_headers({"retry-after": "Wed, 01 Jan 2025 11:00:00 GMT"}, now=now)
            == 0
        )
        assert retry_after_from_headers({"retry-after": "soon"}) is None
        assert retry_after_from_headers({"retry-after": "-3"}) is None
        assert retry_after_from_headers({}) is None


class TestVendorErrorMessage:
    def test_shapes(self) -> None:
        assert vendor_error_message({"error": {"type": "x_error", "message": "m"}}) == "x_error: m"
        assert vendor_error_message({"error": {"status": "UNAVAILABLE"}}) == "UNAVAILABLE"
        assert vendor_error_message({"message": "plain"}) == "plain"
        assert vendor_error_message({"error": "text"}) == "text"
        assert vendor_error_message(["no"]) == ""

    def test_long_messages_are_cut_and_secrets_masked(self) -> None:
        message = vendor_error_message({"message": "key sk-secret " + "x" * 1000}, ["sk-secret"])
        assert "sk-secret" not in message
        assert message.startswith("key *** ")
        assert len(message) == 300
        straddling = vendor_error_message({"message": "x" * 290 + " sk-secret"}, ["sk-secret"])
        assert "sk-" not in straddling


class TestFailures:
    def test_describe_and_to_error(self) -> None:
        response = httpx.Response(
            429, json={"message": "slow down sk-1"}, headers={"retry-after": "2"}
        )
        failure = failure_from_response(response, provider="P", secrets=["sk-1"])
        assert (failure.error, failure.retryable, failure.retry_after) == ("rate_limit", True, 2.0)
        error = failure.to_error()
        assert isinstance(error, VendorAPIError) and isinstance(error, ProviderError)
        assert error.message == "HTTP 429: slow down ***"
        assert (error.code, error.provider, error.status_code) == ("rate_limit", "P", 429)
        invalid = HTTPFailure("invalid_response", "no id", provider="P", status_code=201)
        assert invalid.to_error().message == "invalid_response: no id"

    def test_to_result_merges_metadata(self) -> None:
        failure = HTTPFailure("http_500", "boom", provider="P", status_code=500, retryable=True)
        result = failure.to_result(ProviderResult, metadata={"message_ids": ["a"]})
        assert (result.success, result.error) == (False, "http_500")
        assert result.metadata == {
            "provider": "P",
            "retryable": True,
            "status_code": 500,
            "detail": "boom",
            "message_ids": ["a"],
        }

    @pytest.mark.parametrize(
        ("exc", "error", "retryable", "message"),
        [
            (httpx.ReadTimeout("t"), "timeout", True, "timeout"),
            (
                httpx.ConnectError("refused"),
                "network_error",
                True,
                "transport error: ConnectError",
            ),
            (
                httpx.TooManyRedirects("loop"),
                "network_error",
                False,
                "HTTP client error: TooManyRedirects",
            ),
            # Transport errors of our own making fail again: they were retried in vain.
            (
                httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://'"),
                "network_error",
                False,
                "HTTP client error: UnsupportedProtocol",
            ),
            (
                httpx.LocalProtocolError("Illegal header value b'Bearer k\\n'"),
                "network_error",
                False,
                "HTTP client error: LocalProtocolError",
            ),
            (
                httpx.RemoteProtocolError("peer closed connection"),
                "network_error",
                True,
                "transport error: RemoteProtocolError",
            ),
        ],
    )
    def test_exceptions(self, exc: Exception, error: str, retryable: bool, message: str) -> None:
        failure = failure_from_exception(exc, provider="P")
        assert (failure.error, failure.retryable, failure.message) == (
            error,
            retryable,
            type(exc).__name__,
        )
        raised = failure.to_error()
        assert raised.message == message and raised.__cause__ is exc

    def test_retryable_statuses(self) -> None:
        def retryable(status: int) -> bool:
            return failure_from_response(httpx.Response(status)).retryable

        assert [s for s in (400, 401, 404, 408, 409, 425, 429, 500, 503, 529) if retryable(s)] == [
            408,
            409,
            425,
            429,
            500,
            503,
            529,
        ]

    def test_code_and_message(self) -> None:
        assert code_and_message(21211, "bad") == ("21211", "bad")
        assert code_and_message("", None) == (None, None)
        assert code_and_message(["x"], 3) == (None, None)

    def test_retry_after_naive_date_and_infinity(self) -> None:
        naive = "Wed, 21 Oct 2015 07:28:00 -0000"
        assert parse_retry_after(naive, now=datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC)) == 10.0
        assert parse_retry_after("inf") is None
        assert retry_after_from_headers({"retry-after-ms": "-5", "retry-after": "3"}) == 3.0


class TestVendorHTTP:
    async def test_borrowed_client_gets_the_timeout_and_stays_open(self, fake: FakeAPI) -> None:
        seen: list[Any] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return httpx.Response(200, json={})

        fake.reply(answer)
        http = VendorHTTP("P", client=fake.client, timeout=2.5)
        outcome = await http.request("GET", "https://api.example.com/x")
        assert isinstance(outcome, httpx.Response)
        assert seen[0]["read"] == 2.5
        await http.aclose()
        assert not fake.client.is_closed

    async def test_failures_are_values_and_logged_without_query(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING)
        fake.reply(httpx.Response(503, json={"message": "down"}))
        http = VendorHTTP("P", client=fake.client, timeout=1, secrets=["k"])
        outcome = await http.request("GET", "https://api.example.com/x?key=secret")
        assert isinstance(outcome, HTTPFailure)
        assert (outcome.error, outcome.retryable, outcome.message) == ("http_503", True, "down")
        assert "https://api.example.com/x" in caplog.text and "secret" not in caplog.text

    async def test_closed_client(self) -> None:
        http = VendorHTTP("P", client=None, timeout=1)
        await http.aclose()
        outcome = await http.request("GET", "https://api.example.com/x")
        assert isinstance(outcome, HTTPFailure) and outcome.error == "client_closed"
        with pytest.raises(VendorAPIError) as info:
            async with http.stream("GET", "https://api.example.com/x"):
                pass
        assert info.value.code == "client_closed"

    async def test_stream_failures_raise(self, fake: FakeAPI) -> None:
        fake.reply(httpx.Response(401, json={"error": {"message": "nope"}}))
        http = VendorHTTP("P", client=fake.client, timeout=1)
        with pytest.raises(VendorAPIError) as info:
            async with http.stream("POST", "https://api.example.com/x"):
                pass
        assert (info.value.code, info.value.message) == ("auth_error", "HTTP 401: nope")

    async def test_a_key_with_a_newline_is_masked_in_the_refusal_of_its_header(
        self, fake: FakeAPI
    ) -> None:
        # A key read from a file with its newline: h11 refuses the header, quoting it escaped
        # ("...KEY\\n"), which is not the key as given: it went out in clear, as the
        # transport_error_as_text of SMS providers and as the cause of VendorAPIError.
        key = "KEY0123456789_s3cr3t\n"
        text = f"Illegal header value {f'Bearer {key}'.encode()!r}"

        def h11_refuses(request: httpx.Request) -> httpx.Response:
            raise httpx.LocalProtocolError(text) from h11.LocalProtocolError(text)

        fake.reply(h11_refuses, h11_refuses)
        http = VendorHTTP("P", client=fake.client, timeout=1, secrets=[key])
        outcome = await http.request("POST", "https://api.example.com/x", headers=bearer(key))
        assert isinstance(outcome, HTTPFailure) and not outcome.retryable
        assert http.transport_error_as_text(outcome).error == "LocalProtocolError"
        with pytest.raises(VendorAPIError) as info:
            async with http.stream("POST", "https://api.example.com/x"):
                pass
        for error in (outcome.to_error(), info.value):
            trace = "".join(traceback.format_exception(error))
            assert "Illegal header value b'Bearer ***'" in trace
            assert "s3cr3t" not in trace
        # Escaped once (the error's text) or twice (its repr, in a log line).
        masked = redact(f"{text} / {text!r}", [key])
        assert masked.startswith("Illegal header value b'Bearer ***' / ")
        assert "s3cr3t" not in masked

    async def test_a_key_with_a_non_ascii_character_is_a_failure_without_the_key(
        self, fake: FakeAPI
    ) -> None:
        # A key pasted with a non-breaking space: httpx raised UnicodeEncodeError (holding
        # "Bearer KEY") out of send() and generate() instead of a failure.
        key = "sk-abc\u00a0s3cr3t"
        http = VendorHTTP("P", client=fake.client, timeout=1, secrets=[key])
        outcome = await http.request("POST", "https://api.example.com/x", headers=bearer(key))
        assert isinstance(outcome, HTTPFailure)
        assert (outcome.error, outcome.retryable) == ("network_error", False)
        with pytest.raises(VendorAPIError) as info:
            async with http.stream("POST", "https://api.example.com/x", headers=bearer(key)):
                pass
        for error in (outcome.to_error(), info.value):
            trace = "".join(traceback.format_exception(error))
            assert "s3cr3t" not in trace and "non-ASCII" in trace
        assert fake.requests == []

    async def test_logs_show_no_credentials_of_the_url(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Only the query was cut: "https://bot:PASSWORD@..." went out in clear, and so did
        # the path of a webhook URL (its token).
        caplog.set_level(logging.WARNING)
        fake.reply(httpx.Response(500), httpx.Response(500))
        url = "https://bot:PASSWORD@hooks.example.com/services/T0/TOKEN?key=QUERY"
        await VendorHTTP("P", client=fake.client, timeout=1).request("POST", url)
        assert "https://hooks.example.com/services/T0/TOKEN failed" in caplog.text
        caplog.clear()
        await VendorHTTP("P", client=fake.client, timeout=1, log_path=False).request("POST", url)
        assert "POST https://hooks.example.com failed" in caplog.text
        assert "TOKEN" not in caplog.text
        assert loggable_url("bot:PASSWORD@hooks.example.com/in?k=1") == "hooks.example.com/in"
        assert loggable_url("https://[::1/x") == "<invalid URL>"

    async def test_the_timeout_bounds_the_whole_call(self, fake: FakeAPI) -> None:
        # httpx's read timeout restarts at each chunk: an answer dripping a byte at a time
        # held a call with timeout=1 for as long as the server went on.
        def drips(request: httpx.Request) -> httpx.Response:
            async def chunks() -> AsyncIterator[bytes]:
                while True:
                    yield b" "
                    await anyio.sleep(0.05)

            return httpx.Response(200, content=chunks())

        fake.reply(drips, drips)
        http = VendorHTTP("P", client=fake.client, timeout=0.3)
        with anyio.fail_after(5):
            outcome = await http.request("POST", "https://api.example.com/x")
        assert isinstance(outcome, HTTPFailure)
        assert (outcome.error, outcome.retryable) == ("timeout", True)
        # A stream's body may last longer than the timeout (httpx bounds each read).
        with anyio.fail_after(5):
            async with http.stream("POST", "https://api.example.com/x") as response:
                received = 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received == 10:
                        break
        assert received == 10

    @pytest.mark.parametrize(("status", "error"), [(500, "http_500"), (200, "invalid_response")])
    async def test_an_oversized_answer_is_not_read_whole(
        self, fake: FakeAPI, status: int, error: str
    ) -> None:
        # Answers were read whole: a 300 MB error page took 600 MB more memory for the 300
        # characters a failure keeps.
        sent: list[int] = []

        def huge(request: httpx.Request) -> httpx.Response:
            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(64):
                    sent.append(1)
                    yield b"x" * (1024 * 1024)

            return httpx.Response(status, content=chunks())

        fake.reply(huge, huge)
        http = VendorHTTP("P", client=fake.client, timeout=5)
        outcome = await http.request("GET", "https://api.example.com/x")
        assert isinstance(outcome, HTTPFailure) and outcome.error == error
        assert len(sent) <= MAX_ANSWER_BYTES // (1024 * 1024) + 1
        if status != 200:
            sent.clear()
            with pytest.raises(VendorAPIError):
                async with http.stream("GET", "https://api.example.com/x"):
                    pass
            assert len(sent) <= MAX_ANSWER_BYTES // (1024 * 1024) + 1

    async def test_answer_failure_masks_secrets(self, fake: FakeAPI) -> None:
        http = VendorHTTP("P", client=fake.client, timeout=1, secrets=["tok"])
        failure = http.answer_failure(httpx.Response(200), "bad tok", error="v_1", vendor_code="1")
        assert (failure.error, failure.message, failure.status_code) == ("v_1", "bad ***", 200)


def test_lazy_exports() -> None:
    package = types.ModuleType("lazy_test_package")
    sys.modules[package.__name__] = package
    try:
        getattr_, dir_ = lazy_exports(package.__name__, {"dumps": "json"})
        assert "dumps" in dir_()
        import json

        assert getattr_("dumps") is json.dumps
        assert vars(package)["dumps"] is json.dumps  # cached: later lookups skip __getattr__
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            getattr_("nope")
    finally:
        del sys.modules[package.__name__]


@pytest.mark.parametrize(
    ("config", "timeout"),
    [
        ("providers.twilio.config:TwilioConfig", 10.0),
        ("providers.telnyx.config:TelnyxConfig", 10.0),
        ("providers.sinch.config:SinchConfig", 10.0),
        ("providers.voicemeup.config:VoiceMeUpConfig", 10.0),
        ("providers.elasticemail.provider:ElasticEmailConfig", 30.0),
        ("providers.http.webhook:HTTPProviderConfig", 30.0),
        ("providers.messenger.facebook:MessengerConfig", 30.0),
    ],
)
def test_vendor_configs_default_to_0_3_0_s_request_timeouts(config: str, timeout: float) -> None:
    module, name = config.split(":")
    model = getattr(importlib.import_module(module), name)
    assert model.model_fields["timeout"].default == timeout
