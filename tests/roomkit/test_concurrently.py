"""``concurrently``: fan-out without orphans, on asyncio (plain tasks) and trio (task group)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable

import anyio
import pytest

from roomkit.core._concurrently import concurrently


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _value(value: int) -> Callable[[], Awaitable[int]]:
    async def call() -> int:
        await anyio.lowlevel.checkpoint()
        return value

    return call


async def test_results_come_back_in_order() -> None:
    assert await concurrently([_value(n) for n in range(5)]) == [0, 1, 2, 3, 4]
    assert await concurrently([_value(7)]) == [7]
    assert await concurrently([]) == []


async def test_calls_run_at_the_same_time() -> None:
    # Each call waits for the next one to start: run one after the other, this never ends.
    started = [anyio.Event() for _ in range(4)]

    def call(n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            started[n].set()
            if n + 1 < len(started):
                await started[n + 1].wait()
            return n

        return run

    with anyio.fail_after(5):
        assert await concurrently([call(n) for n in range(4)]) == [0, 1, 2, 3]


async def test_an_error_cancels_the_others_and_waits_for_them() -> None:
    cleaned: list[str] = []

    async def stuck() -> int:
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append("stuck")
        return 0  # pragma: no cover

    async def fails() -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    with anyio.fail_after(5), pytest.raises(ValueError, match="boom"):
        await concurrently([stuck, stuck, fails])
    assert cleaned == ["stuck", "stuck"]  # both ended before the error reached us


async def test_cancelling_the_caller_cancels_every_call_before_returning() -> None:
    running = anyio.Event()
    cleaned: list[int] = []

    def call(n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            try:
                running.set()
                await anyio.sleep_forever()
            finally:
                cleaned.append(n)
            return n  # pragma: no cover

        return run

    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            await concurrently([call(n) for n in range(3)])

        tg.start_soon(caller)
        await running.wait()
        tg.cancel_scope.cancel()
    assert sorted(cleaned) == [0, 1, 2]


async def test_calls_that_never_wait_and_calls_that_do_mix_in_order() -> None:
    def at_once(n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            return n

        return run

    def later(n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            await anyio.sleep(0.01 * (4 - n))  # the later the call, the sooner it is done
            return n

        return run

    calls = [at_once(0), later(1), at_once(2), later(3), at_once(4)]
    assert await concurrently(calls) == [0, 1, 2, 3, 4]


async def test_calls_with_cancel_scopes_of_their_own_run_concurrently() -> None:
    # Each call enters its own scopes and waits inside them for the next call to start.
    started = [anyio.Event() for _ in range(3)]

    def call(n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            with anyio.move_on_after(10), anyio.fail_after(10):
                started[n].set()
                if n + 1 < len(started):
                    await started[n + 1].wait()
                await anyio.lowlevel.checkpoint()
            return n

        return run

    with anyio.fail_after(5):
        assert await concurrently([call(n) for n in range(3)]) == [0, 1, 2]


async def test_a_failure_leaves_the_callers_task_as_it_was(anyio_backend: str) -> None:
    async def stubborn() -> int:
        # swallows the cancellation that tells it a sibling failed
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return -1
        return 0  # pragma: no cover

    async def fails() -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    for calls in ([stubborn, fails], [fails, stubborn]):
        with anyio.fail_after(5), pytest.raises(ValueError, match="boom"):
            await concurrently(calls)
        # no cancellation left pending on this task: it still waits and times out normally
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(1)
        assert scope.cancelled_caught
        if anyio_backend == "asyncio":
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0


async def test_each_call_has_its_own_context_variables() -> None:
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")
    seen: list[str] = []

    def call(n: int, suspend: bool) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            seen.append(tag.get())
            tag.set(f"call {n}")  # as a logging or tracing binding would
            if suspend:
                await anyio.lowlevel.checkpoint()
            seen.append(tag.get())
            return n

        return run

    calls = [call(0, False), call(1, True), call(2, False), call(3, True)]
    assert await concurrently(calls) == [0, 1, 2, 3]
    assert sorted(seen) == sorted(["unset"] * 4 + [f"call {n}" for n in range(4)])
    assert tag.get() == "unset"  # nothing leaked into the caller


async def test_a_failure_is_reported_when_the_caller_was_already_being_cancelled(
    anyio_backend: str,
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("Task.cancelling() is asyncio's")
    task = asyncio.current_task()
    assert task is not None

    async def stuck() -> int:
        await anyio.sleep_forever()
        return 0  # pragma: no cover

    async def fails() -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    # A caller cleaning up after a cancellation it caught without uncancel().
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert task.cancelling() == 1
    try:
        with pytest.raises(ValueError, match="boom"):
            await concurrently([stuck, fails])
        assert task.cancelling() == 1
    finally:
        task.uncancel()


async def test_what_a_cancelled_call_raises_besides_is_logged(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the task group reports every error itself on trio")

    async def fails() -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    async def fails_when_cancelled() -> int:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise RuntimeError("cleanup failed too") from None
        return 0  # pragma: no cover

    with pytest.raises(ValueError, match="boom"):
        await concurrently([fails, fails_when_cancelled])
    assert "cleanup failed too" in caplog.text


async def test_a_failure_that_does_not_propagate_is_logged(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the task group reports every error itself on trio")

    async def converts_its_cancellation() -> int:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise RuntimeError("interrupted") from None
        return 0  # pragma: no cover

    async def fails() -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("the first failure")

    with pytest.raises(RuntimeError, match="interrupted"):
        await concurrently([converts_its_cancellation, fails])
    assert "the first failure" in caplog.text
