"""``close()`` from wherever a user calls it: inside the kit's ``async with`` under a deadline
of its own, from another task, or in a task group of the body, on asyncio and trio.

The kit's runtime used to enter its task groups in the task and cancel scope of ``async with``
and leave them in ``close()``'s: a bounded close, the close() docstring's own advice, crashed
with "Attempted to exit a cancel scope that isn't the current task's current cancel scope" on
asyncio and "Cancel scope stack corrupted" on trio, and a close from another task with
"exit cancel scope in a different task" / "Nursery misnesting detected".
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import anyio
import msgspec
import pytest

from eventlog import MemoryEventLog
from roomkit import (
    ChannelBinding,
    ChannelOutput,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    IdentificationStatus,
    Identity,
    IdentityResult,
    InboundMessage,
    InboundResult,
    InMemoryStore,
    KitClosedError,
    RateLimit,
    RetryPolicy,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
    RoomStatus,
    RoomTimers,
    TextContent,
    WebSocketChannel,
)
from roomkit.core._runtime import RuntimeSettings
from roomkit.identity.base import IdentityResolver
from tests.roomkit.kit_helpers import SimpleChannel, room_with, text


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Stuck(SimpleChannel):
    """A channel whose delivery never returns; notes when it starts and when it is
    cancelled."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.started = anyio.Event()
        self.cancelled = False

    async def deliver(self, *args: Any) -> ChannelOutput:
        self.started.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")  # pragma: no cover


