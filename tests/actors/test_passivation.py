"""Activation on first message, passivation when idle, and what an idle actor keeps."""

from __future__ import annotations

import gc
import math
import weakref
from fractions import Fraction

import anyio
import pytest

from actors import (
    Actor,
    ActorSystem,
    check_count,
    check_finite_seconds,
    check_seconds,
    check_settings,
)
from eventlog import MemoryEventLog
from tests.actors.models import AddMany, Block, Call, Counter, CounterState, Get, Journal, probes


async def test_an_idle_actor_passivates_and_reactivates_with_its_state_from_the_log() -> None:
    stopped = anyio.Event()

    class Watched(Counter):
        async def on_stop(self) -> None:
            stopped.set()

    log = MemoryEventLog()
    system = ActorSystem(log, idle_timeout=0.02)
    system.register("counter", Watched)
    async with system:
        ref = system.ref("counter", "c")
        await ref.ask(AddMany((5, 6)))
        with anyio.fail_after(5):
            await stopped.wait()
        assert not system.is_active("counter", "c")
        assert system.stats().passivations == 1
        assert await ref.ask(Get()) == CounterState(total=11, count=2, amounts=(5, 6))
        assert Watched.instances == 2
    assert [r.version for r in await log.read("c")] == [1, 2]


async def test_passivate_drains_the_mailbox_then_stops() -> None:
    journal = Journal()
    gate = anyio.Event()
    system = ActorSystem()
    system.register("probe", probes(journal))
    async with system:
        ref = system.ref("probe", "a")
        block = Block(gate)
        await ref.tell(block)
        with anyio.fail_after(5):
            await block.entered.wait()
        for n in range(3):
            await ref.tell(n)
        async with anyio.create_task_group() as tg:
            tg.start_soon(system.passivate, "probe", "a")
            await anyio.wait_all_tasks_blocked()
            assert not system.is_active("probe", "a")
            gate.set()
        assert journal.stopped == ["a"]
        assert not await system.passivate("probe", "a")  # not active any more
    assert journal.handled("a") == ["block", 0, 1, 2]


