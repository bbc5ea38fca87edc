"""Errors of the audit API.

Exception tree (``RoomNotFoundError`` is the kit's own, reused for an unknown room)::

    RoomKitError
    ├── RoomNotFoundError      the log has no record of that room
    └── AuditError
        ├── BadExport          an export line that is not a record, or records out of order
        ├── CorruptRecord      a record whose payload does not decode as its domain event
        ├── ForeignRecord      a message on a room's subject that is no record of RoomKit's
        ├── MissingRecords     versions of a room are missing from its log (removed from it)
        └── ImportConflict     the target already holds different records for a stream
"""

from __future__ import annotations

from eventlog.errors import ForeignMessage
from roomkit.core._room_ids import room_of_stream
from roomkit.errors import RoomKitError

__all__ = [
    "AuditError",
    "BadExport",
    "CorruptRecord",
    "ForeignRecord",
    "ImportConflict",
    "MissingRecords",
    "one_line",
]


class AuditError(RoomKitError):
    """Root of the errors raised by ``roomkit.audit``."""


class BadExport(AuditError, ValueError):
    """An export that cannot be imported: a line that is not a record, or a stream whose
    versions do not run 1, 2, 3, ... without gaps.

    Attributes:
        line: the 1-based line number of the offending line (``None`` when not line-bound).
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


def one_line(reason: str) -> str:
    """A decoder's report on one line (pydantic's spans several, and ends with a link)."""
    lines = [line.strip() for line in reason.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("For further"))


class CorruptRecord(AuditError):
    """A record whose payload does not decode as the domain event its type names.

    Attributes:
        stream: the record's stream.
        version: the record's version.
        type: the record's type.
        reason: what the decoder said.
        room_id: the room the stream holds, as its name tells it (the stream's name when it
            does not: the hashed form of a long id); what the message names.
    """

    def __init__(self, stream: str, version: int, type: str, reason: str) -> None:
        self.stream = stream
        self.version = version
        self.type = type
        self.reason = reason
        # The commands take and show room ids: "__bc3VwcG9ydDo0Mg v2" named room support:42.
        self.room_id = room_of_stream(stream) or stream
        super().__init__(
            f"room {self.room_id!r} v{version} ({type}) does not decode: {one_line(reason)}"
        )


class ForeignRecord(AuditError):
    """A read of a room's log met a message that is not one of RoomKit's records: another
    app published on the room's subject (``roomkit.ev.<room>``). The room cannot be read
    past it. Raised from the log's ``ForeignMessage`` (its ``__cause__``), which is no
    ``AuditError``: callers catching the documented root let it through.

    Attributes:
        stream: the stream being read.
        room_id: the room the stream holds, as its name tells it (the stream's name when it
            does not).
        seq: the message's sequence number in the JetStream stream.
        subject: its subject (``None`` when not known).
    """

    def __init__(self, stream: str, foreign: ForeignMessage) -> None:
        self.stream = stream
        self.room_id = room_of_stream(stream) or stream
        self.seq = foreign.seq
        self.subject = foreign.subject
        super().__init__(f"{foreign}; the room cannot be read past it")


class MissingRecords(AuditError):
    """Versions of a room are missing from its log, where they run from 1 without gaps.

    Records removed from under the log (a JetStream retention limit, a deleted message): the
    room's state past them cannot be rebuilt, and an export of the rest no log would take.

    Attributes:
        room_id: the room.
        first: the first missing version.
        last: the last missing version.
    """

    def __init__(self, room_id: str, first: int, last: int, *, doing: str) -> None:
        self.room_id = room_id
        self.first = first
        self.last = last
        super().__init__(
            f"cannot {doing}: {missing_versions(first, last)} missing from the log of room "
            f"{room_id!r} (removed from it: a retention limit, a deleted message)"
        )


def missing_versions(first: int, last: int) -> str:
    """``version 4 is`` or ``versions 4-5 are``: the subject of a sentence about a gap."""
    return f"version {first} is" if first == last else f"versions {first}-{last} are"


class ImportConflict(AuditError):
    """The target log already has a record of the stream, at that version, that differs.

    An import never overwrites or forks a stream. Found before any append (the target
    already held a different record), nothing of the import was written; found during the
    appends (another writer appended to the stream meanwhile), the streams and batches
    before it stay written, identical to the input (an import run again skips them).

    Attributes:
        stream: the conflicting stream.
        version: the first version where the target and the import differ.
        room_id: the room the stream holds (the stream's name when not given).
    """

    def __init__(
        self, stream: str, version: int, detail: str, *, room_id: str | None = None
    ) -> None:
        self.stream = stream
        self.version = version
        self.room_id = room_id if room_id is not None else stream
        super().__init__(
            f"room {self.room_id!r} already exists in the target and differs at version "
            f"{version} ({detail}); refusing to overwrite it"
        )