@pytest.fixture
def short_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Actors still busy when the kit's actor system stops are cancelled after 0.2 s (10 s
    by default), so that a test of a close that gave up its drain is quick."""
    made = RuntimeSettings.actor_system

    def actor_system(self: RuntimeSettings) -> dict[str, Any]:
        return {**made(self), "shutdown_timeout": 0.2}

    monkeypatch.setattr(RuntimeSettings, "actor_system", actor_system)


async def stuck_delivery(kit: RoomKit) -> Stuck:
    """Room r1 with a message committed whose delivery to ``stuck`` never returns."""
    stuck = Stuck("stuck")
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(stuck)
    await room_with(kit, "r1", "sms", "stuck")
    result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
    assert not result.blocked
    await stuck.started.wait()
    return stuck


async def test_a_bounded_close_inside_async_with_returns_at_its_bound(
    short_shutdown: None,
) -> None:
    # A delivery that never returns holds the drain (no process_timeout bounds it): the
    # close gives up at its bound, the kit is closed all the same, and the drain is given up
    # (without that, leaving the `async with` waited for the stuck delivery for a day).
    with anyio.fail_after(30):  # a hang guard only
        async with RoomKit(process_timeout=None, wait_for_delivery=False) as kit:
            stuck = await stuck_delivery(kit)
            with anyio.move_on_after(0.2) as bound:
                await kit.close()
            assert bound.cancelled_caught
            with pytest.raises(KitClosedError):
                await kit.create_room(room_id="r2")
    assert stuck.cancelled
    assert (await kit.get_room("r1")) is not None  # reads answer from the read model


async def test_a_closed_kit_s_timer_sweep_raises_whether_a_room_is_due_or_not() -> None:
    # It answered [] until some room came due: a periodic sweep on a closed kit went unseen.
    async with RoomKit() as kit:
        await kit.create_room(room_id="r1")
    with pytest.raises(KitClosedError):
        await kit.check_all_timers()
    assert (await kit.get_room("r1")).id == "r1"  # reads still work


async def test_a_hook_still_running_as_the_kit_closes_may_sweep_the_timers() -> None:
    # The kit's own work goes on while it closes; the sweep refused it (720d718).
    kit = RoomKit()
    swept: list[list[str]] = []
    entered = anyio.Event()
    async with kit:
        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="due", timers=RoomTimers(inactive_after_seconds=0))
        await room_with(kit, "r1", "sms")
        await kit.attach_channel("due", "sms")
        await kit.process_inbound(text("sms", "activity"), room_id="due")
        await anyio.sleep(1.1)  # the room's activity is past its bound

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def sweep(event: RoomEvent, context: RoomContext) -> None:
            if context.room.id == "r1":
                entered.set()
                await anyio.sleep(0.3)  # the kit is closing by now
                swept.append([room.id for room in await kit.check_all_timers()])

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(kit.process_inbound, text("sms", "hi"), room_id="r1"))
            await entered.wait()
            await kit.close()
    assert swept == [["due"]]
    assert (await kit.get_room("due")).status == RoomStatus.PAUSED


async def test_a_close_within_its_bound_inside_async_with() -> None:
    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        with anyio.fail_after(10):
            await kit.close()
        with pytest.raises(KitClosedError):
            await kit.process_inbound(text("sms", "late"), room_id="r1")
    assert [e.content.body for e in await kit.get_timeline("r1")][-1:] != ["late"]  # type: ignore[union-attr]


async def test_a_close_from_another_task_inside_async_with() -> None:
    # A shutdown handler's task, say.
    async with RoomKit() as kit:
        sms = SimpleChannel("sms")
        kit.register_channel(sms)
        ws = SimpleChannel("ws")
        kit.register_channel(ws)
        await room_with(kit, "r1", "sms", "ws")
        await kit.process_inbound(text("sms", "hello"), room_id="r1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(kit.close)
        with pytest.raises(KitClosedError):
            await kit.create_room(room_id="r2")
    assert ws.texts() == ["hello"]


async def test_a_kit_closed_by_another_task_while_its_body_waits() -> None:
    closed = anyio.Event()

    async def shut_down(kit: RoomKit) -> None:
        await kit.close()
        closed.set()

    async with anyio.create_task_group() as tg, RoomKit() as kit:
        await kit.create_room(room_id="r1")
        tg.start_soon(shut_down, kit)
        with anyio.fail_after(10):
            await closed.wait()
    with pytest.raises(KitClosedError):
        await kit.create_room(room_id="r2")


async def test_a_bounded_close_of_a_kit_never_entered_gives_up_the_drain(
    short_shutdown: None,
) -> None:
    # 0.3.0 style: the kit started itself on first use, its runtime in a host task.
    kit = RoomKit(process_timeout=None, wait_for_delivery=False)
    stuck = await stuck_delivery(kit)
    with anyio.move_on_after(0.2) as bound:
        await kit.close()
    assert bound.cancelled_caught
    with anyio.fail_after(30):  # a hang guard only: the host stops its actors
        while not stuck.cancelled:
            await anyio.sleep(0.05)
        await kit.close()  # returns once the host has stopped


async def test_two_tasks_in_async_with_of_one_kit_leave_in_any_order() -> None:
    # Each leaves the task group it entered: the first to leave took the other's.
    kit = RoomKit()
    first_in, second_in, first_out = anyio.Event(), anyio.Event(), anyio.Event()
    left: list[str] = []

    async def first() -> None:
        async with kit:
            first_in.set()
            await second_in.wait()
        left.append("first")
        first_out.set()

    async def second() -> None:
        await first_in.wait()
        async with kit:
            second_in.set()
            await first_out.wait()
        left.append("second")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
    assert left == ["first", "second"]
    with pytest.raises(KitClosedError):
        await kit.create_room(room_id="r1")


async def test_a_keyboard_interrupt_while_starting_comes_out_as_it_is() -> None:
    # Not wrapped in an exception group by the kit's task group: `except KeyboardInterrupt`
    # still catches it.
    class Interrupting(MemoryEventLog):
        async def read_all(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with RoomKit(log=Interrupting()):
            pass  # pragma: no cover


async def test_what_a_room_still_holds_when_a_close_gives_up_is_refused() -> None:
    # close() gave up waiting (its caller's deadline): the room's actor went on through its
    # mailbox, recording messages the delivery worker no longer took. Never delivered, and a
    # retry of each was answered as a duplicate.
    log = MemoryEventLog()
    outcomes: dict[str, str] = {}
    with anyio.fail_after(30):  # a hang guard only
        async with RoomKit(log=log) as kit:
            kit.register_channel(SimpleChannel("sms"))
            await room_with(kit, "r1", "sms")
            taken_up = anyio.Event()

            @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=5.0)
            async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
                taken_up.set()
                await anyio.sleep(0.3)
                return HookResult.allow()

            async def send(body: str) -> None:
                try:
                    await kit.process_inbound(
                        text("sms", body, idempotency_key=body), room_id="r1"
                    )
                    outcomes[body] = "delivered"
                except KitClosedError:
                    outcomes[body] = "refused"
                except RoomKitError:  # "recorded the command but could not deliver it"
                    outcomes[body] = "recorded"

            async with anyio.create_task_group() as tg:
                for body in ("m0", "m1", "m2", "m3"):
                    tg.start_soon(send, body)
                    await anyio.sleep(0.01)
                await taken_up.wait()  # m0 in its hook, the others in the room's mailbox
                with anyio.move_on_after(0.01):
                    await kit.close()
    assert outcomes["m0"] in ("recorded", "refused")  # taken up before: it may go through
    assert [outcomes[body] for body in ("m1", "m2", "m3")] == ["refused"] * 3
    async with RoomKit(log=log) as again:
        again.register_channel(SimpleChannel("sms"))
        timeline = await again.get_timeline("r1")
        recorded = [e.content.body for e in timeline if e.type == "message"]  # type: ignore[union-attr]
        assert recorded in ([], ["m0"])
        # Nothing of a refused message was applied: sent again, it is recorded.
        result = await again.process_inbound(text("sms", "m1", idempotency_key="m1"), room_id="r1")
        assert not result.blocked


async def test_a_closed_kit_takes_no_websocket_connection() -> None:
    # It registered one and announced channel_connected: the connection then got nothing.
    connected: list[str] = []
    async with RoomKit() as kit:
        kit.register_channel(WebSocketChannel("ws"))

        @kit.on("channel_connected")
        async def note(event: FrameworkEvent) -> None:
            connected.append(str(event.data["connection_id"]))

        async def send(connection_id: str, event: RoomEvent) -> None: ...

        await kit.connect_websocket("ws", "before", send)
        await kit.close()
        with pytest.raises(KitClosedError):
            await kit.connect_websocket("ws", "after", send)
        with pytest.raises(KitClosedError):
            await kit.subscribe_room("r1", send)  # type: ignore[arg-type]
        # Published to the closed backend, they are ignored, as in 0.3.0: a handler still
        # typing as the app stops does not fail (nor does a subscriber get them).
        publishes = [
            functools.partial(kit.publish_typing, "r1", "u1"),
            functools.partial(kit.publish_presence, "r1", "u1", "online"),
            functools.partial(kit.publish_read_receipt, "r1", "u1", "e1"),
            functools.partial(kit.publish_reaction, "r1", "u1", "e1", "+1"),
        ]
        for publish in publishes:
            await publish()
    assert connected == ["before"]


class ClosedCounting(SimpleChannel):
    """Counts its ``close()`` calls; closes the kit it is given when it delivers "bye"."""

    def __init__(self, channel_id: str, kit: RoomKit | None = None) -> None:
        super().__init__(channel_id)
        self.kit = kit
        self.closes = 0

    async def deliver(self, event: RoomEvent, *args: Any) -> ChannelOutput:
        output = await super().deliver(event, *args)
        if self.kit is not None and event.content.body == "bye":  # type: ignore[union-attr]
            await self.kit.close()
        return output

    async def close(self) -> None:
        self.closes += 1


@pytest.mark.parametrize("where", ["after_broadcast", "before_broadcast", "deliver"])
async def test_a_close_from_the_kits_own_work_begins_closing_and_returns(where: str) -> None:
    # close() waits for the rooms' work: called from it, it waited for itself, holding the
    # message's caller too (four times process_timeout, then the 10 s of the actors' stop).
    kit = RoomKit()
    sms = SimpleChannel("sms")
    ws = ClosedCounting("ws", kit if where == "deliver" else None)
    kit.register_channel(sms)
    kit.register_channel(ws)
    returned: list[str] = []

    async def close_here(event: RoomEvent) -> None:
        if event.content.body == "bye":  # type: ignore[union-attr]
            await kit.close()
            returned.append(where)

    if where == "after_broadcast":
        kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)(
            lambda event, context: close_here(event)
        )
    elif where == "before_broadcast":
        kit.hook(HookTrigger.BEFORE_BROADCAST)(lambda event, context: close_here(event))
    with anyio.fail_after(20):  # a hang guard
        await room_with(kit, "r1", "sms", "ws")
        result = await kit.process_inbound(text("sms", "bye"), room_id="r1")
        assert not result.blocked
        assert ws.texts() == ["bye"]
        # Refused at once (it was taken, or not, as the closing task happened to run).
        with pytest.raises(KitClosedError):
            await kit.create_room(room_id="r2")
        await kit.close()  # waits for the closing that work began
    assert returned == ([] if where == "deliver" else [where])
    assert ws.closes == 1  # closed once, by the closing the work began
    with pytest.raises(KitClosedError):
        await kit.create_room(room_id="r2")
    assert [e.content.body for e in await kit.get_timeline("r1")][-1] == "bye"  # type: ignore[union-attr]


class Slow(SimpleChannel):
    """Takes 50 ms per delivery."""

    async def deliver(self, event: RoomEvent, *args: Any) -> ChannelOutput:
        await anyio.sleep(0.05)
        return await super().deliver(event, *args)


async def test_a_close_past_its_bound_drops_the_deliveries_still_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Four times process_timeout (0.4 s) for 30 deliveries of 50 ms each: the ones still
    # queued ran on for the actors' 10 s to stop, calling the channel after "cut short".
    slow = Slow("slow")
    with anyio.fail_after(30):  # a hang guard
        async with RoomKit(process_timeout=0.1, wait_for_delivery=False) as kit:
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(slow)
            await room_with(kit, "r1", "sms", "slow")
            for n in range(30):
                await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
            await kit.close()
            delivered = len(slow.texts())
            assert 0 < delivered < 30
            await anyio.sleep(0.2)  # nothing more goes out
            assert len(slow.texts()) == delivered
    bodies = [e.content.body for e in await kit.get_timeline("r1", limit=100)]  # type: ignore[union-attr]
    assert bodies[-30:] == [f"m{n}" for n in range(30)]  # recorded all the same
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == []


async def test_channels_are_closed_once_however_often_the_kit_is_closed() -> None:
    ws = ClosedCounting("ws")
    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(ws)
        await room_with(kit, "r1", "sms", "ws")
        await kit.close()
        await kit.close()
    assert ws.closes == 1  # the `async with` exit closed them a third time


class SlowToClose(ClosedCounting):
    """Takes a while to close."""

    async def close(self) -> None:
        await anyio.sleep(0.5)
        await super().close()


async def test_a_close_given_up_leaves_the_rest_of_the_closing_to_the_next_one() -> None:
    # Marked closed as the first close began, the channels were never closed by the later
    # close() that close()'s docstring promises.
    slow, other = SlowToClose("slow"), ClosedCounting("other")
    async with RoomKit() as kit:
        kit.register_channel(slow)
        kit.register_channel(other)
        with anyio.move_on_after(0.1):
            await kit.close()  # given up while "slow" closes
        assert (slow.closes, other.closes) == (0, 0)
    # The `async with` exit closed both (the one cut short again), and nothing is closed twice.
    await kit.close()
    assert (slow.closes, other.closes) == (1, 1)


async def test_two_closes_at_once_close_each_channel_once() -> None:
    slow = SlowToClose("slow")
    async with RoomKit() as kit:
        kit.register_channel(slow)
        async with anyio.create_task_group() as tg:
            tg.start_soon(kit.close)
            tg.start_soon(kit.close)
    assert slow.closes == 1


class Comparable(ClosedCounting):
    """A channel that defines equality, and so is unhashable (a dataclass's way)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Comparable) and other.channel_id == self.channel_id

    __hash__ = None  # type: ignore[assignment]


async def test_an_unhashable_channel_is_closed_like_any() -> None:
    # Looked up in a set, it failed the close: no channel nor backend was closed.
    odd, other = Comparable("odd"), ClosedCounting("other")
    async with RoomKit() as kit:
        kit.register_channel(odd)
        kit.register_channel(other)
    assert (odd.closes, other.closes) == (1, 1)


class LateWrite:
    """A task a kit's hook leaves running: once ``closing`` is set, it changes room r1's
    metadata, and notes whether the kit took the change (``said``)."""

    def __init__(self, kit: RoomKit) -> None:
        self.kit = kit
        self.closing = anyio.Event()
        self.tried = anyio.Event()
        self.said: list[str] = []

    async def __call__(self) -> None:
        await self.closing.wait()
        try:
            await self.kit.update_room_metadata("r1", {"late": True})
            self.said.append("taken")
        except KitClosedError:
            self.said.append("refused")
        self.tried.set()


async def test_a_task_a_hook_left_running_is_refused_once_the_kit_closes() -> None:
    # It kept the mark of the command its room first woke up for (the room's task copied
    # it, and the hook's task from there): its commands passed for steps of that command.
    kit = RoomKit()
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    later = LateWrite(kit)
    with anyio.fail_after(20):  # a hang guard
        async with anyio.create_task_group() as tasks:

            @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
            async def leave_a_task(event: RoomEvent, context: RoomContext) -> None:
                tasks.start_soon(later)

            await room_with(kit, "r1", "sms", "ws")
            await kit.process_inbound(text("sms", "hi"), room_id="r1")
            await kit.close()
            later.closing.set()
    assert later.said == ["refused"]
    assert (await kit.get_room("r1")).metadata == {}


async def test_a_task_a_hook_left_running_is_refused_while_its_room_s_first_command_runs() -> None:
    # The room's task copied the mark of the message that first woke it (here, in a kit on
    # a log another kit wrote: as after a restart), and so did a task its BEFORE_BROADCAST
    # hook left running: while that message still ran (its delivery, here), that task's
    # commands passed for the message's steps.
    log = MemoryEventLog()
    first = RoomKit(log=log)
    for channel_id in ("sms", "ws"):
        first.register_channel(SimpleChannel(channel_id))
    await room_with(first, "r1", "sms", "ws")
    await first.close()
    kit = RoomKit(log=log)
    later = LateWrite(kit)

    class Held(SimpleChannel):
        async def deliver(self, event: RoomEvent, *args: Any) -> ChannelOutput:
            await later.tried.wait()  # the message runs until the left task has tried
            return await super().deliver(event, *args)

    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(Held("ws"))

    with anyio.fail_after(20):  # a hang guard
        async with anyio.create_task_group() as tasks:

            @kit.hook(HookTrigger.BEFORE_BROADCAST)
            async def leave_a_task(event: RoomEvent, context: RoomContext) -> None:
                tasks.start_soon(later)

            tasks.start_soon(
                functools.partial(kit.process_inbound, text("sms", "hi"), room_id="r1")
            )
            while await kit.store.get_event_count("r1") < 3:  # its two attachments, and it
                await anyio.sleep(0.01)
            tasks.start_soon(kit.close)
            while not kit._runtime.closed:
                await anyio.sleep(0.01)
            later.closing.set()
    assert later.said == ["refused"]
    assert (await kit.get_room("r1")).metadata == {}


async def test_a_close_from_an_identity_resolver_begins_closing_and_returns() -> None:
    # The resolver runs inside its message, which closing waits for: close() waited for
    # itself until its bound (four times process_timeout), then the message failed.
    class Closing(IdentityResolver):
        async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
            await kit.close()
            return IdentityResult(
                status=IdentificationStatus.IDENTIFIED, identity=Identity(id="alice")
            )

    kit = RoomKit(identity_resolver=Closing(), process_timeout=1)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    with anyio.fail_after(20):  # a hang guard
        await room_with(kit, "r1", "sms", "ws")
        result = await kit.process_inbound(text("sms", "bye"), room_id="r1")
        assert result.event is not None and not result.blocked
        with pytest.raises(KitClosedError):
            await kit.create_room(room_id="r2")
        await kit.close()  # waits for the closing the resolver began
    assert [e.content.body for e in await kit.get_timeline("r1")][-1] == "bye"  # type: ignore[union-attr]


async def test_a_close_lets_the_messages_taken_before_it_finish_their_steps() -> None:
    # Closing waited for the commands in its rooms only: a message still resolving its
    # sender's identity as close() was called failed with "the kit is closed", and a
    # BEFORE_BROADCAST hook's command to another room with "takes no more commands".
    resolving = anyio.Event()

    class SlowToIdentify(IdentityResolver):
        async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
            resolving.set()
            await anyio.sleep(0.3)
            return IdentityResult(
                status=IdentificationStatus.IDENTIFIED, identity=Identity(id="alice")
            )

    kit = RoomKit(identity_resolver=SlowToIdentify())
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def note_elsewhere(event: RoomEvent, context: RoomContext) -> None:
        await kit.update_room_metadata("notes", {"last": event.id})

    results: list[InboundResult] = []
    with anyio.fail_after(20):  # a hang guard
        await room_with(kit, "r1", "sms", "ws")
        await kit.create_room(room_id="notes")

        async def send() -> None:
            results.append(await kit.process_inbound(text("sms", "hi"), room_id="r1"))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send)
            await resolving.wait()
            await kit.close()
    [result] = results
    assert result.event is not None and not result.blocked
    assert result.event.source.participant_id == "alice"
    assert (await kit.get_room("notes")).metadata == {"last": result.event.id}
    with pytest.raises(KitClosedError):
        await kit.process_inbound(text("sms", "late"), room_id="r1")


