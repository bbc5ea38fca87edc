"""Errors raised by event log backends.

Exception tree::

    EventLogError
    ├── WrongExpectedVersion   the stream moved: another writer appended first
    ├── InvalidStreamId        a stream id that is not one NATS token ([A-Za-z0-9_-]{1,64})
    ├── InvalidAppend          an empty append, or one larger than the backend accepts
    ├── StreamConflict         the server's streams leave the log's no place (a setting)
    ├── ForeignMessage         a message on a stream's subject that is not the log's
    └── LogUnavailable         the backend cannot be reached (after bounded retries)

Backends translate their own exceptions at the boundary (``raise ... from exc``): callers never
see a nats-py exception.
"""

from __future__ import annotations

__all__ = [
    "EventLogError",
    "ForeignMessage",
    "InvalidAppend",
    "InvalidStreamId",
    "LogUnavailable",
    "StreamConflict",
    "WrongExpectedVersion",
]


class EventLogError(Exception):
    """Root of every error an event log raises."""


class WrongExpectedVersion(EventLogError):
    """An append named a version the stream is no longer at.

    Attributes:
        stream: the stream appended to.
        expected: the version the caller expected.
        actual: the stream's version when the append was rejected (``None`` if unknown).
    """

    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r}: expected version {expected}, but the stream is at {actual}"
        )


class InvalidStreamId(EventLogError, ValueError):
    """A stream id that cannot name a stream (one token of ``[A-Za-z0-9_-]``, 1 to 64 chars)."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        super().__init__(
            f"invalid stream id {stream!r}: use 1 to 64 characters from [A-Za-z0-9_-]"
        )


class InvalidAppend(EventLogError, ValueError):
    """An append the log refuses before writing anything (empty, or too many events)."""


class StreamConflict(EventLogError, ValueError):
    """The server's streams leave the log no place: its stream exists for other subjects, or
    another stream holds its subjects. A setting to change (the stream name or the subject
    prefix), not an outage to wait out."""


class ForeignMessage(EventLogError):
    """A stream's read met a message that is not one of the log's (someone else published
    on its subjects): the stream cannot be read past it.

    Attributes:
        seq: the message's sequence number in the JetStream stream.
        subject: its subject (``None`` when not known).
    """

    def __init__(self, seq: int, subject: str | None = None) -> None:
        self.seq = seq
        self.subject = subject
        where = f" on {subject}" if subject is not None else ""
        super().__init__(
            f"message {seq}{where} is not a RoomKit event batch (someone else published on "
            "the log's subjects)"
        )


class LogUnavailable(EventLogError):
    """The backend could not be reached or did not answer in time."""
