"""Errors raised by event log backends.

Exception tree::

    EventLogError
    ├── WrongExpectedVersion   the stream moved: another writer appended first
    ├── InvalidStreamId        a stream id that is not one NATS token ([A-Za-z0-9_-]{1,64})
    ├── InvalidAppend          an empty append, or one larger than the backend accepts
    ├── StreamConflict         the server's streams leave the log's no place (a setting)
    └── LogUnavailable         the backend cannot be reached (after bounded retries)

Backends translate their own exceptions at the boundary (``raise ... from exc``): callers never
see a nats-py exception.
"""

from __future__ import annotations

__all__ = [
    "EventLogError",
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


class LogUnavailable(EventLogError):
    """The backend could not be reached or did not answer in time."""
