"""Rebuilding a room's state from its log, with the room actor's own fold (``evolve``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from eventlog import EventLog, Record
from roomkit.audit._errors import CorruptRecord, MissingRecords
from roomkit.audit._records import Progress, RecordReader, Until, last_version, to_datetime
from roomkit.core._domain import DomainEvent, UnreadableModel, decode_domain_event
from roomkit.core._room_ids import room_stream
from roomkit.core._room_state import RoomState, evolve
from roomkit.errors import RoomNotFoundError

__all__ = ["ReplayPoint", "apply_record", "replay", "replay_point"]


@dataclass(frozen=True, slots=True)
class ReplayPoint:
    """A room's state as of one point of its log.

    Attributes:
        room_id: the room's id.
        state: the fold of every record up to ``version``.
        version: the last version folded (0: none, the point is before the room existed).
        time: that record's timestamp (``None`` when ``version`` is 0, or when the timestamp
            is not a time).
    """

    room_id: str
    state: RoomState
    version: int
    time: datetime | None


def decode(record: Record) -> DomainEvent | None:
    """The record's domain event (``None`` for a tag this version does not know).

    Raises:
        CorruptRecord: the payload does not decode as the event its tag names.
    """
    try:
        return decode_domain_event(record)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(record.stream, record.version, record.type, str(exc)) from exc


def apply_record(state: RoomState, record: Record) -> RoomState:
    """Fold one record into ``state`` (in place) with the actor's ``evolve``.

    Records of a tag this version does not know are skipped, as the actor skips them. A
    message is folded from its few fields, as the actor folds it: one whose event does not
    validate (a newer writer's content type) is no corrupt record of the room's state.

    Raises:
        CorruptRecord: the payload, or the model it embeds, does not decode.
    """
    event = decode(record)
    if event is None:
        return state
    try:
        return evolve(state, event, at=record.timestamp)
    except (UnreadableModel, msgspec.DecodeError) as exc:  # the embedded model's (no input)
        raise CorruptRecord(record.stream, record.version, record.type, str(exc)) from exc


async def replay_point(
    log: EventLog, room_id: str, until: Until = None, *, progress: Progress | None = None
) -> ReplayPoint:
    """Rebuild ``room_id``'s state from its records up to ``until``.

    Args:
        log: the log holding the room.
        room_id: the room's id (any id the kit accepts; its stream is read).
        until: the last version to fold, or a time (records stamped at or before it; a naive
            ``datetime`` is UTC); ``None`` folds everything.
        progress: told how many records were read, page by page.

    Returns:
        The state and the version it stands at.

    Raises:
        RoomNotFoundError: the log has no record of ``room_id``.
        InvalidRoomIdError: ``room_id`` is not a valid room id.
        CorruptRecord: a record does not decode.
        ForeignRecord: the room's log holds another app's message (on its subject).
        MissingRecords: versions up to ``until`` are missing from the log.
        TypeError: ``until`` is neither a version (an int) nor a ``datetime``.
        ValueError: ``until`` is a negative version.
    """
    stream = room_stream(room_id)
    state = RoomState()
    last: Record | None = None
    records = RecordReader(log, stream, until=until, progress=progress)
    async for record in records:
        if records.missing is not None:
            raise _missing(room_id, records.missing, until)
        apply_record(state, record)
        last = record
    missing = records.missing_at_end()
    if missing is not None:
        raise _missing(room_id, missing, until)
    if last is None and await last_version(log, stream) == 0:
        raise RoomNotFoundError(f"Room {room_id} not found in the log")
    return ReplayPoint(
        room_id=room_id,
        state=state,
        version=last.version if last is not None else 0,
        time=to_datetime(last.timestamp) if last is not None else None,
    )


def _missing(room_id: str, missing: tuple[int, int], until: Until) -> MissingRecords:
    # A state folded over the records on either side of a gap lacks what the missing ones
    # did (a channel attached, a participant): it is no state the room ever had.
    point = "now" if until is None else f"of v{until}" if isinstance(until, int) else f"of {until}"
    return MissingRecords(room_id, *missing, doing=f"rebuild the room as {point}")


async def replay(
    log: EventLog, room_id: str, until: Until = None, *, progress: Progress | None = None
) -> RoomState:
    """The room's state as of ``until``: the room, bindings, participants, idempotency keys
    and event count that its actor would hold. See ``replay_point`` for the arguments.

    Raises:
        RoomNotFoundError: the log has no record of ``room_id``.
        InvalidRoomIdError: ``room_id`` is not a valid room id.
        CorruptRecord: a record does not decode.
        ForeignRecord: the room's log holds another app's message (on its subject).
        MissingRecords: versions up to ``until`` are missing from the log.
        TypeError: ``until`` is neither a version (an int) nor a ``datetime``.
        ValueError: ``until`` is a negative version.
    """
    return (await replay_point(log, room_id, until, progress=progress)).state
