"""Leaving the system: drain what was accepted, refuse the rest, leave no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest

from actors import Actor, ActorDeadError, ActorSystem
from eventlog import MemoryEventLog
from tests.actors.models import Add, Block, Call, Counter, Journal, Probe, probes


def running_tasks() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


async def test_no_task_is_left_behind() -> None:
    before = running_tasks()
    journal = Journal(on_stop_gate=None)
    gate = anyio.Event()
    system = ActorSystem(MemoryEventLog(), idle_timeout=60, task_linger=None)
    system.register("probe", probes(journal))
    system.register("counter", Counter)
    async with system:
        for n in range(50):
            await system.ref("probe", f"p{n}").ask(n)  # parked tasks
            await system.ref("counter", f"c{n}").ask(Add(n))
        system_linger0 = system.stats().running_actors
        await system.ref("probe", "busy").tell(Block(gate))  # busy at exit
        for n in range(10):
            await system.ref("probe", "busy").tell(n)
        await system.passivate("probe", "p0")
        assert running_tasks() > before
        gate.set()
    assert system_linger0 == 100
    assert running_tasks() == before
    assert len(journal.stopped) == 51
    stats = system.stats()
    assert stats.active_actors == stats.running_actors == stats.stopping_actors == 0
    assert stats.pending_asks == 0


async def test_actors_without_a_task_are_stopped_too() -> None:
    before = running_tasks()
    journal = Journal()
    system = ActorSystem(task_linger=0)
    system.register("probe", probes(journal))
    async with system:
        for key in "abc":
            await system.ref("probe", key).ask("hi")
        await anyio.wait_all_tasks_blocked()
        assert system.stats().running_actors == 0
    assert sorted(journal.stopped) == ["a", "b", "c"]
    assert running_tasks() == before


async def test_exit_drains_mailboxes_and_refuses_new_messages() -> None:
    journal = Journal()
    gate = anyio.Event()
    system = ActorSystem()
    system.register("probe", probes(journal))
    replies: dict[int, object] = {}
    refused: list[BaseException] = []

    async def tell_other(probe: Probe) -> None:
        try:
            await probe.system.ref("probe", "other").tell("from inside, during the drain")
        except ActorDeadError as exc:
            refused.append(exc)

    async with anyio.create_task_group() as outside, system:
        ref = system.ref("probe", "a")
        await ref.tell(Block(gate))

        async def ask(n: int) -> None:
            replies[n] = await ref.ask(n)

        for n in range(5):
            outside.start_soon(ask, n)
            await anyio.wait_all_tasks_blocked()  # one at a time: trio starts tasks in any order
        await ref.tell(Call(tell_other))
        await anyio.wait_all_tasks_blocked()
        assert replies == {}
        gate.set()  # the actor runs again only once the exit has begun
    assert replies == {n: n for n in range(5)}
    assert journal.handled("a") == ["block", 0, 1, 2, 3, 4]
    assert len(refused) == 1 and "shutting down" in str(refused[0])
    assert journal.stopped == ["a"]


async def test_an_ask_refused_after_the_exit_leaves_nothing_pending() -> None:
    system = ActorSystem(MemoryEventLog())
    system.register("counter", Counter)
    async with system:
        await system.ref("counter", "c").ask(Add(1))
    for _ in range(3):
        with pytest.raises(ActorDeadError, match="has stopped"):
            await system.ref("counter", "c").ask(Add(1))
    assert system.stats().pending_asks == 0


async def test_past_the_shutdown_timeout_stuck_actors_are_cancelled() -> None:
    before = running_tasks()
    journal = Journal()
    never = anyio.Event()
    system = ActorSystem(shutdown_timeout=0.01)
    system.register("probe", probes(journal))
    outcomes: list[BaseException] = []

    async def ask(message: object) -> None:
        try:
            await system.ref("probe", "stuck").ask(message)
        except ActorDeadError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as outside, system:
        outside.start_soon(ask, Block(never))
        await anyio.wait_all_tasks_blocked()
        outside.start_soon(ask, "queued")
        await anyio.wait_all_tasks_blocked()
    assert len(outcomes) == 2
    assert journal.stopped == []  # on_stop is skipped when cancelled by force
    assert running_tasks() == before


def slow_to_leave(
    cleaned: list[str], cleaning: anyio.Event | None = None
) -> Callable[[str], Actor]:
    """Actors that hold every message until cancelled, then take 50 ms (shielded) to clean up
    and note their key in ``cleaned``; ``cleaning`` is set when the cleanup starts."""

    class SlowToLeave(Actor):
        async def receive(self, message: object) -> object:
            try:
                await anyio.sleep_forever()
            finally:
                if cleaning is not None:
                    cleaning.set()
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.05)
                cleaned.append(self.key)
            return None  # pragma: no cover - never reached: it sleeps until cancelled

    return SlowToLeave


async def test_exit_waits_for_cancelled_actors_to_finish_their_cleanup() -> None:
    before = running_tasks()
    cleaned: list[str] = []
    system = ActorSystem(shutdown_timeout=0.01)
    system.register("slow", slow_to_leave(cleaned))
    async with system:
        for key in "ab":
            await system.ref("slow", key).tell("hold")
        await anyio.wait_all_tasks_blocked()
    assert sorted(cleaned) == ["a", "b"]
    assert running_tasks() == before


async def cancel_plainly(exiting: asyncio.Future[None]) -> None:
    """Cancel the task leaving a system as asyncio.wait_for or a TaskGroup around it would (no
    anyio shield holds that off), and see the cancellation come out of it."""
    exiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await exiting


async def test_a_plain_asyncio_cancellation_of_the_exit_still_waits_for_every_actor(
    anyio_backend: str,
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("a plain Task.cancel() exists on asyncio only")

    cleaning = anyio.Event()
    cleaned: list[str] = []

    async def run_system() -> None:
        system = ActorSystem(shutdown_timeout=0.01)
        system.register("slow", slow_to_leave(cleaned, cleaning))
        async with system:
            await system.ref("slow", "a").tell("hold")
            await anyio.wait_all_tasks_blocked()

    before = running_tasks()
    closing = asyncio.ensure_future(run_system())
    await cleaning.wait()  # the system is waiting for the actor's cleanup
    await cancel_plainly(closing)
    assert cleaned == ["a"]  # the exit waited for it, then propagated the cancellation
    assert running_tasks() == before


async def test_a_plain_asyncio_cancellation_during_the_drain_stops_the_actors_at_once(
    anyio_backend: str,
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("a plain Task.cancel() exists on asyncio only")

    journal = Journal()
    never = anyio.Event()
    outcomes: list[BaseException] = []

    async def run_system() -> None:
        system = ActorSystem(shutdown_timeout=30)
        system.register("probe", probes(journal))

        async def ask() -> None:
            try:
                await system.ref("probe", "stuck").ask(Block(never))
            except ActorDeadError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as outside, system:
            outside.start_soon(ask)
            await anyio.wait_all_tasks_blocked()

    before = running_tasks()
    closing = asyncio.ensure_future(run_system())
    with anyio.fail_after(5):
        while not journal.handled("stuck"):
            await anyio.wait_all_tasks_blocked()
        await anyio.wait_all_tasks_blocked()  # the exit drains: it would wait 30 s
        await cancel_plainly(closing)
    assert len(outcomes) == 1  # the stuck ask failed: the actor was cancelled, not drained
    assert journal.stopped == []
    assert running_tasks() == before


async def test_cancelling_the_enclosing_scope_still_drains_then_propagates() -> None:
    journal = Journal()
    system = ActorSystem()
    system.register("probe", probes(journal))
    with anyio.CancelScope() as scope:
        async with system:
            for n in range(3):
                system.ref("probe", "a").tell_nowait(n)
            scope.cancel()
            await anyio.lowlevel.checkpoint()
            pytest.fail("the cancellation did not reach the body")  # pragma: no cover
    assert scope.cancelled_caught
    assert journal.handled("a") == [0, 1, 2]
    assert journal.stopped == ["a"]


async def test_an_exception_from_the_body_propagates_unwrapped() -> None:
    journal = Journal()
    system = ActorSystem()
    system.register("probe", probes(journal))
    with pytest.raises(KeyError, match="boom"):
        async with system:
            await system.ref("probe", "a").ask("x")
            raise KeyError("boom")
    assert journal.stopped == ["a"]


async def test_a_system_runs_once() -> None:
    system = ActorSystem()
    async with system:
        pass
    with pytest.raises(RuntimeError, match="once"):
        async with system:
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("shutdown_timeout", "job", "idle_timeout"),
    [(10.0, 0.2, None), (1.0, 0.6, None), (10.0, 0.6, 0.2)],
)
async def test_the_kinds_that_stop_first_are_stopped_and_waited_for_before_the_others(
    shutdown_timeout: float, job: float, idle_timeout: float | None
) -> None:
    # A worker still running as the system shut down reported to an owner that had stopped:
    # what it reported was lost (the kit's delivery outcomes). Also when its job ended past
    # half the shutdown_timeout (the first ones had half of it), and when the owner, idle,
    # was passivated meanwhile by the idle sweeper.
    kept: list[str] = []

    class Owner(Actor):
        def __init__(self, key: str) -> None:
            super().__init__(key)
            self.reports: list[str] = []

        async def receive(self, message: object) -> object:
            self.reports.append(str(message))
            return None

        async def on_stop(self) -> None:
            kept.extend(self.reports)

    class Worker(Actor):
        async def receive(self, message: object) -> object:
            await anyio.sleep(job)  # its last job, still running as the system shuts down
            await self.system.ref("owner", self.key).ask(f"done {message}")
            return None

    system = ActorSystem(shutdown_timeout=shutdown_timeout, idle_timeout=idle_timeout)
    system.register("owner", Owner)
    system.register("worker", Worker, stops_first=True)
    async with system:
        await system.ref("owner", "a").ask("started")
        await system.ref("worker", "a").tell("job")
        await anyio.sleep(0.05)  # the worker took its job up
    assert kept == ["started", "done job"]


@pytest.mark.parametrize("shutdown_timeout", [0.0, 0.5])
async def test_a_worker_that_does_not_stop_leaves_the_others_their_time(
    shutdown_timeout: float,
) -> None:
    # The first phase took the whole shutdown_timeout: the other actors were never asked to
    # stop, their on_stop never ran, and those without a task stayed active for good.
    stopped: list[str] = []

    class Owner(Actor):
        async def receive(self, message: object) -> object:
            return None

        async def on_stop(self) -> None:
            stopped.append(self.key)

    class Stuck(Actor):
        async def receive(self, message: object) -> object:
            await anyio.sleep_forever()  # a call that never answers
            return None

    system = ActorSystem(shutdown_timeout=shutdown_timeout, task_linger=0)
    system.register("owner", Owner)
    system.register("worker", Stuck, stops_first=True)
    with anyio.fail_after(10):
        async with system:
            for key in "abc":
                await system.ref("owner", key).ask("hi")
            await system.ref("worker", "w").tell("job")
            await anyio.sleep(0.05)
    assert sorted(stopped) == ["a", "b", "c"]
    assert system.stats().active_actors == 0
