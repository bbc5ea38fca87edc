"""A room's history as readable entries: who did what, which hook blocked or modified a
message, and what each channel's delivery came to.

``TimelineBuilder`` turns records into ``TimelineEntry`` values one at a time (``timeline``
for one room, the CLI's ``tail`` for the live log). It folds each room's state with the actor's
own ``evolve`` as it goes, so that a sender shows under the name the room knew them by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import msgspec
import pydantic

from eventlog import EventLog, Record
from roomkit.audit._errors import CorruptRecord, missing_versions
from roomkit.audit._records import Progress, RecordReader, Until, last_version, to_datetime
from roomkit.audit._replay import decode
from roomkit.audit._room_ids import created_room_id
from roomkit.core._domain import (
    ChannelAttached,
    ChannelDetached,
    ChannelUpdated,
    DeliveryRecorded,
    DomainEvent,
    MessageRecorded,
    ObservationRecorded,
    ParticipantJoined,
    ParticipantUpdated,
    ReadMarked,
    RoomCreated,
    RoomUpdated,
    TaskRecorded,
    UnreadableModel,
    load,
)
from roomkit.core._room_ids import room_of_stream, room_stream
from roomkit.core._room_state import RoomState, evolve
from roomkit.errors import RoomNotFoundError
from roomkit.models._json import event_fields
from roomkit.models.channel import ChannelBinding
from roomkit.models.delivery import DeliveryResult
from roomkit.models.enums import ChannelType, EventStatus, EventType
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    LocationContent,
    MediaContent,
    RichContent,
    RoomEvent,
    SystemContent,
    TemplateContent,
    TextContent,
    VideoContent,
)
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task

__all__ = [
    "MISSING",
    "DeliveryOutcome",
    "Timeline",
    "TimelineBuilder",
    "TimelineEntry",
    "timeline",
]

PREVIEW_CHARS = 60
"""Longest text preview in an entry (the full text is in the log and in ``export``)."""

# How many event id -> version pairs a builder remembers per room, to say which message a
# delivery or a read marker refers to; bounded so that a long ``tail`` does not grow forever.
_REMEMBERED_EVENTS = 10_000


class _HookMarks(msgspec.Struct):
    """Optional fields of ``message.recorded`` that say how hooks shaped the message.

    Decoded from the payload itself rather than from ``MessageRecorded`` so that the audit
    shows them as soon as the writer records them, and old logs without them stay readable.
    """

    modified_by: list[str] = msgspec.field(default_factory=list)


_marks_decoder = msgspec.json.Decoder(_HookMarks)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What delivering one message to one channel came to."""

    channel_id: str
    success: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One record of a room's log, made readable.

    Attributes:
        room_id: the room's id (the name of its stream when neither that name nor the room's
            ``room.created`` record tells it).
        version: the record's version in the room (the first missing one for ``missing``).
        position: its position in the whole log (``None`` for ``missing``).
        time: when it was recorded (UTC); ``None`` when the record's timestamp is not a time
            (a record written before appends refused such timestamps, or by another writer).
        kind: the record's stable type tag (``message.recorded``, ``delivery.recorded``, ...).
        who: who did it: a participant's name or id, a channel, ``system`` or ``router``.
        what: a one-line summary.
        event_id: the room event recorded (``message.recorded``) or delivered
            (``delivery.recorded``).
        event_type: the recorded event's ``EventType`` (``message``, ``channel_attached``, ...).
        channel: the channel the event came from, or the channel a binding change concerns.
        sender: the sender's participant id, when the event has one.
        text: a preview of the event's content.
        status: the recorded event's status (``delivered``, ``blocked``, ...).
        blocked_by: the hook that blocked the message.
        block_reason: the reason that hook gave (when the log records it).
        modified_by: the hooks that modified it (when the log records them).
        refers_to: the version of the message a delivery or a read marker is about.
        deliveries: per-channel delivery outcomes (``delivery.recorded``).
        missing: for an entry of kind ``versions.missing`` (``MISSING``), the versions (first,
            last) missing from the log at that point: records removed from under it.
    """

    room_id: str
    version: int
    position: int | None
    time: datetime | None
    kind: str
    who: str
    what: str
    event_id: str | None = None
    event_type: str | None = None
    channel: str | None = None
    sender: str | None = None
    text: str | None = None
    status: str | None = None
    blocked_by: str | None = None
    block_reason: str | None = None
    modified_by: tuple[str, ...] = ()
    refers_to: int | None = None
    deliveries: tuple[DeliveryOutcome, ...] = ()
    missing: tuple[int, int] | None = None


MISSING = "versions.missing"
"""The kind of the entry that stands for versions missing from a room's log (no domain event
has this tag: theirs name what happened, this one what the log lacks)."""


@dataclass(slots=True)
class _Room:
    room_id: str | None  # None until the stream's name or its room.created record tells it
    state: RoomState = field(default_factory=RoomState)
    versions: dict[str, int] = field(default_factory=dict)

    def remember(self, event_id: str, version: int) -> None:
        self.versions[event_id] = version
        if len(self.versions) > _REMEMBERED_EVENTS:
            del self.versions[next(iter(self.versions))]  # the oldest (insertion order)


class TimelineBuilder:
    """Turns records into timeline entries, in each room's version order.

    Records of several rooms may be interleaved (the global order of ``tail``); each room gets
    its own folded state. A record that does not decode becomes an entry that says so rather
    than stopping the timeline: an audit must show what is there.

    Entries show room ids: read from the stream's name, or from the room's ``room.created``
    record for the stream of a long id (see ``name`` for a room met past that record).
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}  # by stream

    def state(self, room_id: str) -> RoomState:
        """The state folded so far for ``room_id`` (empty if none of its records was seen).

        Raises:
            InvalidRoomIdError: ``room_id`` is not a valid room id.
        """
        room = self._rooms.get(room_stream(room_id))
        return room.state if room is not None else RoomState()

    def name(self, room_id: str) -> None:
        """Show the entries of ``room_id``'s stream under ``room_id``, for a caller that knows
        it when the builder cannot (a long id's stream, first met past its ``room.created``).

        Raises:
            InvalidRoomIdError: ``room_id`` is not a valid room id.
        """
        self._room(room_stream(room_id)).room_id = room_id

    def entry(self, record: Record) -> TimelineEntry:
        """The entry for ``record`` (and fold it into its room's state); a record that does not
        decode gives an entry that says so."""
        try:
            return self.checked_entry(record)
        except CorruptRecord as exc:
            what = f"undecodable record: {str(exc).splitlines()[0]}"
            return TimelineEntry(**self._base(record), who="?", what=what)

    def missing(self, stream: str, first: int, last: int) -> TimelineEntry:
        """The entry that says versions ``first`` to ``last`` of ``stream`` are missing from
        the log (removed from under it), so that a timeline does not run over them silently.

        Raises:
            InvalidStreamId: ``stream`` is not a valid stream id.
        """
        room = self._room(stream)
        what = (
            f"{missing_versions(first, last)} missing from the log (removed from it: a "
            "retention limit, a deleted message)"
        )
        return TimelineEntry(
            room_id=room.room_id or stream,
            version=first,
            position=None,
            time=None,
            kind=MISSING,
            who="log",
            what=what,
            missing=(first, last),
        )

    def checked_entry(self, record: Record) -> TimelineEntry:
        """The entry for ``record`` (and fold it into its room's state), for a caller that must
        not take a record the timeline cannot read (an import).

        A message whose event does not validate as a ``RoomEvent`` is no such record: the
        room folds it from its few fields, and so does this (its entry says it without its
        content).

        Raises:
            CorruptRecord: the payload, or a model it embeds, does not decode; nothing folded.
        """
        base = self._base(record)
        event = decode(record)
        if event is None:  # a type of a newer version: shown, never refused (forward compat)
            what = f"unknown event type ({len(record.data)} bytes)"
            return TimelineEntry(**base, who="?", what=what)
        room = self._room(record.stream)
        try:
            details, model = _describe(event, record, room)
        except (UnreadableModel, msgspec.DecodeError) as exc:  # their texts hold no input
            raise CorruptRecord(record.stream, record.version, record.type, str(exc)) from exc
        evolve(room.state, event, model, at=record.timestamp)
        return TimelineEntry(**base, **details)

    def _base(self, record: Record) -> dict[str, Any]:
        """The fields every entry of ``record`` has, whether it decodes or not."""
        room = self._room(record.stream)
        if room.room_id is None:
            room.room_id = created_room_id(record)
        return {
            "room_id": room.room_id or record.stream,
            "version": record.version,
            "position": record.position,
            "time": to_datetime(record.timestamp),
            "kind": record.type,
        }

    def _room(self, stream: str) -> _Room:
        room = self._rooms.get(stream)
        if room is None:
            room = self._rooms[stream] = _Room(room_of_stream(stream))
        return room


