"""tell / ask: order per actor, concurrency across actors, replies, errors, timeouts."""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    AskTimeout,
    UnknownActorKind,
)
from tests.actors.models import Block, Call, Journal, Probe, Raise, probes


def make_system(journal: Journal, **options: object) -> ActorSystem:
    system = ActorSystem(**options)  # type: ignore[arg-type]
    system.register("probe", probes(journal))
    return system


async def test_ask_returns_the_handler_reply() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        assert await system.ref("probe", "a").ask("hello") == "hello"
        assert journal.started == ["a"]


async def test_one_actor_handles_messages_one_at_a_time_in_arrival_order() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        sent: list[object] = []
        for n in range(300):
            if n % 3 == 0:
                sent.append(await ref.ask(n))
            elif n % 3 == 1:
                await ref.tell(n)
                sent.append(n)
            else:
                ref.tell_nowait(n)
                sent.append(n)
        await ref.ask("end")
    assert journal.handled("a") == [*sent, "end"]


async def test_each_sender_keeps_its_order_when_senders_interleave() -> None:
    journal = Journal()
    async with make_system(journal, mailbox_size=4) as system:
        ref = system.ref("probe", "a")

        async def sender(name: str) -> None:
            for n in range(100):
                await ref.tell((name, n))

        async with anyio.create_task_group() as tg:
            for name in "xyz":
                tg.start_soon(sender, name)
        await ref.ask("end")
    handled = journal.handled("a")[:-1]
    assert len(handled) == 300
    for name in "xyz":
        assert [n for s, n in handled if s == name] == list(range(100))  # type: ignore[misc]


async def test_a_handler_is_never_entered_twice_at_once() -> None:
    journal = Journal()
    inside = 0
    most = 0

    async def slow(_: Probe) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await anyio.lowlevel.checkpoint()
        inside -= 1

    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(ref.ask, Call(slow))
    assert most == 1


async def test_different_actors_run_concurrently() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        blocks = [Block(gate) for _ in range(20)]
        for n, block in enumerate(blocks):
            await system.ref("probe", f"k{n}").tell(block)
        with anyio.fail_after(5):
            for block in blocks:
                await block.entered.wait()
        # Twenty handlers are inside at once, and another actor still answers.
        assert await system.ref("probe", "free").ask("ping") == "ping"
        gate.set()
    assert sorted(journal.stopped) == sorted([f"k{n}" for n in range(20)] + ["free"])


async def test_a_failing_message_fails_only_itself_and_the_actor_keeps_its_state() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await ref.ask("one")
        error = ValueError("bad message")
        with pytest.raises(ValueError, match="bad message") as raised:
            await ref.ask(Raise(error))
        assert raised.value is error
        count = await ref.ask(Call(lambda probe: probe.count))
        stats = system.stats()
    assert count == 3  # the same instance handled all three
    assert journal.started == ["a"]
    assert stats.restarts == 0


async def test_a_failing_told_message_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await ref.tell(Raise(RuntimeError("told and failed")))
        assert await ref.ask("after") == "after"
    assert any(
        "failed to handle a told message" in r.getMessage()
        and r.exc_info is not None
        and "told and failed" in str(r.exc_info[1])
        for r in caplog.records
    )


async def test_an_ask_that_times_out_while_queued_is_dropped_unhandled() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        block = Block(gate)
        await ref.tell(block)
        with anyio.fail_after(5):
            await block.entered.wait()
        with pytest.raises(AskTimeout, match="probe/a"):
            await ref.ask("late", timeout=0.01)
        assert isinstance(AskTimeout(), TimeoutError)
        gate.set()
        assert await ref.ask("next") == "next"
        assert system.stats().asks_dropped == 1
    # The asker was told "late" timed out: handling it after all would surprise it.
    assert journal.handled("a") == ["block", "next"]


class Patient(Actor):
    """Takes its time over each message."""

    def __init__(self, key: str, seen: list[object]) -> None:
        super().__init__(key)
        self.seen = seen

    async def receive(self, message: object) -> object:
        await anyio.sleep(0.05)
        self.seen.append(message)
        return message


async def test_an_ask_taken_up_then_timing_out_is_handled_to_the_end() -> None:
    seen: list[object] = []
    async with ActorSystem() as system:
        system.register("patient", lambda key: Patient(key, seen))
        ref = system.ref("patient", "a")
        with pytest.raises(AskTimeout):
            await ref.ask("hurried", timeout=0.01)  # taken up at once, then abandoned
        assert await ref.ask("end", timeout=5) == "end"
        assert system.stats().asks_dropped == 0
    assert seen == ["hurried", "end"]


async def test_ask_timeouts_are_bounded_and_positive() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        for bad in (0, -1, math.inf, math.nan, 10**400):  # the last: past a float's range
            with pytest.raises(ValueError, match="timeout"):
                await ref.ask("x", timeout=bad)
        assert journal.entries == []
        assert not system.is_active("probe", "a")  # a refused ask activates nothing
        # A timeout that passed is not checked again, but a bad one after it still is.
        other = system.ref("probe", "b")
        assert await other.ask("y", timeout=5.0) == "y"
        for bad in (math.nan, -1, 0, 10**400):
            with pytest.raises(ValueError, match="timeout"):
                await other.ask("x", timeout=bad)
            assert await other.ask("y", timeout=5.0) == "y"
        for wrong in (True, "1", b"1"):  # True was taken as 1 s
            with pytest.raises(TypeError, match="timeout"):
                await other.ask("x", timeout=wrong)  # type: ignore[arg-type]
        assert journal.entries == [("b", "y")] * 5
    for bad in (math.inf, 10**400):
        with pytest.raises(ValueError, match="ask_timeout"):
            ActorSystem(ask_timeout=bad)


