"""Delivery outcomes are audit records that ride on the room's next append.

A busy room writes one batch per message (its outcome goes with the next message); a room that
falls quiet appends them after ``outcome_delay``; a room actor that passivates or stops appends
what it holds. Nothing is lost and the order in the log stays: each outcome after its message.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import anyio
import msgspec
import nats
import pytest

from eventlog import EventLog, MemoryEventLog, NewEvent, Record
from eventlog._nats_codec import StoredBatch, StoredEvent
from eventlog.codec import encode
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from roomkit import (
    AIChannel,
    ChannelBinding,
    ChannelCategory,
    ChannelOutput,
    FrameworkEvent,
    InboundMessage,
    MockAIProvider,
    RetryPolicy,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from roomkit.audit import replay_point, timeline
from roomkit.core._domain import RoomUpdated, dump, encode_domain_event
from roomkit.core._room_ids import room_stream
from roomkit.core._runtime import ROOM
from roomkit.models._defaults import utcnow
from tests.roomkit.kit_helpers import SimpleChannel, text
from tests.roomkit.test_kit_replay import assert_consistent


class _CountingLog(MemoryEventLog):
    """A memory log that remembers the event types of each append."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[list[str]] = []

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> list[Record]:
        self.appends.append([event.type for event in events])
        return await super().append(stream, events, expected_version=expected_version)


async def _room(kit: RoomKit) -> SimpleChannel:
    kit.register_channel(SimpleChannel("sms"))
    ws = SimpleChannel("ws")
    kit.register_channel(ws)
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")
    return ws


def _referred(record: Record) -> str:
    return str(msgspec.json.decode(record.data)["event_id"])


async def _deliveries(log: EventLog) -> list[str]:
    return [_referred(r) for r in await log.read("r1") if r.type == "delivery.recorded"]


async def test_a_busy_room_appends_once_per_message() -> None:
    log = _CountingLog()
    async with RoomKit(log=log, outcome_delay=3600) as kit:
        ws = await _room(kit)
        log.appends.clear()
        for n in range(3):
            await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
        assert ws.texts() == ["m0", "m1", "m2"]
        assert log.appends == [
            ["message.recorded"],
            ["delivery.recorded", "message.recorded"],
            ["delivery.recorded", "message.recorded"],
        ]
    # The last outcome was appended when the room's actor stopped with the kit.
    assert log.appends[-1] == ["delivery.recorded"]
    types = [r.type for r in await log.read("r1")]
    assert types[-6:] == ["message.recorded", "delivery.recorded"] * 3


class _ProviderTimeChannel(SimpleChannel):
    """Stamps an inbound message "late" an hour back, as with a provider's own date."""

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        if getattr(message.content, "body", "") == "late":
            event = event.model_copy(update={"created_at": utcnow() - timedelta(hours=1)})
        return event


async def test_an_outcome_is_stamped_when_it_is_recorded_not_with_the_message_it_rides_on() -> (
    None
):
    log = MemoryEventLog()
    async with RoomKit(log=log, outcome_delay=3600) as kit:
        kit.register_channel(_ProviderTimeChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.process_inbound(text("sms", "first"), room_id="r1")
        await kit.process_inbound(text("sms", "late"), room_id="r1")
    records = await log.read("r1")
    first = next(r for r in records if r.type == "message.recorded" and b'"first"' in r.data)
    outcomes = [r for r in records if r.type == "delivery.recorded"]
    outcome = next(r for r in outcomes if r.version > first.version)
    assert outcome.timestamp >= first.timestamp  # not the late message's hour-old stamp


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's clock a millisecond later at each reading: two stamps taken at different
    moments of one command always differ, as they may not within a microsecond. It starts a
    minute ahead, so as not to fall behind the real clock of the models' default times."""
    start = utcnow() + timedelta(minutes=1)
    ticks = itertools.count()

    def now() -> datetime:
        return start + timedelta(milliseconds=next(ticks))

    monkeypatch.setattr("roomkit.core._runtime.utcnow", now)


async def _assert_stamped_in_order(kit: RoomKit) -> None:
    """r1's records are stamped in version order, and each is in the room as of its time."""
    records = await kit.log.read("r1")
    back = [
        (a.version, b.version) for a, b in itertools.pairwise(records) if b.timestamp < a.timestamp
    ]
    assert back == []  # (the version, the next one stamped before it)
    async for entry in timeline(kit.log, "r1"):
        assert entry.time is not None
        point = await replay_point(kit.log, "r1", until=entry.time)
        assert point.version >= entry.version, entry


@pytest.mark.usefixtures("ticking_clock")
async def test_a_room_s_records_are_stamped_in_order_with_the_outcomes_its_messages_carry(
    make_kit: Callable[..., RoomKit],
) -> None:
    # The outcomes a message's append carries ahead of it were stamped when taken, after the
    # message's decision, and the message when its decision began: every such message was
    # stamped before the record in front of it, and replay_point(until=<its time>) gave the
    # room without it.
    async with make_kit(outcome_delay=3600) as kit:
        await _room(kit)
        for n in range(4):
            await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
        await assert_consistent(kit)  # the live room took the same stamps as the log
    types = [record.type for record in await kit.log.read("r1")]
    assert types[-8:] == ["message.recorded", "delivery.recorded"] * 4
    await _assert_stamped_in_order(kit)


@pytest.mark.usefixtures("ticking_clock")
async def test_a_room_s_records_stay_in_order_while_messages_replies_and_outcomes_interleave(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Messages in flight while an AI answers the ones before and their outcomes wait: a
    # reply, stamped when its delivery worker handed it over, went in ahead of a message
    # stamped earlier (and a sent event carries the time its caller read before it waited).
    async with make_kit(outcome_delay=3600) as kit:
        await _room(kit)
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["on it"])))
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(
                    functools.partial(kit.process_inbound, text("sms", f"m{n}"), room_id="r1")
                )
                tg.start_soon(kit.send_event, "r1", "ws", TextContent(body=f"sent {n}"))
        await assert_consistent(kit)
    types = [record.type for record in await kit.log.read("r1")]
    assert types.count("delivery.recorded") >= 12
    await _assert_stamped_in_order(kit)


