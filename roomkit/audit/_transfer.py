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
import re
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from typing import Self

import msgspec

from eventlog import EventLog, InvalidAppend, InvalidStreamId, Record, WrongExpectedVersion
from eventlog.codec import decode_record_json, encode_json
from roomkit.audit._append_rules import check_batch, check_record, new_event
from roomkit.audit._errors import (
    BadExport,
    CorruptRecord,
    ImportConflict,
    MissingRecords,
    one_line,
)
from roomkit.audit._records import RecordReader, last_version
from roomkit.audit._room_ids import created_room_id, find_room_id, named_room_id
from roomkit.audit._timeline import TimelineBuilder
from roomkit.core._room_ids import room_of_stream, room_stream, room_stream_or_none
from roomkit.errors import RoomNotFoundError

__all__ = [
    "CheckedExport",
    "ExportLines",
    "ImportReport",
    "ImportedStream",
    "RoomInfo",
    "export_room",
    "import_room",
    "read_export",
    "rooms",
]

logger = logging.getLogger("roomkit.audit")

_BATCH = 500
"""Records per append on import (fewer if the target accepts fewer)."""

_LINE_END = re.compile(r"\r\n|\r|\n")  # where a whole export given as one text is split

Lines = Iterable[str | bytes] | AsyncIterable[str | bytes] | str | bytes
"""Export lines, from a file (sync) or a stream (async), or a whole export as one text."""


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
        missing = self._records.missing
        if missing is not None:
            # An export must run 1, 2, 3, ...: an import (and ``replay --file``) refuses one
            # with a gap, so say it here, naming the versions, rather than write it.
            raise MissingRecords(self._room_id, *missing, doing="export the room")
        return encode_json(record).decode() + "\n"


