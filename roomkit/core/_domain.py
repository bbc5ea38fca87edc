"""The room's domain events: what the room actor appends to the log.

Each event is a frozen msgspec Struct with a stable tag (``Record.type``) that never changes, even
if the class is renamed. Public models (pydantic) travel inside as their own JSON
(``msgspec.Raw``), so encoding a ``RoomEvent`` costs one pydantic-core serialisation and nothing
more; new fields get defaults so that old logs stay readable.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import msgspec
import pydantic
import pydantic_core
from pydantic import BaseModel

from eventlog import Headers, NewEvent, Record
from roomkit.errors import EventRefusedError
from roomkit.models._json import compact_json
from roomkit.models.enums import EventStatus, EventType
from roomkit.models.event import RoomEvent

__all__ = [
    "ChannelAttached",
    "ChannelDetached",
    "ChannelUpdated",
    "DeliveryRecorded",
    "DomainEvent",
    "MessageRecorded",
    "ObservationRecorded",
    "ParticipantJoined",
    "ParticipantUpdated",
    "ReadMarked",
    "RoomCreated",
    "RoomUpdated",
    "TaskRecorded",
    "UnreadableModel",
    "checked_dump",
    "decode_domain_event",
    "dump",
    "encode_domain_event",
    "encode_payload",
    "errors_text",
    "load",
    "message_dump",
    "read_back",
    "unreadable",
    "validation_text",
]

M = TypeVar("M", bound=BaseModel)


def dump(model: BaseModel, *, warnings: bool = True) -> msgspec.Raw:
    """A pydantic model as raw JSON to embed in a domain event: its ``compact_json``.

    A binding's capabilities or an event's empty containers would otherwise take most of the
    log, and the in-memory read model shares these bytes. So a model's fixed defaults are part
    of the stored format: changing one changes what old logs mean.

    Raises:
        EventRefusedError: (a ``ValueError``) the model cannot be written as JSON (text with a
            lone surrogate, nesting deeper than pydantic writes), said plainly: nothing of it
            is logged, and the same command is refused again.
    """
    try:
        data = compact_json(model, warnings=warnings)
    except pydantic_core.PydanticSerializationError as exc:
        reason = str(exc).removeprefix("Error serializing to JSON: ")
        raise EventRefusedError(f"{type(model).__name__} cannot be stored: {reason}") from exc
    if _REPLACEMENT in data and _REPLACED_IN_KEY.search(data) is not None:
        # pydantic refuses a lone surrogate in a value, but writes one in a dict key as
        # U+FFFD: two such keys became one, and a value was lost without a word. Looked for
        # only when a key holds U+FFFD (a mangled SMS holds it in its text).
        key = _surrogate_key(model)
        if key is not None:
            raise EventRefusedError(
                f"{type(model).__name__} cannot be stored: text JSON cannot hold (the key "
                f"{key!r} has a lone surrogate)"
            )
    return msgspec.Raw(data)


_REPLACEMENT = "\ufffd".encode()
# U+FFFD in a JSON string followed by a colon: a key (a value is followed by , ] or }).
_REPLACED_IN_KEY = re.compile(rb'\xef\xbf\xbd(?:[^"\\]|\\.)*":')


def _surrogate_key(value: object) -> str | None:
    """A dict key with a lone surrogate somewhere in ``value`` (a model, a mapping, a
    collection pydantic writes as a list, a dataclass), or None."""
    if isinstance(value, BaseModel):
        return next(filter(None, map(_surrogate_key, value.__dict__.values())), None)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and not key.isascii():
                try:
                    key.encode()
                except UnicodeEncodeError:
                    return key
            found = _surrogate_key(item)
            if found is not None:
                return found
        return None
    if isinstance(value, Collection) and not isinstance(value, str | bytes | bytearray):
        # A list, tuple, set, deque ...: each written as a JSON list.
        return next(filter(None, map(_surrogate_key, value)), None)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (getattr(value, field.name) for field in dataclasses.fields(value))
        return next(filter(None, map(_surrogate_key, fields)), None)
    return None


# Fewer brackets than this in a JSON text: it cannot be nested as deep as pydantic's reader
# refuses (200 levels), well below.
_SHALLOW_BRACKETS = 128

# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_DELIVERED = EventStatus.DELIVERED


def message_dump(event: BaseModel) -> msgspec.Raw:
    """``dump(event)``, read back if it has brackets enough to be nested deeper than pydantic
    reads (metadata a provider's payload filled, say): what every message can pay for.

    Reading every message back (``checked_dump``) cost it ~15 µs (~9% of workload (a)), and
    having pydantic's type warnings raised ~8 µs: an event a channel or hook changed in place,
    or made with ``model_construct``, is trusted to be valid (pydantic validated it when it
    was made). Callers check what such code hands over where they can afford it.

    Raises:
        EventRefusedError: it cannot be written, or would not read back.
    """
    raw = dump(event)
    data = bytes(raw)
    if data.count(b"[") + data.count(b"{") >= _SHALLOW_BRACKETS:
        read_back(RoomEvent, raw)  # as a replay reads it: an app's subclass reads as one too
    return raw


def checked_dump(model: BaseModel, stored: type[BaseModel]) -> msgspec.Raw:
    """``dump(model)``, read back as the log's readers will (``read_back``): as ``stored``,
    the model the log holds (an app's subclass of it, whose own fields the log does not
    keep, reads back as one).

    Raises:
        EventRefusedError: it cannot be written, or would not read back.
    """
    return _dumped_and_read_back(model, stored)[0]


def stored_form(model: M, stored: type[BaseModel]) -> tuple[msgspec.Raw, M]:
    """``checked_dump(model, stored)``, and the model as the log gives it back: ``model`` when
    that is equal to it (nearly always), else what was read back. What an app hands over may
    not survive JSON as it is (NaN becomes null, a tuple a list, an object its text): the room
    goes on with what its log holds, as a replay of it and the read model do, and the caller
    is answered with that.

    Raises:
        EventRefusedError: as ``checked_dump``.
    """
    raw, back = _dumped_and_read_back(model, stored)
    return raw, model if back == model else back  # type: ignore[return-value]


def _dumped_and_read_back(
    model: BaseModel, stored: type[BaseModel]
) -> tuple[msgspec.Raw, BaseModel]:
    # No pydantic warning of a value of another type than its field's: read back, it is
    # refused in plain words if it does not read back, and is fine if it does.
    raw = dump(model, warnings=False)
    why = unreadable(bytes(raw))
    if why is not None:
        raise EventRefusedError(f"{type(model).__name__} cannot be stored: {why}")
    return raw, read_back(stored, raw)


def read_back(model: type[M], raw: msgspec.Raw) -> M:
    """``raw`` read as ``model``, as a replay reads it: what the log takes must read back, or
    it would fail every replay of the room for good. User code can hand over what does not: a
    model made with ``model_construct`` or changed in place (pydantic validates neither), or
    JSON nested deeper than its reader goes (pydantic writes 255 levels, reads 200).

    Raises:
        EventRefusedError: (a ``ValueError``) it does not read back, said plainly.
    """
    try:
        return model.model_validate_json(bytes(raw))
    except ValueError as exc:  # a ValidationError, or JSON too deep to read
        reason = errors_text(exc)
    # Raised outside the handler, neither chained nor in its context: a traceback logged of
    # it would print pydantic's error, input (a message's content) and all.
    raise EventRefusedError(
        f"{model.__name__} cannot be stored: the log could not read it back ({reason})"
    )


def errors_text(error: ValueError) -> str:
    """A validation error in one line, its first errors by place, without the input (a
    message's text, which may be megabytes and which the kit does not log)."""
    if not isinstance(error, pydantic.ValidationError):
        return str(error).splitlines()[0]
    found = error.errors(include_url=False, include_input=False)
    text = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}" for e in found[:3]
    )
    return text if len(found) <= 3 else f"{text}; and {len(found) - 3} more"


