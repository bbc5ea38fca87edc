"""Waiting for a conversation turn to settle.

A turn starts with one committed event (an inbound message, a ``send_event``) and lasts until
that event and every reply it caused (AI responses re-entering the room, up to the chain-depth
limit) have been delivered and their async hooks have run. ``process_inbound`` waits for its
turn so that, as in RoomKit 0.3.0, its return means "delivered".

The count of a turn goes up when the room actor commits an event of that turn and down when
the delivery of that event is finished; replies are committed before the delivery that caused
them finishes, so the count reaches zero only when the whole turn is done.
"""

from __future__ import annotations

import anyio

__all__ = ["TurnTracker"]


class _Turn:
    __slots__ = ("done", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.done: anyio.Event | None = None


class TurnTracker:
    """Counts the undelivered events of each open turn, keyed by the turn's root event id."""

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    def __len__(self) -> int:
        return len(self._turns)

    def opened(self, root: str) -> None:
        """One more event of turn ``root`` awaits delivery."""
        turn = self._turns.get(root)
        if turn is None:
            turn = self._turns[root] = _Turn()
        turn.pending += 1

    def delivered(self, root: str) -> None:
        """One event of turn ``root`` is delivered; wake waiters when none is left."""
        turn = self._turns.get(root)
        if turn is None:
            return
        turn.pending -= 1
        if turn.pending <= 0:
            del self._turns[root]
            if turn.done is not None:
                turn.done.set()

    async def wait(self, root: str) -> None:
        """Return once turn ``root`` has nothing left to deliver (at once if it never opened)."""
        turn = self._turns.get(root)
        if turn is None:
            return
        if turn.done is None:
            turn.done = anyio.Event()
        await turn.done.wait()
