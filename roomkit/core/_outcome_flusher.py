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
rooms' messages came more than ``delay`` apart. The flusher never waits on a room: a busy one
(full mailbox) appends them with its next command anyway, and a room told once is told again
only after ``max(delay, 1 s)``, if it has not appended them by then, unless its actor runs: its
FLUSH then waits in its mailbox behind a long decision (a slow hook), and the room is only looked
at again later (told ten times over a 12-second hook, it was taken for one whose actor cannot
start, and its outcomes were dropped). A room actor that stops
(passivation, shutdown) appends what it took, and a closing kit tells the rooms whose actors
do not run. Outcomes are lost (the messages themselves are committed) only to a crash of the
room's actor, to an actor that stops while another process writes its room (its last append
conflicting twice: logged), and to a room told ten times that still did not append them (its
actor cannot start: logged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from actors import ActorDeadError, MailboxFull
from actors._clock import loop_clock
from roomkit.core._commands import FlushOutcomes, RecordOutcome

__all__ = ["FLUSH", "OutcomeFlusher"]

logger = logging.getLogger("roomkit.runtime")

FLUSH = FlushOutcomes()


class OutcomeFlusher:
    """Holds each room's unrecorded delivery outcomes until the room takes them.

    Args:
        tell_room: hands a room a message without waiting (``ActorRef.tell_nowait``); raises
            ``MailboxFull`` for a busy room and ``ActorDeadError`` once the kit's actors stop
            (the kit is closing: see ``KitRuntime.stop`` for the outcomes still waiting).
        delay: how long a room's outcomes wait for its next append.
        clock: the clock of ``delay`` (anyio's, which ``anyio.sleep`` follows).
        runs: whether a room's actor runs (its mailbox holds what it was told).
    """

    def __init__(
        self,
        tell_room: Callable[[str, object], None],
        delay: float,
        clock: Callable[[], float] = anyio.current_time,
        runs: Callable[[str], bool] = lambda room_id: False,
    ) -> None:
        self._tell_room = tell_room
        self._runs = runs
        self._delay = delay
        # A room told to append is told again only if it has not after this long: its FLUSH
        # waits behind the commands in its mailbox, and each of them appends its outcomes too.
        self._retell = max(delay, _RETELL_AFTER)
        self._clock = clock
        # room -> its outcomes; and, in the order they started waiting, the rooms not told
        # yet (-> when their first outcome came) and the rooms told (-> when they were told).
        self._waiting: dict[str, list[RecordOutcome]] = {}
        self._since: dict[str, float] = {}
        self._told: dict[str, float] = {}
        self._tells: dict[str, int] = {}  # how often a room was told and did not take them
        self._queued: set[str] = set()  # rooms a FLUSH went in the mailbox of
        self._wakeup: anyio.Event | None = None
        self._wake_at = math.inf  # when the flusher looks again, unless woken

    def add(self, room_id: str, outcome: RecordOutcome) -> None:
        """Keep ``outcome`` (audit only) for ``room_id``'s next append."""
        waiting = self._waiting.get(room_id)
        if waiting is None:
            self._waiting[room_id] = [outcome]
            since = self._since[room_id] = self._clock()
            if self._wakeup is not None and since + self._delay < self._wake_at:
                # Due before the flusher looks again (it sleeps towards a later time, or
                # without one): wake it. Most rooms come due after the ones already waiting.
                self._wakeup.set()
                self._wakeup = None
        else:
            waiting.append(outcome)

    def holds(self, room_id: str) -> bool:
        """Whether outcomes wait for ``room_id``."""
        return room_id in self._waiting

    def rooms(self) -> list[str]:
        """The rooms that outcomes wait for."""
        return list(self._waiting)

    def adopt(self, other: OutcomeFlusher) -> None:
        """Take over what ``other`` (of a runtime that ended) still held."""
        for room_id, outcomes in other._waiting.items():
            if room_id not in self._waiting:
                # Waited in a loop that is gone (another clock): due at once. (No clock is
                # read here: a kit may take over its ended runtime from any code.)
                self._since[room_id] = -math.inf
            self._waiting.setdefault(room_id, []).extend(outcomes)
        other._waiting.clear()
        other._since.clear()
        other._told.clear()
        other._tells.clear()
        other._queued.clear()

    def take(self, room_id: str) -> list[RecordOutcome]:
        """The outcomes waiting for ``room_id``, in delivery order; they are the caller's now."""
        self._since.pop(room_id, None)
        self._told.pop(room_id, None)
        self._tells.pop(room_id, None)
        self._queued.discard(room_id)
        return self._waiting.pop(room_id, None) or []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell each room to append what still waits, ``delay`` after it started waiting."""
        if self._clock is anyio.current_time:
            # The same clock, resolved once: anyio's looks the async backend up on every
            # call, and ``add`` reads it once per message (see actors/_clock.py).
            self._clock = loop_clock()
        task_status.started()
        while True:
            wakeup = self._wakeup = anyio.Event()
            if not self._waiting:
                self._wake_at = math.inf
                await wakeup.wait()
                continue
            now = self._clock()
            due = _due(self._since, self._delay, now) + _due(self._told, self._retell, now)
            if not due:
                self._wake_at = self._next_due()
                with anyio.move_on_after(self._wake_at - now):
                    await wakeup.wait()
                continue
            for room_id in due:
                if self._tells.get(room_id, 0) >= _MOST_TELLS:
                    # Told every second and never appending: its actor cannot start (each
                    # message to it starts it anew, and the actor system logs each failure).
                    dropped = self.take(room_id)
                    logger.warning(
                        "room %s did not append %d delivery outcomes in %d tries: dropped",
                        room_id,
                        len(dropped),
                        _MOST_TELLS,
                    )
                    continue
                self._since.pop(room_id, None)
                self._told.pop(room_id, None)
                self._told[room_id] = now  # last: the order by time told holds
                if room_id in self._queued and self._runs(room_id):
                    continue  # its FLUSH waits in its mailbox, behind a long decision
                try:
                    self._tell_room(room_id, FLUSH)
                except MailboxFull:
                    # Busy: its next command appends them, or it is told again later.
                    self._queued.discard(room_id)
                    continue
                except ActorDeadError:
                    return  # the kit is closing (see KitRuntime.stop for the rooms' outcomes)
                self._tells[room_id] = self._tells.get(room_id, 0) + 1
                self._queued.add(room_id)
            await anyio.lowlevel.checkpoint()  # let them take their outcomes

    def _next_due(self) -> float:
        times = []
        if self._since:
            times.append(self._since[next(iter(self._since))] + self._delay)
        if self._told:
            times.append(self._told[next(iter(self._told))] + self._retell)
        return min(times)


_RETELL_AFTER = 1.0
_MOST_TELLS = 10


def _due(started: dict[str, float], limit: float, now: float) -> list[str]:
    """The rooms of ``started`` (in the order they started) that waited ``limit`` by ``now``."""
    due = []
    for room_id, since in started.items():
        if since + limit > now:
            break
        due.append(room_id)
    return due
