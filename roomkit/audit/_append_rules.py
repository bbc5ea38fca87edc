"""What a target log refuses in an import's appends, asked before the import writes anything.

A log checks each append as it comes. An import is many appends: one refused half-way would
leave part of a room behind, so the import asks the log's own rules about every record first
(``EventLog.check_append``, and ``eventlog.check_append`` for the rules of every log while no
target is known) and cuts its batches to what one append takes (``max_append_bytes``).
"""

from __future__ import annotations

from collections.abc import Sequence

from eventlog import EventLog, NewEvent, Record, check_append

__all__ = ["check_batch", "check_record", "new_event"]


def new_event(record: Record) -> NewEvent:
    """The append that writes ``record`` again, with its timestamp and headers."""
    return NewEvent(type=record.type, data=record.data, headers=record.headers,
                    timestamp=record.timestamp)  # fmt: skip


def check_record(record: Record) -> None:
    """Check ``record`` against every log's rules for one appended event.

    Raises:
        InvalidStreamId: its stream id is not one.
        InvalidAppend: its type, timestamp or headers are ones no log takes.
    """
    check_append(record.stream, [new_event(record)], 1, record.version - 1)


def check_batch(log: EventLog, stream: str, batch: Sequence[NewEvent], first: int) -> None:
    """Check an append of ``batch`` to ``stream`` at version ``first`` against ``log``'s rules.

    Raises:
        InvalidAppend: ``log`` would refuse it (too many events or bytes, or a field no log
            takes).
    """
    log.check_append(stream, batch, expected_version=first - 1)