async def test_commands_waiting_for_a_rebuild_of_the_read_model_finish_before_a_close() -> None:
    # They were taken up only once the rebuild ended: a close() called meanwhile refused
    # them then ("takes no more commands"), though their callers waited before it.
    clearing, cleared = anyio.Event(), anyio.Event()

    class SlowToClear(InMemoryStore):
        async def clear(self) -> None:
            clearing.set()
            await cleared.wait()
            await super().clear()

    kit = RoomKit(store=SlowToClear())
    kit.register_channel(SimpleChannel("sms"))
    sent: list[object] = []
    with anyio.fail_after(20):  # a hang guard
        await room_with(kit, "r1", "sms")

        async def send() -> None:
            sent.append(await kit.send_event("r1", "sms", TextContent(body="sent")))
            with pytest.raises(KitClosedError):  # called after the close
                await kit.process_inbound(text("sms", "late"), room_id="r1")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(kit.rebuild_store)
            await clearing.wait()
            tasks.start_soon(send)
            await anyio.wait_all_tasks_blocked()  # send_event waits for the rebuild
            tasks.start_soon(kit.close)
            await anyio.wait_all_tasks_blocked()
            cleared.set()
    assert len(sent) == 1
    bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
    assert bodies[-1] == "sent"


@pytest.mark.parametrize("process_timeout", [None, 30.0])
async def test_callers_of_deliveries_a_close_dropped_are_answered(
    short_shutdown: None, process_timeout: float | None
) -> None:
    # The callers whose deliveries were dropped as the actors were stopped by force (a hook
    # that never returns held their room's worker) waited after close() had returned: for
    # good without a process_timeout, until it with one.
    kit = RoomKit(process_timeout=process_timeout)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, timeout=None)
    async def forever(event: RoomEvent, context: RoomContext) -> None:
        await anyio.sleep_forever()

    answers: list[str] = []

    async def send(n: int) -> None:
        try:
            result = await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
            answers.append(f"recorded {result.event is not None}")
        except KitClosedError as exc:
            answers.append(f"closed: {'in the log' in str(exc)}")

    with anyio.fail_after(20):
        await room_with(kit, "r1", "sms", "ws")
        async with anyio.create_task_group() as callers:
            for n in range(4):
                callers.start_soon(send, n)
                await anyio.sleep(0.05)  # recorded in order, queued behind the first
            with anyio.move_on_after(0.5):
                await kit.close()
            await kit.close()
    assert len(answers) == 4
    assert answers.count("closed: True") == 3  # the queued ones: recorded, not delivered


