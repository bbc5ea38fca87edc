"""A room's most recent events as its actor keeps them: JSON first, models on demand.

The actor needs them only to hand hooks and channels a ``RoomContext`` whose ``recent_events``
are the room's last ``RECENT_EVENTS`` events. Held as pydantic models, that is some 16 objects
per event for the garbage collector to walk on every full collection: with a thousand busy
rooms, collections took half the process's time. So the events are kept as their JSON (the
bytes the log holds), and validated into models only when something reads them, once per
room: from then on the actor keeps the models too (each event read from its JSON as it comes,
as a replay reads it), as the read that needed them (an AI channel building its prompt) will
come again, until the room rests (``RoomState.rest``, after
``rest_after`` of quiet): fifty models take ~150 KB, their JSON a fifth of that.

A context gets a ``LazyEvents``: a sequence with every list operation that fills itself with
the models the first time it is used (iteration, indexing, ``len``, comparison, copying,
validation into another pydantic model, the context's serialisation). It captures the events
of its moment, so a late read still sees the room as it was when the context was made.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, MutableSequence
from typing import Any, SupportsIndex, overload

import msgspec

from roomkit.models.event import RoomEvent

__all__ = ["RECENT_EVENTS", "LazyEvents", "RecentEvents", "readable"]

logger = logging.getLogger("roomkit.room")

RECENT_EVENTS = 50
"""How many of the most recent timeline events a hook or channel sees in its ``RoomContext``."""

SPARE_EVENTS = RECENT_EVENTS
"""How many events the window let go since the last context it made it keeps, so that a context
of an event recorded together with later ones (``view(leave_out=...)``) still holds
``RECENT_EVENTS`` events: two AIs answering one message make one append. (Only a room replayed
from the log makes no context between its appends: its next context lets them go.)"""

Json = msgspec.Raw  # an event's JSON as logged (a view of the log's or snapshot's bytes)

_ID_FIRST = b'{"id":'  # how an event's JSON begins as the kit writes it
_ID_FIRST_SIZE = len(_ID_FIRST)


def _model(raw: Json) -> RoomEvent:
    return RoomEvent.model_validate_json(bytes(raw))


def readable(raws: Iterable[Json], stream: str) -> list[Json]:
    """The last ``RECENT_EVENTS`` of ``raws`` (a snapshot's) that read as a ``RoomEvent``,
    the others left out with a warning. Read lazily, one that did not (a corrupted snapshot)
    failed every hook and channel reading the room's history for the next 50 events: a
    moderation hook failed open. Refusing the snapshot instead did not help when the log
    itself holds the event (a replay put it back)."""
    kept = []
    for raw in list(raws)[-RECENT_EVENTS:]:
        try:
            _model(raw)
        except ValueError as exc:  # pydantic's ValidationError, or JSON that does not decode
            logger.warning(
                "stream %r: a recent event of its snapshot does not read, left out of the "
                "room's recent events: %s",
                stream,
                str(exc).splitlines()[0],
            )
        else:
            kept.append(raw)
    return kept


class RecentEvents:
    """The last ``RECENT_EVENTS`` events of a room, oldest first; see the module docstring."""

    __slots__ = ("_appended", "_models", "_raw", "_resting", "_spare")

    def __init__(self, raw: Iterable[Json] = ()) -> None:
        # A list, not a bounded deque: a deque takes a 64-slot block (~0.5 KB) even for the
        # two events of a new room, and trimming 50 pointers is nothing.
        self._raw: list[Json] = list(raw)[-RECENT_EVENTS:]
        self._models: deque[RoomEvent] | None = None  # once somebody read them
        self._appended = 0  # identifies the current window, for contexts made earlier
        self._resting = False  # idle: reads validate the events but the room keeps no models
        # The events the window let go since the last full context, oldest first (see
        # SPARE_EVENTS); None most of the time: a room with a full window makes a context
        # after every append.
        self._spare: list[Json] | None = None

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        # Equal events as logged (JSON is what a replay and the live actor have in common).
        if not isinstance(other, RecentEvents):
            return NotImplemented
        return [bytes(r) for r in self._raw] == [bytes(r) for r in other._raw]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RecentEvents({len(self._raw)} events)"

    def __iter__(self) -> Iterator[RoomEvent]:
        return iter(self._load(tuple(self._raw), self._appended))

    def append(self, raw: Json) -> None:
        """One more event: its JSON as logged. Once the models are kept, its model is read
        from that JSON, not taken from the caller: the one a channel or hook made may be an
        app's subclass, or hold values JSON gives back otherwise (a tuple), and the room
        showed its hooks what no replay of it, nor the room once it rested, gives back."""
        window = self._raw
        window.append(raw)
        if len(window) > RECENT_EVENTS:
            spare = self._spare
            if spare is None:
                self._spare = [window.pop(0)]
            else:
                spare.append(window.pop(0))
                if len(spare) > SPARE_EVENTS:
                    del spare[0]
        self._appended += 1
        if self._models is not None:
            try:
                self._models.append(_model(raw))
            except ValueError as exc:
                window.pop()  # the window and its models stay aligned
                _left_out(exc)

    def forget_models(self) -> None:
        """Keep the JSON only (the room is idle) until the room makes a context again: a late
        read (an async hook of the last message) validates the events for itself, not for the
        room. (A context made earlier and read after a new event holds an older window,
        which is never kept either.)"""
        self._models = None
        self._resting = True
        self._spare = None

    def raw(self) -> list[Json]:
        """The events' JSON, oldest first (what a snapshot stores)."""
        return list(self._raw)

    def may_hold(self, event_id: str) -> bool:
        """Whether an event of the window may have the id ``event_id``: its JSON begins
        with ``{"id":"<event_id>"``, as the kit writes an event; one written otherwise (by
        another writer) holds ``"id":"<event_id>"`` anywhere (a content's id answers yes too).

        Only the start of each is read, without a copy: searched whole, each reply paid for
        copying and reading the last fifty events (400 µs with events of 2.6 KB).
        """
        needle = msgspec.json.encode({"id": event_id})[:-1]  # {"id":"<event_id>"
        size = len(needle)
        for raw in self._raw:
            start = memoryview(raw)[:size]
            if start == needle:
                return True
            if start[:_ID_FIRST_SIZE] != _ID_FIRST and needle[1:] in bytes(raw):
                return True
        return False

    def view(self, leave_out: int = 0) -> MutableSequence[RoomEvent]:
        """The events for a ``RoomContext``: a list of the models, or a ``LazyEvents``.

        ``leave_out``: without the last this many (the room as it was before them, its last
        ``RECENT_EVENTS`` then, as long as the window let go of at most ``SPARE_EVENTS``
        since its last context without ``leave_out``; the room makes those last).
        """
        # Only a busy room makes contexts: reads from now on are the room's own again (the
        # first message after a pause validates the events once, not once per reader).
        self._resting = False
        spare = self._spare
        if leave_out > 0:
            if self._models is not None and spare is None:
                return list(self._models)[:-leave_out]
            # Another window than the room's: its models are made for the reader alone.
            raws = (*(spare or ()), *self._raw)[:-leave_out][-RECENT_EVENTS:]
            return LazyEvents(self, raws, self._appended - leave_out)
        if spare is not None:
            self._spare = None  # the events recorded together all have their contexts
        if self._models is not None:
            return list(self._models)
        return LazyEvents(self, tuple(self._raw), self._appended)

    def _load(self, raws: tuple[Json, ...], appended: int) -> list[RoomEvent]:
        if appended != self._appended or self._resting:
            return _models(raws)[0]  # an older window, or an idle room
        if self._models is None:
            models, unread = _models(raws)
            if unread:
                for exc in unread.values():
                    _left_out(exc)
                self._raw = [raw for raw in self._raw if id(raw) not in unread]
            self._models = deque(models, maxlen=RECENT_EVENTS)
        return list(self._models)


def _models(raws: Iterable[Json]) -> tuple[list[RoomEvent], dict[int, ValueError]]:
    """The models of ``raws`` that read as a ``RoomEvent``, and the error of each that does
    not (by ``id`` of its JSON)."""
    models: list[RoomEvent] = []
    unread: dict[int, ValueError] = {}
    for raw in raws:
        try:
            models.append(_model(raw))
        except ValueError as exc:
            unread[id(raw)] = exc
    return models, unread


def _left_out(error: ValueError) -> None:
    """Say that a recorded event that does not read as a ``RoomEvent`` (another writer's, or
    one a channel or hook changed in place before it was recorded) is left out of the room's
    recent events: read with them, it failed the room's decision (the caller was told the
    room crashed, though the message was recorded) and then every hook reading the room's
    history for the next 50 events (a moderation hook failed open). Said without the input,
    which is a message's content."""
    logger.warning(
        "a recorded event does not read as a RoomEvent, left out of the room's recent events: %s",
        str(error).splitlines()[0] if str(error) else type(error).__name__,
    )


class LazyEvents(MutableSequence[RoomEvent]):
    """A room's recent events that validates them when first used; see the module docstring.

    A mutable sequence rather than a ``list`` subclass: C code (pydantic's validators and
    serialisers among it) reads a list subclass's storage directly and would see it empty,
    while any other sequence is iterated, which loads it. It answers every list operation
    (``+`` and comparisons with lists included); only ``isinstance(..., list)`` is false.
    """

    __slots__ = ("_appended", "_events", "_raws", "_source")

    def __init__(self, source: RecentEvents, raws: tuple[Json, ...], appended: int) -> None:
        self._source: RecentEvents | None = source
        self._raws = raws
        self._appended = appended
        self._events: list[RoomEvent] = []

    def _loaded(self) -> list[RoomEvent]:
        source = self._source
        if source is not None:
            self._source = None
            self._events = source._load(self._raws, self._appended)
            self._raws = ()
        return self._events

    def materialize(self) -> None:
        """Validate the events now (once)."""
        self._loaded()

    def __len__(self) -> int:
        return len(self._loaded())

    def __iter__(self) -> Iterator[RoomEvent]:
        return iter(self._loaded())

    def __reversed__(self) -> Iterator[RoomEvent]:
        return reversed(self._loaded())

    def __contains__(self, value: object) -> bool:
        return value in self._loaded()

    @overload
    def __getitem__(self, index: int) -> RoomEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[RoomEvent]: ...

    def __getitem__(self, index: int | slice) -> RoomEvent | list[RoomEvent]:
        return self._loaded()[index]

    @overload
    def __setitem__(self, index: int, value: RoomEvent) -> None: ...

    @overload
    def __setitem__(self, index: slice, value: Iterable[RoomEvent]) -> None: ...

    def __setitem__(self, index: int | slice, value: Any) -> None:
        self._loaded()[index] = value

    def __delitem__(self, index: int | slice) -> None:
        del self._loaded()[index]

    def insert(self, index: int, value: RoomEvent) -> None:
        self._loaded().insert(index, value)

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        self._loaded().sort(key=key, reverse=reverse)

    def copy(self) -> list[RoomEvent]:
        return list(self._loaded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyEvents):
            other = other._loaded()
        return self._loaded() == other

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __add__(self, other: Iterable[RoomEvent]) -> list[RoomEvent]:
        return [*self._loaded(), *other]

    def __radd__(self, other: Iterable[RoomEvent]) -> list[RoomEvent]:
        return [*other, *self._loaded()]

    def __mul__(self, times: int) -> list[RoomEvent]:
        return self._loaded() * times

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return repr(self._loaded())

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # Copies and pickles are plain lists.
        return (list, (list(self._loaded()),))