class UnreadableModel(ValueError):
    """A model embedded in a record does not validate. Its text is pydantic's, without the
    input: the record's content (a message's text, a participant's name), which the kit does
    not put in error texts or logs."""


def validation_text(error: ValueError) -> str:
    """A validation error as pydantic words it (its count and title, then each error's place
    and message), without the input or a link: its first errors."""
    if not isinstance(error, pydantic.ValidationError):
        return str(error).splitlines()[0]
    found = error.errors(include_url=False, include_input=False)
    plural = "" if len(found) == 1 else "s"
    lines = [f"{len(found)} validation error{plural} for {error.title}"]
    for e in found[:3]:
        if e["loc"]:
            lines.append(".".join(str(part) for part in e["loc"]))
        lines.append(f"  {e['msg']} [type={e['type']}]")
    if len(found) > 3:
        lines.append(f"  and {len(found) - 3} more")
    return "\n".join(lines)


def load(model: type[M], raw: msgspec.Raw) -> M:
    """The pydantic model embedded in a domain event as raw JSON.

    Raises:
        UnreadableModel: it does not validate.
    """
    try:
        return model.model_validate_json(bytes(raw))
    except ValueError as exc:  # a ValidationError, or JSON too deep to read
        text = validation_text(exc)
    # Raised outside the handler, neither chained nor in its context: a traceback logged (a
    # room's crash) would print the cause, input and all.
    raise UnreadableModel(text)


class DomainEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """Base of the room's domain events. ``TAG`` is the stable ``Record.type``."""

    TAG = ""


class RoomCreated(DomainEvent, frozen=True):
    """A room came into being (``Room`` JSON)."""

    TAG = "room.created"
    room: msgspec.Raw


class RoomUpdated(DomainEvent, frozen=True):
    """The room's own fields changed: status, metadata, timers (``Room`` JSON after the change).

    ``reason`` says why: ``closed``, ``closed_by_timer``, ``paused_by_timer``,
    ``metadata_updated``, ``updated`` (``RoomKit.update_room``, or ``kit.store.update_room``).
    """

    TAG = "room.updated"
    room: msgspec.Raw
    reason: str = ""


class ChannelAttached(DomainEvent, frozen=True):
    """A channel was bound to the room (``ChannelBinding`` JSON)."""

    TAG = "channel.attached"
    binding: msgspec.Raw


class ChannelDetached(DomainEvent, frozen=True):
    """A channel's binding was removed.

    ``room_id`` is written only when the stream's name is not the room id (see _room_ids.py).
    """

    TAG = "channel.detached"
    channel_id: str
    room_id: str | None = None


class ChannelUpdated(DomainEvent, frozen=True):
    """A binding changed (``ChannelBinding`` JSON after the change).

    ``change``: ``muted``, ``unmuted``, ``visibility``, ``access``, ``metadata``, ``participant``.
    """

    TAG = "channel.updated"
    binding: msgspec.Raw
    change: str = ""


class ParticipantJoined(DomainEvent, frozen=True):
    """A participant was added to the room (``Participant`` JSON)."""

    TAG = "participant.joined"
    participant: msgspec.Raw


class ParticipantUpdated(DomainEvent, frozen=True):
    """A participant changed, e.g. was identified (``Participant`` JSON after the change)."""

    TAG = "participant.updated"
    participant: msgspec.Raw