async def test_a_closed_kit_reads_what_its_rooms_recorded_as_they_stopped() -> None:
    # An AI's reply recorded while the actors stopped (its close given up: the AI answered in
    # the actors' time to stop) was in the log, and not in the closed kit's read model.
    from roomkit import AIChannel, AIContext, AIResponse, ChannelCategory, MockAIProvider

    class Slow(MockAIProvider):
        async def generate(self, context: AIContext) -> AIResponse:
            await anyio.sleep(0.5)
            return await super().generate(context)

    kit = RoomKit()
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(AIChannel("ai", provider=Slow(["the answer"])))
    with anyio.fail_after(20):
        await room_with(kit, "r1", "sms")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        async with anyio.create_task_group() as tasks:

            async def ask() -> None:
                with contextlib.suppress(KitClosedError):
                    await kit.process_inbound(text("sms", "question"), room_id="r1")

            tasks.start_soon(ask)
            await anyio.sleep(0.1)  # committed; the AI answers
            with anyio.move_on_after(0.01):
                await kit.close()
            await kit.close()
    async with RoomKit(log=kit.log) as fresh:
        in_the_log = [e.id for e in await fresh.get_timeline("r1")]
    assert [e.id for e in await kit.get_timeline("r1")] == in_the_log
    assert (await kit.get_timeline("r1"))[-1].content.body == "the answer"  # type: ignore[union-attr]


