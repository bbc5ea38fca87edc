"""What a room's inactivity timers do at a given time: nothing, pause it, or close it.

The room's decision (``CheckTimers``) applies it; ``check_all_timers`` asks it of the read
model first, so that a sweep commands only the rooms whose timers are due. Commanding every
open room woke each one's actor: a sweep more often than ``idle_timeout`` (0.3.0's usual
loop, every minute) kept every open room from passivating, and one less often reloaded every
passivated room. The read model lags its rooms, never leads them: the time it holds of a
room's last activity is at most the room's, so a room it finds not due is not due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from roomkit.models.enums import HookTrigger, RoomStatus
from roomkit.models.room import Room

__all__ = ["TimerChange", "timer_change"]


@dataclass(frozen=True, slots=True)
class TimerChange:
    """A change a room's timers make: its new status, the event code and hook trigger, the
    threshold passed and the seconds since its last activity."""

    status: RoomStatus
    code: str
    trigger: HookTrigger
    threshold: float
    elapsed: float


def timer_change(room: Room, now: datetime) -> TimerChange | None:
    """What ``room``'s timers do at ``now``, or None (nothing: closed or archived, never
    active, or no threshold passed). Closing wins over pausing."""
    timers = room.timers
    last = timers.last_activity_at
    if room.status in (RoomStatus.CLOSED, RoomStatus.ARCHIVED) or last is None:
        return None
    if last.tzinfo is None:
        # A naive time (given to RoomTimers, or an event's created_at a channel took from a
        # provider) is read as UTC, as the kit's own times are: subtracting it from an aware
        # one raised TypeError at every check of the room.
        last = last.replace(tzinfo=UTC)
    elapsed = (now - last).total_seconds()
    closed_after, inactive_after = timers.closed_after_seconds, timers.inactive_after_seconds
    if closed_after is not None and elapsed > closed_after:
        return TimerChange(
            RoomStatus.CLOSED,
            "room_closed_by_timer",
            HookTrigger.ON_ROOM_CLOSED,
            closed_after,
            elapsed,
        )
    if (
        room.status == RoomStatus.ACTIVE
        and inactive_after is not None
        and elapsed > inactive_after
    ):
        return TimerChange(
            RoomStatus.PAUSED,
            "room_paused_by_timer",
            HookTrigger.ON_ROOM_PAUSED,
            inactive_after,
            elapsed,
        )
    return None