def _describe(
    event: DomainEvent, record: Record, room: _Room
) -> tuple[dict[str, Any], pydantic.BaseModel | None]:
    """The entry's fields for ``event`` and the model it carries (decoded once, reused by
    ``evolve``)."""
    match event:
        case MessageRecorded():
            try:
                message = load(RoomEvent, event.event)
            except UnreadableModel as exc:
                return _unvalidated_message(event, record, room, exc), None
            room.remember(message.id, record.version)
            return _message(event, message, record, room.state), message
        case DeliveryRecorded():
            results = [load(DeliveryResult, raw) for raw in event.results]
            outcomes = tuple(
                DeliveryOutcome(r.channel_id, r.success, _delivery_error(r)) for r in results
            )
            ref = room.versions.get(event.event_id)
            target = f"v{ref}" if ref is not None else f"event {event.event_id[:8]}"
            summary = ", ".join(_outcome_text(o) for o in outcomes) or "no channel"
            details = {
                "who": "router",
                "what": f"{target} -> {summary}",
                "event_id": event.event_id,
                "refers_to": ref,
                "deliveries": outcomes,
            }
            return details, None
        case RoomCreated() | RoomUpdated():
            room_model = load(Room, event.room)
            if isinstance(event, RoomUpdated):
                # e.g. "room_paused_by_timer": the line already says "room"
                why = (event.reason or "updated").removeprefix("room_").replace("_", " ")
            else:
                why = "created"
            what = f"room {why} (status {room_model.status})"
            return {"who": "system", "what": what, "status": str(room_model.status)}, room_model
        case ChannelAttached() | ChannelUpdated():
            binding = load(ChannelBinding, event.binding)
            if isinstance(event, ChannelAttached):
                what = f"attached {binding.channel_id} ({binding.channel_type}; {_flags(binding)})"
            else:
                what = f"{binding.channel_id} {event.change or 'updated'}: {_flags(binding)}"
            details = {"who": "system", "what": what, "channel": binding.channel_id}
            return details, binding
        case ChannelDetached():
            what = f"detached {event.channel_id}"
            return {"who": "system", "what": what, "channel": event.channel_id}, None
        case ParticipantJoined() | ParticipantUpdated():
            person = load(Participant, event.participant)
            verb = "joined via" if isinstance(event, ParticipantJoined) else "updated on"
            what = f"{person.id} {verb} {person.channel_id} ({person.identification})"
            details = {
                "who": person.display_name or person.id,
                "what": what,
                "channel": person.channel_id,
                "sender": person.id,
            }
            return details, person
        case TaskRecorded():
            task = load(Task, event.task)
            return {"who": "system", "what": f"task {task.title!r} ({task.status})"}, task
        case ObservationRecorded():
            seen = load(Observation, event.observation)
            label = f" {seen.category}" if seen.category else ""
            what = f"observation{label}: {_preview(seen.content)}"
            return {"who": seen.channel_id, "what": what, "channel": seen.channel_id}, seen
        case ReadMarked():
            ref = room.versions.get(event.event_id) if event.event_id else None
            if event.event_id is None:
                upto = "everything"
            elif ref is not None:
                upto = f"up to v{ref}"
            else:
                upto = f"up to event {event.event_id[:8]}"
            details = {
                "who": event.channel_id,
                "what": f"{event.channel_id} read {upto}",
                "channel": event.channel_id,
                "event_id": event.event_id,
                "refers_to": ref,
            }
            return details, None
    return {"who": "?", "what": type(event).__name__}, None  # pragma: no cover - all tags above