async def test_a_message_sent_during_passivation_goes_to_the_next_incarnation() -> None:
    journal = Journal(on_stop_gate=anyio.Event())
    system = ActorSystem()
    system.register("probe", probes(journal))
    async with system:
        ref = system.ref("probe", "a")
        await ref.ask("before")
        reply: list[object] = []

        async def ask_later() -> None:
            reply.append(await ref.ask("during"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(system.passivate, "probe", "a")
            await anyio.wait_all_tasks_blocked()  # the old incarnation is inside on_stop
            tg.start_soon(ask_later)
            await anyio.wait_all_tasks_blocked()
            # The new incarnation holds the message but waits for the old one to stop.
            assert journal.handled("a") == ["before"]
            assert journal.started == ["a"]
            assert system.is_active("probe", "a")
            journal.on_stop_gate.set()
    assert reply == ["during"]
    assert journal.handled("a") == ["before", "during"]
    assert journal.started == ["a", "a"]


async def test_a_passivated_actor_leaves_nothing_behind() -> None:
    journal = Journal()
    system = ActorSystem()
    system.register("probe", probes(journal))
    async with system:
        instance = await system.ref("probe", "a").ask(Call(lambda probe: weakref.ref(probe)))
        assert isinstance(instance, weakref.ref)
        assert instance() is not None
        assert await system.passivate("probe", "a")
        gc.collect()
        assert instance() is None
        stats = system.stats()
        assert stats.active_actors == 0
        assert stats.stopping_actors == 0
        assert stats.running_actors == 0
        assert stats.mailbox_depths == {}


@pytest.mark.parametrize("linger", [0, None])
async def test_an_idle_actor_can_give_back_its_task_and_stay_active(
    linger: float | None,
) -> None:
    journal = Journal()
    system = ActorSystem(task_linger=linger)
    system.register("probe", probes(journal))
    async with system:
        ref = system.ref("probe", "a")
        for n in range(3):
            await ref.ask(n)
            await anyio.wait_all_tasks_blocked()
            stats = system.stats()
            assert stats.active_actors == 1
            assert stats.running_actors == (0 if linger == 0 else 1)
        # Same instance throughout: its in-memory state survived giving back the task.
        assert await ref.ask(Call(lambda probe: probe.count)) == 4
    assert journal.started == ["a"]


async def test_an_actor_hears_on_idle_each_time_it_gives_back_its_task() -> None:
    idled: list[int] = []

    class Forgetful(Actor):
        def __init__(self, key: str) -> None:
            super().__init__(key)
            self.cache: list[object] | None = None
            self.handled = 0

        async def receive(self, message: object) -> object:
            self.handled += 1
            had_cache = self.cache is not None
            self.cache = [message]
            return had_cache

        def on_idle(self) -> None:
            idled.append(self.handled)
            self.cache = None

    system = ActorSystem(task_linger=0)
    system.register("forgetful", Forgetful)
    async with system:
        ref = system.ref("forgetful", "a")
        assert await ref.ask("first") is False
        await anyio.wait_all_tasks_blocked()
        assert idled == [1]
        # A burst is handled by one task: the cache lives through it, on_idle comes once.
        for n in range(3):
            await ref.tell(n)
        assert await ref.ask("last of the burst") is True
        await anyio.wait_all_tasks_blocked()
        assert idled == [1, 5]
        assert system.is_active("forgetful", "a")  # idle, not passivated


async def test_a_failing_on_idle_is_logged_and_the_actor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Clumsy(Actor):
        async def receive(self, message: object) -> object:
            return message

        def on_idle(self) -> None:
            raise RuntimeError("cannot let go")

    system = ActorSystem(task_linger=0)
    system.register("clumsy", Clumsy)
    async with system:
        ref = system.ref("clumsy", "a")
        assert await ref.ask(1) == 1
        await anyio.wait_all_tasks_blocked()
        assert await ref.ask(2) == 2
    assert "on_idle of actor clumsy/a failed" in caplog.text


async def test_the_sweeper_retires_lingering_tasks() -> None:
    retired = anyio.Event()

    class Idle(Actor):
        async def receive(self, message: object) -> object:
            return message

    system = ActorSystem(task_linger=0.01)
    system.register("idle", Idle)
    async with system:
        await system.ref("idle", "a").ask("x")

        async def watch() -> None:
            while system.stats().running_actors:
                await anyio.wait_all_tasks_blocked()
            retired.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await retired.wait()
        assert system.is_active("idle", "a")
        assert await system.ref("idle", "a").ask("y") == "y"


class FakeCell:
    def __init__(self, idle_since: float, *, idle: bool = True) -> None:
        self.idle_since = idle_since
        self.idle = idle
        self.swept = False


def test_a_sweep_acts_only_on_idle_cells_that_are_due_and_stops_at_the_first_not_due() -> None:
    from collections import OrderedDict

    from actors._sweeper import Sweeper

    old, busy, due, fresh = FakeCell(0.0), FakeCell(1.0, idle=False), FakeCell(2.0), FakeCell(9.0)
    queue: OrderedDict[FakeCell, None] = OrderedDict.fromkeys([old, busy, due, fresh])

    def act(cell: FakeCell) -> None:
        cell.swept = True

    next_due = Sweeper._sweep(queue, 5.0, 7.5, act)  # type: ignore[arg-type]
    assert next_due == 14.0
    assert [old.swept, busy.swept, due.swept, fresh.swept] == [True, False, True, False]
    assert list(queue) == [fresh]
    assert Sweeper._sweep(queue, 5.0, 20.0, act) is None  # type: ignore[arg-type]
    assert fresh.swept and not queue


class Payload:
    """A message that can be weakly referenced."""


@pytest.mark.parametrize("linger", [0, None])
async def test_an_idle_actor_does_not_keep_its_last_message_alive(linger: float | None) -> None:
    journal = Journal()
    system = ActorSystem(task_linger=linger)
    system.register("probe", probes(journal))
    async with system:
        message = Payload()
        alive = weakref.ref(message)
        assert await system.ref("probe", "a").ask(message) is message
        journal.entries.clear()
        del message
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        assert alive() is None
        assert system.is_active("probe", "a")


async def test_an_actor_can_passivate_itself_from_a_handler() -> None:
    journal = Journal()
    system = ActorSystem()
    system.register("probe", probes(journal))
    async with system:
        ref = system.ref("probe", "a")
        ref.tell_nowait(Call(lambda probe: probe.passivate()))
        ref.tell_nowait("queued before")
        with anyio.fail_after(5):
            await journal.stopped_event.wait()
        assert not system.is_active("probe", "a")
        assert await ref.ask("next incarnation") == "next incarnation"
        assert not system.request_passivation("probe", "nobody")
    assert journal.handled("a") == ["queued before", "next incarnation"]
    assert journal.started == ["a", "a"]


async def test_on_idle_after_runs_on_idle_once_per_quiet_spell_even_with_the_task_parked() -> None:
    idled: list[int] = []

    class Counting(Actor):
        handled = 0

        async def receive(self, message: object) -> object:
            self.handled += 1
            return message

        def on_idle(self) -> None:
            idled.append(self.handled)

    system = ActorSystem(task_linger=None, on_idle_after=0)
    system.register("counting", Counting)
    async with system:
        ref = system.ref("counting", "a")
        await ref.ask("first")
        await anyio.wait_all_tasks_blocked()
        assert idled == [1]
        assert system.stats().running_actors == 1  # the task is still parked
        await anyio.wait_all_tasks_blocked()
        assert idled == [1]  # once per quiet spell
        for n in range(3):
            await ref.tell(n)
        await ref.ask("last")
        await anyio.wait_all_tasks_blocked()
        assert idled == [1, 5]


async def test_on_idle_after_inf_never_runs_on_idle_even_when_the_task_returns() -> None:
    idled: list[str] = []

    class Counting(Actor):
        async def receive(self, message: object) -> object:
            return message

        def on_idle(self) -> None:
            idled.append(self.key)

    system = ActorSystem(task_linger=0, on_idle_after=math.inf)
    system.register("counting", Counting)
    async with system:
        await system.ref("counting", "a").ask("x")
        await anyio.wait_all_tasks_blocked()
        assert system.stats().running_actors == 0 and system.is_active("counting", "a")
    assert idled == []


async def test_on_idle_after_waits_that_long() -> None:
    quiet = anyio.Event()
    asked_at: list[float] = []
    idled_at: list[float] = []

    class Timed(Actor):
        async def receive(self, message: object) -> object:
            asked_at.append(anyio.current_time())
            return message

        def on_idle(self) -> None:
            idled_at.append(anyio.current_time())
            quiet.set()

    system = ActorSystem(task_linger=0, on_idle_after=0.05)
    system.register("timed", Timed)
    async with system:
        await system.ref("timed", "a").ask("x")
        with anyio.fail_after(5):
            await quiet.wait()
    assert idled_at[0] - asked_at[0] >= 0.05


def test_on_idle_after_is_checked() -> None:
    with pytest.raises(ValueError, match="on_idle_after"):
        ActorSystem(on_idle_after=-1)


@pytest.mark.parametrize("setting", ["on_idle_after", "idle_timeout"])
async def test_a_delay_equal_to_task_linger_still_comes(setting: str) -> None:
    # The task is retired in the same sweep pass: the cell must still count as idle.
    quiet = anyio.Event()

    class Quiet(Actor):
        async def receive(self, message: object) -> object:
            return message

        def on_idle(self) -> None:
            quiet.set()

        async def on_stop(self) -> None:
            quiet.set()

    system = ActorSystem(task_linger=0.05, **{setting: 0.05})  # type: ignore[arg-type]
    system.register("quiet", Quiet)
    async with system:
        await system.ref("quiet", "a").ask("x")
        with anyio.fail_after(5):
            await quiet.wait()
        if setting == "idle_timeout":
            with anyio.fail_after(5):
                while system.is_active("quiet", "a"):
                    await anyio.wait_all_tasks_blocked()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("mailbox_size", 1.5),
        ("mailbox_size", False),
        ("ask_timeout", "5"),
        ("idle_timeout", "1"),
        ("task_linger", [1]),
        ("snapshot_every", 10.0),
        ("shutdown_timeout", None),
        ("on_idle_after", "inf"),
    ],
)
def test_a_setting_of_the_wrong_type_is_refused_by_name(setting: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"^{setting} must be "):
        ActorSystem(**{setting: value})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"^{setting} must be "):
        check_settings(**{setting: value})  # type: ignore[arg-type]


