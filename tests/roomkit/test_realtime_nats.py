"""``NatsRealtime`` on a real nats-server: ephemeral events reach every process subscribed."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import anyio
import nats
import pytest

from eventlog.testing_nats import NatsServer
from roomkit import EphemeralEvent, EphemeralEventType, RoomKit
from roomkit.realtime.nats import NatsRealtime, RealtimeUnavailableError, channel_subject
from tests.roomkit.kit_helpers import eventually


class Inbox:
    """What a subscription received."""

    def __init__(self) -> None:
        self.events: list[EphemeralEvent] = []

    async def __call__(self, event: EphemeralEvent) -> None:
        self.events.append(event)

    async def count(self, n: int) -> list[EphemeralEvent]:
        async def arrived() -> bool:
            return len(self.events) >= n

        await eventually(arrived, what=f"{n} events")
        return self.events


def typing(n: int, room_id: str = "r1") -> EphemeralEvent:
    return EphemeralEvent(
        room_id=room_id, type=EphemeralEventType.TYPING_START, user_id=f"u{n}", data={"n": n}
    )


@pytest.fixture
async def two(nats_server: NatsServer) -> AsyncIterator[tuple[NatsRealtime, NatsRealtime]]:
    """Two backends on their own connections: two processes serving the same rooms."""
    async with NatsRealtime(nats_server.url) as a, NatsRealtime(nats_server.url) as b:
        yield a, b


async def test_events_reach_the_other_process_in_order(
    two: tuple[NatsRealtime, NatsRealtime],
) -> None:
    a, b = two
    there, here = Inbox(), Inbox()
    await b.subscribe_to_room("support:1", there)
    await a.subscribe_to_room("support:1", here)  # the publisher's own process too
    for n in range(50):
        await a.publish_to_room("support:1", typing(n, "support:1"))
    for inbox in (there, here):
        events = await inbox.count(50)
        assert [e.data["n"] for e in events] == list(range(50))
        assert events[0].to_dict() == typing(0, "support:1").to_dict() | {
            "id": events[0].id,
            "timestamp": events[0].timestamp.isoformat(),
        }


async def test_channels_stay_apart_whatever_their_names(
    two: tuple[NatsRealtime, NatsRealtime],
) -> None:
    a, b = two
    names = ["room:r1", "room:r2", "room:r.1", "plain", "room:" + "x" * 80, "room:" + "x" * 81]
    assert len({channel_subject("roomkit", name) for name in names}) == len(names)
    inboxes = {name: Inbox() for name in names}
    for name, inbox in inboxes.items():
        await b.subscribe(name, inbox)
    for n, name in enumerate(names):
        await a.publish(name, typing(n))
    for n, name in enumerate(names):
        assert [e.data["n"] for e in await inboxes[name].count(1)] == [n]
    await anyio.sleep(0.1)
    assert all(len(inbox.events) == 1 for inbox in inboxes.values())


async def test_a_failing_callback_or_a_foreign_message_is_logged_and_skipped(
    nats_server: NatsServer,
    two: tuple[NatsRealtime, NatsRealtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = two
    inbox = Inbox()

    async def fragile(event: EphemeralEvent) -> None:
        if event.data["n"] == 1:
            raise RuntimeError("boom")
        await inbox(event)

    await b.subscribe("room:r1", fragile)
    nc = await nats.connect(nats_server.url)
    try:
        await a.publish("room:r1", typing(0))
        await nc.publish(channel_subject("roomkit", "room:r1"), b"not json")
        await nc.publish(channel_subject("roomkit", "room:r1"), b'{"room_id": "r1"}')
        await nc.flush()
    finally:
        await nc.close()
    with caplog.at_level(logging.WARNING, logger="roomkit.realtime"):
        await a.publish("room:r1", typing(1))
        await a.publish("room:r1", typing(2))
        assert [e.data["n"] for e in await inbox.count(2)] == [0, 2]
    assert caplog.text.count("not an ephemeral event") == 2
    assert "callback of subscription" in caplog.text and "boom" in caplog.text


async def test_unsubscribe_and_close(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        given = NatsRealtime(nc)  # a client of the application's: left open
        inbox = Inbox()
        sub = await given.subscribe("room:r1", inbox)
        await given.publish("room:r1", typing(0))
        await inbox.count(1)
        assert await given.unsubscribe(sub) and not await given.unsubscribe(sub)
        await given.publish("room:r1", typing(1))
        await anyio.sleep(0.1)
        assert len(inbox.events) == 1
        await given.subscribe("room:r1", inbox)
        await given.close()
        assert given.closed and given.subscription_count == 0
        await given.publish("room:r1", typing(2))  # ignored
        with pytest.raises(RuntimeError, match="closed"):
            await given.subscribe("room:r1", inbox)
        assert nc.is_connected
    finally:
        await nc.close()


async def test_an_unreachable_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    backend = NatsRealtime(f"nats://127.0.0.1:{port}", connect_timeout=0.5)
    with anyio.fail_after(10), pytest.raises(RealtimeUnavailableError):
        await backend.subscribe("room:r1", Inbox())
    with anyio.fail_after(10):
        await backend.publish("room:r1", typing(0))  # dropped, with a warning
    await backend.close()


def test_bad_settings_are_refused() -> None:
    for prefix in ["", "a..b", "a.*", "a b", ".a"]:
        with pytest.raises(ValueError):
            NatsRealtime(subject_prefix=prefix)
    with pytest.raises(ValueError):
        NatsRealtime(max_queue_size=0)


def test_trio_is_refused_with_a_clear_error(nats_server: NatsServer) -> None:
    async def subscribe() -> None:
        async with NatsRealtime(nats_server.url) as backend:
            await backend.subscribe("room:r1", Inbox())

    with pytest.raises(RealtimeUnavailableError, match="asyncio only"):
        anyio.run(subscribe, backend="trio")


async def test_two_kits_share_a_rooms_typing_indicators(nats_server: NatsServer) -> None:
    # Two processes serving the same room, each with its own kit (and here its own memory
    # log): a WebSocket client on one sees who types on the other.
    first = RoomKit(realtime=NatsRealtime(nats_server.url))
    second = RoomKit(realtime=NatsRealtime(nats_server.url))
    async with first, second:
        inbox = Inbox()
        await second.subscribe_room("support-1", inbox)
        await first.publish_typing("support-1", "agent-7")
        await first.publish_read_receipt("support-1", "agent-7", "e1")
        events = await inbox.count(2)
    assert [(e.type, e.user_id, e.data) for e in events] == [
        (EphemeralEventType.TYPING_START, "agent-7", {}),
        (EphemeralEventType.READ_RECEIPT, "agent-7", {"event_id": "e1"}),
    ]
