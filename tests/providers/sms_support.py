"""What the SMS / RCS vendor tests share: a recording ``httpx.MockTransport``, event builders,
hypothesis strategies for hostile webhook payloads, and a two-channel kit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from hypothesis import strategies as st

from roomkit import RoomKit, SMSChannel
from roomkit.models.enums import ChannelMediaType, ChannelType
from roomkit.models.event import EventContent, EventSource, RoomEvent, TextContent
from tests.roomkit.kit_helpers import SimpleChannel

Responder = Callable[[httpx.Request], httpx.Response]


@dataclass
class Recorder:
    """A MockTransport handler: records each request and answers with the next response
    (the last one repeats), or raises it when it is an exception."""

    responses: list[httpx.Response | Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def form(request: httpx.Request) -> dict[str, list[str]]:
    """The form fields of a request, every value as a list (repeated fields kept in order)."""
    return parse_qs(request.content.decode(), keep_blank_values=True)


def body_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


@asynccontextmanager
async def mock_client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        yield client


def event(content: EventContent | str, channel_type: ChannelType = ChannelType.SMS) -> RoomEvent:
    if isinstance(content, str):
        content = TextContent(body=content)
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="other", channel_type=channel_type),
        content=content,
    )


# JSON-like values, nested: what an attacker can put in a webhook body.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def payloads(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts whose keys are often the vendor's real field names, with any JSON values."""
    key = st.sampled_from(keys) | st.text(max_size=12)
    return st.dictionaries(key, json_values, max_size=len(keys) + 2)


def nested_payloads(
    keys: list[str], inner_keys: list[str], container: str
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with a ``container`` key holding vendor-like payloads (Telnyx' ``data.payload``)."""
    inner = payloads(inner_keys)
    return st.builds(
        lambda outer, inner_value: {**outer, container: inner_value},
        payloads(keys),
        st.one_of(inner, json_values),
    )


@asynccontextmanager
async def sms_kit(
    provider: Any, phone_number: str
) -> AsyncIterator[tuple[RoomKit, SimpleChannel]]:
    """A kit with a room ``r1`` joining ``SMSChannel("sms", provider=provider)`` (bound to
    ``phone_number``) and a recording channel ``other``."""
    async with RoomKit() as kit:
        other = SimpleChannel(
            "other", ChannelType.WEBSOCKET, [ChannelMediaType.TEXT, ChannelMediaType.MEDIA]
        )
        kit.register_channel(SMSChannel("sms", provider=provider))
        kit.register_channel(other)
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms", metadata={"phone_number": phone_number})
        await kit.attach_channel("r1", "other")
        yield kit, other