class AwaitingStore(InMemoryStore):
    """A store whose event writes await, as any store with I/O does."""

    async def add_event_envelope(self, data: Any) -> None:
        await anyio.sleep(0.001)
        await super().add_event_envelope(data)


async def test_a_close_during_a_rebuild_of_the_store_counts_each_event_once() -> None:
    # The close's last catch-up applied the log next to the rebuild, which applied it too:
    # the room's event_count counted ~1.8 times its timeline, for good.
    kit = RoomKit(store=AwaitingStore())
    kit.register_channel(SimpleChannel("sms"))
    await room_with(kit, "r1", "sms")
    for n in range(150):
        await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(kit.rebuild_store)
        await anyio.sleep(0.05)
        await kit.close()
    timeline = await kit.get_timeline("r1", limit=1_000)
    assert len(timeline) > 150
    assert (await kit.get_room("r1")).event_count == len(timeline)


def _deciding_until_told() -> tuple[RoomKit, SimpleChannel, anyio.Event, anyio.Event]:
    """A kit with channels "in" and "out" (returned) whose BEFORE_BROADCAST hook sets the
    first event as it starts deciding, then decides once the second is set."""
    kit = RoomKit()
    out = SimpleChannel("out")
    kit.register_channel(SimpleChannel("in"))
    kit.register_channel(out)
    deciding, decided = anyio.Event(), anyio.Event()

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def hold(event: RoomEvent, context: RoomContext) -> HookResult:
        deciding.set()
        await decided.wait()
        return HookResult.allow()

    return kit, out, deciding, decided


