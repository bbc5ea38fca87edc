"""A room's most recent events as its actor keeps them: JSON first, models on demand.

The actor needs them only to hand hooks and channels a ``RoomContext`` whose ``recent_events``
are the room's last ``RECENT_EVENTS`` events. Held as pydantic models, that is some 16 objects
per event for the garbage collector to walk on every full collection: with a thousand busy
rooms, collections took half the process's time. So the events are kept as their JSON (the
bytes the log holds), and validated into models only when something reads them, once per
room: from then on the actor keeps the models too, as the read that needed them (an AI channel
building its prompt) will come again.

A context gets a ``LazyEvents``: a real list that fills itself with the models the first time
it is used (any list method, iteration, ``len``, comparison, copying, and the context's own
serialisation). It captures the events of its moment, so a late read still sees the room as it
was when the context was made.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, SupportsIndex

import msgspec

from roomkit.models.event import RoomEvent

__all__ = ["RECENT_EVENTS", "LazyEvents", "RecentEvents"]

RECENT_EVENTS = 50
"""How many of the most recent timeline events a hook or channel sees in its ``RoomContext``."""

Json = msgspec.Raw  # an event's JSON as logged (a view of the log's or snapshot's bytes)


def _model(raw: Json) -> RoomEvent:
    return RoomEvent.model_validate_json(bytes(raw))


class RecentEvents:
    """The last ``RECENT_EVENTS`` events of a room, oldest first; see the module docstring."""

    __slots__ = ("_appended", "_models", "_raw")

    def __init__(self, raw: Iterable[Json] = ()) -> None:
        # A list, not a bounded deque: a deque takes a 64-slot block (~0.5 KB) even for the
        # two events of a new room, and trimming 50 pointers is nothing.
        self._raw: list[Json] = list(raw)[-RECENT_EVENTS:]
        self._models: deque[RoomEvent] | None = None  # once somebody read them
        self._appended = 0  # identifies the current window, for contexts made earlier

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

    def append(self, raw: Json, model: RoomEvent) -> None:
        """One more event: its JSON as logged, and its model."""
        self._raw.append(raw)
        if len(self._raw) > RECENT_EVENTS:
            del self._raw[0]
        self._appended += 1
        if self._models is not None:
            self._models.append(model)

    def raw(self) -> list[Json]:
        """The events' JSON, oldest first (what a snapshot stores)."""
        return list(self._raw)

    def view(self) -> list[RoomEvent]:
        """The events for a ``RoomContext``: the models, or a list that loads them when used."""
        if self._models is not None:
            return list(self._models)
        return LazyEvents(self, tuple(self._raw), self._appended)

    def _load(self, raws: tuple[Json, ...], appended: int) -> list[RoomEvent]:
        if appended != self._appended:
            return [_model(raw) for raw in raws]  # an older window: not worth keeping
        if self._models is None:
            self._models = deque((_model(raw) for raw in raws), maxlen=RECENT_EVENTS)
        return list(self._models)


class LazyEvents(list[RoomEvent]):
    """A list of a room's recent events that validates them when first used."""

    __slots__ = ("_appended", "_raws", "_source")

    def __init__(self, source: RecentEvents, raws: tuple[Json, ...], appended: int) -> None:
        super().__init__()
        self._source: RecentEvents | None = source
        self._raws = raws
        self._appended = appended

    def materialize(self) -> None:
        """Fill the list with the models (once)."""
        source = self._source
        if source is not None:
            self._source = None
            list.extend(self, source._load(self._raws, self._appended))
            self._raws = ()

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # Copies and pickles are plain lists.
        self.materialize()
        return (list, (list.__iter__(self),))


def _loading(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def call(self: LazyEvents, *args: Any, **kwargs: Any) -> Any:
        self.materialize()
        return method(self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


# Every list operation loads the models first (C code that reads a list's storage directly,
# such as pydantic's serialiser, is covered by RoomContext's serializer).
for _name in (
    "__iter__", "__len__", "__getitem__", "__contains__", "__reversed__", "__repr__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__mul__",
    "__rmul__", "__iadd__", "__imul__", "__setitem__", "__delitem__", "append", "extend",
    "insert", "pop", "remove", "index", "count", "copy", "sort", "reverse", "clear",
):  # fmt: skip
    setattr(LazyEvents, _name, _loading(_name))
