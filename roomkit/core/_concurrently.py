"""``concurrently(calls)``: run a few awaitables at once and return their results in order.

The room's delivery worker fans each message out to every target channel at once (as RoomKit
0.3.0's ``asyncio.gather`` did), so a slow provider does not hold the others. On asyncio, an
anyio task group spawns a task for some 15 µs, four times what ``loop.create_task`` costs; with
ten targets that was half of what a message cost. So on asyncio this spawns plain asyncio tasks
and keeps the structured guarantees itself: it returns or raises only once every task has
ended, and if it is cancelled (or one call raises) it cancels the others and waits for them.
On trio it uses an anyio task group.

Most channels deliver without suspending (they hand the message to a queue, a buffer or a
mock), and a task for a call that never waits is pure cost. So on asyncio the calls' first
steps run here, one after the other, as their tasks' first steps would have, each in a copy
of the caller's context: only when one suspends do the calls after it get tasks of their own,
while it goes on in this task. (``asyncio.current_task()`` is then the caller's task for the
calls run here.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

from roomkit.core._first_step import first_step

__all__ = ["concurrently"]

logger = logging.getLogger("roomkit.concurrently")

T = TypeVar("T")


async def concurrently(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await every call concurrently; their results in the order of ``calls``.

    Raises:
        BaseException: the first error of a call (the others are cancelled first).
    """
    if not calls:
        return []
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # trio
    if loop is not None:
        if len(calls) == 1:
            # One call (one target, one async hook: the usual room): no task ever, so
            # nothing of _in_asyncio_tasks but its first step, without its frame.
            done, rest = first_step(calls[0](), contextvars.copy_context())
            return [rest if done else await rest]
        return await _in_asyncio_tasks(loop, calls)
    return await _in_task_group(calls)


async def _run(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


async def _in_asyncio_tasks(
    loop: asyncio.AbstractEventLoop, calls: Sequence[Callable[[], Awaitable[T]]]
) -> list[T]:
    results: list[T] = []
    for slot, call in enumerate(calls):
        # Each call in a copy of the caller's context, as in a task of its own: a hook or a
        # channel setting a context variable (a logging or tracing binding) does not leak it
        # into the calls after it or into the long-lived worker that called them.
        done, rest = first_step(call(), contextvars.copy_context())
        if done:
            results.append(rest)
            continue
        # This call suspended: the calls after it start in tasks of their own, and it goes on
        # in this task while they run.
        tasks = [loop.create_task(_run(later)) for later in calls[slot + 1 :]]
        failures = _Failures(tasks)
        try:
            results.append(await rest)
            results.extend([await task for task in tasks])
        except BaseException as error:
            failure = failures.close()
            for task in tasks:
                task.cancel()
            raised = (
                failure
                if failure is not None and isinstance(error, asyncio.CancelledError)
                else error
            )
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks)
                _log_other_failures(tasks, raised)
            if raised is not error:
                raise raised from None
            raise
        break
    return results


def _log_other_failures(tasks: list[asyncio.Task[Any]], raised: BaseException) -> None:
    """Log what the tasks raised besides the error that propagates (and mark it retrieved:
    asyncio would otherwise complain when the task is collected)."""
    for task in tasks:
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None and error is not raised:
            logger.warning("a concurrent call also failed: %r", error, exc_info=error)


class _Failures:
    """Interrupts the caller's task when one of ``tasks`` fails, as a task group would: the
    call going on in the caller's task may wait for something the failed one never gives.

    The interruption is a cancellation of the caller's task, delivered where it waits (in
    ``concurrently``); `close` withdraws it and tells whether it was the only one.
    """

    def __init__(self, tasks: list[asyncio.Task[Any]]) -> None:
        self._caller = asyncio.current_task()
        # Cancellations already requested before (the caller cleaning up after one): only
        # what is left above them after withdrawing ours is another cancellation.
        self._cancelling = self._caller.cancelling() if self._caller is not None else 0
        self._armed = True
        self._cancelled_caller = False
        self._first: BaseException | None = None
        for task in tasks:
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if not self._armed or task.cancelled() or task.exception() is None:
            return
        self._armed = False
        self._first = task.exception()
        if self._caller is not None:
            self._caller.cancel()
            self._cancelled_caller = True

    def close(self) -> BaseException | None:
        """Stop watching; the failure the caller was cancelled for, unless another
        cancellation of the caller is pending too (then that one goes on)."""
        self._armed = False
        if not self._cancelled_caller or self._caller is None:
            return None
        self._cancelled_caller = False
        return self._first if self._caller.uncancel() <= self._cancelling else None


async def _in_task_group(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    results: list[T | None] = [None] * len(calls)

    async def run_into(slot: int) -> None:
        results[slot] = await calls[slot]()

    try:
        async with anyio.create_task_group() as tg:
            for slot in range(len(calls)):  # each in a task: its own context variables
                tg.start_soon(run_into, slot)
    except BaseExceptionGroup as group:
        # The first error as it is, like the asyncio path (the rest were cancellations).
        errors = [
            e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())
        ]
        raise (errors or list(group.exceptions))[0] from None
    return results  # type: ignore[return-value]  # every slot is filled
