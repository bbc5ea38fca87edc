"""WebSocketChannel: connection registry, fan-out, dropping failing connections."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest

from roomkit.channels import WebSocketChannel
from roomkit.models.channel import ChannelBinding, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import ChannelCategory, ChannelMediaType, ChannelType
from roomkit.models.event import EventSource, RoomEvent, TextContent
from roomkit.models.room import Room


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The channel is pure anyio: run it on both backends."""
    return str(request.param)


def _event() -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms-1", channel_type=ChannelType.SMS),
        content=TextContent(body="hi"),
    )


def _binding() -> ChannelBinding:
    return ChannelBinding(channel_id="ws-1", room_id="r1", channel_type=ChannelType.WEBSOCKET)


def _context() -> RoomContext:
    return RoomContext(room=Room(id="r1"))


class _Client:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.received: list[tuple[str, RoomEvent]] = []

    async def send(self, connection_id: str, event: RoomEvent) -> None:
        if self.fail:
            raise ConnectionResetError("gone")
        self.received.append((connection_id, event))


class TestRegistry:
    def test_attributes(self) -> None:
        channel = WebSocketChannel("ws-1")
        assert channel.channel_type == ChannelType.WEBSOCKET
        assert channel.category == ChannelCategory.TRANSPORT
        caps = channel.capabilities()
        assert caps.media_types == [
            ChannelMediaType.TEXT,
            ChannelMediaType.RICH,
            ChannelMediaType.MEDIA,
            ChannelMediaType.AUDIO,
            ChannelMediaType.VIDEO,
            ChannelMediaType.LOCATION,
        ]
        assert all(
            [
                caps.supports_typing,
                caps.supports_read_receipts,
                caps.supports_reactions,
                caps.supports_rich_text,
                caps.supports_media,
                caps.supports_buttons,
                caps.supports_cards,
                caps.supports_quick_replies,
            ]
        )

    def test_register_and_unregister(self) -> None:
        channel = WebSocketChannel("ws-1")
        assert channel.connection_count == 0 and channel.info == {"connection_count": 0}
        channel.register_connection("a", _Client().send)
        channel.register_connection("b", _Client().send)
        channel.register_connection("a", _Client().send)  # replaces
        assert channel.connection_count == 2 and channel.info == {"connection_count": 2}
        channel.unregister_connection("a")
        channel.unregister_connection("unknown")
        assert channel.connection_count == 1


class TestDeliver:
    async def test_delivers_to_every_connection(self) -> None:
        channel = WebSocketChannel("ws-1")
        a, b = _Client(), _Client()
        channel.register_connection("a", a.send)
        channel.register_connection("b", b.send)
        event = _event()
        output = await channel.deliver(event, _binding(), _context())
        assert output == ChannelOutput.empty()
        assert a.received == [("a", event)]
        assert b.received == [("b", event)]

    async def test_a_plain_function_sends_and_keeps_its_connection(self) -> None:
        # Its None was awaited: the send failed after the event had reached the client, and
        # the connection was dropped with every later event.
        channel = WebSocketChannel("ws-1")
        received: list[str] = []

        def send(connection_id: str, event: RoomEvent) -> None:
            received.append(event.id)

        channel.register_connection("a", send)  # type: ignore[arg-type]
        first, second = _event(), _event()
        for event in (first, second):
            await channel.deliver(event, _binding(), _context())
        assert received == [first.id, second.id]
        assert channel.connection_count == 1

    async def test_no_connections(self) -> None:
        channel = WebSocketChannel("ws-1")
        assert await channel.deliver(_event(), _binding(), _context()) == ChannelOutput.empty()

    async def test_failing_connection_is_dropped_others_still_served(self) -> None:
        channel = WebSocketChannel("ws-1")
        good, bad = _Client(), _Client(fail=True)
        channel.register_connection("good", good.send)
        channel.register_connection("bad", bad.send)
        await channel.deliver(_event(), _binding(), _context())
        assert channel.connection_count == 1
        await channel.deliver(_event(), _binding(), _context())
        assert len(good.received) == 2

    @pytest.mark.parametrize("fails", ["raises", "times out"])
    async def test_a_client_that_reconnected_is_kept_when_its_old_socket_fails(
        self, fails: str
    ) -> None:
        # One send function for every connection (it is given the connection's id): the old
        # socket's failure dropped the new registration, which then got nothing more.
        sockets: dict[str, Any] = {}

        async def send(connection_id: str, event: RoomEvent) -> None:
            await sockets[connection_id](event)

        reconnected = anyio.Event()

        async def old_socket(event: RoomEvent) -> None:
            await reconnected.wait()
            if fails == "raises":
                raise ConnectionResetError("gone")
            await anyio.sleep_forever()

        received: list[RoomEvent] = []

        async def new_socket(event: RoomEvent) -> None:
            received.append(event)

        channel = WebSocketChannel("ws-1", send_timeout=0.5)
        sockets["user-1"] = old_socket
        channel.register_connection("user-1", send)
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.deliver, _event(), _binding(), _context())
            await anyio.wait_all_tasks_blocked()
            channel.unregister_connection("user-1")
            sockets["user-1"] = new_socket
            channel.register_connection("user-1", send)
            reconnected.set()
        assert channel.connection_count == 1
        event = _event()
        await channel.deliver(event, _binding(), _context())
        assert received == [event]

    async def test_a_send_s_own_cancellation_fails_that_connection_alone(self) -> None:
        # A socket torn down under its send: taken for a cancellation of the delivery, it
        # failed the delivery and dropped every connection still sending.
        async def torn_down(connection_id: str, event: RoomEvent) -> None:
            raise asyncio.CancelledError

        channel = WebSocketChannel("ws-1")
        channel.register_connection("torn", torn_down)
        clients = [_Client() for _ in range(5)]
        for n, client in enumerate(clients):
            channel.register_connection(f"c{n}", client.send)
        event = _event()
        assert await channel.deliver(event, _binding(), _context()) == ChannelOutput.empty()
        assert [len(client.received) for client in clients] == [1] * 5
        assert channel.connection_count == 5

    async def test_a_client_gone_is_one_warning_line(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # It was two warnings, one with the send's traceback: noise for a routine event.
        channel = WebSocketChannel("ws-1")
        channel.register_connection("bad", _Client(fail=True).send)
        with caplog.at_level(logging.DEBUG, logger="roomkit.channels.websocket"):
            await channel.deliver(_event(), _binding(), _context())
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            "channel ws-1: dropping connection bad: its send failed (ConnectionResetError: gone)"
        ]
        assert warnings[0].exc_info is None
        (debug,) = [r for r in caplog.records if r.levelno == logging.DEBUG]
        assert debug.exc_info is not None  # the traceback, for whoever debugs

    async def test_handle_inbound(self) -> None:
        channel = WebSocketChannel("ws-1")
        message = InboundMessage(
            channel_id="ws-1",
            sender_id="user-1",
            content=TextContent(body="hey"),
            idempotency_key="k1",
            metadata={"ip": "127.0.0.1"},
        )
        event = await channel.handle_inbound(message, _context())
        assert event.room_id == "r1"
        assert event.source.channel_id == "ws-1"
        assert event.source.channel_type == ChannelType.WEBSOCKET
        assert event.source.participant_id == "user-1"
        assert event.idempotency_key == "k1"
        assert event.metadata == {"ip": "127.0.0.1"}
