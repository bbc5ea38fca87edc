"""``Deadlines``: one task that expires every pending ``ask`` of a system.

A cancel scope per ask (``fail_after``) costs about as much as the rest of the round trip, so the
timeouts are kept here instead: one FIFO queue per distinct timeout value (callers use a handful),
each in deadline order because the clock only moves forward. Settled asks at the head of a queue
are dropped when the next ask is added, so a queue stays short while replies come in order; when
a slow ask holds the head, the queue is compacted once it doubles, so the settled asks kept
behind it stay within a constant factor of the asks really pending (amortised O(1) per ask).
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Callable

import anyio

from actors._ask import Ask

__all__ = ["Deadlines"]

#: A queue is never compacted below this length (compaction is a full pass).
_COMPACT_MIN = 1024


class Deadlines:
    """Pending asks by deadline, and the task (``run``) that fails the ones that expire."""

    def __init__(self) -> None:
        # Replaced by the loop's own clock when the system starts (see _clock.py).
        self.clock: Callable[[], float] = anyio.current_time
        self._queues: dict[float, deque[tuple[float, Ask]]] = {}

        # Per queue: the length past which it is compacted next.
        self._compact_at: dict[float, int] = {}
        # The earliest deadline the run loop sleeps towards (None: it sleeps until woken).
        self._next: float | None = None
        self._wakeup: anyio.Event | None = None
        self._passed: float | None = None  # see checked

    @staticmethod
    def check(timeout: float) -> None:
        """Refuse a timeout `add` cannot keep.

        Raises:
            TypeError: ``timeout`` is not a number (``True`` was taken as 1 s, and ``"1"``
                failed comparing a str with an int).
            ValueError: ``timeout`` is not a positive, finite number.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(f"an ask's timeout is a number of seconds, got {timeout!r}")
        try:
            valid = timeout > 0 and math.isfinite(timeout)
        except OverflowError:  # an int past a float's range: no finite float
            valid = False
        if not valid:
            raise ValueError(f"an ask needs a positive, finite timeout, got {timeout!r}")

    def checked(self, timeout: float) -> None:
        """`check`, remembering the last timeout that passed: callers pass the same one (the
        system's or the kit's setting) at every ask, and it need not be checked again."""
        if timeout is not self._passed:
            self.check(timeout)
            self._passed = timeout

    def add(self, ask: Ask, timeout: float) -> None:
        """Expire ``ask`` in ``timeout`` seconds unless it is settled first (``timeout``
        passed `check`)."""
        deadline = self.clock() + timeout
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        while queue and queue[0][1].done:
            queue.popleft()
        if len(queue) >= self._compact_at.get(timeout, _COMPACT_MIN):
            queue = self._queues[timeout] = deque(e for e in queue if not e[1].done)
            self._compact_at[timeout] = max(_COMPACT_MIN, 2 * len(queue))
        queue.append((deadline, ask))
        if len(queue) == 1 and (self._next is None or deadline < self._next):
            self._wake()

    def pending(self) -> int:
        """Return how many asks are tracked (settled ones not yet dropped included)."""
        return sum(len(queue) for queue in self._queues.values())

    def fail_all(self, error: BaseException) -> None:
        """Settle every pending ask with ``error`` (used when the system stops)."""
        for queue in self._queues.values():
            for _, ask in queue:
                ask.fail(error)
        self._queues.clear()
        self._compact_at.clear()

    async def run(self) -> None:
        """Expire asks as their deadlines pass, until cancelled."""
        while True:
            now = self.clock()
            earliest: float | None = None
            for timeout, queue in list(self._queues.items()):
                while queue and (queue[0][1].done or queue[0][0] <= now):
                    queue.popleft()[1].expire()
                if not queue:
                    del self._queues[timeout]
                    self._compact_at.pop(timeout, None)
                elif earliest is None or queue[0][0] < earliest:
                    earliest = queue[0][0]
            self._next = earliest
            wakeup = self._wakeup = anyio.Event()
            if earliest is None:
                await wakeup.wait()
            else:
                with anyio.move_on_after(earliest - now):
                    await wakeup.wait()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None
