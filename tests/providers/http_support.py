"""What the messaging vendor tests (email, Messenger, WhatsApp, Teams, HTTP webhook) share: a
scripted ``httpx.MockTransport`` handler, an event sent by an agent, a two-channel room, and
hypothesis values for hostile webhook payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
from hypothesis import strategies as st

from roomkit import ChannelType, RoomKit
from roomkit.channels.base import Channel
from roomkit.models.event import EventContent, EventSource, RoomEvent
from tests.roomkit.kit_helpers import SimpleChannel

Reply = httpx.Response | type[Exception] | Callable[[httpx.Request], httpx.Response]
"""An answer: a response, an httpx exception class to raise, or a function of the request."""

# JSON values, nested (no NaN: webhook bodies are parsed JSON): what an attacker can post.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


class Recorder:
    """A MockTransport handler: records requests, answers from a script (the last one repeats).

    Subclasses set :attr:`default`, the answer when the script is empty.
    """

    default: ClassVar[httpx.Response] = httpx.Response(200, json={})

    def __init__(self, *replies: Reply) -> None:
        self.replies: list[Reply] = list(replies) or [self.default]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, type):
            raise reply("simulated", request=request)  # type: ignore[call-arg]
        if isinstance(reply, httpx.Response):
            # A fresh copy: a response's body can be read only once.
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
        return reply(request)

    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests, in order."""
        return [json.loads(r.content) for r in self.requests]


def event(content: EventContent) -> RoomEvent:
    """An event of room ``r1`` sent by the websocket channel ``agent``."""
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="agent", channel_type=ChannelType.WEBSOCKET),
        content=content,
    )


async def agent_room(kit: RoomKit, channel: Channel, metadata: dict[str, Any]) -> SimpleChannel:
    """Register ``channel`` and a websocket channel ``agent`` in ``kit``, and join both to a new
    room ``r1`` (``channel`` with its binding ``metadata``); return the ``agent`` channel."""
    kit.register_channel(channel)
    agent = SimpleChannel("agent", ChannelType.WEBSOCKET)
    kit.register_channel(agent)
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", channel.channel_id, metadata=metadata)
    await kit.attach_channel("r1", "agent")
    return agent
