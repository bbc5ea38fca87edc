"""``Sweeper``: one task that retires idle actors' tasks and passivates idle actors.

Cells report when their mailbox runs empty (``note_idle``); the sweeper keeps them in insertion
order, which is idle-time order because the clock only moves forward, so each pass looks only at
the cells that are due and never scans the whole system. A cell that got busy again is simply
dropped when it comes due: it re-enters when it goes idle again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from actors._cell import Cell

__all__ = ["Sweeper"]


class Sweeper:
    """Idle bookkeeping for a system's cells.

    Args:
        linger: seconds an idle actor keeps its task (``None``: for ever; 0: cells retire their
            task themselves, the sweeper is not involved).
        idle_timeout: seconds of idleness before an actor passivates (``None``: never).
        passivate: called with a cell whose idle time reached ``idle_timeout``.
    """

    def __init__(
        self,
        linger: float | None,
        idle_timeout: float | None,
        passivate: Callable[[Cell], None],
    ) -> None:
        self._linger = linger if linger else None
        self._idle_timeout = idle_timeout
        # Replaced by the loop's own clock when the system starts (see _clock.py).
        self.clock: Callable[[], float] = anyio.current_time

        self._passivate = passivate
        self._parked: OrderedDict[Cell, None] = OrderedDict()
        self._idle: OrderedDict[Cell, None] = OrderedDict()
        self._wakeup: anyio.Event | None = None

    def note_idle(self, cell: Cell) -> None:
        """Record that ``cell`` just went idle (its task is about to park or retire)."""
        cell.idle_since = self.clock()
        if self._linger is not None:
            self._enqueue(self._parked, cell)
        if self._idle_timeout is not None:
            self._enqueue(self._idle, cell)

    def forget(self, cell: Cell) -> None:
        """Drop ``cell`` (its incarnation is over)."""
        self._parked.pop(cell, None)
        self._idle.pop(cell, None)

    async def run(self) -> None:
        """Retire and passivate idle cells as they become due, until cancelled."""
        if self._linger is None and self._idle_timeout is None:
            return
        while True:
            now = self.clock()
            due: float | None = None
            if self._linger is not None:
                due = self._sweep(self._parked, self._linger, now, _retire)
            if self._idle_timeout is not None:
                passivation = self._sweep(self._idle, self._idle_timeout, now, self._passivate)
                if passivation is not None and (due is None or passivation < due):
                    due = passivation
            wakeup = self._wakeup = anyio.Event()
            if due is None:
                await wakeup.wait()
            else:
                with anyio.move_on_after(due - now):
                    await wakeup.wait()

    def _enqueue(self, queue: OrderedDict[Cell, None], cell: Cell) -> None:
        if cell in queue:
            queue.move_to_end(cell)
            return
        queue[cell] = None
        if len(queue) == 1 and self._wakeup is not None:
            # The sweeper sleeps without a deadline (or towards one that is now gone).
            self._wakeup.set()
            self._wakeup = None

    @staticmethod
    def _sweep(
        queue: OrderedDict[Cell, None],
        limit: float,
        now: float,
        action: Callable[[Cell], None],
    ) -> float | None:
        """Apply ``action`` to the cells idle for ``limit`` seconds; return the next due time."""
        while queue:
            cell = next(iter(queue))
            due = cell.idle_since + limit
            if due > now:
                # Even if the cell is busy now: dropping it early would only have it re-enter
                # (and wake the sweeper) the next time it goes idle, once per message.
                return due
            queue.popitem(last=False)
            if cell.idle:
                action(cell)
        return None


def _retire(cell: Cell) -> None:
    cell.retire_task()
