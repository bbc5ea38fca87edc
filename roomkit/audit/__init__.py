"""Audit a room from its event log: replay its state, read its timeline, move it elsewhere.

Everything here reads the log the room actors write (any ``EventLog`` backend) and folds it
with the actors' own ``evolve``, so a replayed state is the state the room had::

    state = await replay(log, "room-1", until=42)           # or until=a datetime
    async for entry in timeline(log, "room-1"):
        out.write(format_entry(entry) + "\n")
    async for line in export_room(log, "room-1"):           # JSON lines
        ...
    await import_room(other_log, lines)                      # same versions, no overwrite
    export = await read_export(lines)                        # checked, before any target

Rooms are named by their ids (``"support:42"`` too), which the functions map to the streams
the log holds them in; timelines, replays and room lists show the ids back.

The ``roomkit`` command line (``roomkit.cli``) is a thin shell over this package.
"""

from __future__ import annotations

from roomkit.audit._errors import (
    AuditError,
    BadExport,
    CorruptRecord,
    ForeignRecord,
    ImportConflict,
    MissingRecords,
)
from roomkit.audit._nats import DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX, open_nats_log
from roomkit.audit._output import Format, Write, follow, to_json, write_replay, write_rooms
from roomkit.audit._records import Progress, Until
from roomkit.audit._render import (
    TextRenderer,
    entry_to_dict,
    format_entry,
    format_rooms,
    format_state,
    printable,
    room_to_dict,
    state_to_dict,
)
from roomkit.audit._replay import ReplayPoint, apply_record, replay, replay_point
from roomkit.audit._timeline import (
    MISSING,
    DeliveryOutcome,
    Timeline,
    TimelineBuilder,
    TimelineEntry,
    content_preview,
    timeline,
)
from roomkit.audit._transfer import (
    CheckedExport,
    ExportLines,
    ImportedStream,
    ImportReport,
    RoomInfo,
    export_room,
    import_room,
    read_export,
    rooms,
)
from roomkit.core._room_state import RoomState

__all__ = [
    "AuditError",
    "BadExport",
    "CheckedExport",
    "CorruptRecord",
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT_PREFIX",
    "DeliveryOutcome",
    "ExportLines",
    "ForeignRecord",
    "Format",
    "ImportConflict",
    "ImportReport",
    "ImportedStream",
    "MISSING",
    "MissingRecords",
    "Progress",
    "ReplayPoint",
    "RoomInfo",
    "RoomState",
    "TextRenderer",
    "Timeline",
    "TimelineBuilder",
    "TimelineEntry",
    "Until",
    "Write",
    "apply_record",
    "content_preview",
    "entry_to_dict",
    "export_room",
    "follow",
    "format_entry",
    "format_rooms",
    "format_state",
    "import_room",
    "open_nats_log",
    "printable",
    "read_export",
    "replay",
    "replay_point",
    "room_to_dict",
    "rooms",
    "state_to_dict",
    "timeline",
    "to_json",
    "write_replay",
    "write_rooms",
]
