"""process_timeout bounds a room's work on one message, from when the room takes it up (0.3.0
counted from when its lock was taken); a message reported as timed out is not recorded."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from eventlog import MemoryEventLog
from roomkit import (
    ChannelBinding,
    ChannelCategory,
    ChannelOutput,
    ChannelType,
    EventSource,
    HookExecution,
    HookResult,
    HookTrigger,
    InboundResult,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from tests.roomkit.kit_helpers import SimpleChannel, eventually, room_with, text


async def room(kit: RoomKit, delay: Callable[[str], float]) -> None:
    kit.register_channel(SimpleChannel("sms"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, name="slow")
    async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
        body = event.content.body if isinstance(event.content, TextContent) else ""
        await anyio.sleep(delay(body))
        return HookResult.allow()


async def recorded(kit: RoomKit) -> list[str]:
    return [
        e.content.body
        for e in await kit.get_timeline("r1", limit=1000)
        if e.type == "message" and isinstance(e.content, TextContent)
    ]


async def send_all(
    kit: RoomKit, bodies: list[str], also: Callable[[], Awaitable[object]] | None = None
) -> dict[str, InboundResult]:
    """Send ``bodies`` to room r1 at once (and run ``also`` alongside); their results."""
    results: dict[str, InboundResult] = {}

    async def send(body: str) -> None:
        results[body] = await kit.process_inbound(text("sms", body), room_id="r1")

    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(send, body)
        if also is not None:
            tg.start_soon(also)
    return results


async def test_time_waiting_for_the_room_does_not_count(make_kit: Callable[..., RoomKit]) -> None:
    # Each message takes 0.3 s of a 1 s budget; the fourth waits 0.9 s for the room first.
    async with make_kit(process_timeout=1.0) as kit:
        await room(kit, lambda body: 0.3)

        async def metadata() -> None:
            await kit.update_room_metadata("r1", {"a": 1})

        results = await send_all(kit, [f"m{n}" for n in range(4)], metadata)
        assert all(not r.blocked for r in results.values()), results
        assert sorted(await recorded(kit)) == ["m0", "m1", "m2", "m3"]
        assert (await kit.get_room("r1")).metadata == {"a": 1}


class SlowToDeliver(SimpleChannel):
    """Takes ``seconds`` for each delivery."""

    def __init__(self, channel_id: str, seconds: float) -> None:
        super().__init__(channel_id)
        self.seconds = seconds

    async def deliver(self, event: RoomEvent, *args: Any) -> ChannelOutput:
        await anyio.sleep(self.seconds)
        return await super().deliver(event, *args)


async def slow_room(kit: RoomKit, seconds: float) -> SlowToDeliver:
    """Room r1 with "sms" and a channel taking ``seconds`` for each delivery."""
    kit.register_channel(SimpleChannel("sms"))
    slow = SlowToDeliver("email", seconds)
    kit.register_channel(slow)
    await room_with(kit, "r1", "sms", "email")
    return slow


async def test_time_waiting_for_the_rooms_earlier_deliveries_does_not_count(
    make_kit: Callable[..., RoomKit],
) -> None:
    # The room delivers one message after the other: each takes 0.3 s of a 0.5 s budget, and
    # the fourth waits 0.9 s for the three before it (0.3.0: for the room's lock). Counted,
    # all but the first timed out, recorded and delivered all the same.
    async with make_kit(process_timeout=0.5) as kit:
        slow = await slow_room(kit, 0.3)
        results = await send_all(kit, [f"m{n}" for n in range(4)])
        assert all(not r.blocked for r in results.values()), results
        assert sorted(slow.texts()) == ["m0", "m1", "m2", "m3"]


async def test_deliveries_waiting_past_the_rooms_bound_time_out_recorded(
    make_kit: Callable[..., RoomKit],
) -> None:
    # The wait for the earlier deliveries is bounded as the wait for the room is: four times
    # process_timeout (0.8 s here); the last of 15 messages of 0.1 s each waits 1.4 s.
    async with make_kit(process_timeout=0.2) as kit:
        slow = await slow_room(kit, 0.1)
        bodies = [f"m{n:02}" for n in range(15)]
        results = await send_all(kit, bodies)
        assert not results["m00"].blocked
        last = results["m14"]
        assert last.blocked and last.reason == "process_timeout"
        assert last.event is not None  # recorded: only its delivery waited too long

        async def all_delivered() -> bool:
            return len(slow.texts()) == 15

        await eventually(all_delivered, what="every message delivered")
        assert sorted(await recorded(kit)) == bodies


async def test_a_message_over_its_budget_is_not_recorded(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(process_timeout=0.2) as kit:
        await room(kit, lambda body: 0.5 if body == "slow" else 0.0)
        events: list[Any] = []

        @kit.on("process_timeout")
        async def timed_out(event: Any) -> None:
            events.append(event)

        made: list[str] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST, priority=-1)
        async def note(event: RoomEvent, context: RoomContext) -> HookResult:
            made.append(event.id)
            return HookResult.allow()

        slow = await kit.process_inbound(text("sms", "slow"), room_id="r1")
        assert slow.blocked and slow.reason == "process_timeout" and slow.event is None
        fast = await kit.process_inbound(text("sms", "fast"), room_id="r1")
        assert not fast.blocked
        # The room had finished with "slow" (it answered): nothing of it can show up later.
        assert await recorded(kit) == ["fast"]
        # Named as in 0.3.0: the event its channel made, dropped (it was None).
        assert [e.event_id for e in events] == [made[0]]


async def test_a_message_recorded_whose_async_hooks_overran_names_its_event(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Timed out after the commit, as in 0.3.0, but with the event it recorded (0.3.0 gave
    # None): a caller can tell it from a message lost, and does not send it again.
    async with make_kit(process_timeout=0.2) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def slow(event: RoomEvent, context: RoomContext) -> None:
            await anyio.sleep(0.5)

        result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
        assert result.blocked and result.reason == "process_timeout"
        assert result.event is not None
        assert [e.id for e in await kit.get_timeline("r1") if e.type == "message"] == [
            result.event.id
        ]


async def test_what_is_reported_timed_out_is_exactly_what_is_not_recorded(
    make_kit: Callable[..., RoomKit],
) -> None:
    # 12 messages of 0.1 s each within a 0.2 s budget: the room's backlog outgrows the 0.8 s a
    # message may wait for it, so the last ones are dropped unprocessed.
    async with make_kit(process_timeout=0.2) as kit:
        await room(kit, lambda body: 0.1)
        results = await send_all(kit, [f"m{n:02}" for n in range(12)])
        # A message the room takes up is waited for; one it had not taken is dropped. Once
        # every caller has its answer, the room has nothing of theirs left: no sleep needed.
        ok = sorted(body for body, r in results.items() if not r.blocked)
        timed_out = sorted(body for body, r in results.items() if r.reason == "process_timeout")
        assert ok and timed_out, results
        assert sorted(ok + timed_out) == sorted(results)
        assert sorted(await recorded(kit)) == ok


async def test_no_process_timeout(make_kit: Callable[..., RoomKit]) -> None:
    # 0.3.0 passed it to asyncio.wait_for, where None means no bound.
    async with make_kit(process_timeout=None) as kit:
        await room(kit, lambda body: 0.01)
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert not result.blocked
        assert await recorded(kit) == ["hi"]


class SlowLog(MemoryEventLog):
    """A memory log whose appends take ``delay`` seconds (a network hiccup)."""

    delay = 0.0

    async def append(  # type: ignore[override]
        self, stream: str, events: Any, *, expected_version: int | None
    ) -> Any:
        if self.delay:
            await anyio.sleep(self.delay)
        return await super().append(stream, events, expected_version=expected_version)


async def test_a_message_the_room_took_up_is_never_reported_timed_out_and_recorded() -> None:
    # Each append outlasts the 0.2 s budget's ask bound share: the callers wait for the room
    # once it took their message up, so what they are told matches what is recorded.
    log = SlowLog()
    async with RoomKit(log=log, process_timeout=0.2) as kit:
        await room(kit, lambda body: 0.0)
        log.delay = 0.35
        results = await send_all(kit, [f"m{n}" for n in range(3)])
        log.delay = 0.0
        ok = sorted(body for body, r in results.items() if not r.blocked)
        assert sorted(await recorded(kit)) == ok


class SlowAI(SimpleChannel):
    """Answers "first" after thinking a while; ignores everything else."""

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if not (isinstance(event.content, TextContent) and event.content.body == "first"):
            return ChannelOutput.empty()
        await anyio.sleep(0.2)  # meanwhile a slow message occupies the room
        reply = RoomEvent(
            room_id=event.room_id,
            chain_depth=event.chain_depth + 1,
            source=EventSource(channel_id=self.channel_id, channel_type=ChannelType.AI),
            content=TextContent(body="reply to first"),
        )
        return ChannelOutput(responded=True, response_events=[reply])


async def test_a_reply_is_recorded_behind_a_backlog_longer_than_a_caller_may_wait(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(process_timeout=0.3) as kit:  # a caller waits 1.2 s for the room
        await room(kit, lambda body: 1.5 if body == "slow" else 0.0)
        kit.register_channel(SlowAI("ai", ChannelType.AI))
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)

        async def send(body: str) -> None:
            await kit.process_inbound(text("sms", body), room_id="r1")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "first")
            await anyio.sleep(0.05)  # "slow" reaches the room while the AI thinks
            tg.start_soon(send, "slow")

        async def replied() -> bool:
            return "reply to first" in await recorded(kit)

        await eventually(replied, what="the AI reply recorded")


async def test_process_timeout_must_be_positive() -> None:
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="process_timeout"):
            RoomKit(process_timeout=bad)
    async with RoomKit(process_timeout=math.inf) as kit:  # no bound, as None
        await room(kit, lambda body: 0.0)
        assert not (await kit.process_inbound(text("sms", "hi"), room_id="r1")).blocked


async def test_a_command_whose_caller_gave_up_before_the_room_took_it_is_not_applied(
    make_kit: Callable[..., RoomKit],
) -> None:
    # The caller was cancelled (its own timeout) while its command waited behind a busy room:
    # it was told nothing happened and sends again, which must record the message once.
    async with make_kit() as kit:
        await room(kit, lambda body: 0.5 if body == "slow" else 0.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all, kit, ["slow"])
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.1) as gave_up:
                await kit.send_event("r1", "sms", TextContent(body="sent"))
            with anyio.move_on_after(0.1):
                await kit.process_inbound(text("sms", "inbound"), room_id="r1")
        assert gave_up.cancelled_caught
        await kit.send_event("r1", "sms", TextContent(body="sent"))
        await kit.process_inbound(text("sms", "inbound"), room_id="r1")
        assert await recorded(kit) == ["slow", "sent", "inbound"]


async def test_a_hook_with_a_longer_timeout_of_its_own_is_cut_off_at_the_budget(
    make_kit: Callable[..., RoomKit],
) -> None:
    # 0.3.0's wait_for cut the whole locked section at process_timeout; a hook with a longer
    # timeout of its own (here none) held the caller for all of it.
    cut: list[str] = []
    async with make_kit(process_timeout=0.3) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=None)
        async def slow(event: RoomEvent, context: RoomContext) -> None:
            if event.content.body == "slow":  # type: ignore[union-attr]
                try:
                    await anyio.sleep(10)
                except anyio.get_cancelled_exc_class():
                    cut.append(event.content.body)  # type: ignore[union-attr]
                    raise

        with anyio.fail_after(5):  # against a hang: the hook alone would never end
            result = await kit.process_inbound(text("sms", "slow"), room_id="r1")
        assert result.blocked and result.reason == "process_timeout"
        assert cut == ["slow"]
        assert not (await kit.process_inbound(text("sms", "next"), room_id="r1")).blocked
        assert await recorded(kit) == ["next"]
