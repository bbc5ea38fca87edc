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

import time
from contextvars import Context

import anyio

__all__ = ["Turn", "TurnTracker"]


class Turn:
    """One open turn. Keep a reference to wait for it even after it ends (``TurnTracker.wait``)."""

    __slots__ = (
        "abandoned",
        "context",
        "cut",
        "deadline",
        "done",
        "last",
        "opened_at",
        "pending",
        "position",
        "started",
        "started_at",
    )

    def __init__(self) -> None:
        self.pending = 0
        # The context of the caller of the command that opened it (_caller_context), if any.
        self.context: Context | None = None
        self.abandoned = False  # ended by the kit's stop, not delivered (see TurnTracker.stop)
        self.last = 0  # of ``pending``: the work that runs once the rest is delivered
        self.position = 0  # the last log position committed within the turn
        self.done: anyio.Event | None = None
        # When (``time.perf_counter()``) the turn was opened (its first event committed), and
        # when the room's delivery worker took its first work up: in between, it waited
        # behind the room's earlier turns (see ``queued``).
        self.opened_at = time.perf_counter()
        self.started_at: float | None = None
        self.started: anyio.Event | None = None  # set at the start (or the end) for a waiter
        # When (``time.perf_counter()``) the budget of the message that opened the turn
        # (``process_timeout``) runs out, not counting the time it waited behind the room's
        # earlier turns, as its caller counts it (see ``overdue``); None: no bound.
        self.deadline: float | None = None
        # Set when the caller stopped waiting for the turn (its process_timeout ran out, or it
        # was cancelled): its chain of replies stops re-entering the room (see ``overdue``).
        self.cut = False

    def start(self) -> None:
        """The room's delivery worker takes the turn's work up (again: no-op)."""
        if self.started_at is None:
            self.started_at = time.perf_counter()
            if self.started is not None:
                self.started.set()

    @property
    def queued(self) -> float:
        """Seconds the turn waited behind the room's earlier turns before its work started
        (so far, if it has not started)."""
        started = self.started_at if self.started_at is not None else time.perf_counter()
        return max(0.0, started - self.opened_at)

    def overdue(self) -> bool:
        """Whether replies of the turn must stop re-entering the room: its caller stopped
        waiting (``cut``), or the message's ``process_timeout`` ran out (``deadline``; a
        caller that did not wait, ``wait_for_delivery=False``, is bounded alike).

        0.3.0 ran a message's whole chain of AI replies under its ``process_timeout``; run
        after the commit with no such bound, two AIs answering each other went on for good
        once their caller was told ``process_timeout``, and held the room's later messages.
        """
        if self.cut:
            return True
        if self.deadline is None or self.started_at is None:
            return False
        return time.perf_counter() > self.deadline + self.queued

    async def wait_started(self) -> None:
        """Return once the turn's work started (or the turn ended)."""
        if self.started_at is None and self.pending > 0:
            if self.started is None:
                self.started = anyio.Event()
            await self.started.wait()


class TurnTracker:
    """Counts the undelivered events of each open turn, keyed by the turn's root event id."""

    def __init__(self) -> None:
        self._turns: dict[str, Turn] = {}
        self._idle: anyio.Event | None = None  # set when the last open turn ends

    def __len__(self) -> int:
        return len(self._turns)

    def opened(self, root: str) -> Turn:
        """One more event of turn ``root`` awaits delivery; return the turn."""
        turn = self._turns.get(root)
        if turn is None:
            turn = self._turns[root] = Turn()
        turn.pending += 1
        return turn

    def get(self, root: str) -> Turn | None:
        """The open turn ``root``, if any."""
        return self._turns.get(root)

    def reached(self, root: str, position: int) -> None:
        """Something of turn ``root`` was committed at ``position`` (e.g. an AI reply)."""
        turn = self._turns.get(root)
        if turn is not None and position > turn.position:
            turn.position = position

    def delivered(self, root: str, *, dropped: bool = False) -> None:
        """One event of turn ``root`` is delivered (or ``dropped``: let go undelivered, the
        turn then ``abandoned``); wake waiters when none is left."""
        turn = self._turns.get(root)
        if turn is None:
            return
        if dropped:
            # Its caller is told the kit closed first: it was told the message was delivered.
            turn.abandoned = True
        turn.pending -= 1
        if turn.pending <= 0:
            del self._turns[root]
            if turn.done is not None:
                turn.done.set()
            if turn.started is not None:
                turn.started.set()
            if not self._turns and self._idle is not None:
                self._idle.set()
                self._idle = None

    def stop(self) -> None:
        """End every open turn undelivered (``abandoned``), waking its waiters: the kit's
        runtime stopped, and what its delivery workers still held was dropped with them.
        Without a ``process_timeout``, a caller waiting for one of them waited for good."""
        turns, self._turns = self._turns, {}
        for turn in turns.values():
            turn.abandoned = True
            turn.pending = 0  # a waiter that comes to wait() or wait_started() later returns
            if turn.done is not None:
                turn.done.set()
            if turn.started is not None:
                turn.started.set()
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Return once no turn is open."""
        if not self._turns:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        await self._idle.wait()

    @staticmethod
    async def wait(turn: Turn) -> int:
        """Return once ``turn`` has nothing left to deliver (at once if it already ended).

        Returns:
            The last log position committed within the turn, so the caller can wait for the
            read model to include the replies too.
        """
        if turn.pending > 0:
            if turn.done is None:
                turn.done = anyio.Event()
            await turn.done.wait()
        return turn.position
