"""Delivery outcomes waiting for their room's next append.

A delivery outcome (``delivery.recorded``) is audit: nobody waits for it. So instead of a message
to the room actor and an append of its own, the delivery worker leaves it here and the room
actor takes it with its next writing command, whose append carries it along: a busy room writes
one batch per message instead of two (one JetStream publish instead of two) and its actor is
woken once per message instead of twice. Both actors run in the same event loop and neither
awaits while touching this, so no lock is needed.

A room that falls quiet must not keep them for long: ``delay`` seconds after outcomes started
waiting, the flusher tells the room to append them (``FlushOutcomes``). A room actor that stops
(passivation, shutdown) appends what it took; only a crash of the room's actor loses the
outcomes it held (the messages themselves are committed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from actors import ActorDeadError
from roomkit.core._commands import FlushOutcomes, RecordOutcome

__all__ = ["FLUSH", "OutcomeFlusher"]

FLUSH = FlushOutcomes()


class OutcomeFlusher:
    """Holds each room's unrecorded delivery outcomes until the room takes them."""

    def __init__(self, tell_room: Callable[[str, object], Awaitable[None]], delay: float) -> None:
        self._tell_room = tell_room
        self._delay = delay
        self._waiting: dict[str, list[RecordOutcome]] = {}
        self._wakeup: anyio.Event | None = None

    def add(self, room_id: str, outcome: RecordOutcome) -> None:
        """Keep ``outcome`` (audit only) for ``room_id``'s next append."""
        waiting = self._waiting.get(room_id)
        if waiting is None:
            self._waiting[room_id] = [outcome]
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
            self._waiting.setdefault(room_id, []).extend(outcomes)
        other._waiting.clear()

    def take(self, room_id: str) -> list[RecordOutcome]:
        """The outcomes waiting for ``room_id``, in delivery order; they are the caller's now."""
        return self._waiting.pop(room_id, None) or []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell rooms to append what still waits, ``delay`` after it started waiting."""
        task_status.started()
        while True:
            if not self._waiting:
                wakeup = self._wakeup = anyio.Event()
                await wakeup.wait()
            await anyio.sleep(self._delay)
            for room_id in list(self._waiting):
                try:
                    await self._tell_room(room_id, FLUSH)
                except ActorDeadError:
                    return  # the kit is closing: the rooms append them as they stop