def _unvalidated_message(
    recorded: MessageRecorded, record: Record, room: _Room, error: UnreadableModel
) -> dict[str, Any]:
    """The entry of a message whose event does not validate as a ``RoomEvent``, from its few
    fields, as the room's actor and ``replay`` fold it.

    Such a record may be the kit's own (an event its channel or a hook changed in
    place, recorded as it was left), or an earlier or newer version's: refused here, an
    import refused the whole room, and the timeline's state lacked the message. Said without
    its content (``error`` holds none).

    Raises:
        msgspec.DecodeError: not even its few fields decode: a record the room cannot fold.
    """
    fields = event_fields(recorded.event)
    room.remember(fields.id, record.version)
    said = CorruptRecord(record.stream, record.version, record.type, str(error))
    return {
        "who": "?",
        "what": f"undecodable record: {said}",
        "event_id": fields.id,
        "event_type": str(fields.type),
        "status": str(fields.status),
    }


def _message(
    recorded: MessageRecorded, event: RoomEvent, record: Record, state: RoomState
) -> dict[str, Any]:
    source = event.source
    preview = content_preview(event.content)
    details: dict[str, Any] = {
        "event_id": event.id,
        "event_type": str(event.type),
        "channel": source.channel_id,
        "sender": source.participant_id,
        "text": preview,
        "status": str(event.status),
        "blocked_by": event.blocked_by,
        "block_reason": recorded.reason,
    }
    if event.type != EventType.MESSAGE:
        # Audit events the room records about itself (channel attached, participant joined).
        details["who"] = "system"
        details["what"] = f"[{event.type}] {preview}"
        return details
    modified = tuple(_marks_decoder.decode(record.data).modified_by)
    details["modified_by"] = modified
    if source.channel_type == ChannelType.SYSTEM:
        details["who"] = "system"  # e.g. a notice a hook injected
    else:
        details["who"] = _sender(source.participant_id, source.channel_id, state)
    if event.status == EventStatus.BLOCKED:
        # Upper case so that a blocked message stands out in a long timeline.
        what = f'"{preview}" BLOCKED by {event.blocked_by or "a hook"}'
        if recorded.reason:
            what += f": {' '.join(recorded.reason.split())}"  # one line, as the preview
    else:
        what = f'"{preview}" {event.status}'

    if modified:
        what += f", modified by {', '.join(modified)}"
    if recorded.targets:
        what += f" (to {', '.join(recorded.targets)} only)"
    details["what"] = what
    return details