class MessageRecorded(DomainEvent, frozen=True):
    """An event entered the room's timeline (``RoomEvent`` JSON).

    Covers messages (delivered or blocked), system/audit events, injected events and AI replies.
    ``deliver`` is false for events that are recorded but must not be broadcast (blocked ones,
    audit events); ``targets`` restricts delivery of injected events to those channel ids.
    For the audit trail: ``modified_by`` names the BEFORE_BROADCAST hooks that replaced the
    event, ``reason`` is the blocking hook's reason.
    """

    TAG = "message.recorded"
    event: msgspec.Raw
    deliver: bool = True
    targets: list[str] | None = None
    modified_by: list[str] = msgspec.field(default_factory=list)
    reason: str | None = None
    # Whether the event is room activity (``timers.last_activity_at``, see `is_activity`): as
    # in 0.3.0, an inbound event from a bound channel is (true), other messages are not
    # (false). Left out for audit events, and in records written before it was always
    # written: their types tell then.
    activity: bool | None = None


# The types of the room's own bookkeeping (audit and lifecycle events): their records leave
# ``activity`` out, and are not activity.
_BOOKKEEPING = frozenset(
    {
        EventType.SYSTEM,
        EventType.PARTICIPANT_JOINED,
        EventType.PARTICIPANT_LEFT,
        EventType.PARTICIPANT_IDENTIFIED,
        EventType.CHANNEL_ATTACHED,
        EventType.CHANNEL_DETACHED,
        EventType.CHANNEL_MUTED,
        EventType.CHANNEL_UNMUTED,
        EventType.CHANNEL_UPDATED,
        EventType.TASK_CREATED,
        EventType.OBSERVATION,
    }
)


def is_activity(flagged: bool | None, event_type: str, status: str) -> bool:
    """Whether a recorded event moves its room's ``last_activity_at`` (to the time it was
    recorded): a delivered one flagged so (``MessageRecorded.activity``: as in 0.3.0, an
    inbound event of any type from a bound channel), or, unflagged, one that is not the
    room's bookkeeping (records written before the flag was always written: a message)."""
    if status != _DELIVERED:
        return False
    if flagged is None:
        return event_type not in _BOOKKEEPING
    return flagged


class TaskRecorded(DomainEvent, frozen=True):
    """A hook or a channel produced a task (``Task`` JSON)."""

    TAG = "task.recorded"
    task: msgspec.Raw


class ObservationRecorded(DomainEvent, frozen=True):
    """A hook or a channel produced an observation (``Observation`` JSON)."""

    TAG = "observation.recorded"
    observation: msgspec.Raw


class DeliveryRecorded(DomainEvent, frozen=True):
    """The outcome of broadcasting one event: a ``DeliveryResult`` JSON per target channel."""

    TAG = "delivery.recorded"
    event_id: str
    results: list[msgspec.Raw] = msgspec.field(default_factory=list)


class ReadMarked(DomainEvent, frozen=True):
    """A channel read the room up to ``event_id`` (``None``: everything so far)."""

    TAG = "read.marked"
    channel_id: str
    event_id: str | None = None
    room_id: str | None = None  # as in ChannelDetached


_TYPES: dict[str, type[DomainEvent]] = {
    cls.TAG: cls
    for cls in (
        RoomCreated,
        RoomUpdated,
        ChannelAttached,
        ChannelDetached,
        ChannelUpdated,
        ParticipantJoined,
        ParticipantUpdated,
        MessageRecorded,
        TaskRecorded,
        ObservationRecorded,
        DeliveryRecorded,
        ReadMarked,
    )
}
_encoder = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    tag: msgspec.json.Decoder(cls) for tag, cls in _TYPES.items()
}


def encode_domain_event(
    event: DomainEvent,
    *,
    timestamp: float,
    headers: Headers | None = None,
    data: bytes | None = None,
) -> NewEvent:
    """Turn a domain event into a log event under its stable tag.

    ``data``: the event's payload if the caller encoded it already (``encode_payload``).
    """
    kwargs: dict[str, Any] = {"timestamp": timestamp}
    if headers is not None:
        kwargs["headers"] = headers
    return NewEvent(type=event.TAG, data=encode_payload(event) if data is None else data, **kwargs)