def test_durations_become_floats_and_an_int_past_a_float_is_infinite() -> None:
    assert check_seconds("t", 2) == 2.0 and type(check_seconds("t", 2)) is float
    assert check_seconds("t", Fraction(1, 4)) == 0.25
    assert check_seconds("t", 10**400) == math.inf
    assert check_seconds("t", -(10**400)) == -math.inf
    assert check_seconds("t", None, none=True) is None
    assert check_finite_seconds("t", 0, zero=True) == 0.0

    class Count(int):  # stands in for numpy's integers: not sent on as they are
        pass

    assert type(check_count("n", Count(3))) is int and check_count("n", None, none=True) is None
    for bad in (0, -1, math.inf, 10**400, math.nan):
        with pytest.raises(ValueError, match="^t must be a positive, finite number"):
            check_finite_seconds("t", bad)
    with pytest.raises(ValueError, match="task_linger"):
        ActorSystem(task_linger=-(10**400))


async def test_durations_past_a_floats_range_mean_never() -> None:
    # Each one used to meet clock arithmetic (now + seconds) and fail with OverflowError,
    # in the sweeper's task: the whole system then stopped.
    class Echo(Actor):
        async def receive(self, message: object) -> object:
            return message

    huge = 10**400
    system = ActorSystem(
        idle_timeout=huge, task_linger=huge, on_idle_after=huge, shutdown_timeout=huge
    )
    system.register("echo", Echo)
    async with system:
        ref = system.ref("echo", "a")
        assert await ref.ask("x", timeout=5) == "x"
        await anyio.sleep(0.05)  # a sweep pass
        assert await ref.ask("y", timeout=5) == "y"
        assert system.is_active("echo", "a")


async def test_an_incarnation_already_passivating_does_not_passivate_the_next_one() -> None:
    incarnations: list[int] = []

    class Closing(Actor):
        def __init__(self, key: str) -> None:
            super().__init__(key)
            incarnations.append(len(incarnations) + 1)
            self.incarnation = len(incarnations)

        async def receive(self, message: object) -> object:
            if message == "close":
                await closing.wait()
                self.passivate()  # this incarnation's: it stops already
            return self.incarnation

    closing = anyio.Event()
    system = ActorSystem()
    system.register("a", Closing)
    with anyio.fail_after(5):
        async with system:
            ref = system.ref("a", "k")
            assert await ref.ask("hello") == 1
            async with anyio.create_task_group() as tg:
                tg.start_soon(ref.ask, "close")
                await anyio.wait_all_tasks_blocked()
                system.request_passivation("a", "k")  # an owner moving the key away, say
                tg.start_soon(ref.ask, "new")  # the next incarnation's, once 1 stopped
                await anyio.wait_all_tasks_blocked()
                closing.set()
            assert await ref.ask("then") == 2
            assert system.is_active("a", "k")
            assert system.stats().passivations == 1
    assert incarnations == [1, 2]
