"""Telling a real cancellation from a ``CancelledError`` that user code raised of its own."""

from __future__ import annotations

import asyncio

from actors import error_text, is_cancellation

__all__ = ["is_cancelling", "raised_uncancelled"]


def is_cancelling() -> bool:
    """Whether the current task is being cancelled (always, as far as we know, off asyncio).

    A hook, channel or provider may raise ``CancelledError`` that no cancellation caused (an
    inner operation's, let through). Left to propagate, it would end the room's actor or
    cancel the other targets of a broadcast; the kit takes it for a failure like any other
    unless the task running the code is really being cancelled.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop: trio, where Cancelled comes only from a scope
        return True
    return task is None or task.cancelling() > 0


def raised_uncancelled(error: BaseException, who: str) -> RuntimeError:
    """The failure to report for ``error``, a ``BaseException`` that is not an ``Exception``
    raised by user code (``who``): its own ``CancelledError``, a ``GeneratorExit``, a subclass
    of ``BaseException``. Such an error fails that call only, like any other.

    Raises:
        BaseException: ``error`` itself when it is not the code's own: the task is being
            cancelled, or the process asked to exit.
    """
    if isinstance(error, KeyboardInterrupt | SystemExit) or is_cancellation(error):
        raise error
    if isinstance(error, asyncio.CancelledError):
        return RuntimeError(f"{who} raised CancelledError uncancelled")
    name, text = type(error).__name__, error_text(error)
    return RuntimeError(f"{who} raised {name}" if text == name else f"{who} raised {name}: {text}")
