"""Which events a channel or hook gives again (one object, a canned reply) the read model holds.

An event object given again keeps its id: recorded under it, it went over the event already
stored (the room's timeline held one of the two) or, in another room, the read model refused
it (that room's timeline held none). The room's recent events say so for what it recorded
lately (``RecentEvents.may_hold``); past them, or in another room, only the read model can. It
is asked only for events made before the message they answer (a fresh reply is not), and
within a bound: a store that hangs must not hold the room, nor its deliveries, for long.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import anyio

from roomkit.models.event import RoomEvent

__all__ = ["LOOKUP_BOUND", "made_before", "stored_ids"]

logger = logging.getLogger("roomkit.room")

LOOKUP_BOUND = 1.0
"""Seconds the read model is given to say whether it holds an event's id (each time)."""

EventStored = Callable[[str], Awaitable[bool]]


def made_before(event: RoomEvent, since: datetime) -> bool:
    """Whether ``event`` may have been made before ``since``: a naive time and an aware one
    cannot say (a naive ``datetime.now()`` is local, ``utcnow()`` UTC), and are looked up
    (taken as UTC, a local time east of it was never looked up). The kit's times are aware;
    an app's channel that makes its replies with naive times pays a bounded lookup each."""
    made = event.created_at
    if (made.tzinfo is None) != (since.tzinfo is None):
        return True
    return made < since


async def stored_ids(
    events: Iterable[object],
    since: datetime | None,
    event_stored: EventStored | None,
    recent: Callable[[str], bool] | None = None,
) -> frozenset[str]:
    """The ids of ``events`` made before ``since`` that the read model holds (``recent``:
    ids the room says it holds itself, not looked up); those it does not answer for within
    ``LOOKUP_BOUND`` are taken as not held (recorded under their id, as before)."""
    if event_stored is None or since is None:
        return frozenset()
    found: set[str] = set()
    for event in events:
        if not isinstance(event, RoomEvent) or not made_before(event, since):
            continue
        if recent is not None and recent(event.id):
            continue
        with anyio.move_on_after(LOOKUP_BOUND) as bound:
            if await event_stored(event.id):
                found.add(event.id)
        if bound.cancelled_caught:
            logger.warning(
                "the read model did not say within %.0f s whether it holds event %s: recorded "
                "under its id",
                LOOKUP_BOUND,
                event.id,
            )
    return frozenset(found)
