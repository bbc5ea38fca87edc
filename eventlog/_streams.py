"""Validation of stream ids and appends, shared by every backend."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import TypeGuard

from eventlog.errors import InvalidAppend, InvalidStreamId
from eventlog.record import NO_HEADERS, Headers, NewEvent

# One NATS subject token: no '.', '*', '>' or white space, so that a stream id can be the last
# token of a subject and wildcards never match more than one stream.
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_stream_id(stream: object) -> str:
    """Return ``stream`` if it is a valid stream id.

    Raises:
        InvalidStreamId: if it is not a str of 1 to 64 characters from ``[A-Za-z0-9_-]``.
    """
    if isinstance(stream, str) and _STREAM_ID.fullmatch(stream):
        return stream
    raise InvalidStreamId(stream)


def check_append(
    stream: object, events: Sequence[object], limit: int, expected_version: object = None
) -> str:
    """Return ``stream`` if an append of ``events`` to it is acceptable.

    Every field is checked for the type the record envelope has: msgspec does not check what a
    Struct is made with, and a record written with, say, ``str`` data could not be read back,
    which on JetStream makes the whole log unreadable.

    Raises:
        InvalidStreamId: ``stream`` is not a valid stream id.
        InvalidAppend: ``events`` is empty, holds more than ``limit`` events, or one that is not
            a ``NewEvent`` of the envelope's types (a non-empty str ``type``, bytes ``data``, a
            finite ``timestamp`` a date can have, str headers; text UTF-8 can hold); or
            ``expected_version`` is neither None nor an int >= 0.
    """
    name = check_stream_id(stream)
    if not len(events):
        raise InvalidAppend(f"append to {name!r} with no events")
    if len(events) > limit:
        raise InvalidAppend(
            f"append to {name!r} with {len(events)} events; at most {limit} per call"
        )
    if expected_version is not None and (not _is_int(expected_version) or expected_version < 0):
        raise InvalidAppend(
            f"append to {name!r}: expected_version is an int >= 0 or None, "
            f"got {expected_version!r}"
        )
    for event in events:
        problem = _problem(event)
        if problem is not None:
            raise InvalidAppend(f"append to {name!r}: {problem}")
    return name


# The timestamps a datetime can have (years 1 to 9999): the audit tools show them as dates.
_MIN_TIMESTAMP = -62_135_596_800.0
_MAX_TIMESTAMP = 253_402_300_799.0


def _problem(event: object) -> str | None:
    """What makes ``event`` unfit for the log, or None (a few type checks: per event)."""
    if not isinstance(event, NewEvent):
        return f"{event!r} is not a NewEvent"
    if not _is_str(event.type) or not event.type:
        return f"an event's type is a non-empty str, not {event.type!r}"
    if not _is_utf8(event.type):
        return f"an event's type is text UTF-8 can hold, not {event.type!r}"
    # bytes itself: a bytearray would stay mutable in a memory log, and msgspec cannot write a
    # bytes subclass (a JetStream append failed on it with msgspec's own error).
    if type(event.data) is not bytes:
        return (
            f"event {event.type!r}: data is bytes, not {type(event.data).__name__} "
            "(bytes(data) makes it)"
        )
    timestamp = event.timestamp
    if timestamp is not None:
        if type(timestamp) not in (float, int):  # msgspec writes no subclass but IntEnum
            return f"event {event.type!r}: timestamp is a number, not {timestamp!r}"
        if not _MIN_TIMESTAMP <= timestamp <= _MAX_TIMESTAMP:  # NaN too
            return f"event {event.type!r}: timestamp {timestamp!r} is no date's (years 1-9999)"
    headers = event.headers
    if headers is not NO_HEADERS:
        if not isinstance(headers, Headers):
            return f"event {event.type!r}: headers are Headers, not {type(headers).__name__}"
        for value in (headers.message_id, headers.causation_id, headers.correlation_id):
            if value is not None and not _is_str(value):
                return f"event {event.type!r}: header ids are str, not {value!r}"
        extra = headers.extra
        if extra is not None and not (
            isinstance(extra, dict) and all(_is_str(k) and _is_str(v) for k, v in extra.items())
        ):
            return f"event {event.type!r}: extra headers are str to str, not {extra!r}"
        texts = (headers.message_id, headers.causation_id, headers.correlation_id)
        if not all(_is_utf8(t) for t in texts if t is not None) or (
            extra is not None and not all(_is_utf8(k) and _is_utf8(v) for k, v in extra.items())
        ):
            return f"event {event.type!r}: headers are text UTF-8 can hold (no lone surrogate)"
    return None


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: a lone surrogate (``json.loads('"\\ud800"')``
    makes one) does not. A memory log stored it in a record no export or copy to JetStream
    could write, and JetStream refused it with a bare ``UnicodeEncodeError``."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_str(value: object) -> TypeGuard[str]:
    """A str, or a str enum (msgspec writes its value); not another str subclass, which msgspec
    cannot write."""
    return type(value) is str or (isinstance(value, str) and isinstance(value, enum.Enum))


def _is_int(value: object) -> TypeGuard[int]:
    """An int (an IntEnum too), not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_snapshot(stream: object, version: object, data: object) -> str:
    """Return ``stream`` if a snapshot of it at ``version`` holding ``data`` is acceptable.

    (One past the stream's end is stored; an event-sourced actor recovering ignores it.)

    Raises:
        InvalidStreamId: ``stream`` is not a valid stream id.
        InvalidAppend: ``version`` is not an int >= 0 (it would not encode, or not compare),
            or ``data`` is not bytes (it could not be read back).
    """
    name = check_stream_id(stream)
    if not _is_int(version) or not 0 <= version < 2**63:
        raise InvalidAppend(f"snapshot of {name!r}: version is an int >= 0, got {version!r}")
    if type(data) is not bytes:
        raise InvalidAppend(f"snapshot of {name!r}: data is bytes, not {type(data).__name__}")
    return name


# Past this no log holds a record (JetStream sequences are 64-bit); a read after it is empty.
MAX_POSITION = 2**62


def check_range(after: object, limit: object, name: str) -> None:
    """Check a read's ``after_version`` / ``after_position`` (``name``) and ``limit``.

    A negative ``after`` reads from the start, as 0 does; ``limit`` None reads to the end.

    Raises:
        TypeError: ``after`` is not an int, or ``limit`` neither an int nor None.
        ValueError: ``limit`` is negative (the backends disagreed on what it meant).
    """
    if not _is_int(after):
        raise TypeError(f"{name} is an int, got {after!r}")
    if limit is not None:
        if not _is_int(limit):
            raise TypeError(f"limit is an int or None, got {limit!r}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
