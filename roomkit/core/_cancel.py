"""What the kit reports for a ``BaseException`` that user code raised of its own (see
``actors.is_cancellation`` for telling it from a cancellation)."""

from __future__ import annotations

import asyncio

from actors import described, is_cancellation

__all__ = ["cut_context_cycle", "interrupt_in", "raised_uncancelled"]


def cut_context_cycle(error: BaseException) -> None:
    """Cut the cycle in ``error``'s ``__context__`` chain, if there is one.

    contextlib's exit stacks make one when two of their exits raise the same exception (a
    cancellation re-raised by the task groups and actor system a stack unwinds): they set its
    context to itself. anyio follows the context chain of a task's ``CancelledError`` without
    a bound when the task ends, so such a task hung its event loop for good (a kit with an
    ingress inside a cancelled scope).
    """
    seen = {id(error)}
    current = error
    while (context := current.__context__) is not None:
        if id(context) in seen:
            current.__context__ = None
            return
        seen.add(id(context))
        current = context


def interrupt_in(error: BaseException) -> KeyboardInterrupt | SystemExit | None:
    """The ``KeyboardInterrupt`` or ``SystemExit`` that ``error`` is or holds (in exception
    groups, however nested), else ``None``.

    On trio, one raised in a room's work (a hook, a channel: a Ctrl-C lands where code runs)
    leaves the kit's task groups wrapped in a group in a group: ``except KeyboardInterrupt``
    missed it, and ``sys.exit(3)`` ended the process with 1 (asyncio hands it on bare).
    """
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = interrupt_in(inner)
            if found is not None:
                return found
    return None


def raised_uncancelled(error: BaseException, who: str) -> RuntimeError:
    """The failure to report for ``error``, a ``BaseException`` that is not an ``Exception``
    raised by user code (``who``): its own ``CancelledError``, a ``GeneratorExit``, a subclass
    of ``BaseException``. Such an error fails that call only, like any other.

    Raises:
        BaseException: ``error`` itself when it is not the code's own: the task is being
            cancelled, or the process asked to exit.
    """
    interrupt = interrupt_in(error)
    if interrupt is not None:
        # Bare, also out of a task group the code ran (which wraps what its children raise,
        # and on asyncio cancels the task it runs in): on trio such a group was reported as
        # the code's failure, and a Ctrl-C or sys.exit() in it lost; on asyncio it crashed
        # the room's actor on the way out. Not shown as raised while handling that group.
        raise interrupt from None
    if is_cancellation(error):
        raise error
    if isinstance(error, asyncio.CancelledError):
        return RuntimeError(f"{who} raised CancelledError uncancelled")
    return RuntimeError(f"{who} raised {described(error)}")
