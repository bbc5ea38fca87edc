"""Reading one room's records in pages, up to a point in versions or in time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Self

from eventlog import EventLog, Record
from eventlog.errors import ForeignMessage
from roomkit.audit._errors import ForeignRecord

__all__ = [
    "PAGE_SIZE",
    "Progress",
    "RecordReader",
    "Until",
    "check_until",
    "last_version",
    "to_datetime",
    "to_timestamp",
]

PAGE_SIZE = 500
"""Records fetched per ``read``: bounds memory on long rooms and paces progress reports."""


async def last_version(log: EventLog, stream: str) -> int:
    """The stream's last version in the log (0: none).

    Raises:
        ForeignRecord: the last message on the stream's subject is another app's (the log
            raises its own ``ForeignMessage``, no ``AuditError``, for it).
    """
    try:
        return await log.last_version(stream)
    except ForeignMessage as exc:
        raise ForeignRecord(stream, exc) from exc


Until = int | datetime | None
"""Where a replay stops: a version (inclusive), a time (inclusive) or ``None`` (the end)."""

Progress = Callable[[int], object]
"""Called with the number of records just read (once per page), e.g. ``tqdm.update``."""


def check_until(until: object) -> None:
    """Refuse a replay bound that is not a version or a time.

    Raises:
        TypeError: ``until`` is neither ``None``, an int nor a ``datetime`` (a ``date``, a
            timestamp as a float, a str): it was taken as no bound at all, and a replay
            "as of 2000" gave the room as it is now.
        ValueError: a negative version (the CLI's ``--at`` refuses it too).
    """
    if until is None or isinstance(until, datetime):
        return
    if isinstance(until, bool) or not isinstance(until, int):
        raise TypeError(
            f"until is a version (an int) or a datetime, not {type(until).__name__}: {until!r}"
        )
    if until < 0:
        raise ValueError(f"until must be a version >= 0, got {until}")


def to_timestamp(when: datetime) -> float:
    """Seconds since the epoch; a naive ``datetime`` is taken as UTC (the log's clock)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def to_datetime(timestamp: float) -> datetime | None:
    """A record's timestamp as an aware UTC ``datetime``; ``None`` when it is not a time.

    Appends refuse a timestamp that is not a time (NaN, infinite, out of ``datetime``'s
    range), but a log written before they did, or by another writer, may hold one. Reading
    it as unknown keeps the rest of the record readable.
    """
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC)
    except (ValueError, OverflowError, OSError):  # OSError: out of the platform's time_t
        return None


class RecordReader:
    """The records of ``stream`` above ``after_version``, in version order, up to ``until``.

    ``until`` as a time keeps the longest prefix of records stamped at or before it: a state is
    only meaningful as the fold of a prefix, even if clocks of several writers disagree.

    Versions run from 1 without gaps, unless records were removed from under the log (a
    JetStream retention limit, a deleted message): the reader then says which versions are
    missing (``missing``, ``missing_at_end``) rather than leaving its caller to take the
    records it has for the whole room.

    An async iterator written as a class (not an async generator) so that leaving a loop early
    leaves nothing for the garbage collector to finalise, as ``eventlog.Subscription`` does.

    Args:
        log: the log to read.
        stream: the stream (``room_stream(room_id)`` for a room: not the room id itself).
        after_version: skip the records up to this version.
        until: stop after this version or time (``None``: read to the end).
        progress: told how many records each page brought.
        page_size: records per ``read`` call.

    Raises:
        InvalidStreamId: (while iterating) ``stream`` is not a valid stream id.
        ForeignRecord: (while iterating) the stream holds another app's message.
    """

    def __init__(
        self,
        log: EventLog,
        stream: str,
        *,
        after_version: int = 0,
        until: Until = None,
        progress: Progress | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        check_until(until)
        self._log = log
        self._stream = stream
        self._next_after = max(after_version, 0)
        self._max_version = until if isinstance(until, int) else None
        self._max_timestamp = to_timestamp(until) if isinstance(until, datetime) else None
        self._progress = progress
        self._page_size = page_size
        self._page: list[Record] = []
        self._index = 0
        self._done = self._max_version is not None and self._max_version <= self._next_after
        self._expected = self._next_after + 1  # the version the next record should have
        self._beyond: Record | None = None  # the first record read past ``until``
        self.missing: tuple[int, int] | None = None
        """The versions (first, last) missing right before the record just returned."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Record:
        if self._index >= len(self._page):
            if self._done:
                raise StopAsyncIteration
            await self._fetch()
            if not self._page:
                raise StopAsyncIteration
        record = self._page[self._index]
        self._index += 1
        expected, self._expected = self._expected, record.version + 1
        self.missing = (expected, record.version - 1) if record.version > expected else None
        return record

    def missing_at_end(self) -> tuple[int, int] | None:
        """The versions (first, last) missing between the last record returned and ``until``,
        once the iteration has ended: seen only from the first record past ``until``.

        A time as ``until`` cannot tell whether missing records were stamped before it or
        after: they are reported, as the state as of that time may lack them.
        """
        beyond = self._beyond
        if beyond is None or beyond.version <= self._expected:
            return None
        last = beyond.version - 1
        if self._max_version is not None:
            if self._expected > self._max_version:
                return None
            last = min(last, self._max_version)
        return self._expected, last

    async def _fetch(self) -> None:
        try:
            page = await self._log.read(
                self._stream, after_version=self._next_after, limit=self._page_size
            )
        except ForeignMessage as exc:
            # The log's error, in the audit's terms: the one of the audit errors that tells
            # a caller the room cannot be read (replay, timeline, export).
            raise ForeignRecord(self._stream, exc) from exc
        if len(page) < self._page_size:
            self._done = True
        kept = 0
        for record in page:
            if self._is_beyond(record):
                self._beyond = record
                self._done = True
                break
            kept += 1
        self._page = page[:kept]
        self._index = 0
        if page:
            self._next_after = page[-1].version
        if kept and self._progress is not None:
            self._progress(kept)

    def _is_beyond(self, record: Record) -> bool:
        if self._max_version is not None and record.version > self._max_version:
            return True
        return self._max_timestamp is not None and record.timestamp > self._max_timestamp