def _sender(participant_id: str | None, channel_id: str, state: RoomState) -> str:
    """``name@channel`` for a participant (named as the room knows them), else the channel."""
    if participant_id is None:
        return channel_id
    participant = state.participants.get(participant_id)
    if participant is not None and participant.display_name:
        return f"{participant.display_name}@{channel_id}"
    return f"{participant_id}@{channel_id}"


def _flags(binding: ChannelBinding) -> str:
    muted = ", muted" if binding.muted else ""
    return f"access {binding.access}, visibility {binding.visibility}{muted}"


def _delivery_error(result: DeliveryResult) -> str | None:
    if result.error:
        return result.error
    provider = result.provider_result
    if provider is not None and not provider.success:
        return provider.error or "provider reported a failure"
    return None


def _outcome_text(outcome: DeliveryOutcome) -> str:
    if outcome.success:
        return f"{outcome.channel_id} ok"
    return f"{outcome.channel_id} FAILED ({outcome.error or 'no reason given'})"


def _preview(text: str) -> str:
    text = " ".join(text.split())  # one line, whatever the message's layout
    if len(text) <= PREVIEW_CHARS:
        return text
    return text[: PREVIEW_CHARS - 3].rstrip() + "..."


def content_preview(content: EventContent) -> str:
    """A one-line preview of any event content (text, or what kind of content it is)."""
    match content:
        case TextContent() | RichContent() | SystemContent():
            return _preview(content.body)
        case TemplateContent():
            return _preview(content.body or f"template {content.template_id}")
        case MediaContent():
            return _preview(f"[{content.mime_type}] {content.caption or content.url}")
        case AudioContent():
            return _preview(f"[audio] {content.transcript or content.url}")
        case VideoContent():
            return _preview(f"[video] {content.url}")
        case LocationContent():
            label = content.label or f"{content.latitude:.5f},{content.longitude:.5f}"
            return _preview(f"[location] {label}")
        case CompositeContent():
            return _preview(" + ".join(content_preview(part) for part in content.parts))
    return f"[{getattr(content, 'type', '?')}]"  # pragma: no cover - the union is closed


