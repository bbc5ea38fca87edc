"""Moving a room's log between backends: export as JSON lines, import preserving versions.

An export line is one ``Record`` encoded with the event log's own JSON codec, so an export is
exactly what the source log holds (payloads included, base64-encoded). Import appends the
records to another log with the same versions, timestamps and headers; positions are the
target's (they order the whole log, not one room).

Records name streams, as the log does; the functions here take and report room ids (see
``roomkit.audit._room_ids``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from typing import Self

import msgspec

from eventlog import EventLog, InvalidStreamId, NewEvent, Record, WrongExpectedVersion
from eventlog.codec import decode_record_json, encode_json
from roomkit.audit._errors import BadExport, ImportConflict
from roomkit.audit._records import RecordReader
from roomkit.audit._room_ids import created_room_id, find_room_id
from roomkit.core._room_ids import room_of_stream, room_stream
from roomkit.errors import RoomNotFoundError

__all__ = [
    "ExportLines",
    "ImportReport",
    "ImportedStream",
    "RoomInfo",
    "export_room",
    "import_room",
    "rooms",
]

logger = logging.getLogger("roomkit.audit")

_BATCH = 500
"""Records per append on import (fewer if the target accepts fewer)."""

Lines = Iterable[str | bytes] | AsyncIterable[str | bytes]
"""Export lines, from a file (sync) or a stream (async)."""


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One room of the log, as ``rooms`` lists it.

    Attributes:
        room_id: the room's id (its stream's name when neither that name nor the room's
            ``room.created`` record tells it).
        stream: the event-log stream that holds the room.
        version: its last version (how many records it has).
        last_position: the position of its last record in the whole log.
        last_timestamp: when its last record was written (seconds since the epoch).
    """

    room_id: str
    stream: str
    version: int
    last_position: int
    last_timestamp: float


async def rooms(log: EventLog) -> list[RoomInfo]:
    """Every room of the log (one per stream) with its version and last activity, by room id.

    Reads the first record of the streams whose name does not tell their room id (long ids).
    """
    found = [
        RoomInfo(
            room_id=await find_room_id(log, info.stream) or info.stream,
            stream=info.stream,
            version=info.version,
            last_position=info.last_position,
            last_timestamp=info.last_timestamp,
        )
        for info in await log.streams()
    ]
    # The log orders streams by their (encoded) names; people look rooms up by id.
    return sorted(found, key=lambda room: (room.room_id, room.stream))


class ExportLines:
    """The JSON lines of one room's records, in version order; see ``export_room``."""

    def __init__(self, log: EventLog, room_id: str) -> None:
        self._log = log
        self._room_id = room_id
        self._records = RecordReader(log, room_stream(room_id))
        self._started = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            record = await self._records.__anext__()
        except StopAsyncIteration:
            if not self._started:
                raise RoomNotFoundError(f"Room {self._room_id} not found in the log") from None
            raise
        self._started = True
        return encode_json(record).decode() + "\n"


def export_room(log: EventLog, room_id: str) -> ExportLines:
    """Iterate over ``room_id``'s records as JSON lines (each ending with ``"\\n"``)::

        with open("room.jsonl", "w") as out:
            async for line in export_room(log, "room-1"):
                out.write(line)

    The records are the log's own: they name the room's stream, not its id.

    Raises:
        RoomNotFoundError: (while iterating) the log has no record of ``room_id``.
        InvalidRoomIdError: (at once) ``room_id`` is not a valid room id.
    """
    return ExportLines(log, room_id)


@dataclass(frozen=True, slots=True)
class ImportedStream:
    """What an import did to one stream.

    Attributes:
        stream: the stream.
        records: how many records of it the input held.
        appended: how many were appended.
        already_present: how many the target already held, identical (an earlier import).
        room_id: the room the stream holds (the stream's name when neither that name nor its
            ``room.created`` record tells it).
    """

    stream: str
    records: int
    appended: int
    already_present: int
    room_id: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did, stream by stream, in the input's order."""

    streams: tuple[ImportedStream, ...]

    @property
    def appended(self) -> int:
        """Records appended over every stream."""
        return sum(s.appended for s in self.streams)