async def test_a_message_whose_caller_gave_up_as_its_room_decided_is_delivered_by_close() -> None:
    # The caller was no longer counted once it gave up: closing stopped the room under the
    # decision, and the message was recorded as the room stopped, never delivered, nothing said.
    kit, out, deciding, decided = _deciding_until_told()
    after: list[str] = []

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        after.append(event.id)

    with anyio.fail_after(20):
        await room_with(kit, "r", "in", "out")
        async with anyio.create_task_group() as tg:
            caller = anyio.CancelScope()
            tg.start_soon(_send_in, kit, caller)
            await deciding.wait()
            caller.cancel()  # the caller gives up while the room decides
            tg.start_soon(kit.close)
            await anyio.sleep(0.05)
            decided.set()
    recorded = [e.id for e in await kit.get_timeline("r") if e.source.channel_id == "in"]
    assert len(recorded) == 1
    assert [e.id for e in out.delivered] == recorded
    assert after == recorded


async def _send_in(kit: RoomKit, scope: anyio.CancelScope) -> None:
    with scope:
        await kit.process_inbound(text("in", "hi", idempotency_key="k1"), room_id="r")


class Gated(SimpleChannel):
    """Delivers once let through; notes when the first delivery starts."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def deliver(self, event: RoomEvent, binding: Any, context: RoomContext) -> ChannelOutput:
        self.started.set()
        await self.release.wait()
        return await super().deliver(event, binding, context)


@pytest.mark.parametrize("api", ["process_inbound", "send_event"])
async def test_a_caller_whose_delivery_a_given_up_close_dropped_is_told_so(api: str) -> None:
    # Its turn was ended as if delivered: the caller got a plain success (blocked False, the
    # event "delivered") for a message no channel was given.
    kit = RoomKit()
    out = Gated("out")
    kit.register_channel(SimpleChannel("in"))
    kit.register_channel(out)
    answers: dict[str, object] = {}

    async def send(key: str) -> None:
        try:
            if api == "process_inbound":
                answers[key] = await kit.process_inbound(
                    text("in", key, idempotency_key=key), room_id="r"
                )
            else:
                answers[key] = await kit.send_event(
                    "r", "in", TextContent(body=key), idempotency_key=key
                )
        except KitClosedError as exc:
            answers[key] = exc

    with anyio.fail_after(20):
        await room_with(kit, "r", "in", "out")
        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "m1")
            await out.started.wait()  # m1 is being delivered
            tg.start_soon(send, "m2")  # m2 is recorded, its delivery queued
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):  # given up: the queued delivery is dropped
                await kit.close()
            out.release.set()
    assert out.texts() == ["m1"]
    assert isinstance(answers["m2"], KitClosedError)
    assert "in the log" in str(answers["m2"])


async def test_a_caller_giving_up_while_close_waits_for_it_does_not_hold_close() -> None:
    # The closing task slept until an ask ended, and the one given up no longer ends as an
    # ask: close() held to its bound (4 x process_timeout, two minutes by default).
    kit, out, deciding, decided = _deciding_until_told()

    with anyio.fail_after(30):  # a hang guard, far under close's bound
        await room_with(kit, "r", "in", "out")
        async with anyio.create_task_group() as tg:
            caller = anyio.CancelScope()
            tg.start_soon(_send_in, kit, caller)
            await deciding.wait()
            tg.start_soon(kit.close)  # waits for the command its caller waits for
            await anyio.sleep(0.05)
            caller.cancel()  # then the caller gives up
            await anyio.sleep(0.05)
            decided.set()
    assert [e.content.body for e in out.delivered] == ["hi"]  # type: ignore[union-attr]


class _Odd(BaseException):
    """A BaseException of a channel's own (not an Exception, not a cancellation)."""


