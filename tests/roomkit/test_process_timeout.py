"""process_timeout bounds a room's work on one message, from when the room takes it up (0.3.0
counted from when its lock was taken); a message reported as timed out is not recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from roomkit import (
    HookResult,
    HookTrigger,
    InboundResult,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from tests.roomkit.kit_helpers import SimpleChannel, text


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


async def test_time_waiting_for_the_room_does_not_count(make_kit: Callable[..., RoomKit]) -> None:
    # Each message takes 0.3 s of a 1 s budget; the fourth waits 0.9 s for the room first.
    async with make_kit(process_timeout=1.0) as kit:
        await room(kit, lambda body: 0.3)
        results: dict[str, InboundResult] = {}

        async def send(body: str) -> None:
            results[body] = await kit.process_inbound(text("sms", body), room_id="r1")

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(send, f"m{n}")
            tg.start_soon(kit.update_room_metadata, "r1", {"a": 1})
        assert all(not r.blocked for r in results.values()), results
        assert sorted(await recorded(kit)) == ["m0", "m1", "m2", "m3"]
        assert (await kit.get_room("r1")).metadata == {"a": 1}


async def test_a_message_over_its_budget_is_not_recorded(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(process_timeout=0.2) as kit:
        await room(kit, lambda body: 0.5 if body == "slow" else 0.0)
        events: list[Any] = []

        @kit.on("process_timeout")
        async def timed_out(event: Any) -> None:
            events.append(event)

        slow = await kit.process_inbound(text("sms", "slow"), room_id="r1")
        assert slow.blocked and slow.reason == "process_timeout" and slow.event is None
        fast = await kit.process_inbound(text("sms", "fast"), room_id="r1")
        assert not fast.blocked
        await anyio.sleep(0.3)  # nothing of "slow" shows up later either
        assert await recorded(kit) == ["fast"]
        assert len(events) == 1


async def test_what_is_reported_timed_out_is_exactly_what_is_not_recorded(
    make_kit: Callable[..., RoomKit],
) -> None:
    # 12 messages of 0.1 s each within a 0.2 s budget: the room's backlog outgrows the 0.8 s a
    # message may wait for it, so the last ones are dropped unprocessed.
    async with make_kit(process_timeout=0.2) as kit:
        await room(kit, lambda body: 0.1)
        results: dict[str, InboundResult] = {}

        async def send(body: str) -> None:
            results[body] = await kit.process_inbound(text("sms", body), room_id="r1")

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(send, f"m{n:02}")
        await anyio.sleep(1.5)  # a dropped message would have been handled by now
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