async def import_room(log: EventLog, lines: Lines) -> ImportReport:
    """Append exported records to ``log``, keeping their versions, timestamps and headers.

    The whole input is read and checked before anything is written: each line must be a
    record, and each stream's records must run 1, 2, 3, ... (several streams may be
    interleaved, as in an export of the whole log). Then each stream is compared with what the
    target already holds: identical records are skipped (importing twice is harmless, and an
    interrupted import resumes), a different one stops the import before any append. Appends
    check the expected version, so a concurrent writer is never overwritten.

    Args:
        log: the target log.
        lines: JSON lines as ``export_room`` writes them (blank lines are ignored).

    Returns:
        What was appended, per stream.

    Raises:
        BadExport: a line is not a record, a stream id is invalid, or versions have gaps.
        ImportConflict: the target holds different records for a stream (or another writer
            appended to it during the import).
    """
    streams = await _parse(lines)
    present: dict[str, int] = {}
    for stream, records in streams.items():
        try:
            existing = await log.last_version(stream)
        except InvalidStreamId as exc:
            raise BadExport(f"invalid stream id {stream!r}") from exc
        present[stream] = await _compare(log, stream, records[:existing])
    limit = min(_BATCH, log.max_append_events)
    plans = {
        stream: _batches(records, present[stream], limit, log.max_append_events)
        for stream, records in streams.items()
    }
    report = []
    for stream, records in streams.items():
        todo = records[present[stream] :]
        for batch in plans[stream]:
            await _append_batch(log, stream, batch)
        room_id = _room_id(stream, records)
        report.append(ImportedStream(stream, len(records), len(todo), present[stream], room_id))
        logger.info(
            "imported %s: %d appended, %d already present", room_id, len(todo), present[stream]
        )
    return ImportReport(tuple(report))


def _room_id(stream: str, records: list[Record]) -> str:
    """The room ``stream`` holds; ``records`` start at version 1, its ``room.created``."""
    return room_of_stream(stream) or created_room_id(records[0]) or stream


async def _parse(lines: Lines) -> dict[str, list[Record]]:
    streams: dict[str, list[Record]] = {}
    number = 0

    def take(line: str | bytes) -> None:
        nonlocal number
        number += 1
        if not line.strip():
            return
        try:
            record = decode_record_json(line)
        except msgspec.DecodeError as exc:
            raise BadExport(f"not an exported record: {exc}", number) from exc
        records = streams.setdefault(record.stream, [])
        expected = len(records) + 1
        if record.version != expected:
            raise BadExport(
                f"stream {record.stream!r} jumps to version {record.version}, expected {expected}",
                number,
            )
        records.append(record)

    if isinstance(lines, AsyncIterable):
        async for line in lines:
            take(line)
    else:
        for line in lines:
            take(line)
    if not streams:
        raise BadExport("no record in the input")
    return streams


async def _compare(log: EventLog, stream: str, records: list[Record]) -> int:
    """Check that the target's first records equal ``records``; return how many there are."""
    async for existing in RecordReader(log, stream, until=len(records)):
        incoming = records[existing.version - 1]
        difference = _difference(existing, incoming)
        if difference is not None:
            raise ImportConflict(stream, existing.version, difference)
    return len(records)


def _difference(existing: Record, incoming: Record) -> str | None:
    if existing.type != incoming.type:
        return f"type {existing.type!r} in the target, {incoming.type!r} in the input"
    if existing.data != incoming.data:
        return "the payloads differ"
    if existing.timestamp != incoming.timestamp:
        return "the timestamps differ"
    if existing.headers != incoming.headers:
        return "the headers differ"
    return None


def _batches(records: list[Record], start: int, limit: int, hard_limit: int) -> list[list[Record]]:
    """Split ``records[start:]`` (the target holds the others) into appends of about ``limit``.

    The log de-duplicates an append by its first event's message id: a batch must not start
    with a record whose id an earlier record of the stream carried, or the log would take the
    batch for a retry and append nothing. Such a record joins the batch before it.

    Raises:
        BadExport: more than ``hard_limit`` records in a row reuse message ids.
    """
    seen = {r.headers.message_id for r in records[:start] if r.headers.message_id is not None}
    batches: list[list[Record]] = []
    batch: list[Record] = []
    for record in records[start:]:
        message_id = record.headers.message_id
        starts_clean = message_id is None or message_id not in seen
        if len(batch) >= limit and starts_clean:
            batches.append(batch)
            batch = []
        if len(batch) >= hard_limit:
            raise BadExport(
                f"stream {record.stream!r} v{record.version}: more than {hard_limit} records "
                "in a row reuse message ids; the target cannot take them in order"
            )
        batch.append(record)
        if message_id is not None:
            seen.add(message_id)
    if batch:
        batches.append(batch)
    return batches


async def _append_batch(log: EventLog, stream: str, batch: list[Record]) -> None:
    first = batch[0].version
    events = [
        NewEvent(type=r.type, data=r.data, headers=r.headers, timestamp=r.timestamp) for r in batch
    ]
    try:
        committed = await log.append(stream, events, expected_version=first - 1)
    except WrongExpectedVersion as exc:
        raise ImportConflict(stream, first, "another writer appended to it meanwhile") from exc
    if not committed or committed[0].version != first:
        # The log answered with an earlier append (a message id it had already seen).
        raise ImportConflict(
            stream, first, "the target took the records for a retry of an earlier append"
        )
