"""Telling a real cancellation from a ``CancelledError`` that user code raised of its own."""

from __future__ import annotations

import asyncio

__all__ = ["is_cancelling"]


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
