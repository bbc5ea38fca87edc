"""``signal()``: a one-shot wake-up for one waiter, cheaper than ``anyio.Event`` on asyncio.

Every ask waits on one, and every actor parks on one whenever its mailbox runs empty: a few per
message, each with a single waiter (the asker, the actor's task). ``anyio.Event()`` looks the
async backend up when it is made and wraps an ``asyncio.Event``, whose ``wait`` makes a future
of its own; on asyncio a bare future does the same job for a fraction of the cost, and
cancelling the waiter works the same way. On trio this returns an ``anyio.Event``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import anyio

__all__ = ["Signal", "signal"]


class Signal(Protocol):
    """What the runtime needs of an event: set once, wait until set."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class _FutureSignal:
    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled()

    async def wait(self) -> None:
        # One waiter: if it is cancelled, so is the future, and a later set() does nothing.
        future = self._future
        if not future.done():
            await future


def signal() -> Signal:
    """A new unset signal for the running event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return anyio.Event()  # trio
    return _FutureSignal(loop)