async def test_many_asks_do_not_pile_up_pending_deadlines() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        for n in range(1000):
            await ref.ask(n)
        assert system.stats().pending_asks <= 1


async def test_refs_are_addresses() -> None:
    journal = Journal()
    async with make_system(journal) as system:
        one = system.ref("probe", "a")
        assert one == system.ref("probe", "a")
        assert hash(one) == hash(system.ref("probe", "a"))
        assert one != system.ref("probe", "b")
        assert repr(one) == "ActorRef('probe', 'a')"
        assert not system.is_active("probe", "a")  # a ref starts nothing
        self_ref = await one.ask(Call(lambda probe: probe.self_ref))
        assert isinstance(self_ref, ActorRef) and self_ref == one
        assert system.is_active("probe", "a")


async def test_an_actor_can_tell_itself_and_others() -> None:
    journal = Journal()

    async def fan_out(probe: Probe) -> None:
        await probe.self_ref.tell("to myself")
        await probe.system.ref("probe", "b").tell("to b")

    async with make_system(journal) as system:
        await system.ref("probe", "a").ask(Call(fan_out))
        await system.ref("probe", "a").ask("sync")
        await system.ref("probe", "b").ask("sync")
    assert journal.handled("a") == ["to myself", "sync"]
    assert journal.handled("b") == ["to b", "sync"]


async def test_unknown_kinds_and_bad_keys_are_refused() -> None:
    journal = Journal()
    system = make_system(journal)
    with pytest.raises(UnknownActorKind):
        system.ref("nope", "a")
    with pytest.raises(TypeError):
        system.ref("probe", 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        system.register("probe", probes(journal))


async def test_messages_need_a_running_system() -> None:
    journal = Journal()
    system = make_system(journal)
    ref = system.ref("probe", "a")
    with pytest.raises(ActorDeadError, match="not started"):
        await ref.tell("early")
    async with system:
        await ref.ask("during")
    with pytest.raises(ActorDeadError, match="has stopped"):
        ref.tell_nowait("late")
    with pytest.raises(ActorDeadError):
        await ref.ask("late")
    assert journal.handled("a") == ["during"]


async def test_a_slow_ask_does_not_make_settled_asks_pile_up() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        slow = system.ref("probe", "slow")
        fast = system.ref("probe", "fast")
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow.ask, Block(gate))
            await anyio.wait_all_tasks_blocked()
            most = 0
            for n in range(5000):
                await fast.ask(n)
                most = max(most, system.stats().pending_asks)
            gate.set()
    assert most <= 1024 + 2


@pytest.mark.parametrize("patient", [False, True])
async def test_a_cancelled_asker_s_queued_message_is_dropped_and_a_taken_one_finishes(
    patient: bool,
) -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        async with anyio.create_task_group() as tg:
            busy = Block(gate)
            tg.start_soon(ref.ask, busy)
            await busy.entered.wait()
            # Queued behind the busy handler, then given up by its asker.
            with anyio.move_on_after(0.05):
                await ref.ask("given up", wait_once_taken=patient)
            taken = Block(anyio.Event())
            with anyio.move_on_after(0.05):
                gate.set()
                await ref.ask(taken, wait_once_taken=patient)  # taken up, then given up
            assert taken.entered.is_set()
            taken.gate.set()
        assert await ref.ask("end") == "end"
        assert system.stats().asks_dropped == 1
    assert journal.handled("a") == ["block", "block", "end"]  # not "given up"


async def test_an_ask_waiting_once_taken_outlives_its_timeout_in_the_handler() -> None:
    seen: list[object] = []
    async with ActorSystem() as system:
        system.register("patient", lambda key: Patient(key, seen))
        ref = system.ref("patient", "a")
        # Taken up at once: the 0.05 s handler outlasts the 0.01 s timeout, the ask waits.
        assert await ref.ask("slow", timeout=0.01, wait_once_taken=True) == "slow"
        # Queued behind a 0.05 s handler: never taken up in time, so dropped.
        await ref.tell("first")
        with pytest.raises(AskTimeout):
            await ref.ask("behind", timeout=0.01, wait_once_taken=True)
        assert await ref.ask("end", timeout=5) == "end"
        assert system.stats().asks_dropped == 1
    assert seen == ["slow", "first", "end"]


async def test_a_tracked_ask_says_it_was_answered_before_its_asker_resumes() -> None:
    # The asker may resume well after the actor went on to its next message: a caller
    # watching what it waits for must see the answer from then on.
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        track: list[Any] = []
        async with anyio.create_task_group() as tg:
            busy = Block(gate)
            tg.start_soon(ref.ask, busy)
            await busy.entered.wait()
            tg.start_soon(functools.partial(ref.ask, "tracked", track=track))
            await anyio.wait_all_tasks_blocked()
            [ask] = track
            assert not ask.done  # queued behind the busy handler
            after = Block(anyio.Event())
            tg.start_soon(ref.ask, after)
            gate.set()
            await after.entered.wait()  # the actor went on past it
            assert ask.done
            after.gate.set()


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_an_actor_runs_in_the_system_s_context_not_its_senders() -> None:
    # The sender that woke the actor's task set request_id: the actor saw it for every later
    # message, from any sender, for as long as its task lived.
    class Reader(Actor):
        async def receive(self, message: object) -> object:
            return request_id.get()

    request_id.set("at start")
    system = ActorSystem(task_linger=None)
    system.register("reader", Reader)
    async with system:
        ref = system.ref("reader", "a")

        async def send(value: str, seen: list[object]) -> None:
            request_id.set(value)
            seen.append(await ref.ask("which?"))

        seen: list[object] = []
        with anyio.fail_after(5):
            for value in ("req-1", "req-2"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send, value, seen)
    assert seen == ["at start", "at start"]
