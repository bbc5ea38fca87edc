"""An append-only event log of streams: one contract, in-memory and NATS JetStream backends.

Knows nothing of rooms; usable on its own. ``NatsEventLog`` is imported lazily so that
``import eventlog`` does not import nats-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventlog._streams import check_append
from eventlog.base import ANY_VERSION, EventLog, Subscription
from eventlog.errors import (
    EventLogError,
    InvalidAppend,
    InvalidStreamId,
    LogUnavailable,
    StreamConflict,
    WrongExpectedVersion,
)
from eventlog.memory import MemoryEventLog
from eventlog.record import NO_HEADERS, Headers, NewEvent, Record, Snapshot, StreamInfo

if TYPE_CHECKING:
    from eventlog.nats import NatsEventLog

__all__ = [
    "ANY_VERSION",
    "NO_HEADERS",
    "EventLog",
    "EventLogError",
    "Headers",
    "InvalidAppend",
    "InvalidStreamId",
    "LogUnavailable",
    "StreamConflict",
    "MemoryEventLog",
    "NatsEventLog",
    "NewEvent",
    "Record",
    "Snapshot",
    "StreamInfo",
    "Subscription",
    "WrongExpectedVersion",
    "check_append",
]


def __getattr__(name: str) -> Any:
    if name == "NatsEventLog":
        from eventlog.nats import NatsEventLog

        return NatsEventLog
    raise AttributeError(f"module 'eventlog' has no attribute {name!r}")