async def test_a_quiet_room_appends_its_outcomes_after_the_delay(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(outcome_delay=0.01) as kit:
        await _room(kit)
        result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
        assert result.event is not None
        with anyio.fail_after(10):
            async with kit.log.subscribe() as records:
                async for record in records:
                    if record.type == "delivery.recorded":
                        break
        assert _referred(record) == result.event.id
        assert await _deliveries(kit.log) == [result.event.id]


async def test_a_passivated_room_appends_what_it_held(make_kit: Callable[..., RoomKit]) -> None:
    async with make_kit(outcome_delay=3600) as kit:
        await _room(kit)
        result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
        assert result.event is not None
        assert await _deliveries(kit.log) == []
        system = kit._runtime._system
        assert system is not None
        assert await system.passivate(ROOM, "r1")
        assert await _deliveries(kit.log) == [result.event.id]


class _Slow(SimpleChannel):
    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.delivering = anyio.Event()

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.delivering.set()
        await anyio.sleep(0.2)
        return await super().deliver(event, binding, context)


class _FailingOnce(SimpleChannel):
    failed = False

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if not self.failed:
            self.failed = True
            raise ConnectionError("reset")
        return await super().deliver(event, binding, context)


async def _rooms_with_a_slow_channel(kit: RoomKit, *room_ids: str) -> None:
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(_Slow("slow"))
    for room_id in room_ids:
        await kit.create_room(room_id=room_id)
        await kit.attach_channel(room_id, "sms")
        await kit.attach_channel(room_id, "slow")


async def _passivated_while_r1_delivers(kit: RoomKit) -> None:
    """Send r1 a message, and passivate its actor once committed, while its delivery runs."""
    async with anyio.create_task_group() as tg:
        slow = kit.get_channel("slow")
        assert isinstance(slow, _Slow)
        slow.delivering = anyio.Event()
        tg.start_soon(functools.partial(kit.process_inbound, room_id="r1"), text("sms", "hi"))
        await slow.delivering.wait()  # committed; its delivery runs (a sleep was not enough)
        system = kit._runtime._system
        assert system is not None
        assert await system.passivate(ROOM, "r1")
    assert kit._runtime.flusher.holds("r1")


async def test_closing_the_kit_appends_the_outcomes_of_a_room_whose_actor_is_not_running(
    make_kit: Callable[..., RoomKit],
) -> None:
    kit = make_kit(outcome_delay=3600)
    async with kit:
        await _rooms_with_a_slow_channel(kit, "r1")
        await _passivated_while_r1_delivers(kit)
    (message,) = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert await _deliveries(kit.log) == [message.id]


async def test_a_close_that_gives_up_waiting_still_appends_a_passivated_room_s_outcomes(
    make_kit: Callable[..., RoomKit], caplog: pytest.LogCaptureFixture
) -> None:
    # Another room's delivery outlasted the close's wait (4 x process_timeout): the
    # passivated room's waiting outcome was dropped with the rest, and nothing said so.
    # process_timeout leaves a loaded machine room to decide the message (0.25 s did not).
    kit = make_kit(outcome_delay=3600, process_timeout=0.5)
    async with kit:
        await _rooms_with_a_slow_channel(kit, "r1", "r2")
        kit.register_channel(_FailingOnce("flaky"))
        # Its retry waits past the close's wait (2 s), each attempt within process_timeout.
        retry = RetryPolicy(max_retries=1, base_delay_seconds=4)
        await kit.attach_channel("r2", "flaky", retry_policy=retry)
        await kit.process_inbound(text("sms", "to r2"), room_id="r2")
        await _passivated_while_r1_delivers(kit)
    (message,) = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert await _deliveries(kit.log) == [message.id]
    assert "1 turn(s) (deliveries, async hooks) still running" in caplog.text


async def test_closing_the_kit_appends_waiting_outcomes(make_kit: Callable[..., RoomKit]) -> None:
    kit = make_kit(outcome_delay=3600)
    async with kit:
        await _room(kit)
        first = await kit.process_inbound(text("sms", "one"), room_id="r1")
        second = await kit.process_inbound(text("sms", "two"), room_id="r1")
    assert first.event is not None and second.event is not None
    assert await _deliveries(kit.log) == [first.event.id, second.event.id]


async def test_the_flusher_stops_quietly_when_the_kit_is_stopping() -> None:
    from actors import ActorDeadError
    from roomkit.core._commands import RecordOutcome
    from roomkit.core._outcome_flusher import OutcomeFlusher

    told: list[str] = []

    def closed(room_id: str, command: object) -> None:
        told.append(room_id)
        raise ActorDeadError("stopping")

    flusher = OutcomeFlusher(closed, delay=0)
    flusher.add("r1", RecordOutcome("e1", "e1"))
    with anyio.fail_after(5):
        await flusher.run()  # returns instead of raising
    assert told == ["r1"]
    assert flusher.holds("r1")  # still there for the room's own on_stop


async def test_a_stopped_kit_refuses_tells_with_the_actor_error() -> None:
    from actors import ActorDeadError
    from roomkit.core._outcome_flusher import FLUSH

    kit = RoomKit()
    async with kit:
        await _room(kit)
    with pytest.raises(ActorDeadError):
        kit._runtime._tell_room_nowait("r1", FLUSH)  # what the flusher tells rooms with


class _Hanging(SimpleChannel):
    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_delivery_that_ends_as_the_kit_closes_has_its_outcome_appended(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Its retries outlasted the close's wait, and ended within the actors' time to stop: its
    # events fired, but its room had stopped before it, and the log held no outcome.
    kit = make_kit(outcome_delay=3600, process_timeout=0.25)
    failed: list[str] = []
    async with kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(_Hanging("hung"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        # 4 attempts of 0.25 s and 0.7 s of backoff: past the close's wait (1 s).
        retry = RetryPolicy(max_retries=3, base_delay_seconds=0.1)
        await kit.attach_channel("r1", "hung", retry_policy=retry)

        @kit.on("delivery_failed")
        async def noted(event: FrameworkEvent) -> None:
            failed.append(str(event.data["error"]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(kit.process_inbound, room_id="r1"), text("sms", "hi"))
            await anyio.sleep(0.1)  # committed; its delivery retries
            tg.start_soon(kit.close)
    assert failed == ["timeout"]
    (message,) = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert await _deliveries(kit.log) == [message.id]


async def _another_writers_record(kit: RoomKit, stamp: float) -> None:
    """Append to r1 a record another writer stamped ``stamp`` (by its own clock)."""
    room = await kit.get_room("r1")
    version = await kit.log.last_version(room_stream("r1"))
    updated = encode_domain_event(RoomUpdated(room=dump(room), reason="updated"), timestamp=stamp)
    await kit.log.append(room_stream("r1"), [updated], expected_version=version)


async def test_a_record_stamped_far_ahead_is_not_the_floor_of_the_room_s_stamps(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Another writer's record, its clock ten years ahead: every later fact of the room was
    # stamped as it, so the room's activity froze in the future (its timers never fired).
    ahead = (utcnow() + timedelta(days=3650)).timestamp()
    async with make_kit() as kit:
        await _room(kit)
        await _another_writers_record(kit, ahead)
    async with make_kit() as kit:
        _register(kit)
        await kit.process_inbound(text("sms", "hello"), room_id="r1")
        room = await kit.get_room("r1")
        assert room.timers.last_activity_at is not None
        assert room.timers.last_activity_at < utcnow() + timedelta(minutes=1)
        records = await kit.log.read(room_stream("r1"))
        assert records[-1].timestamp < ahead


@pytest.mark.parametrize("stamp", [1e300, math.inf])
async def test_a_record_stamped_with_no_time_leaves_the_room_writable(
    nats_server: NatsServer, stamp: float
) -> None:
    # Appends refuse such a stamp, but a log written before they did (or by another writer)
    # may hold one: taken as the floor of the room's next stamps, every append was refused,
    # and the room took no message nor command for good.
    async with NatsEventLog(nats_server.url) as log:
        async with RoomKit(log=log) as kit:
            await _room(kit)
            version = await log.last_version(room_stream("r1"))
            room = await kit.get_room("r1")
        updated = encode_domain_event(RoomUpdated(room=dump(room), reason="updated"), timestamp=0)
        batch = StoredBatch(
            version=version + 1,
            events=[StoredEvent(type=updated.type, timestamp=stamp, data=updated.data)],
        )
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish(log._subject(room_stream("r1")), encode(batch))
        finally:
            await nc.close()
        async with RoomKit(log=log) as kit:
            _register(kit)
            result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
            assert not result.blocked
            await kit.close_room("r1")


def _register(kit: RoomKit) -> None:
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
