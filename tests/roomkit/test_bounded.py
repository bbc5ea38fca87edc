"""``bounded`` / ``bounded_here`` (and ``started_bounded`` / ``started_here``, the same with
the first step taken by the caller): user code under a time limit, on asyncio (first step
untimed) and trio."""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import pytest

from roomkit.core._bounded import (
    TimedOut,
    bounded,
    bounded_here,
    started_bounded,
    started_here,
)

Limit = Callable[[Awaitable[Any], float | None], Awaitable[Any]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def via_started_bounded(awaitable: Awaitable[Any], seconds: float | None) -> Any:
    done, rest = started_bounded(awaitable, seconds, contextvars.copy_context())
    return rest if done else await rest


async def via_started_here(awaitable: Awaitable[Any], seconds: float | None) -> Any:
    done, rest = started_here(awaitable, seconds)
    return rest if done else await rest


@pytest.fixture(
    params=[bounded, bounded_here, via_started_bounded, via_started_here],
    ids=["bounded", "bounded_here", "started_bounded", "started_here"],
)
def limit(request: pytest.FixtureRequest) -> Limit:
    """All keep these guarantees; ``bounded_here`` (fan-out targets, already in a context of
    their own) only skips the context copy and times from the first suspension; the
    ``started_`` forms are the same with their first step taken by the caller."""
    fn: Limit = request.param
    return fn


async def test_code_that_never_suspends_returns_its_result(limit: Limit) -> None:
    async def at_once() -> int:
        return 7

    assert await limit(at_once(), 0.5) == 7


async def test_code_that_suspends_and_finishes_in_time_returns_its_result(limit: Limit) -> None:
    async def after_checkpoints() -> str:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        return "done"

    assert await limit(after_checkpoints(), 5) == "done"
    assert await limit(after_checkpoints(), None) == "done"
    assert await limit(after_checkpoints(), float("inf")) == "done"


async def test_code_still_running_at_its_deadline_is_cancelled(limit: Limit) -> None:
    cleaned = []

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append(True)

    with pytest.raises(TimedOut):
        await limit(forever(), 0.05)
    assert cleaned == [True]


async def test_the_deadline_counts_from_before_the_first_step() -> None:
    # 0.2 s of work before the first suspension, then 0.15 s asleep: 0.35 s against 0.3.
    async def busy_then_asleep() -> str:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.2:
            pass
        await anyio.sleep(0.15)
        return "late"

    with pytest.raises(TimedOut):
        await bounded(busy_then_asleep(), 0.3)
    with pytest.raises(TimedOut):
        await via_started_bounded(busy_then_asleep(), 0.3)


async def test_the_codes_own_timeout_error_is_not_taken_for_the_limit(limit: Limit) -> None:
    async def own_timeout(suspend: bool) -> None:
        if suspend:
            await anyio.lowlevel.checkpoint()
        raise TimeoutError("the vendor API did not answer")

    for suspend in (False, True):
        with pytest.raises(TimeoutError, match="vendor") as caught:
            await limit(own_timeout(suspend), 5)
        assert not isinstance(caught.value, TimedOut)


async def test_errors_raised_after_a_suspension_come_through(limit: Limit) -> None:
    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await limit(failing(), 5)


async def test_code_with_cancel_scopes_of_its_own_runs_and_times_out(limit: Limit) -> None:
    # The code enters its own anyio scopes and suspends inside them before the limit's timer
    # exists: the timer must not upset anyio's stack of scopes.
    async def scoped(nap: float) -> str:
        with anyio.move_on_after(10):
            with anyio.fail_after(10):
                await anyio.sleep(nap)
        return "scoped"

    assert await limit(scoped(0.01), 5) == "scoped"
    with pytest.raises(TimedOut):
        await limit(scoped(10), 0.05)
    # and the task's own scopes still work afterwards
    with anyio.move_on_after(0.01) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_an_outer_cancellation_is_not_taken_for_the_limit(limit: Limit) -> None:
    reached = anyio.Event()

    async def waiting() -> None:
        reached.set()
        await anyio.sleep_forever()

    outcome: list[str] = []

    async def run() -> None:
        try:
            await limit(waiting(), 10)
        except TimedOut:
            outcome.append("timed out")
        else:
            outcome.append("returned")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await reached.wait()
        tg.cancel_scope.cancel()
    assert outcome == []


async def test_code_that_swallows_its_cancellation_keeps_its_result(limit: Limit) -> None:
    async def stubborn() -> str:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return "kept"
        return "never"  # pragma: no cover

    assert await limit(stubborn(), 0.05) == "kept"


async def test_code_past_its_handled_cancellation_handles_no_exception(limit: Limit) -> None:
    # The started_ forms threw the cancellation in from inside an `except` of their own: the
    # code then ran "during handling" of it to its next suspension, as no await chain does
    # (the hook after a timed-out one saw its CancelledError in sys.exc_info(), and what it
    # raised was chained to it).
    async def stubborn() -> tuple[object, object]:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            pass
        try:
            raise ValueError("its own")
        except ValueError as exc:
            return sys.exc_info()[1] is exc, exc.__context__

    assert await limit(stubborn(), 0.05) == (True, None)


async def test_awaitables_other_than_coroutines_are_bounded_too(limit: Limit) -> None:
    class Later:
        def __await__(self) -> Generator[Any, None, None]:
            return anyio.sleep(10).__await__()

    with pytest.raises(TimedOut):
        await limit(Later(), 0.05)


async def test_the_limit_cancels_as_the_backend_does(anyio_backend: str) -> None:
    # asyncio: one cancellation, as 0.3.0's asyncio.wait_for; trio: anyio's cancel scope,
    # which cancels again at the next wait.
    async def retries_once() -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            pass
        await anyio.sleep(0.01)
        return "answered on the second attempt"

    for limit in (bounded, via_started_bounded):
        if anyio_backend == "asyncio":
            assert await limit(retries_once(), 0.05) == "answered on the second attempt"
        else:
            with pytest.raises(TimedOut):
                await limit(retries_once(), 0.05)


async def test_the_code_has_its_own_copy_of_the_context_variables() -> None:
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")

    async def binds(suspend: bool) -> str:
        seen = tag.get()
        tag.set("bound by the hook")  # as a logging or tracing binding would
        if suspend:
            await anyio.lowlevel.checkpoint()
        assert tag.get() == "bound by the hook"
        return seen

    tag.set("the caller's")
    for suspend in (False, True):
        for limit in (5, None):
            for run in (bounded, via_started_bounded):
                assert await run(binds(suspend), limit) == "the caller's"
                assert tag.get() == "the caller's"  # left as it was
