"""What the AI provider tests share: :class:`FakeAPI` (a vendor API behind
``httpx.MockTransport``, also the ``fake`` fixture of ``conftest.py``), event-stream builders, a
context using every feature, and a room where an AI channel answers an SMS channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from providers.ai import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AITextPart,
    AITool,
    AIToolCall,
)
from roomkit import AIChannel, ChannelCategory, RoomKit
from tests.roomkit.kit_helpers import SimpleChannel

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


class NoSleep:
    """The ``sleep`` of a provider under test: records the retry delays, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class FakeAPI:
    """A vendor API behind ``httpx.MockTransport``: queued replies, recorded requests.

    Use it as an async context manager: it owns :attr:`client`, a client on that transport.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: list[Reply] = []
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    async def __aenter__(self) -> FakeAPI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else reply

    @property
    def request(self) -> httpx.Request:
        (request,) = self.requests
        return request

    @property
    def body(self) -> Any:
        return json.loads(self.request.content)


def sse_body(*events: tuple[str | None, object]) -> bytes:
    """An event stream: each ``(event name or None, JSON data or raw str)`` as one event."""
    lines = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


class ChunkedStream(httpx.AsyncByteStream):
    """A response body delivered in small chunks, which records whether it was closed."""

    def __init__(self, body: bytes, chunk: int = 7) -> None:
        self.body, self.chunk, self.closed = body, chunk, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            yield self.body[start : start + self.chunk]

    async def aclose(self) -> None:
        self.closed = True


def sse_response(body: bytes, chunk: int = 7) -> httpx.Response:
    """A streamed 200 ``text/event-stream`` response delivering ``body`` in small chunks."""
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=ChunkedStream(body, chunk)
    )


WEATHER_TOOL = AITool(
    name="get_weather",
    description="Current weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
CAT_URL = "https://images.example.com/cat.jpg"


def rich_context() -> AIContext:
    """A context using every feature: system prompt and message, images, a tool turn."""
    return AIContext(
        system_prompt="You are a concise assistant.",
        temperature=0.3,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[
            AIMessage(role="system", content="Answer in English."),
            AIMessage(role="user", content="Hi, I'm in Paris."),
            AIMessage(role="assistant", content="Hello! How can I help?"),
            AIMessage(
                role="user",
                content=[
                    AITextPart(text="What is on these pictures?"),
                    AIImagePart(url=CAT_URL, mime_type="image/jpeg"),
                    AIImagePart(url=PNG_DATA_URL),
                ],
            ),
            AIMessage(
                role="assistant",
                content="Let me check the weather.",
                metadata={
                    "tool_calls": [
                        AIToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
                    ]
                },
            ),
            AIMessage(role="tool", content='{"temp_c": 18}', metadata={"tool_call_id": "call_1"}),
        ],
    )


@asynccontextmanager
async def ai_room(
    provider: AIProvider, **channel: Any
) -> AsyncIterator[tuple[RoomKit, SimpleChannel]]:
    """A kit with a room ``r1`` joining a channel ``sms`` and ``AIChannel("ai", provider,
    **channel)`` as intelligence; yields the kit and the ``sms`` channel."""
    async with RoomKit() as kit:
        sms = SimpleChannel("sms")
        kit.register_channel(sms)
        kit.register_channel(AIChannel("ai", provider=provider, **channel))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        yield kit, sms
