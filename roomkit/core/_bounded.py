"""Await user code under a time limit, paying for a timer only when the code suspends.

Hooks and identity resolvers run under a timeout on every message. Most of them (filters,
moderation rules, observers) finish without ever suspending, and cancellation is cooperative:
code that never reaches an ``await`` that suspends cannot be interrupted by any timer. So
`bounded` runs a coroutine's first step itself (`roomkit.core._first_step`); if it finishes
there, no timer is armed at all. A coroutine that suspends is resumed under a timer whose
deadline counts from before its first step.

On asyncio the timer is ``asyncio.timeout_at``, so a hook's time runs out as under 0.3.0's
``asyncio.wait_for``: one asyncio cancellation, which anyio shields inside the hook do not hold
off, and which the hook may swallow and return (its result is then returned). An anyio cancel
scope would repeat the cancellation and respect shields, but entering one costs as much as the
timer saved (a scope must also be entered *before* the first step: anyio keeps a stack of
scopes per task, and one entered after the coroutine entered and suspended inside its own
scopes would sit above them, which anyio refuses when they exit). On trio the whole await runs
in an anyio cancel scope.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

import anyio

from roomkit.core._first_step import _resume, first_step

__all__ = [
    "TimedOut",
    "bounded",
    "bounded_here",
    "called_apart",
    "started_bounded",
    "started_here",
]

T = TypeVar("T")


class TimedOut(Exception):
    """The awaited code did not finish within its time limit (it was cancelled).

    Distinct from `TimeoutError`, which the awaited code may raise from its own I/O.
    """


def called_apart(fn: Callable[..., T], *args: Any) -> tuple[T, contextvars.Context]:
    """``fn(*args)`` called in a copy of the caller's context variables, and that copy: what
    it returned, if awaitable, goes on in it (``bounded(..., context=...)``).

    User code the kit calls (a hook, an identity hook, a framework event handler) may be a
    plain function, whose work is done by the call itself: called in the caller's context, a
    context variable it set stayed set for the hooks after it and the room's later messages.
    """
    context = contextvars.copy_context()
    return context.run(fn, *args), context


async def bounded(
    awaitable: Awaitable[T],
    seconds: float | None,
    context: contextvars.Context | None = None,
) -> T:
    """Await ``awaitable``; raise `TimedOut` if it has not finished after ``seconds``.

    ``None`` or infinity: no limit. The awaited code is cancelled when its time runs out; if
    it swallows the cancellation and returns, its result is returned. It runs in ``context``,
    by default a copy of the caller's context variables, as 0.3.0's ``asyncio.wait_for`` ran
    a hook in a task of its own: a hook setting one does not leave it in the room's actor for
    its next messages.
    """
    limit = math.inf if seconds is None else seconds
    if context is None:
        context = contextvars.copy_context()
    result: T
    loop = asyncio._get_running_loop()
    if loop is None:  # not asyncio (trio): anyio's own scope, entered before anything runs
        with anyio.move_on_after(limit):
            done, rest = first_step(awaitable, context)
            result = rest if done else await rest
            return result
        raise TimedOut  # the scope caught its cancellation: the code did not return in time
    deadline = loop.time() + limit
    done, rest = first_step(awaitable, context)
    if done:
        result = rest
        return result
    if limit == math.inf:
        return await rest  # type: ignore[no-any-return]
    return await _under_timer(rest, deadline)


def started_bounded(
    awaitable: Awaitable[T], seconds: float | None, context: contextvars.Context
) -> tuple[bool, Any]:
    """`bounded`, its first step taken by the caller: ``(True, result)`` if ``awaitable``
    finished there, otherwise ``(False, rest)``, where awaiting ``rest`` (in this task) goes
    on with it under the time limit (counted from before the first step), as awaiting
    ``bounded(awaitable, seconds, context)`` would.

    For the calls paid on every message (hooks): one that finishes in its first step costs
    no coroutine of ``bounded``'s own (~1 µs). On trio, or for anything but a coroutine,
    ``rest`` is that ``bounded(...)`` itself, nothing run yet.
    """
    loop = asyncio._get_running_loop()
    if loop is None or type(awaitable) is not types.CoroutineType:
        return False, bounded(awaitable, seconds, context)
    limit = math.inf if seconds is None else seconds
    deadline = loop.time() + limit if limit != math.inf else math.inf
    coroutine: Coroutine[Any, Any, T] = awaitable
    try:
        yielded = context.run(coroutine.send, None)
    except StopIteration as finished:
        return True, finished.value
    rest = _resume(context, coroutine, yielded)
    if deadline == math.inf:
        return False, rest
    return False, _under_timer(rest, deadline)


def started_here(awaitable: Awaitable[T], seconds: float | None) -> tuple[bool, Any]:
    """`bounded_here`, its first step taken by the caller: ``(True, result)`` if
    ``awaitable`` finished there, otherwise ``(False, rest)``, where awaiting ``rest`` goes on
    with it as awaiting ``bounded_here(awaitable, seconds)`` would (the timer counting from
    the first suspension). Saves the coroutine of ``bounded_here`` for a call that never
    suspends (a channel's ``deliver``, on every target of every message)."""
    if seconds is None:
        return False, awaitable
    loop = asyncio._get_running_loop()
    if loop is None or type(awaitable) is not types.CoroutineType:
        return False, bounded(awaitable, seconds)
    coroutine: Coroutine[Any, Any, T] = awaitable
    try:
        yielded = coroutine.send(None)
    except StopIteration as finished:
        return True, finished.value
    return False, _under_timer(_resume_here(coroutine, yielded), loop.time() + seconds)


async def bounded_here(awaitable: Awaitable[T], seconds: float | None) -> T:
    """`bounded` for code that already runs in a context of its own (a target of a fan-out,
    which `roomkit.core._concurrently` runs in a copy of the caller's): the first step runs
    in the current context, and the timer counts from the first suspension.

    A call that never suspends (a channel handing the message to a buffer) costs ~0.6 µs over
    awaiting it, against ~1 µs for `bounded`; that is paid per target of every message. On
    trio it is `bounded` (see the module docstring for why a scope comes first).
    """
    if seconds is None:
        return await awaitable
    if type(awaitable) is not types.CoroutineType or asyncio._get_running_loop() is None:
        return await bounded(awaitable, seconds)
    coroutine: Coroutine[Any, Any, T] = awaitable
    try:
        yielded = coroutine.send(None)
    except StopIteration as finished:
        result: T = finished.value
        return result
    rest = _resume_here(coroutine, yielded)
    return await _under_timer(rest, asyncio.get_running_loop().time() + seconds)


@types.coroutine
def _resume_here(coroutine: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Go on with ``coroutine`` after its first step, in the current context (see
    `roomkit.core._first_step._resume`, which runs each step in a given one)."""
    while True:
        thrown: BaseException | None = None
        try:
            sent = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as caught:
            thrown = caught  # thrown in outside this handler: see _first_step._resume
        try:
            yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
        except StopIteration as finished:
            result: T = finished.value
            return result
        finally:
            thrown = None


async def _under_timer(awaitable: Awaitable[T], deadline: float) -> T:
    timer = asyncio.timeout_at(deadline)
    try:
        async with timer:
            return await awaitable
    except TimeoutError:
        if timer.expired():
            raise TimedOut from None
        raise