class Timeline:
    """The entries of one room above ``after_version`` (up to ``until``), in version order.

    The whole room is folded from version 1 so that names are known, but only the entries
    above ``after_version`` are yielded. An async iterator written as a class so that leaving a
    loop early leaves no async generator to finalise. See ``timeline``.
    """

    def __init__(
        self,
        log: EventLog,
        room_id: str,
        *,
        after_version: int = 0,
        until: Until = None,
        progress: Progress | None = None,
    ) -> None:
        self._log = log
        self._room_id = room_id
        self._stream = room_stream(room_id)
        self._after = after_version
        self._records = RecordReader(log, self._stream, until=until, progress=progress)
        self._builder = TimelineBuilder()
        # The caller's id, even if the room's room.created record is missing or damaged.
        self._builder.name(room_id)
        self._started = False
        self._next: TimelineEntry | None = None  # the record's entry, after its gap's
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> TimelineEntry:
        if self._next is not None:
            entry, self._next = self._next, None
            return entry
        while True:
            try:
                record = await self._records.__anext__()
            except StopAsyncIteration:
                if not self._started and await last_version(self._log, self._stream) == 0:
                    raise RoomNotFoundError(f"Room {self._room_id} not found in the log") from None
                missing = self._records.missing_at_end()
                if missing is not None and missing[1] > self._after and not self._ended:
                    self._ended = True
                    return self._builder.missing(self._stream, *missing)
                raise
            self._started = True
            entry = self._builder.entry(record)
            missing = self._records.missing
            if missing is not None and missing[1] > self._after:
                if record.version > self._after:
                    self._next = entry
                return self._builder.missing(self._stream, *missing)
            if record.version > self._after:
                return entry

    @property
    def state(self) -> RoomState:
        """The room's state folded up to the last entry yielded."""
        return self._builder.state(self._room_id)


def timeline(
    log: EventLog,
    room_id: str,
    *,
    after_version: int = 0,
    until: Until = None,
    progress: Progress | None = None,
) -> Timeline:
    """Iterate over the readable history of ``room_id``::

        async for entry in timeline(log, "room-1"):
            out.write(format_entry(entry) + "\n")

    Args:
        log: the log holding the room.
        room_id: the room's id (any id the kit accepts; its stream is read).
        after_version: yield only the entries above this version.
        until: stop after this version, or after this time (a naive ``datetime`` is UTC).
        progress: told how many records were read, page by page.

    Raises:
        RoomNotFoundError: (while iterating) the log has no record of ``room_id``.
        ForeignRecord: (while iterating) the room's log holds another app's message (on its
            subject); the entries before it were given.
        InvalidRoomIdError: (at once) ``room_id`` is not a valid room id.
    """
    return Timeline(log, room_id, after_version=after_version, until=until, progress=progress)
