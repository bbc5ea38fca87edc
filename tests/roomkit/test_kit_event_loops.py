"""A kit outlives the event loop it first ran in, as a 0.3.0 kit did (it held nothing bound to
a loop): e.g. a module-level kit used by tests that each get a new loop."""

from __future__ import annotations

import asyncio
import contextvars

import anyio
import pytest

from eventlog import EventLogError, LogUnavailable, MemoryEventLog, Record
from roomkit import (
    HookResult,
    HookTrigger,
    KitClosedError,
    LogUnavailableError,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
)
from tests.roomkit.kit_helpers import SimpleChannel, text


def new_kit() -> tuple[RoomKit, SimpleChannel]:
    kit = RoomKit()
    kit.register_channel(SimpleChannel("sms"))
    ws = SimpleChannel("ws")
    kit.register_channel(ws)
    return kit, ws


async def first_use(kit: RoomKit) -> None:
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")
    await kit.process_inbound(text("sms", "one", idempotency_key="k1"), room_id="r1")


async def second_use(kit: RoomKit) -> list[str]:
    again = await kit.process_inbound(text("sms", "one", idempotency_key="k1"), room_id="r1")
    assert again.blocked and again.reason == "duplicate"
    await kit.process_inbound(text("sms", "two"), room_id="r1")
    room = await kit.get_room("r1")
    timeline = await kit.get_timeline("r1")
    assert room.event_count == len(timeline) == 4  # 2 attachments + 2 messages, none twice
    return [e.content.body for e in timeline if e.type == "message"]  # type: ignore[union-attr]


def test_a_kit_goes_on_in_the_next_asyncio_loop() -> None:
    kit, ws = new_kit()
    asyncio.run(first_use(kit))
    assert asyncio.run(second_use(kit)) == ["one", "two"]
    assert ws.texts() == ["one", "two"]
    asyncio.run(kit.close())


def test_a_kit_first_used_on_trio_goes_on_under_asyncio() -> None:
    pytest.importorskip("trio")
    kit, ws = new_kit()
    anyio.run(first_use, kit, backend="trio")
    assert anyio.run(second_use, kit, backend="asyncio") == ["one", "two"]
    assert ws.texts() == ["one", "two"]
    anyio.run(kit.close)


def test_a_closed_kit_stays_closed_in_the_next_loop() -> None:
    kit, _ = new_kit()
    asyncio.run(first_use(kit))
    asyncio.run(kit.close())
    with pytest.raises(KitClosedError):
        asyncio.run(kit.create_room(room_id="r2"))


def test_a_kit_goes_on_after_a_loop_closed_without_cancelling_its_tasks() -> None:
    kit, ws = new_kit()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(first_use(kit))
    loop.close()  # the kit's runtime task never learned it ended
    assert asyncio.run(second_use(kit)) == ["one", "two"]
    asyncio.run(kit.close())


def test_realtime_goes_on_after_a_loop_closed_without_cancelling_its_tasks() -> None:
    # The backend's events and task group were the closed loop's: a publish raised "Event
    # loop is closed", a subscription got nothing and close() waited for ever.
    kit = RoomKit()
    heard: list[str] = []

    async def use(user: str) -> None:
        with anyio.fail_after(10):
            await kit.subscribe_room("r1", lambda event: heard.append(event.user_id))
            await kit.publish_typing("r1", user)
            while user not in heard:
                await anyio.sleep(0.01)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(use("u1"))
    loop.close()
    asyncio.run(use("u2"))
    asyncio.run(kit.close())
    assert heard == ["u1", "u2"]


def test_a_burst_of_typing_goes_on_under_asyncio_after_one_on_trio() -> None:
    # A burst fills a subscriber's queue, so publishes take turns on a lock: the one made on
    # trio was kept, and asyncio's first burst raised trio's "must be called from async
    # context".
    pytest.importorskip("trio")
    kit = RoomKit()

    async def burst() -> int:
        heard: list[int] = []
        with anyio.fail_after(10):
            subscription = await kit.subscribe_room("r1", lambda e: heard.append(e.data["n"]))
            for n in range(300):  # more than a subscription's queue holds (100)
                await kit.publish_typing("r1", "u1", data={"n": n})
            while not heard or heard[-1] != 299:
                await anyio.sleep(0.01)
            await kit.unsubscribe_room(subscription)
        return heard[-1]

    assert anyio.run(burst, backend="trio") == 299
    assert anyio.run(burst, backend="asyncio") == 299
    anyio.run(kit.close)


