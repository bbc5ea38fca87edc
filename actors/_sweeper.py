"""``Sweeper``: one task that retires idle actors' tasks, runs their ``on_idle`` (when that
has a delay of its own) and passivates idle actors.

Cells report when their mailbox runs empty (``note_idle``); the sweeper keeps them in insertion
order, which is idle-time order because the clock only moves forward, so each pass looks only at
the cells that are due and never scans the whole system. A cell that got busy again is simply
dropped when it comes due: it re-enters when it goes idle again.
"""

from __future__ import annotations

import math
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
        on_idle_after: seconds of idleness before the actor's ``on_idle`` runs (``inf``:
            never); ``None``: cells run it when they return their task.
    """

    def __init__(
        self,
        linger: float | None,
        idle_timeout: float | None,
        passivate: Callable[[Cell], None],
        *,
        on_idle_after: float | None = None,
    ) -> None:
        self._linger = linger if linger else None
        self._idle_timeout = idle_timeout
        #: Whether cells run ``on_idle`` themselves when they return their task.
        self.cells_call_on_idle = on_idle_after is None
        self._on_idle_after = (
            on_idle_after if on_idle_after is not None and math.isfinite(on_idle_after) else None
        )
        # Replaced by the loop's own clock when the system starts (see _clock.py).
        self.clock: Callable[[], float] = anyio.current_time

        self._passivate = passivate
        self._parked: OrderedDict[Cell, None] = OrderedDict()
        self._quiet: OrderedDict[Cell, None] = OrderedDict()
        self._idle: OrderedDict[Cell, None] = OrderedDict()
        self._wakeup: anyio.Event | None = None

    def note_idle(self, cell: Cell) -> None:
        """Record that ``cell`` just went idle (its task is about to park or retire)."""
        cell.idle_since = self.clock()
        if self._linger is not None:
            self._enqueue(self._parked, cell)
        if self._on_idle_after is not None:
            self._enqueue(self._quiet, cell)
        if self._idle_timeout is not None:
            self._enqueue(self._idle, cell)

    def forget(self, cell: Cell) -> None:
        """Drop ``cell`` (its incarnation is over)."""
        self._parked.pop(cell, None)
        self._quiet.pop(cell, None)
        self._idle.pop(cell, None)

    async def run(self) -> None:
        """Retire, quieten and passivate idle cells as they become due, until cancelled."""
        sweeps = [
            (queue, limit, action)
            for queue, limit, action in (
                (self._parked, self._linger, _retire),
                (self._quiet, self._on_idle_after, _quieten),
                (self._idle, self._idle_timeout, self._passivate),
            )
            if limit is not None
        ]
        if not sweeps:
            return
        while True:
            now = self.clock()
            due: float | None = None
            for queue, limit, action in sweeps:
                next_due = self._sweep(queue, limit, now, action)
                if next_due is not None and (due is None or next_due < due):
                    due = next_due
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


def _quieten(cell: Cell) -> None:
    cell.quieten()
