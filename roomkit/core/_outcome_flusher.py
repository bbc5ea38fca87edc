"""Delivery outcomes waiting for their room's next append.

A delivery outcome (``delivery.recorded``) is audit: nobody waits for it. So instead of a message
to the room actor and an append of its own, the delivery worker leaves it here and the room
actor takes it with its next writing command, whose append carries it along: a busy room writes
one batch per message instead of two (one JetStream publish instead of two) and its actor is
woken once per message instead of twice. Both actors run in the same event loop and neither
awaits while touching this, so no lock is needed.

A room that falls quiet must not keep them for long: ``delay`` seconds after its outcomes started
waiting, the flusher tells the room to append them (``FlushOutcomes``). Each room's own wait
counts: a flusher that told every room holding outcomes each ``delay`` seconds made a room
whose outcome came just before append it on its own, a second append for most messages once
rooms' messages came more than ``delay`` apart. A room actor that stops
(passivation, shutdown) appends what it took; only a crash of the room's actor loses the
outcomes it held (the messages themselves are committed).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from actors import ActorDeadError
from roomkit.core._commands import FlushOutcomes, RecordOutcome

__all__ = ["FLUSH", "OutcomeFlusher"]

FLUSH = FlushOutcomes()


class OutcomeFlusher:
    """Holds each room's unrecorded delivery outcomes until the room takes them."""

    def __init__(
        self,
        tell_room: Callable[[str, object], Awaitable[None]],
        delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tell_room = tell_room
        self._delay = delay
        self._clock = clock
        # room -> its outcomes, in the order the rooms' first outcomes came (so the room
        # waiting longest is first), and when that first one came.
        self._waiting: dict[str, list[RecordOutcome]] = {}
        self._since: dict[str, float] = {}
        self._wakeup: anyio.Event | None = None

    def add(self, room_id: str, outcome: RecordOutcome) -> None:
        """Keep ``outcome`` (audit only) for ``room_id``'s next append."""
        waiting = self._waiting.get(room_id)
        if waiting is None:
            self._waiting[room_id] = [outcome]
            self._since[room_id] = self._clock()
            if self._wakeup is not None:
                self._wakeup.set()
                self._wakeup = None
        else:
            waiting.append(outcome)

    def holds(self, room_id: str) -> bool:
        """Whether outcomes wait for ``room_id``."""
        return room_id in self._waiting

    def adopt(self, other: OutcomeFlusher) -> None:
        """Take over what ``other`` (of a runtime that ended) still held."""
        for room_id, outcomes in other._waiting.items():
            if room_id not in self._waiting:
                self._since[room_id] = other._since[room_id]
            self._waiting.setdefault(room_id, []).extend(outcomes)
        other._waiting.clear()
        other._since.clear()

    def take(self, room_id: str) -> list[RecordOutcome]:
        """The outcomes waiting for ``room_id``, in delivery order; they are the caller's now."""
        self._since.pop(room_id, None)
        return self._waiting.pop(room_id, None) or []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell each room to append what still waits, ``delay`` after it started waiting."""
        task_status.started()
        while True:
            if not self._waiting:
                wakeup = self._wakeup = anyio.Event()
                await wakeup.wait()
                continue
            now = self._clock()
            due = self._due(now)
            if not due:
                await anyio.sleep(self._since[next(iter(self._waiting))] + self._delay - now)
                continue
            for room_id in due:
                if room_id not in self._waiting:
                    continue  # taken meanwhile
                # Told once per delay: until the room takes them, its wait starts again (and
                # it goes last, so the order by waiting time holds).
                self._waiting[room_id] = self._waiting.pop(room_id)
                self._since[room_id] = now
                try:
                    await self._tell_room(room_id, FLUSH)
                except ActorDeadError:
                    return  # the kit is closing: the rooms append them as they stop
            await anyio.lowlevel.checkpoint()  # let them take their outcomes (delay 0)

    def _due(self, now: float) -> list[str]:
        """The rooms whose outcomes have waited ``delay`` by ``now``, longest first."""
        due = []
        for room_id in self._waiting:
            if self._since[room_id] + self._delay > now:
                break
            due.append(room_id)
        return due
