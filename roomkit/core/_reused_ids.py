"""Which events a channel or hook gives again (one object, a canned reply) the kit recorded.

An event object given again keeps its id: recorded under it, it went over the event already
stored (the room's timeline held one of the two) or, in another room, the read model refused
it (that room's timeline held none, and a rebuild of the read model failed on it again).

Three things say so, cheapest first:

- the room's recent events (``RecentEvents.may_hold``), for what it recorded lately;
- ``ReusedIds.taken``: the ids of the replies and injected events this kit's rooms recorded
  lately, checked and claimed as a room's decision owns the event. A decision does not await
  in between, so of two rooms given one object at once, the second one finds the first's
  claim (the read model, asked before, held neither copy yet). A decision's claims are
  provisional until its append commits (``provisional``, ``confirm``, ``release``): one whose
  append failed or conflicted recorded nothing, and another room's copy renamed for it kept
  an id the app chose from nobody. One whose append is in doubt keeps them until settling
  says whether it landed (the room's actor);
- the read model (``ReusedIds.stored``), for what another process, or this kit before a
  restart, recorded. It is asked only about events made before the message they answer, by
  the kit's clock (a fresh reply is not: the hot path asks nothing; nor is a hook's copy of
  the message under a new id, which keeps the message's created_at), and within one bound for
  them all: a store that hangs must not hold the room, nor its deliveries, for long.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import anyio

from roomkit.models.event import RoomEvent

__all__ = ["GIVEN_KEPT", "LOOKUP_BOUND", "ReusedIds", "lookup_bound", "made_before"]

logger = logging.getLogger("roomkit.room")

LOOKUP_BOUND = 1.0
"""Seconds the read model is given to say which of a decision's events it holds (all of them
at once), at most: see ``lookup_bound``."""

GIVEN_KEPT = 4096
"""The ids of recorded replies and injected events a kit keeps (~100 bytes each). Far more
than it records while its read model catches up; one it let go, given again, was made before
its message and the read model, which holds it by then, is asked."""

EventStored = Callable[[str], Awaitable[bool]]


def lookup_bound(process_timeout: float | None) -> float:
    """The bound of one lookup for a kit whose messages may take ``process_timeout`` seconds:
    ``LOOKUP_BOUND``, or a tenth of that if less, so that the hooks and channels of the
    message keep the rest of its time."""
    if process_timeout is None:
        return LOOKUP_BOUND
    return min(LOOKUP_BOUND, process_timeout / 10)


def made_before(event: RoomEvent, since: datetime) -> bool:
    """Whether ``event`` may have been made before ``since``: a naive time and an aware one
    cannot say (a naive ``datetime.now()`` is local, ``utcnow()`` UTC), and are looked up
    (taken as UTC, a local time east of it was never looked up). The kit's times are aware;
    an app's channel that makes its replies with naive times pays a bounded lookup each."""
    made = event.created_at
    if (made.tzinfo is None) != (since.tzinfo is None):
        return True
    return made < since


class ReusedIds:
    """What one kit knows of the ids of the events given to its rooms: see the module."""

    __slots__ = ("_bound", "_claims", "_event_stored", "_kept", "_provisional")

    def __init__(
        self,
        event_stored: EventStored | None = None,
        bound: float = LOOKUP_BOUND,
        kept: int = GIVEN_KEPT,
    ) -> None:
        self._event_stored = event_stored
        self._bound = bound
        self._kept = kept
        # event id -> the room that recorded it, oldest first.
        self._claims: OrderedDict[str, str] = OrderedDict()
        # room id -> the ids its decision being made claimed anew, not yet tied to its
        # outcome (see provisional).
        self._provisional: dict[str, list[str]] = {}

    def taken(self, event_id: str, room_id: str) -> bool:
        """Whether another room of this kit recorded an event of id ``event_id`` lately; if
        not, the id is claimed for room ``room_id``, whose decision records it now. The
        room's own claims do not count: what it recorded, its recent events and the read
        model say (a claim of a decision made again after a conflict with another process,
        or whose append failed, named an event recorded nowhere, and an id the app chose
        was changed for nothing)."""
        claims = self._claims
        claim = claims.get(event_id)
        if claim is not None and claim != room_id:
            return True
        if claim is None:
            # Provisional: the room's actor confirms it once the decision's append commits,
            # and releases it if the append fails or conflicts (see provisional).
            self._provisional.setdefault(room_id, []).append(event_id)
        self._claim(event_id, room_id)
        return False

    def provisional(self, room_id: str) -> tuple[str, ...]:
        """The ids claimed anew by the decision room ``room_id`` just made, handed over to
        its actor, which ``confirm``s them once its append commits or ``release``s them."""
        return tuple(self._provisional.pop(room_id, ()))

    def confirm(self, room_id: str, event_ids: tuple[str, ...]) -> None:
        """Room ``room_id`` recorded the events of ``event_ids`` (its append committed, maybe
        one in doubt that landed after its claims were released): claimed for good, unless
        another room claimed one meanwhile."""
        claims = self._claims
        for event_id in event_ids:
            if claims.get(event_id, room_id) == room_id:
                self._claim(event_id, room_id)

    def release(self, room_id: str, event_ids: tuple[str, ...]) -> None:
        """Room ``room_id`` recorded none of ``event_ids`` (its append failed, conflicted or
        was not made): the ids are free again for the kit's other rooms."""
        claims = self._claims
        for event_id in event_ids:
            if claims.get(event_id) == room_id:
                del claims[event_id]

    def _claim(self, event_id: str, room_id: str) -> None:
        claims = self._claims
        claims[event_id] = room_id
        claims.move_to_end(event_id)
        if len(claims) > self._kept:
            claims.popitem(last=False)

    async def stored(
        self,
        events: Iterable[object],
        since: datetime | None,
        room_id: str,
        known: Callable[[str], bool] | None = None,
    ) -> frozenset[str]:
        """The ids of ``events`` (for room ``room_id``) made before ``since`` that the read
        model holds. Those this kit answers for (``taken``: claimed by another room;
        ``known``: ids the room says it holds) are not asked about; those the read model
        does not answer for within the bound are taken as not held (recorded under their
        id, as before)."""
        event_stored = self._event_stored
        if event_stored is None or since is None:
            return frozenset()
        asked = {
            event.id
            for event in events
            if isinstance(event, RoomEvent)
            and made_before(event, since)
            and self._claims.get(event.id, room_id) == room_id
            and (known is None or not known(event.id))
        }
        if not asked:
            return frozenset()
        found: set[str] = set()
        answered: set[str] = set()

        async def ask(event_id: str) -> None:
            if await event_stored(event_id):
                found.add(event_id)
            answered.add(event_id)

        # One bound for them all, asked at once: each in turn under its own held a room's
        # decision for as many bounds as a hook injected canned notices.
        with anyio.move_on_after(self._bound) as bound:
            async with anyio.create_task_group() as group:
                for event_id in asked:
                    group.start_soon(ask, event_id)
        if bound.cancelled_caught:
            logger.warning(
                "the read model did not say within %g s whether it holds events %s: recorded "
                "under their ids",
                self._bound,
                sorted(asked - answered),
            )
        return frozenset(found)