def logged_copy(model: M) -> M:
    """A new ``model`` read back from the JSON the log would hold of it: what user code hands
    over to be logged, checked (``model_copy(update=...)`` validates nothing, and a model that
    does not read back would fail every replay) and no longer the caller's to change.

    Raises:
        pydantic.ValidationError: it does not validate (a field assigned in place).
        EventRefusedError: (a ``ValueError``) its JSON cannot be read at all: a number of
            more than 4,300 digits, nesting deeper than the reader goes (as the kit's own
            calls refuse them; it was a ValidationError here).
    """
    data = bytes(dump(model, warnings=False))
    why = unreadable(data)
    if why is not None:
        raise EventRefusedError(f"{type(model).__name__} cannot be stored: {why}")
    try:
        return type(model).model_validate_json(data)
    except pydantic.ValidationError as exc:
        if not any(error["type"] == "json_invalid" for error in exc.errors()):
            raise
        reason = errors_text(exc)
    # Raised outside the handler, neither chained nor in its context: pydantic's error quotes
    # the input (the model's JSON), which a traceback logged of this one would print.
    raise EventRefusedError(
        f"{type(model).__name__} cannot be stored: the log could not read it back ({reason})"
    )


def encode_payload(event: DomainEvent) -> bytes:
    """A domain event's payload: its JSON, in exactly as many bytes as it takes.

    Raises:
        EventRefusedError: (a ``ValueError``) it holds a number of more than 4,300 digits,
            which JSON readers refuse (Python's limit on reading an int from text): logged, it
            would fail every replay; or text with a lone surrogate, which JSON cannot hold.
    """
    # encode() hands back its growth buffer, up to half of it unused, and the log keeps the
    # payload for good: encoding into a scratch buffer and copying keeps exactly the bytes.
    buffer = bytearray()
    try:
        _encoder.encode_into(event, buffer)
    except UnicodeEncodeError as exc:  # an id or text given as is, with a lone surrogate
        raise EventRefusedError(
            f"{type(event).__name__} cannot be stored: text JSON cannot hold ({exc})"
        ) from exc
    data = bytes(buffer)
    why = unreadable(data)
    if why is not None:
        raise EventRefusedError(f"cannot be stored: {why}")
    return data


_MAX_DIGITS = 4300  # msgspec's limit, and Python's default one
_LOWEST_LIMIT = 640  # the lowest Python lets sys.set_int_max_str_digits set
_too_many_digits: dict[int, re.Pattern[bytes]] = {}


def unreadable(data: bytes) -> str | None:
    """Why JSON ``data`` could not be read back, or None: a number of more digits than
    Python reads from text (4,300 by default, ``sys.set_int_max_str_digits``), which
    pydantic and msgspec write but refuse to read. Costs a length check for most payloads."""
    if len(data) <= _LOWEST_LIMIT:  # most payloads: no number in them can be too long
        return None
    limit = min(sys.get_int_max_str_digits() or _MAX_DIGITS, _MAX_DIGITS)
    if len(data) <= limit:
        return None
    pattern = _too_many_digits.get(limit)
    if pattern is None:
        # A run of digits from its start only (the lookbehind): searching from every digit of
        # a long run would take time quadratic in its length.
        pattern = _too_many_digits[limit] = re.compile(rb"(?<![0-9])[0-9]{%d}" % (limit + 1))
    if pattern.search(data) is None:
        return None
    try:
        # The run of digits may sit inside a string; pydantic reads numbers as Python does.
        msgspec.json.decode(data)
        pydantic_core.from_json(data)
    except (msgspec.MsgspecError, ValueError) as exc:
        return f"a number of more than {limit:,} digits could not be read back ({exc})"
    return None


def decode_domain_event(record: Record) -> DomainEvent | None:
    """Decode a log record; ``None`` for a tag this version does not know (forward compat)."""
    decoder = _decoders.get(record.type)
    if decoder is None:
        return None
    event: DomainEvent = decoder.decode(record.data)
    return event