class ClosesOddly(ClosedCounting):
    async def close(self) -> None:
        await super().close()
        raise _Odd("odd close")


@pytest.mark.parametrize("from_hook", [True, False])
async def test_a_channel_whose_close_raises_a_baseexception_of_its_own_fails_that_close_only(
    from_hook: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # It ended the whole close; and from a close a hook called (which goes on aside, in a
    # trio system task), trio's run with TrioInternalError.
    odd, other = ClosesOddly("odd"), ClosedCounting("other")
    with anyio.fail_after(10):
        async with RoomKit() as kit:
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(odd)
            kit.register_channel(other)
            await room_with(kit, "r1", "sms")

            @kit.hook(HookTrigger.BEFORE_BROADCAST)
            async def closer(event: RoomEvent, context: RoomContext) -> HookResult:
                if from_hook:
                    await kit.close()
                return HookResult.allow()

            await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert (odd.closes, other.closes) == (1, 1)
    said = [r for r in caplog.records if r.getMessage() == "closing channel odd failed"]
    assert len(said) == 1 and "raised _Odd: odd close" in str(said[0].exc_info[1])  # type: ignore[index]


class ClosesInANursery(ClosedCounting):
    """Closes two connections at once, in a trio nursery (a trio app's channel); slowly
    the first time."""

    slow = True

    async def close(self) -> None:
        import trio

        pause, self.slow = (5 if self.slow else 0), False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, pause)
            nursery.start_soon(trio.sleep, pause)
        await super().close()