def export_room(log: EventLog, room_id: str) -> ExportLines:
    """Iterate over ``room_id``'s records as JSON lines (each ending with ``"\\n"``)::

        with open("room.jsonl", "w") as out:
            async for line in export_room(log, "room-1"):
                out.write(line)

    The records are the log's own: they name the room's stream, not its id.

    Raises:
        RoomNotFoundError: (while iterating) the log has no record of ``room_id``.
        MissingRecords: (while iterating, at the gap) versions of the room are missing from
            the log; the lines before the gap were given.
        ForeignRecord: (while iterating) the room's log holds another app's message (on its
            subject); the lines before it were given.
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


@dataclass(frozen=True, slots=True)
class CheckedExport:
    """An export that ``read_export`` read and checked, ready for ``import_room``.

    Attributes:
        streams: each stream's records, versions 1, 2, 3, ..., streams in the input's order.
    """

    streams: dict[str, list[Record]]

    def room_id(self, stream: str) -> str:
        """The room ``stream`` holds (its name when neither it nor ``room.created`` tells)."""
        return _room_id(stream, self.streams[stream])


async def read_export(lines: Lines, *, keep_undecodable: bool = False) -> CheckedExport:
    """Read a whole export and check it, as ``import_room`` does before anything is written.

    Reading and checking needs no target: a bad input is refused before a target is opened
    (or, on NATS, created).

    Args:
        lines: JSON lines as ``export_room`` writes them (blank lines are ignored), or a
            whole export as one text.
        keep_undecodable: take records whose payload does not decode as they are (and a
            room's creation in the stream of another room id); for a
            scratch log that audits a damaged export (its timeline shows them as such),
            never for a log rooms write to.

    Raises:
        BadExport: a line is not a record, a record is one no log takes (stream id, type,
            timestamp, headers), a payload does not decode as its type (types this version
            does not know are taken as they are, and so is a message whose event does not
            validate but whose few fields do: rooms fold it), or a stream's versions have
            gaps.
    """
    if isinstance(lines, str | bytes | bytearray):
        # A whole export read at once (``path.read_text()``): read by character, it was
        # "line 1: not an exported record" (bytes: an AttributeError). Split at line ends
        # only (LF, CRLF, CR, as bytes are): str.splitlines also splits at U+2028 and U+0085,
        # which a JSON string holds unescaped, and cut such a record in two.
        lines = _LINE_END.split(lines) if isinstance(lines, str) else lines.splitlines()
    streams: dict[str, list[Record]] = {}
    builder = None if keep_undecodable else TimelineBuilder()
    number = 0

    def take(line: str | bytes) -> None:
        nonlocal number
        number += 1
        if number == 1:
            # A byte order mark, which editors on Windows put first: refused as "invalid
            # character (byte 0)", the file looked damaged.
            if isinstance(line, str):
                line = line.removeprefix("\ufeff")
            else:
                line = line.removeprefix(b"\xef\xbb\xbf")
        if not line.strip():
            return
        try:
            record = decode_record_json(line)
        except msgspec.DecodeError as exc:
            raise BadExport(f"not an exported record: {exc}", number) from exc
        except UnicodeEncodeError as exc:
            # Text holding a lone surrogate: bytes that were not UTF-8, decoded with
            # surrogateescape (stdin under the C locale, once read from before the command).
            raise BadExport(f"not UTF-8 text: {exc}", number) from exc
        _check_envelope(record, streams.get(record.stream, []), number)
        records = streams.setdefault(record.stream, [])
        expected = len(records) + 1
        if record.version != expected:
            room = _room_id(record.stream, records)
            raise BadExport(
                f"room {room!r} jumps to version {record.version}, expected {expected}", number
            )
        if record.version == 1 and builder is not None:  # not for a scratch log's audit
            _check_room_of_stream(record, number)
        records.append(record)
        if builder is not None:
            _check_payload(record, records, builder, number)

    if isinstance(lines, AsyncIterable):
        async for line in lines:
            take(line)
    else:
        for line in lines:
            take(line)
    if not streams:
        raise BadExport("no record in the input")
    return CheckedExport(streams)


def _check_room_of_stream(record: Record, number: int) -> None:
    """Refuse a room's ``room.created`` in the stream of another room id (an export edited
    to copy a room under a new id): taken, the kit's read model and replays gave the stream
    the room the record names, and a kit serving the target rolled that room back."""
    named = named_room_id(record)
    if named is None or room_stream_or_none(named) == record.stream:
        return
    holds = room_of_stream(record.stream) or record.stream
    raise BadExport(
        f"the stream of room {holds!r} begins with the creation of room {named!r}: a room's "
        "records are in its own stream (a room cannot be copied under another id by editing "
        "its export)",
        number,
    )


def _check_envelope(record: Record, records: list[Record], number: int) -> None:
    """Refuse a record no log takes (``records``: its stream's, before it)."""
    try:
        check_record(record)
    except InvalidStreamId as exc:
        raise BadExport(f"invalid stream id {record.stream!r}", number) from exc
    except InvalidAppend as exc:
        room = _room_id(record.stream, records)
        reason = _reason(exc, record.stream)
        raise BadExport(
            f"room {room!r} v{record.version}: no log takes it: {reason}", number
        ) from exc


def _check_payload(
    record: Record, records: list[Record], builder: TimelineBuilder, number: int
) -> None:
    """Refuse a record whose payload (or a model it embeds) does not decode: the target's
    log is append-only, and its rooms and readers could not load it."""
    try:
        builder.checked_entry(record)
    except CorruptRecord as exc:
        room = _room_id(record.stream, records)
        raise BadExport(
            f"room {room!r} v{record.version} ({record.type}) is a record that does not "
            f"decode: {one_line(exc.reason)}",
            number,
        ) from exc


def _reason(refused: InvalidAppend, stream: str) -> str:
    """What the log said, without the stream it names (messages here name the room)."""
    return str(refused).removeprefix(f"append to {stream!r}: ")


async def import_room(log: EventLog, lines: Lines | CheckedExport) -> ImportReport:
    """Append exported records to ``log``, keeping their versions, timestamps and headers.

    The whole input is read and checked before anything is written: each line must be a
    record the target takes and whose payload decodes (see ``read_export``), and each
    stream's records must run 1, 2, 3, ... (several streams may be interleaved, as in an
    export of the whole log). Then each stream is compared with what the target already
    holds: identical records are skipped (importing twice is harmless, and an interrupted
    import resumes), a different one stops the import before any append. Appends check the
    expected version, so a concurrent writer is never overwritten.

    Args:
        log: the target log.
        lines: JSON lines as ``export_room`` writes them (blank lines are ignored), a whole
            export as one text, or an export ``read_export`` already read.

    Returns:
        What was appended, per stream.

    Raises:
        BadExport: a line is not a record, a record is one the target refuses (a field, or
            more bytes than it takes in one append), a payload does not decode, or versions
            have gaps.
        ImportConflict: the target holds different records for a stream (or another writer
            appended to it during the import).
        MissingRecords: versions of a room are missing from the target (removed from it).
        ForeignRecord: a room's log in the target holds another app's message.
    """
    export = lines if isinstance(lines, CheckedExport) else await read_export(lines)
    streams = export.streams
    present, plans = await _prepared(log, export)
    report = []
    for stream, records in streams.items():
        room_id = export.room_id(stream)
        todo = records[present[stream] :]
        for batch in plans[stream]:
            await _append_batch(log, stream, batch, room_id)
        report.append(ImportedStream(stream, len(records), len(todo), present[stream], room_id))
        logger.info(
            "imported %s: %d appended, %d already present", room_id, len(todo), present[stream]
        )
    return ImportReport(tuple(report))


async def check_import(log: EventLog, export: CheckedExport) -> None:
    """Raise what ``import_room(log, export)`` raises before its first append, appending
    nothing (``log``: the target, or a stand-in with its limits, as ``open_nats_log``'s
    ``check`` gives for a stream it has not made yet)."""
    await _prepared(log, export)


async def _prepared(
    log: EventLog, export: CheckedExport
) -> tuple[dict[str, int], dict[str, list[list[Record]]]]:
    """Each stream's records the target holds already (checked equal), and the appends that
    write the others (checked against the target's rules)."""
    present: dict[str, int] = {}
    for stream, records in export.streams.items():
        existing = await last_version(log, stream)
        present[stream] = await _compare(log, stream, records[:existing], export.room_id(stream))
    plans = {
        stream: _plan(log, records, present[stream], export.room_id(stream))
        for stream, records in export.streams.items()
    }
    return present, plans


def _room_id(stream: str, records: list[Record]) -> str:
    """The room ``stream`` holds; ``records`` start at version 1, its ``room.created``."""
    room_id = room_of_stream(stream)
    if room_id is None and records:
        room_id = created_room_id(records[0])
    return room_id or stream


async def _compare(log: EventLog, stream: str, records: list[Record], room_id: str) -> int:
    """Check that the target's first records equal ``records``; return how many there are.

    Raises:
        ImportConflict: one differs.
        MissingRecords: versions among them are missing from the target (removed from under
            it): it cannot take them again (a log is appended to), and counting them as
            present said the room was whole.
    """
    reader = RecordReader(log, stream, until=len(records))
    async for existing in reader:
        if reader.missing is not None:
            raise MissingRecords(room_id, *reader.missing, doing="import into the target")
        incoming = records[existing.version - 1]
        difference = _difference(existing, incoming)
        if difference is not None:
            raise ImportConflict(stream, existing.version, difference, room_id=room_id)
    missing = reader.missing_at_end()
    if missing is not None:
        raise MissingRecords(room_id, *missing, doing="import into the target")
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


def _plan(log: EventLog, records: list[Record], start: int, room_id: str) -> list[list[Record]]:
    """The appends that write ``records[start:]``, each checked against ``log``'s rules."""
    batches = _batches(records, start, log, room_id)
    for batch in batches:
        first = batch[0]
        try:
            check_batch(log, first.stream, [new_event(r) for r in batch], first.version)
        except InvalidAppend as exc:
            reason = _reason(exc, first.stream)
            raise BadExport(f"room {room_id!r} v{first.version}: {reason}") from exc
    return batches


def _batches(
    records: list[Record],
    start: int,
    log: EventLog,
    room_id: str,
) -> list[list[Record]]:
    """Split ``records[start:]`` (the target holds the others) into appends of about
    ``_BATCH`` records, none holding more events or bytes than ``log`` takes in one append.

    The log de-duplicates an append by its first event's message id: a batch must not start
    with a record whose id an earlier record of the stream carried, or the log would take the
    batch for a retry and append nothing. Such a record joins the batch before it.

    Raises:
        BadExport: a record alone is more bytes than the target takes in one append, or
            records that reuse message ids cannot fit one append (its most events, or
            the target's bytes).
    """
    seen = {r.headers.message_id for r in records[:start] if r.headers.message_id is not None}
    limit, hard_limit = min(_BATCH, log.max_append_events), log.max_append_events
    budget = log.max_append_bytes  # None: the log counts events only
    batches: list[list[Record]] = []
    batch: list[Record] = []
    used = 0
    for record in records[start:]:
        message_id = record.headers.message_id
        starts_clean = message_id is None or message_id not in seen
        size = log.append_size([new_event(record)])
        too_big = budget is not None and used + size > budget
        if batch and (len(batch) >= limit or too_big) and starts_clean:
            batches.append(batch)
            batch, used = [], 0
            too_big = budget is not None and size > budget
        if too_big and not batch:
            raise BadExport(
                f"room {room_id!r} v{record.version} ({record.type}): {size:,} bytes, more "
                f"than the target takes in one append ({budget:,} bytes of events)"
            )
        if len(batch) >= hard_limit or too_big:
            raise BadExport(
                f"room {room_id!r} v{record.version}: records in a row reuse message ids "
                "beyond what the target takes in one append; it cannot take them in order"
            )
        batch.append(record)
        used += size
        if message_id is not None:
            seen.add(message_id)
    if batch:
        batches.append(batch)
    return batches


async def _append_batch(log: EventLog, stream: str, batch: list[Record], room_id: str) -> None:
    first = batch[0].version
    events = [new_event(r) for r in batch]
    try:
        committed = await log.append(stream, events, expected_version=first - 1)
    except WrongExpectedVersion as exc:
        raise ImportConflict(
            stream, first, "another writer appended to it meanwhile", room_id=room_id
        ) from exc
    if not committed or committed[0].version != first:
        # The log answered with an earlier append (a message id it had already seen).
        message_id = batch[0].headers.message_id
        if committed and message_id is not None and committed[0].headers.message_id == message_id:
            # Not a conflict: the target holds the room's first records as the input does,
            # but took this append for a retry of its own earlier one (a catch-up whose first
            # record reuses the message id of a record the target holds).
            raise BadExport(
                f"room {room_id!r} v{first} reuses the message id {message_id!r} of "
                f"v{committed[0].version}, which the target holds: the target takes an append "
                "starting with it for a retry of that one (a log de-duplicates appends by "
                f"their first record's message id) and appended nothing from v{first} on; "
                "try again once the target's duplicate window has passed (NATS: its stream's, "
                "2 minutes by default), or import the whole room into a target without it"
            )
        raise ImportConflict(
            stream,
            first,
            "the target took the records for a retry of an earlier append",
            room_id=room_id,
        )