class _DownAtFirst(MemoryEventLog):
    """A log that cannot be read until ``down`` is cleared (a passing outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        if self.down:
            raise LogUnavailable("the log is down")
        return await super().read_all(after_position=after_position, limit=limit)


@pytest.mark.parametrize("entered", [False, True])
async def test_a_kit_whose_start_failed_on_the_log_starts_once_the_log_is_back(
    entered: bool,
) -> None:
    log = _DownAtFirst()
    kit = RoomKit(log=log)
    for _ in range(2):
        with pytest.raises(LogUnavailableError, match="could not start: .*the log is down"):
            if entered:
                await kit.__aenter__()
            else:
                await kit.create_room(room_id="r1")
    log.down = False
    if entered:
        await kit.__aenter__()
    await kit.create_room(room_id="r1")
    assert (await kit.get_room("r1")).id == "r1"
    await kit.close()


async def test_a_start_failing_on_the_log_otherwise_than_an_outage_is_not_an_outage() -> None:
    # A log nobody connected: a setting to fix, which callers that wait outages out (the
    # ingress) must not retry for ever as a LogUnavailableError.
    class NotConnected(MemoryEventLog):
        async def read_all(
            self, *, after_position: int = 0, limit: int | None = None
        ) -> list[Record]:
            raise EventLogError("not connected")

    kit = RoomKit(log=NotConnected())
    with pytest.raises(RoomKitError, match="could not start: .*not connected") as caught:
        await kit.create_room(room_id="r1")
    assert not isinstance(caught.value, LogUnavailableError)


@pytest.mark.parametrize("then", ["asyncio", "trio"])
def test_outcomes_left_waiting_by_an_ended_loop_are_appended_in_the_next(then: str) -> None:
    # The next loop's runtime took them over due at once, and told their room before it could
    # be told: its flusher stopped for good, and they (and all later outcomes) waited for the
    # room's next append or the kit's close.
    kit = RoomKit(outcome_delay=0.2)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))

    async def outcomes() -> int:
        return sum(r.type == "delivery.recorded" for r in await kit.log.read_all())

    async def first() -> None:
        await first_use(kit)
        assert await outcomes() == 0  # the loop ends while its outcome waits

    async def second() -> None:
        with anyio.fail_after(10):
            await kit.get_room("r1")  # the kit goes on in this loop
            while await outcomes() < 1:
                await anyio.sleep(0.02)
            await kit.process_inbound(text("sms", "two"), room_id="r1")
            while await outcomes() < 2:  # and the next ones, within outcome_delay again
                await anyio.sleep(0.02)
        await kit.close()

    asyncio.run(first())
    anyio.run(second, backend=then)


_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_kit_started_by_its_first_call_does_not_run_its_rooms_in_that_call_s_context(
    backend: str,
) -> None:
    """A kit used without ``async with`` starts on its first call: its rooms' actors ran in a
    copy of that caller's context, which every later message saw. Each message's hooks see
    their own caller's (as 0.3.0 ran them in the caller's task), and only theirs."""
    if backend == "trio":
        pytest.importorskip("trio")
    kit, _ = new_kit()
    seen: list[tuple[str, str | None]] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def note(event: RoomEvent, context: RoomContext) -> HookResult:
        seen.append((event.room_id, _request_id.get()))
        return HookResult.allow()

    async def request(request_id: str, room_id: str) -> None:
        _request_id.set(request_id)
        await kit.create_room(room_id=room_id)
        await kit.attach_channel(room_id, "sms")
        await kit.process_inbound(text("sms", "hi"), room_id=room_id)

    async def main() -> None:
        with anyio.fail_after(20):
            for n in range(3):
                async with anyio.create_task_group() as tg:  # each request in a task of its own
                    tg.start_soon(request, f"req-{n}", f"room-{n}")
            await kit.close()

    anyio.run(main, backend=backend)
    assert seen == [("room-0", "req-0"), ("room-1", "req-1"), ("room-2", "req-2")]
