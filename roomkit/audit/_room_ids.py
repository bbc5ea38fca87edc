"""Room ids for people, streams for the log.

The audit tools take and show room ids, and read the streams that hold them
(``roomkit.core._room_ids``). A stream's name tells its room id unless the id was too long to
encode reversibly (a ``__h`` stream): then the id is read from the room's ``room.created``
record, its first. When nothing tells it, the tools show the stream's name rather than nothing.
"""

from __future__ import annotations

import msgspec

from eventlog import EventLog, Record
from eventlog.errors import ForeignMessage
from roomkit.core._domain import RoomCreated
from roomkit.core._room_ids import room_of_stream, room_stream_or_none

__all__ = ["created_room_id", "find_room_id", "named_room_id"]


class _RoomId(msgspec.Struct):
    id: str


class _Created(msgspec.Struct):
    """The one field of ``room.created`` needed here (the rest of the room is not decoded)."""

    room: _RoomId


_created_decoder = msgspec.json.Decoder(_Created)


def named_room_id(record: Record) -> str | None:
    """The room id a ``room.created`` record names, whatever its stream; ``None`` for any
    other record, or one that does not decode."""
    if record.type != RoomCreated.TAG:
        return None
    try:
        return _created_decoder.decode(record.data).room.id
    except msgspec.DecodeError:  # a damaged record: the timeline shows it as such
        return None


def created_room_id(record: Record) -> str | None:
    """The room id a ``room.created`` record names, if it is the room of the record's stream;
    ``None`` for any other record."""
    room_id = named_room_id(record)
    # A record naming another room (a hand-made or legacy log) says nothing of this stream.
    if room_id is not None and room_stream_or_none(room_id) == record.stream:
        return room_id
    return None


async def find_room_id(log: EventLog, stream: str) -> str | None:
    """The room id ``stream`` holds: from its name, else from its first record (one read);
    ``None`` when neither tells it."""
    room_id = room_of_stream(stream)
    if room_id is not None:
        return room_id
    try:
        first = await log.read(stream, limit=1)
    except ForeignMessage:  # the stream's read stops at another app's message: the room
        return None  # is listed under its stream's name (its replay says why)
    return created_room_id(first[0]) if first else None
