"""Rendering timeline entries, replayed states and room lists as text lines or JSON dicts.

The CLI and the demo print through these, so ``make demo`` shows exactly what ``roomkit
replay`` prints. JSON dicts keep every key on every entry (``None`` when it does not apply), so
that scripts can rely on the shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from eventlog import StreamInfo
from roomkit.audit._records import to_datetime
from roomkit.audit._replay import ReplayPoint
from roomkit.audit._timeline import TimelineEntry
from roomkit.audit._transfer import RoomInfo
from roomkit.core._domain import DomainEvent
from roomkit.core._room_ids import room_of_stream

__all__ = [
    "TextRenderer",
    "entry_to_dict",
    "format_entry",
    "format_rooms",
    "format_state",
    "printable",
    "room_to_dict",
    "state_to_dict",
]

# The longest kind the log holds (observation.recorded), so that the columns after it align.
_KIND_WIDTH = max(len(kind.TAG) for kind in DomainEvent.__subclasses__())
_UNKNOWN_TIME = "????-??-?? ??:??:??"  # a timestamp that is not a time (to_datetime)
_WHO_WIDTH = 14


# What acts on a terminal rather than shows: C0 (ESC, BEL, newline...), DEL, C1, the line and
# paragraph separators, the bidi controls and marks that reorder what a line shows, and the
# zero-width characters that hide in it.
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    """``text`` with each character that would act on a terminal written as an escape
    (``\\x1b``, ``\\u202e``).

    A log holds anyone's text (message bodies, names, room ids): raw, an ESC sequence could
    rewrite the lines of an audit above it, and a newline could add a fake one. Backslashes are
    left as they are, for readable paths; the JSON output is the exact form.
    """
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def format_entry(entry: TimelineEntry, *, with_room: bool = False) -> str:
    """One aligned line: version, time of day (UTC), kind, who, what (each field printable)."""
    room = f"{printable(entry.room_id)}  " if with_room else ""
    kind, who = printable(entry.kind), printable(entry.who)
    return (
        f"{room}{f'v{entry.version}':>5}  {_clock(entry.time)}  "
        f"{kind:<{_KIND_WIDTH}} {who:<{_WHO_WIDTH}} {printable(entry.what)}"
    )


class TextRenderer:
    """Formats entries as text lines; a date line precedes the first entry of each UTC day,
    so that each entry's line stays short."""

    def __init__(self, *, with_room: bool = False) -> None:
        self._with_room = with_room
        self._day: date | None = None

    def lines(self, entry: TimelineEntry) -> list[str]:
        """The lines that show ``entry`` (its own, after a date line on a new day)."""
        out: list[str] = []
        day = entry.time.date() if entry.time is not None else self._day
        if day is not None and day != self._day:
            self._day = day
            out.append(f"-- {day.isoformat()} (UTC) --")
        out.append(format_entry(entry, with_room=self._with_room))
        return out


def entry_to_dict(entry: TimelineEntry) -> dict[str, Any]:
    """``entry`` as a JSON-ready dict (ISO 8601 time, lists for tuples)."""
    return {
        "room_id": entry.room_id,
        "version": entry.version,
        "position": entry.position,
        "time": _iso(entry.time),
        "kind": entry.kind,
        "who": entry.who,
        "what": entry.what,
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "channel": entry.channel,
        "sender": entry.sender,
        "text": entry.text,
        "status": entry.status,
        "blocked_by": entry.blocked_by,
        "block_reason": entry.block_reason,
        "modified_by": list(entry.modified_by),
        "refers_to": entry.refers_to,
        "deliveries": [
            {"channel_id": d.channel_id, "success": d.success, "error": d.error}
            for d in entry.deliveries
        ],
        "missing": (
            {"first": entry.missing[0], "last": entry.missing[1]}
            if entry.missing is not None
            else None
        ),
    }


def format_state(point: ReplayPoint) -> list[str]:
    """The room as of ``point``: status, bindings (access, visibility, muted), participants
    (each line printable)."""
    return [printable(line) for line in _state_lines(point)]


def _state_lines(point: ReplayPoint) -> list[str]:
    state = point.state
    if point.time is not None:
        when = f"{point.time:%Y-%m-%d %H:%M:%S} UTC"
    else:
        when = "the start" if point.version == 0 else "time unknown"
    lines = [f"room {point.room_id} as of v{point.version} ({when})"]
    room = state.room
    if room is None:
        lines.append("  not created yet")
        return lines
    lines.append(
        f"  status: {room.status}; timeline events: {state.event_count}; "
        f"idempotency keys: {len(state.idempotency)}"
    )
    lines.append(f"  bindings ({len(state.bindings)}):")
    for binding in state.bindings.values():
        lines.append(
            f"    {binding.channel_id:<12} {binding.channel_type!s:<10} "
            f"access {binding.access}, visibility {binding.visibility}, "
            f"muted {'yes' if binding.muted else 'no'}"
        )
    lines.append(f"  participants ({len(state.participants)}):")
    for person in state.participants.values():
        name = f" ({person.display_name})" if person.display_name else ""
        lines.append(
            f"    {person.id}{name}: {person.identification} via {person.channel_id}, "
            f"{person.role}, {person.status}"
        )
    return lines


def state_to_dict(point: ReplayPoint) -> dict[str, Any]:
    """The room as of ``point`` as a JSON-ready dict, with the full models."""
    state = point.state
    return {
        "room_id": point.room_id,
        "version": point.version,
        "time": _iso(point.time),
        "room": state.room.model_dump(mode="json") if state.room is not None else None,
        "bindings": [b.model_dump(mode="json") for b in state.bindings.values()],
        "participants": [p.model_dump(mode="json") for p in state.participants.values()],
        "event_count": state.event_count,
        "idempotency_keys": dict(state.idempotency),
    }


def format_rooms(infos: Sequence[RoomInfo | StreamInfo]) -> list[str]:
    """A table of rooms: id (printable), version, last activity (UTC)."""
    ids = [printable(_room_id(info)) for info in infos]
    width = max([len("ROOM"), *(len(room_id) for room_id in ids)])
    lines = [f"{'ROOM':<{width}}  {'VERSION':>7}  LAST ACTIVITY (UTC)"]
    for room_id, info in zip(ids, infos, strict=True):
        when = to_datetime(info.last_timestamp)
        shown = f"{when:%Y-%m-%d %H:%M:%S}" if when is not None else _UNKNOWN_TIME
        lines.append(f"{room_id:<{width}}  {info.version:>7}  {shown}")
    return lines


def room_to_dict(info: RoomInfo | StreamInfo) -> dict[str, Any]:
    """One room of the list as a JSON-ready dict."""
    return {
        "room_id": _room_id(info),
        "version": info.version,
        "last_position": info.last_position,
        "last_activity": _iso(to_datetime(info.last_timestamp)),
    }


def _clock(time: datetime | None) -> str:
    """The time of day of an entry; question marks when its timestamp is not a time."""
    return f"{time:%H:%M:%S}" if time is not None else "??:??:??"


def _iso(time: datetime | None) -> str | None:
    """A time in one shape whatever its value: ``isoformat()`` left out the fraction of a
    time on a whole second, which a reader parsing a fixed shape then failed on."""
    return time.isoformat(timespec="microseconds") if time is not None else None


def _room_id(info: RoomInfo | StreamInfo) -> str:
    if isinstance(info, RoomInfo):
        return info.room_id
    # A bare ``log.streams()`` entry (what ``rooms`` returned before room ids were mapped):
    # its name tells the room id, except for a long id's stream.
    return room_of_stream(info.stream) or info.stream
