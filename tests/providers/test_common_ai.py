"""What the AI vendor providers share: the SSE decoder, HTTP error mapping, data: URLs."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from providers._http import import_httpx
from providers._sse import SSEDecoder, SSEError, SSEEvent, aiter_sse
from providers.ai import AIContext, AIImagePart, AIMessage, AITextPart, AIToolCall
from providers.ai._data_url import DataURL, parse_data_url
from providers.ai._http import VendorClient
from providers.ai._messages import UNREADABLE_IMAGE, iter_parts, tool_call_id, tool_calls
from providers.ai._streaming import AIStreamEnd, AITextDelta
from providers.ai._text import StreamedText, clean_text
from providers.anthropic import AnthropicAIProvider, AnthropicConfig
from providers.errors import ProviderError
from providers.gemini import GeminiAIProvider, GeminiConfig
from providers.openai import OpenAIAIProvider, OpenAIConfig
from providers.pydantic_ai import PydanticAIConfig
from tests.providers.ai_support import CAT_URL, PNG_DATA_URL, FakeAPI

# --- SSE decoder ---------------------------------------------------------------------------


# Text that fits on one SSE line (no line breaks, no lone surrogates, which UTF-8 cannot carry).
_line_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")


def decode(*chunks: bytes, max_event_size: int | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder() if max_event_size is None else SSEDecoder(max_event_size)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


class TestSSEDecoder:
    def test_fields_comments_and_defaults(self) -> None:
        body = (
            b": keep-alive\n"
            b'event: message_start\ndata: {"a": 1}\n\n'
            b"data: first\ndata:second\nid: 7\nretry: 1500\n\n"
            b"data\n\n"
            b"event: ignored-without-data\n\n"
        )
        assert decode(body) == [
            SSEEvent(event="message_start", data='{"a": 1}'),
            SSEEvent(event="message", data="first\nsecond", id="7", retry=1500),
            SSEEvent(event="message", data="", id="7"),
        ]

    def test_line_endings_bom_and_split_sequences(self) -> None:
        body = "\ufeffdata: é\r\n\r\ndata: b\r\rdata: c\n\n".encode()
        expected = [SSEEvent("message", "é"), SSEEvent("message", "b"), SSEEvent("message", "c")]
        assert decode(body) == expected
        # Byte by byte: the CRLF and the two-byte "é" are both split across chunks.
        assert decode(*(body[i : i + 1] for i in range(len(body)))) == expected

    def test_cr_then_lf_in_separate_chunks_is_one_line_break(self) -> None:
        assert decode(b"data: a\r", b"\n", b"\n") == [SSEEvent("message", "a")]

    def test_unterminated_event_is_discarded(self) -> None:
        assert decode(b"data: done\n\ndata: partial") == [SSEEvent("message", "done")]

    def test_invalid_utf8_is_replaced(self) -> None:
        assert decode(b"data: \xff\n\n") == [SSEEvent("message", "\ufffd")]

    def test_oversized_line_or_event_is_the_documented_error(self) -> None:
        with pytest.raises(SSEError):
            decode(b"data: " + b"x" * 100, max_event_size=50)
        with pytest.raises(SSEError):
            decode(b"data: 123456789\n" * 10, max_event_size=50)

    async def test_aiter_sse(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: 1\n"
            yield b"\ndata: 2\n\n"

        assert [event.data async for event in aiter_sse(chunks())] == ["1", "2"]

    @given(st.binary(), st.lists(st.integers(min_value=0, max_value=64)))
    def test_never_raises_and_chunking_does_not_matter(self, body: bytes, cuts: list[int]) -> None:
        whole = decode(body)
        points = sorted({cut % (len(body) + 1) for cut in cuts})
        pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
        assert decode(*pieces) == whole

    @given(st.binary(max_size=200))
    def test_small_limit_raises_only_sse_error(self, body: bytes) -> None:
        with contextlib.suppress(SSEError):
            decode(body, max_event_size=8)

    @given(
        st.lists(
            st.tuples(
                st.text(alphabet=_line_chars, min_size=1),
                st.lists(st.text(alphabet=_line_chars), min_size=1),
            ),
            max_size=5,
        ),
        st.sampled_from(["\n", "\r", "\r\n"]),
    )
    def test_round_trip(self, events: list[tuple[str, list[str]]], newline: str) -> None:
        # One space after the colon is part of the syntax, so every value comes back intact.
        body = "".join(
            f"event: {name}{newline}"
            + "".join(f"data: {line}{newline}" for line in lines)
            + newline
            for name, lines in events
        ).encode()
        expected = [SSEEvent(event=name, data="\n".join(lines)) for name, lines in events]
        assert decode(body) == expected


# --- data: URLs ----------------------------------------------------------------------------


class TestDataURL:
    def test_base64(self) -> None:
        assert parse_data_url(PNG_DATA_URL) == DataURL("image/png", "iVBORw0KGgo=")

    def test_percent_encoded_payload_becomes_base64(self) -> None:
        assert parse_data_url("data:image/svg+xml,%3Csvg%2F%3E") == DataURL(
            "image/svg+xml", "PHN2Zy8+"
        )

    def test_missing_type_and_other_schemes(self) -> None:
        assert parse_data_url("data:;base64,QUJD") == DataURL("", "QUJD")
        assert parse_data_url(CAT_URL) is None

    def test_url_safe_or_unpadded_base64_becomes_standard(self) -> None:
        assert parse_data_url("data:image/png;base64,-_8") == DataURL("image/png", "+/8=")

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("data:image/png;base64", "no comma"),
            ("data:image/png;base64,", "empty payload"),
            ("data:image/png,", "empty payload"),
            ("data:image/png;base64,not base64!", "invalid base64"),
            ("data:image/png;base64,QUJDR", "invalid base64"),
        ],
    )
    def test_malformed(self, url: str, reason: str) -> None:
        with pytest.raises(ValueError, match=reason):
            parse_data_url(url)


class TestUnreadableImages:
    def test_a_malformed_data_url_becomes_a_text_placeholder_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A vendor refuses the whole request for such an image, and the room's history would
        # carry it into every request for the next 50 events.
        caplog.set_level(logging.WARNING, logger="roomkit.providers.ai")
        good = AIImagePart(url=PNG_DATA_URL)
        message = AIMessage(
            role="user",
            content=[AITextPart(text="look"), AIImagePart(url="data:image/png;base64"), good],
        )
        assert list(iter_parts(message)) == [
            AITextPart(text="look"),
            AITextPart(text=UNREADABLE_IMAGE),
            good,
        ]
        assert "placeholder" in caplog.text and "no comma" in caplog.text
        assert "data:image/png;base64" not in caplog.text  # never the (private, large) URL


# --- text the room can store ---------------------------------------------------------------

# Pieces of text with surrogates of every kind: pairs, lone halves, and the two halves of one
# pair as separate pieces (as two stream events bring them).
_pieces = st.lists(
    st.text(st.sampled_from(["a", "é", "\ud83d", "\ude00", "\ud800", "\U0001f600"])),
    max_size=6,
)


class TestCleanText:
    def test_pairs_are_joined_and_lone_surrogates_replaced(self) -> None:
        assert clean_text("a\ud83d\ude00b") == "a\U0001f600b"
        assert clean_text("a\ud800b\udc00") == "a\ufffdb\ufffd"
        assert clean_text("plain é") == "plain é"

    def test_a_pair_split_across_pieces_is_joined_and_held_back_until_complete(self) -> None:
        text = StreamedText()
        assert [text.add("smile \ud83d"), text.add("\ude00!"), text.flush()] == [
            "smile ",
            "\U0001f600!",
            "",
        ]
        assert text.text == "smile \U0001f600!"

    def test_a_half_left_at_the_end_is_flushed_as_a_replacement(self) -> None:
        text = StreamedText()
        assert [text.add("a\ud83d"), text.flush()] == ["a", "\ufffd"]
        assert text.text == "a\ufffd"

    @given(_pieces)
    def test_released_text_is_utf8_and_what_the_whole_would_give(self, pieces: list[str]) -> None:
        text = StreamedText()
        released = [text.add(piece) for piece in pieces] + [text.flush()]
        assert "".join(released) == text.text == clean_text("".join(pieces))
        for piece in released:
            piece.encode("utf-8")  # every delta can be sent on its own


# --- tool-turn conventions -----------------------------------------------------------------


class TestMessageConventions:
    def test_tool_calls_accept_models_and_dicts(self) -> None:
        message = AIMessage(
            role="assistant",
            content="",
            metadata={"tool_calls": [{"id": "a", "name": "f", "arguments": {"x": 1}}]},
        )
        assert tool_calls(message) == [AIToolCall(id="a", name="f", arguments={"x": 1})]

    def test_bad_conventions_are_value_errors(self) -> None:
        with pytest.raises(ValueError):
            tool_calls(AIMessage(role="assistant", content="", metadata={"tool_calls": "x"}))
        with pytest.raises(ValueError, match="tool_call_id"):
            tool_call_id(AIMessage(role="tool", content="42"))


# --- HTTP and error mapping ----------------------------------------------------------------


class TestVendorClient:
    async def test_created_client_is_closed_injected_one_is_not(self) -> None:
        owned = VendorClient(provider="P", headers={}, timeout=1.0)
        await owned.aclose()
        await owned.aclose()  # idempotent
        assert owned.client.is_closed
        async with httpx.AsyncClient() as client:
            borrowed = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
            await borrowed.aclose()
            assert not client.is_closed

    async def test_error_message_masks_an_echoed_key(self, fake: FakeAPI) -> None:
        client = fake.client
        vendor = VendorClient(
            provider="P", headers={}, timeout=1.0, secrets=["sk-1"], client=client
        )
        fake.reply(httpx.Response(401, json={"error": {"message": "bad key sk-1"}}))
        with pytest.raises(ProviderError) as info:
            await vendor.post_json("https://api.example.com/x", {})
        assert "sk-1" not in str(info.value) and "sk-1" not in repr(info.value)
        assert info.value.message == "HTTP 401: bad key ***"

    @pytest.mark.parametrize(
        ("response", "message"),
        [
            (httpx.Response(200, content=b"<html>"), "invalid JSON in the response"),
            # Nested past the parser's recursion: RecursionError came out, not ProviderError.
            (
                httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000),
                "invalid JSON in the response",
            ),
            (httpx.Response(200, json=[1]), "the response is not a JSON object"),
            (httpx.Response(302, headers={"location": "/"}), "HTTP 302"),
        ],
    )
    async def test_bad_answers(
        self, fake: FakeAPI, response: httpx.Response, message: str
    ) -> None:
        client = fake.client
        fake.reply(response)
        vendor = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
        with pytest.raises(ProviderError, match=message) as info:
            await vendor.post_json("https://api.example.com/x", {})
        assert not info.value.retryable

    async def test_unencodable_body(self, fake: FakeAPI) -> None:
        client = fake.client
        vendor = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
        with pytest.raises(ProviderError, match="cannot be encoded"):
            await vendor.post_json("https://api.example.com/x", {"t": float("nan")})
        assert fake.requests == []

    async def test_logs_show_no_credentials_of_the_base_url(
        self, fake: FakeAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        # A base_url "https://gw:PASSWORD@host/v1" went out in clear in the request's debug
        # line and in the line of each retry.
        caplog.set_level(logging.DEBUG, logger="roomkit.providers.ai")

        async def no_wait(delay: float) -> None:
            return None

        fake.reply(httpx.Response(503), httpx.Response(503))
        vendor = VendorClient(
            provider="P", headers={}, timeout=1.0, client=fake.client, max_retries=1, sleep=no_wait
        )
        with pytest.raises(ProviderError):
            await vendor.post_json("https://gw:GWPASS42@llm.example/v1/chat", {})
        assert "https://llm.example/v1/chat" in caplog.text and "retrying" in caplog.text
        assert "GWPASS42" not in caplog.text

    async def test_transport_errors_are_retryable(self, fake: FakeAPI) -> None:
        client = fake.client

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        fake.reply(refuse)
        vendor = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
        with pytest.raises(ProviderError) as info:
            await vendor.post_json("https://api.example.com/x", {})
        assert info.value.retryable
        assert info.value.message == "transport error: ConnectError"
        assert isinstance(info.value.__cause__, httpx.ConnectError)

    async def test_timeout_in_the_middle_of_a_stream(self, fake: FakeAPI) -> None:
        client = fake.client

        def stalls(request: httpx.Request) -> httpx.Response:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"data: 1\n\n"
                raise httpx.ReadTimeout("read timed out", request=request)

            return httpx.Response(200, content=chunks())

        fake.reply(stalls)
        vendor = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
        received: list[str] = []
        with pytest.raises(ProviderError) as info:
            async for event in vendor.stream_sse("https://api.example.com/x", {}):
                received.append(event.data)
        assert received == ["1"]
        assert info.value.message == "timeout" and info.value.retryable

    async def test_an_oversized_json_answer_to_a_stream_is_not_read_whole(
        self, fake: FakeAPI
    ) -> None:
        # A JSON answer to a stream request was read whole, whatever its size.
        sent: list[int] = []

        def huge(request: httpx.Request) -> httpx.Response:
            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(64):
                    sent.append(1)
                    yield b" " * (1024 * 1024)

            return httpx.Response(
                200, headers={"content-type": "application/json"}, content=chunks()
            )

        fake.reply(huge)
        vendor = VendorClient(provider="P", headers={}, timeout=5.0, client=fake.client)
        with pytest.raises(ProviderError, match="larger than") as info:
            async for _ in vendor.stream_sse("https://api.example.com/x", {}):
                pass
        assert not info.value.retryable
        assert len(sent) <= 5

    async def test_oversized_stream_event(self, fake: FakeAPI) -> None:
        client = fake.client
        fake.reply(httpx.Response(200, content=b"data: " + b"x" * (5 * 1024 * 1024)))
        vendor = VendorClient(provider="P", headers={}, timeout=1.0, client=client)
        with pytest.raises(ProviderError, match="longer than") as info:
            async for _ in vendor.stream_sse("https://api.example.com/x", {}):
                pass
        assert info.value.provider == "P"


# Error objects that vendors and gateways answer with HTTP 200, and the error they stand for.
_JSON_ERRORS: dict[str, tuple[dict[str, object], str, bool]] = {
    "openai": (
        {"error": {"message": "no model gpt-x", "type": "invalid_request_error"}},
        "invalid_request_error: no model gpt-x",
        False,
    ),
    "anthropic": (
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
        "overloaded_error: busy",
        True,
    ),
    "gemini": (
        {"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}},
        "INVALID_ARGUMENT: bad request",
        False,
    ),
}


def _vendor(
    kind: str, client: httpx.AsyncClient
) -> OpenAIAIProvider | AnthropicAIProvider | GeminiAIProvider:
    key = SecretStr("sk-1")
    if kind == "openai":
        return OpenAIAIProvider(OpenAIConfig(api_key=key, max_retries=0), client=client)
    if kind == "anthropic":
        return AnthropicAIProvider(AnthropicConfig(api_key=key, max_retries=0), client=client)
    return GeminiAIProvider(GeminiConfig(api_key=key), client=client)


@pytest.mark.parametrize("kind", sorted(_JSON_ERRORS))
async def test_a_json_error_answer_to_a_stream_is_the_vendors_error(
    fake: FakeAPI, kind: str
) -> None:
    # Fed to the SSE decoder, a 2xx JSON answer gave no event: the vendor's error was lost
    # for a generic, retryable "stream ended before ..." where generate() reads it.
    body, detail, retryable = _JSON_ERRORS[kind]
    fake.reply(httpx.Response(200, json=body), httpx.Response(200, json=body))
    vendor = _vendor(kind, fake.client)
    with pytest.raises(ProviderError) as plain:
        await vendor.generate(AIContext(messages=[AIMessage(role="user", content="hi")]))
    with pytest.raises(ProviderError) as streamed:
        async with contextlib.aclosing(
            vendor.generate_stream(AIContext(messages=[AIMessage(role="user", content="hi")]))
        ) as events:
            async for _ in events:
                pass
    assert (plain.value.message, plain.value.retryable) == (f"error: {detail}", retryable)
    assert (streamed.value.message, streamed.value.retryable) == (
        f"stream error: {detail}",
        retryable,
    )
    assert streamed.value.status_code == plain.value.status_code
    assert len(fake.requests) == 2


class TestImports:
    def test_vendor_packages_do_not_import_httpx(self) -> None:
        code = (
            "import sys\n"
            "import providers.anthropic, providers.openai, providers.gemini\n"
            "import providers.vllm, providers.pydantic_ai\n"
            "assert 'httpx' not in sys.modules, 'httpx imported eagerly'\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr

    def test_missing_httpx_gives_an_install_hint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "httpx", None)
        with pytest.raises(ImportError, match=r"pip install 'roomkit\[http\]'"):
            import_httpx("AnthropicAIProvider")


class TestModels:
    def test_stream_events(self) -> None:
        delta = AITextDelta(text="Hi")
        assert delta.type == "text_delta"
        end = AIStreamEnd.model_validate({"response": {"content": "Hi"}})
        assert end.response.content == "Hi"
        with pytest.raises(ValueError):
            delta.text = "changed"  # frozen

    def test_pydantic_ai_config(self) -> None:
        config = PydanticAIConfig(model="anthropic:claude-sonnet-4-20250514", system_prompt="Hi")
        assert config.model.startswith("anthropic:")
        assert (PydanticAIConfig().temperature, PydanticAIConfig().max_tokens) == (0.7, 1024)
