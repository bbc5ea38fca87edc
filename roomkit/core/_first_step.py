"""Run a coroutine's first step in the caller's task, and go on with it only if it suspended.

Most of what the kit awaits per message (hooks, a channel's ``on_event`` and ``deliver``) does
its work without ever suspending. Arming a timer for such a call (`roomkit.core._bounded`) or
spawning a task for it (`roomkit.core._concurrently`) costs more than the call itself, so the
kit runs the first step itself: a call that finishes there needs neither. One that suspends
is resumed *in the same task* by the awaitable `first_step` returns, which matters: anyio
and trio tie a cancel scope to the task that entered it, and the coroutine may have entered
one before suspending.

Every step runs in the ``contextvars.Context`` given, as a task of its own would run it: a call
that sets a context variable does not change it for the caller or for the calls after it.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Coroutine, Generator
from contextvars import Context
from typing import Any, TypeVar

__all__ = ["first_step"]

T = TypeVar("T")


def first_step(awaitable: Awaitable[T], context: Context) -> tuple[bool, Any]:
    """``(True, result)`` if ``awaitable`` is a coroutine that finished in its first step;
    otherwise ``(False, rest)``, where awaiting ``rest`` (in this task) goes on with it.

    An error raised in the first step propagates from here. Anything but a coroutine is
    returned as ``rest`` untouched (and then runs in the caller's context).
    """
    if type(awaitable) is not types.CoroutineType:
        return False, awaitable
    coroutine: Coroutine[Any, Any, T] = awaitable
    try:
        yielded = context.run(coroutine.send, None)
    except StopIteration as finished:
        return True, finished.value
    return False, _resume(context, coroutine, yielded)


@types.coroutine
def _resume(
    context: Context, coroutine: Coroutine[Any, Any, T], yielded: Any
) -> Generator[Any, Any, T]:
    """Go on with a coroutine whose first step already ran and yielded ``yielded``.

    What the task sends or throws in goes to the coroutine (each step run in ``context``),
    what it yields goes to the task: the same delegation as ``await``, picked up after the
    first step.
    """
    while True:
        thrown: BaseException | None = None
        try:
            sent = yield yielded
        except GeneratorExit:
            context.run(coroutine.close)
            raise
        except BaseException as caught:
            # Thrown in below, outside this handler: thrown in from inside it, the coroutine
            # ran to its next suspension "during handling" of it, as no await chain does
            # (the hooks after one timed out saw its CancelledError in sys.exc_info(), and
            # what they raised was chained to it).
            thrown = caught
        try:
            if thrown is None:
                yielded = context.run(coroutine.send, sent)
            else:
                yielded = context.run(coroutine.throw, thrown)
        except StopIteration as finished:
            result: T = finished.value
            return result
        finally:
            thrown = None  # no cycle through the exception's traceback
