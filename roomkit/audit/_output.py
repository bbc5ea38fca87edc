"""Writing a room's replay, the room list and the live log as lines, for the CLI and the demo.

Each function takes ``write``, a callable that takes one line (without its newline), so the
CLI prints to stdout, the demo to its own output, and tests to a list; nothing here prints.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from eventlog import EventLog, Record
from roomkit.audit._errors import ForeignRecord
from roomkit.audit._records import Progress, RecordReader, Until, last_version
from roomkit.audit._render import (
    TextRenderer,
    entry_to_dict,
    format_rooms,
    format_state,
    printable,
    room_to_dict,
    state_to_dict,
)
from roomkit.audit._replay import replay_point
from roomkit.audit._timeline import TimelineBuilder, TimelineEntry, timeline
from roomkit.audit._transfer import rooms
from roomkit.core._room_ids import room_stream

logger = logging.getLogger("roomkit.audit")

__all__ = ["Format", "Write", "follow", "to_json", "write_replay", "write_rooms"]

Write = Callable[[str], object]
"""Takes one output line, without its newline."""

Format = Literal["text", "json"]
"""``text``: aligned lines for people; ``json``: one JSON object per line for scripts."""


def to_json(value: dict[str, Any]) -> str:
    """One compact JSON line (non-ASCII kept as is: messages are in every language)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def write_replay(
    log: EventLog,
    room_id: str,
    write: Write,
    *,
    at: Until = None,
    format: Format = "text",
    progress: Progress | None = None,
) -> None:
    """Write ``room_id``'s timeline, or with ``at`` its state as of that version or time.

    Text: a header, then one line per record (a date line starts each UTC day); with ``at``,
    the room's status, bindings and participants. JSON: one object per record (see
    ``entry_to_dict``); with ``at``, one object (see ``state_to_dict``).

    Raises:
        RoomNotFoundError: the log has no record of ``room_id``.
        InvalidRoomIdError: ``room_id`` is not a valid room id.
        CorruptRecord: (with ``at``) a record does not decode.
        ForeignRecord: the room's log holds another app's message (on its subject).
    """
    stream = room_stream(room_id)
    if at is not None:
        point = await replay_point(log, room_id, at, progress=progress)
        if format == "json":
            write(to_json(state_to_dict(point)))
        else:
            for line in format_state(point):
                write(line)
        return
    renderer = TextRenderer()
    first = True
    async for entry in timeline(log, room_id, progress=progress):
        if format == "json":
            write(to_json(entry_to_dict(entry)))
            continue
        if first:
            version = await last_version(log, stream)
            write(f"room {printable(room_id)}: log at version {version}")
            first = False
        for line in renderer.lines(entry):
            write(line)


async def write_rooms(log: EventLog, write: Write, *, format: Format = "text") -> int:
    """Write every room (by room id) with its version and last activity; return how many
    there are."""
    infos = await rooms(log)
    if format == "json":
        for info in infos:
            write(to_json(room_to_dict(info)))
    else:
        for line in format_rooms(infos):
            write(line)
    return len(infos)


async def follow(
    log: EventLog,
    write: Write,
    *,
    room_id: str | None = None,
    last: int | None = 10,
    live: bool = True,
    format: Format = "text",
) -> None:
    """Write the last ``last`` entries, then every new one as it is committed (until cancelled).

    With ``room_id``, only that room (it may not exist yet: its first records will show).
    Without it, every room, each line starting with the room id. Either way, a room's earlier
    records are folded silently so that senders show under their names, as ``replay`` shows
    them.

    Args:
        log: the log to follow.
        write: takes each output line.
        room_id: the room to follow (``None``: all).
        last: how many existing entries to show first (``None``: all of them, from the
            log's start).
        live: keep following the log (``False``: stop after the existing entries).
        format: ``text`` or ``json`` (one object per line).

    Raises:
        InvalidRoomIdError: ``room_id`` is not a valid room id.
        ForeignRecord: ``room_id``'s log holds another app's message (on its subject).
    """
    stream = room_stream(room_id) if room_id is not None else None
    entries = _LogEntries(log)
    if room_id is not None:
        entries.name(room_id)
    renderer = TextRenderer(with_room=room_id is None)

    def emit(entry: TimelineEntry) -> None:
        if format == "json":
            write(to_json(entry_to_dict(entry)))
        else:
            for line in renderer.lines(entry):
                write(line)

    # Where the live part starts: taken before the catch-up, so nothing committed in between
    # is missed; what the catch-up already showed is skipped by version below.
    start = await log.last_position()
    shown = 0
    if stream is not None:
        newest = await last_version(log, stream)
        first_shown = 0 if last is None else newest - last
        reader = RecordReader(log, stream)
        async for record in reader:
            entry = await entries.entry(record)
            missing = reader.missing
            if missing is not None and missing[1] > first_shown:
                emit(entries.missing(stream, *missing))  # as replay shows them
            if record.version > first_shown:
                emit(entry)
            shown = record.version
    elif last is None:
        async for record in _records_until(log, start):
            emit(await entries.entry(record))
    elif last > 0:
        for record in await _last_records(log, start, last):
            emit(await entries.entry(record))
    if not live:
        return
    async with log.subscribe(after_position=start) as records:
        async for record in records:
            if stream is not None and (record.stream != stream or record.version <= shown):
                continue
            emit(await entries.entry(record))


class _LogEntries:
    """Timeline entries of records from anywhere in the log, each under its room id.

    A room met past its first record has its earlier records folded silently first (one read
    of its stream), as ``replay`` and the tail of one room do: its senders show under the names
    the room knew them by, and a long id is read from its ``room.created`` record.
    """

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._builder = TimelineBuilder()
        self._caught_up: set[str] = set()  # streams whose earlier records are folded

    def name(self, room_id: str) -> None:
        self._builder.name(room_id)

    def missing(self, stream: str, first: int, last: int) -> TimelineEntry:
        return self._builder.missing(stream, first, last)

    async def entry(self, record: Record) -> TimelineEntry:
        stream = record.stream
        if stream not in self._caught_up:
            self._caught_up.add(stream)
            try:
                async for earlier in RecordReader(self._log, stream, until=record.version - 1):
                    self._builder.entry(earlier)
            except ForeignRecord as exc:
                # Another app's message on the room's subject: its stream cannot be read, but
                # the whole log's records can (they skip such messages). Following every room,
                # the tail stopped at the first record of that room.
                logger.warning(
                    "%s: the room's earlier records cannot be read, its entries show without them",
                    exc,
                )
        return self._builder.entry(record)


async def _records_until(log: EventLog, end: int) -> AsyncIterator[Record]:
    """Every record at or before position ``end``, across every stream, a page at a time."""
    after = 0
    while after < end:
        page = await log.read_all(after_position=after, limit=_PAGE)
        for record in page:
            if record.position > end:
                return
            yield record
        if not page:
            return
        after = page[-1].position


_PAGE = 1_000


async def _last_records(log: EventLog, end: int, count: int) -> list[Record]:
    """The last ``count`` records at or before position ``end``, across every stream.

    Positions need not be contiguous (JetStream leaves gaps), so look back over a window of
    positions that grows until it holds enough records or reaches the start of the log.
    """
    window = count
    while True:
        start = max(end - window, 0)
        # Positions strictly increase, so at most ``window`` records lie in (start, end].
        batch = await log.read_all(after_position=start, limit=window)
        records = [r for r in batch if r.position <= end]
        if len(records) >= count or start == 0:
            return records[-count:]
        window *= 16