async def test_a_close_given_up_while_a_channel_closes_in_a_trio_nursery_is_given_up(
    anyio_backend: str,
) -> None:
    # The nursery hands on its children's cancellations as a group, which was taken for the
    # channel's own failure: logged, the channel counted as closed, the later close() never
    # closed it, and the caller's scope did not see its cancellation.
    if anyio_backend != "trio":
        pytest.skip("a trio nursery")
    channel = ClosesInANursery("slow")
    with anyio.fail_after(30):
        kit = RoomKit()
        kit.register_channel(channel)
        await kit.create_room(room_id="r")
        with anyio.move_on_after(0.3) as scope:
            await kit.close()
        assert scope.cancelled_caught and channel.closes == 0
        await kit.close()  # "a later close() closes them"
        assert channel.closes == 1


class Parks(SimpleChannel):
    """A channel whose deliveries park in the router: behind a rate limit's token, or in the
    backoff of a retry after a first attempt that fails (``fail_first``)."""

    def __init__(self, channel_id: str, *, fail_first: bool = False) -> None:
        super().__init__(channel_id)
        self.fail_first = fail_first
        self.attempts = 0
        self.attempted = anyio.Event()

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.attempts += 1
        self.attempted.set()
        if self.fail_first and self.attempts == 1:
            raise ConnectionError("the vendor is away")
        return await super().deliver(event, binding, context)


@pytest.fixture
def long_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Actors still busy when the kit's actor system stops are cancelled after 30 s (10 s by
    default): far past the hang guard of a test that must not wait for them."""
    made = RuntimeSettings.actor_system

    def actor_system(self: RuntimeSettings) -> dict[str, Any]:
        return {**made(self), "shutdown_timeout": 30.0}

    monkeypatch.setattr(RuntimeSettings, "actor_system", actor_system)


@pytest.mark.parametrize("parked", ["rate limit", "retry backoff"])
async def test_async_with_under_a_deadline_cuts_a_delivery_parked_in_the_router(
    long_shutdown: None, parked: str
) -> None:
    # The caller's deadline ended the drain, but the actor system gave the delivery still
    # waiting for its token (or its retry) the actors' time to stop (10 s) before it cancelled
    # it, shielded from the caller's cancellation: the TimeoutError came 10 s late, where a
    # close() under the same deadline returned at it. Here the token is a minute away and the
    # actors get 30 s: past the hang guard, the test fails.
    log = MemoryEventLog()
    with anyio.fail_after(15) as guard:  # a hang guard
        with pytest.raises(TimeoutError):
            with anyio.fail_after(3600) as deadline:  # the caller's, brought forward below
                async with RoomKit(log=log, wait_for_delivery=False) as kit:
                    channel = Parks("slow", fail_first=parked == "retry backoff")
                    kit.register_channel(SimpleChannel("sms"))
                    kit.register_channel(channel)
                    await kit.create_room(room_id="r1")
                    await kit.attach_channel("r1", "sms")
                    if parked == "rate limit":
                        await kit.attach_channel(
                            "r1", "slow", rate_limit=RateLimit(max_per_minute=1)
                        )
                        # Takes the token: the next message waits a minute for one.
                        first = await kit.process_inbound(text("sms", "first"), room_id="r1")
                        await channel.attempted.wait()
                    else:
                        policy = RetryPolicy(
                            max_retries=1, base_delay_seconds=60, max_delay_seconds=60
                        )
                        await kit.attach_channel("r1", "slow", retry_policy=policy)
                        first = None
                    await kit.process_inbound(text("sms", "parked"), room_id="r1")
                    await channel.attempted.wait()
                    await anyio.wait_all_tasks_blocked()  # parked in the router for a minute
                    deadline.deadline = anyio.current_time()
                    await anyio.sleep_forever()
    assert not guard.cancel_called
    # Cut while parked: "parked" never went out (nor was tried again).
    assert channel.texts() == ([] if first is None else ["first"])
    assert channel.attempts == 1
    if first is not None:
        assert first.event is not None
        # What finished is still recorded as the rooms stop: the first delivery's outcome.
        records = await log.read("r1")
        outcomes = [r for r in records if r.type == "delivery.recorded"]
        assert [msgspec.json.decode(r.data)["event_id"] for r in outcomes] == [first.event.id]
