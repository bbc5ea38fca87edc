"""Realtime: EphemeralEvent and InMemoryRealtime (spec section 10), on asyncio and trio."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from roomkit.realtime import (
    EphemeralEvent,
    EphemeralEventType,
    InMemoryRealtime,
    RealtimeBackend,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def typing(room: str = "r1", user: str = "u1", **data: object) -> EphemeralEvent:
    return EphemeralEvent(
        room_id=room, type=EphemeralEventType.TYPING_START, user_id=user, data=data
    )


class Collector:
    """An EphemeralCallback that records events and signals once it has ``expected`` of them."""

    def __init__(self, expected: int = 1) -> None:
        self.events: list[EphemeralEvent] = []
        self.expected = expected
        self.done = anyio.Event()

    async def __call__(self, event: EphemeralEvent) -> None:
        self.events.append(event)
        if len(self.events) >= self.expected:
            self.done.set()

    async def wait(self) -> list[EphemeralEvent]:
        with anyio.fail_after(5):
            await self.done.wait()
        return self.events


class TestEphemeralEvent:
    def test_types(self) -> None:
        assert [t.value for t in EphemeralEventType] == [
            "typing_start",
            "typing_stop",
            "presence_online",
            "presence_away",
            "presence_offline",
            "read_receipt",
            "reaction",
            "custom",
        ]

    def test_defaults(self) -> None:
        event = typing()
        assert len(event.id) == 32
        assert event.channel_id is None
        assert event.data == {}
        assert event.timestamp.tzinfo is not None

    def test_dict_round_trip(self) -> None:
        event = EphemeralEvent(
            room_id="r1",
            type=EphemeralEventType.REACTION,
            user_id="u1",
            channel_id="ws",
            data={"emoji": "+1", "target_event_id": "e1"},
            timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
        as_dict = event.to_dict()
        assert as_dict == {
            "id": event.id,
            "room_id": "r1",
            "type": "reaction",
            "user_id": "u1",
            "channel_id": "ws",
            "data": {"emoji": "+1", "target_event_id": "e1"},
            "timestamp": "2025-01-02T03:04:05+00:00",
        }
        assert EphemeralEvent.from_dict(as_dict) == event

    def test_from_minimal_dict(self) -> None:
        event = EphemeralEvent.from_dict({"room_id": "r", "type": "custom", "user_id": "u"})
        assert event.type is EphemeralEventType.CUSTOM
        assert len(event.id) == 32
        assert event.data == {}
        with pytest.raises(ValueError):
            EphemeralEvent.from_dict({"room_id": "r", "type": "dancing", "user_id": "u"})


class TestPublishSubscribe:
    async def test_subscriber_gets_events_of_its_channel_in_order(self) -> None:
        realtime = InMemoryRealtime()
        room1, room2 = Collector(expected=3), Collector()
        await realtime.subscribe_to_room("r1", room1)
        await realtime.subscribe("room:r2", room2)
        sent = [typing(n=i) for i in range(3)]
        for event in sent:
            await realtime.publish_to_room("r1", event)
        assert await room1.wait() == sent
        await anyio.wait_all_tasks_blocked()
        assert room2.events == []
        await realtime.close()

    async def test_every_subscriber_of_a_channel_gets_each_event(self) -> None:
        realtime = InMemoryRealtime()
        first, second = Collector(), Collector()
        await realtime.subscribe("room:r1", first)
        await realtime.subscribe("room:r1", second)
        assert realtime.subscription_count == 2
        event = typing()
        await realtime.publish("room:r1", event)
        assert await first.wait() == [event]
        assert await second.wait() == [event]
        await realtime.close()

    async def test_a_plain_function_callback_gets_every_event(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Its None was awaited: each event failed after the callback had run (logged as an
        # error each time).
        realtime = InMemoryRealtime()
        got: list[EphemeralEvent] = []
        done = anyio.Event()

        def note(event: EphemeralEvent) -> None:
            got.append(event)
            if len(got) == 2:
                done.set()

        await realtime.subscribe_to_room("r1", note)  # type: ignore[arg-type]
        sent = [typing(n=i) for i in range(2)]
        for event in sent:
            await realtime.publish_to_room("r1", event)
        with anyio.fail_after(5):
            await done.wait()
        assert got == sent
        await realtime.close()
        assert "failed" not in caplog.text

    async def test_publish_without_subscribers_is_a_no_op(self) -> None:
        realtime = InMemoryRealtime()
        await realtime.publish("room:nobody", typing())
        assert realtime.subscription_count == 0
        await realtime.close()

    async def test_unsubscribe(self) -> None:
        realtime = InMemoryRealtime()
        kept, dropped = Collector(), Collector()
        await realtime.subscribe("room:r1", kept)
        sub_id = await realtime.subscribe("room:r1", dropped)
        assert await realtime.unsubscribe(sub_id=sub_id) is True  # the reference's keyword
        assert await realtime.unsubscribe(sub_id) is False
        assert await realtime.unsubscribe(subscription_id=sub_id) is False  # 0.3.0's own
        with pytest.raises(TypeError):
            await realtime.unsubscribe()
        assert await realtime.unsubscribe("never-existed") is False
        assert realtime.subscription_count == 1
        await realtime.publish("room:r1", typing())
        await kept.wait()
        await anyio.wait_all_tasks_blocked()
        assert dropped.events == []
        await realtime.close()

    async def test_full_queue_drops_the_oldest_events(self) -> None:
        realtime = InMemoryRealtime(max_queue_size=3)
        entered, release = anyio.Event(), anyio.Event()
        received: list[int] = []
        all_received = anyio.Event()

        async def slow(event: EphemeralEvent) -> None:
            received.append(int(event.data["n"]))  # type: ignore[call-overload]
            if len(received) == 1:
                entered.set()
                await release.wait()
            if len(received) == 4:
                all_received.set()

        await realtime.subscribe("room:r1", slow)
        await realtime.publish("room:r1", typing(n=0))
        with anyio.fail_after(5):
            await entered.wait()
        # The subscriber is stuck on event 0; six more overflow a queue of three.
        for n in range(1, 7):
            await realtime.publish("room:r1", typing(n=n))
        release.set()
        with anyio.fail_after(5):
            await all_received.wait()
        assert received == [0, 4, 5, 6]
        await realtime.close()

    async def test_a_burst_from_a_publisher_that_never_yields_reaches_a_quick_subscriber(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # The delivery task never ran while the publisher looped: 100 of 1,000 arrived, and
        # the drops were said at DEBUG only.
        realtime = InMemoryRealtime()
        quick = Collector(expected=1_000)
        await realtime.subscribe("room:r1", quick)
        with caplog.at_level(logging.WARNING, logger="roomkit.realtime"):
            for n in range(1_000):
                await realtime.publish("room:r1", typing(n=n))
            assert [e.data["n"] for e in await quick.wait()] == list(range(1_000))
        assert caplog.records == []
        await realtime.close()

    async def test_publishes_waiting_for_a_full_queue_keep_their_order(self) -> None:
        # A publish that found the queue full yielded; one that came later found room and
        # was delivered first ("typing stopped" before "typing started").
        realtime = InMemoryRealtime(max_queue_size=2)
        received: list[int] = []
        entered, release = anyio.Event(), anyio.Event()

        async def held_at_first(event: EphemeralEvent) -> None:
            received.append(int(event.data["n"]))  # type: ignore[call-overload]
            if len(received) == 1:
                entered.set()
                await release.wait()

        await realtime.subscribe("room:r1", held_at_first)
        await realtime.publish("room:r1", typing(n=0))
        with anyio.fail_after(5):
            await entered.wait()
        for n in (1, 2):  # the queue is full
            await realtime.publish("room:r1", typing(n=n))
        async with anyio.create_task_group() as tg:
            tg.start_soon(realtime.publish, "room:r1", typing(n=3))
            await anyio.lowlevel.checkpoint()  # 3 waits for room
            release.set()
            await anyio.lowlevel.checkpoint()  # the subscriber takes 1
            await realtime.publish("room:r1", typing(n=4))
        with anyio.fail_after(5):
            while len(received) < 5:
                await anyio.sleep(0.01)
        assert received == sorted(received)
        await realtime.close()

    async def test_dropped_events_are_said_once_in_a_while_at_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        realtime = InMemoryRealtime(max_queue_size=3)
        release = anyio.Event()

        async def stuck(event: EphemeralEvent) -> None:
            await release.wait()

        await realtime.subscribe("room:r1", stuck)
        with caplog.at_level(logging.WARNING, logger="roomkit.realtime"):
            for n in range(50):
                await realtime.publish("room:r1", typing(n=n))
            said = [r.getMessage() for r in caplog.records]
            assert len(said) == 1 and "is full (max_queue_size 3" in said[0], said
            release.set()
            # The drops since the last line are said as it closes: no later drop may come.
            await realtime.close()
        said = [r.getMessage() for r in caplog.records]
        assert said[1:] == ["45 more realtime events dropped before closing"], said

    async def test_a_slow_subscriber_does_not_hold_back_the_others(self) -> None:
        realtime = InMemoryRealtime()
        release = anyio.Event()

        async def stuck(event: EphemeralEvent) -> None:
            await release.wait()

        fast = Collector(expected=2)
        await realtime.subscribe("room:r1", stuck)
        await realtime.subscribe("room:r1", fast)
        await realtime.publish("room:r1", typing())
        await realtime.publish("room:r1", typing())
        assert len(await fast.wait()) == 2
        release.set()
        await realtime.close()

    async def test_callback_errors_are_logged_and_delivery_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        realtime = InMemoryRealtime()
        good = Collector()
        calls: list[EphemeralEvent] = []

        async def flaky(event: EphemeralEvent) -> None:
            calls.append(event)
            if len(calls) == 1:
                raise RuntimeError("boom")
            await good(event)

        await realtime.subscribe("room:r1", flaky)
        with caplog.at_level(logging.ERROR, logger="roomkit.realtime"):
            await realtime.publish("room:r1", typing(n=1))
            await realtime.publish("room:r1", typing(n=2))
            events = await good.wait()
        assert [e.data["n"] for e in events] == [2]
        assert len(calls) == 2
        assert realtime.subscription_count == 1
        records = [r for r in caplog.records if r.name == "roomkit.realtime"]
        assert len(records) == 1
        assert records[0].exc_info is not None
        assert "boom" in str(records[0].exc_info[1])
        await realtime.close()

    async def test_a_callback_s_own_cancellation_fails_that_event_alone(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # It forwards to a socket torn down under it: its CancelledError ended the backend's
        # task group, and every subscription with it, without a word.
        realtime = InMemoryRealtime()
        good = Collector(expected=2)
        calls: list[EphemeralEvent] = []

        async def forwarding(event: EphemeralEvent) -> None:
            calls.append(event)
            if len(calls) == 1:
                raise asyncio.CancelledError

        await realtime.subscribe("room:r1", forwarding)
        await realtime.subscribe("room:r1", good)
        with caplog.at_level(logging.ERROR, logger="roomkit.realtime"):
            await realtime.publish("room:r1", typing(n=1))
            await realtime.publish("room:r1", typing(n=2))
            events = await good.wait()
        assert [e.data["n"] for e in events] == [1, 2]
        with anyio.fail_after(5):
            while len(calls) < 2:
                await anyio.sleep(0.01)
        assert realtime.subscription_count == 2
        (record,) = [r for r in caplog.records if r.name == "roomkit.realtime"]
        assert "raised CancelledError uncancelled" in record.getMessage()
        await realtime.close()

    async def test_unsubscribe_from_inside_the_callback(self) -> None:
        realtime = InMemoryRealtime()
        seen: list[EphemeralEvent] = []
        sub_ids: list[str] = []

        async def once(event: EphemeralEvent) -> None:
            seen.append(event)
            await realtime.unsubscribe(sub_ids[0])

        sub_ids.append(await realtime.subscribe("room:r1", once))
        await realtime.publish("room:r1", typing())
        await realtime.publish("room:r1", typing())
        await anyio.wait_all_tasks_blocked()
        assert len(seen) == 1
        assert realtime.subscription_count == 0
        await realtime.close()


class TestLifecycle:
    async def test_close_stops_everything_and_ignores_later_publishes(self) -> None:
        realtime = InMemoryRealtime()
        blocked = anyio.Event()
        calls: list[EphemeralEvent] = []

        async def hang(event: EphemeralEvent) -> None:
            calls.append(event)
            blocked.set()
            await anyio.sleep_forever()

        await realtime.subscribe("room:r1", hang)
        await realtime.subscribe("room:r2", hang)
        await realtime.publish("room:r1", typing())
        with anyio.fail_after(5):
            await blocked.wait()
            # close cancels the callback stuck in sleep_forever and joins every task
            await realtime.close()
        assert realtime.closed
        assert realtime.subscription_count == 0
        await realtime.publish("room:r1", typing())
        await realtime.publish("room:r2", typing())
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 1
        with pytest.raises(RuntimeError, match="closed"):
            await realtime.subscribe("room:r1", hang)
        await realtime.close()  # idempotent

    async def test_close_before_any_subscription(self) -> None:
        realtime = InMemoryRealtime()
        await realtime.close()
        await realtime.publish("room:r1", typing())
        assert realtime.subscription_count == 0

    async def test_concurrent_first_subscribers_share_one_start(self) -> None:
        realtime = InMemoryRealtime()
        collectors = [Collector() for _ in range(5)]
        async with anyio.create_task_group() as tg:
            for collector in collectors:
                tg.start_soon(realtime.subscribe, "room:r1", collector)
        assert realtime.subscription_count == 5
        await realtime.publish("room:r1", typing())
        for collector in collectors:
            assert len(await collector.wait()) == 1
        await realtime.close()

    async def test_structured_run_in_the_owners_task_group(self) -> None:
        realtime = InMemoryRealtime()
        collector = Collector()
        async with anyio.create_task_group() as tg:
            await tg.start(realtime.run)
            with pytest.raises(RuntimeError, match="already running"):
                await realtime.run()
            await realtime.subscribe("room:r1", collector)
            await realtime.publish("room:r1", typing())
            await collector.wait()
            await realtime.close()  # run() returns, so the task group can exit
        assert realtime.subscription_count == 0

    async def test_async_context_manager(self) -> None:
        collector = Collector()
        async with InMemoryRealtime() as realtime:
            await realtime.subscribe("room:r1", collector)
            await realtime.publish("room:r1", typing())
            await collector.wait()
        assert realtime.closed
        assert realtime.subscription_count == 0

    async def test_owner_cancelled_without_close_allows_a_restart(self) -> None:
        realtime = InMemoryRealtime()
        async with anyio.create_task_group() as tg:
            await tg.start(realtime.run)
            await realtime.subscribe("room:r1", Collector())
            tg.cancel_scope.cancel()
        assert realtime.subscription_count == 0
        assert not realtime.closed
        collector = Collector()
        await realtime.subscribe("room:r1", collector)  # lazy start again
        await realtime.publish("room:r1", typing())
        await collector.wait()
        await realtime.close()

    def test_queue_size_must_be_positive(self) -> None:
        with pytest.raises(ValueError):
            InMemoryRealtime(max_queue_size=0)


class TestBackendBase:
    async def test_room_helpers_and_default_close(self) -> None:
        class Recording(RealtimeBackend):
            def __init__(self) -> None:
                self.published: list[tuple[str, EphemeralEvent]] = []
                self.subscribed: list[str] = []

            async def publish(self, channel: str, event: EphemeralEvent) -> None:
                self.published.append((channel, event))

            async def subscribe(self, channel: str, callback: object) -> str:  # type: ignore[override]
                self.subscribed.append(channel)
                return "sub-1"

            async def unsubscribe(self, subscription_id: str) -> bool:
                return True

        event = typing()
        async with Recording() as backend:
            await backend.publish_to_room("r9", event)
            assert await backend.subscribe_to_room("r9", Collector()) == "sub-1"
        assert backend.published == [("room:r9", event)]
        assert backend.subscribed == ["room:r9"]


def test_a_backend_served_by_a_loop_in_another_thread_is_used_from_there() -> None:
    # A publish from another event loop took the serving one for ended and forgot every
    # subscription; kept, its event did not wake the serving loop (it reached nobody until
    # something else did); a close from there waited for ever for that loop's events.
    realtime = InMemoryRealtime()
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    heard = Collector(expected=2)

    def in_serving_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(5)

    async def all_heard() -> list[EphemeralEvent]:
        return await heard.wait()

    try:
        in_serving_loop(realtime.subscribe("c", heard))
        in_serving_loop(realtime.publish("c", typing(user="u1")))
        with pytest.raises(RuntimeError, match="another thread: use it from that loop"):
            asyncio.run(realtime.publish("c", typing(user="u2")))  # another loop, this thread
        in_serving_loop(realtime.publish("c", typing(user="u3")))
        assert [e.user_id for e in in_serving_loop(all_heard())] == ["u1", "u3"]
        assert realtime.subscription_count == 1

        async def close_here() -> None:
            with anyio.fail_after(5):
                await realtime.close()

        asyncio.run(close_here())  # returns at once; the serving loop stops its deliveries
        assert realtime.closed and realtime.subscription_count == 0

        async def stopped() -> None:
            with anyio.fail_after(5):
                while realtime._task_group is not None:
                    await anyio.sleep(0.01)

        in_serving_loop(stopped())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        serving.join(5)
        loop.close()


def test_a_backend_served_by_trio_in_another_thread_is_used_from_there() -> None:
    # Served by trio, a publish from another thread's trio run was taken (and reached no
    # one), and a close from there failed deep inside trio (an AssertionError).
    realtime = InMemoryRealtime()
    subscribed, stop = threading.Event(), threading.Event()
    heard: list[str] = []

    async def serve() -> None:
        await realtime.subscribe("c", lambda event: heard.append(event.user_id))
        subscribed.set()
        while not stop.is_set():
            await anyio.sleep(0.01)
        await realtime.publish("c", typing(user="u2"))
        while not heard:
            await anyio.sleep(0.01)
        await realtime.close()

    serving = threading.Thread(target=anyio.run, args=(serve,), kwargs={"backend": "trio"})
    serving.start()
    try:
        assert subscribed.wait(5)
        for backend in ("trio", "asyncio"):
            with pytest.raises(RuntimeError, match="another thread: use it from that loop"):
                anyio.run(realtime.publish, "c", typing(user="u1"), backend=backend)
            with pytest.raises(RuntimeError, match="a trio run of another thread"):
                anyio.run(realtime.close, backend=backend)
    finally:
        stop.set()
        serving.join(5)
    assert heard == ["u2"] and realtime.closed
