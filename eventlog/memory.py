"""``MemoryEventLog``: the embedded default backend, in process memory, no server.

Positions are contiguous (1, 2, 3, ...) and the message-id dedup window is unbounded. Works on
any anyio backend (asyncio or trio).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence

import anyio

from eventlog._streams import check_append, check_range, check_snapshot, check_stream_id
from eventlog.base import EventLog, Subscription
from eventlog.errors import WrongExpectedVersion
from eventlog.record import NO_HEADERS, Headers, NewEvent, Record, Snapshot, StreamInfo

__all__ = ["MemoryEventLog"]


class MemoryEventLog(EventLog):
    """An event log held in memory. The embedded default: ``RoomKit()`` uses one."""

    dedup_window = None
    max_append_events = 10_000

    def __init__(self) -> None:
        # The records as columns, by position - 1: a Record object each cost ~140 bytes (the
        # struct, its position int, its timestamp float, two list slots), these ~25; a Record
        # is made when one is read. The payload bytes are the appender's, shared.
        # Columns of numbers hold 4 bytes (1 for a type) until a value needs more (_fitted):
        # an idle room's few records and every stored event cost ~27 bytes less.
        self._stream_of: array[int] = array("I")  # the stream's number (see _names)
        self._version_of: array[int] = array("I")
        self._type_of: array[int] = array("B")  # the type's number (see _types)
        self._time_of = array("d")
        self._data_of: list[bytes] = []
        # None while every record's headers are NO_HEADERS (most logs: 8 bytes a record).
        self._headers_of: list[Headers] | None = None
        # stream -> its number, then the index (position - 1) of each of its records by
        # version: the number rides in the array each stream has anyway (a dict of numbers
        # would cost more than the column saves for a room of a few records).
        self._streams: dict[str, array[int]] = {}
        self._names: list[str] = []  # stream number -> stream
        self._types: list[str] = []  # type number -> type
        self._type_numbers: dict[str, int] = {}
        # stream -> message id -> (first version, number of events) of the append that used it
        self._message_ids: dict[str, dict[str, tuple[int, int]]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        # Created lazily (an anyio.Event needs a running event loop) and only while a
        # subscriber waits, so appends with nobody listening cost nothing.
        self._appended: anyio.Event | None = None
        self._waiting: list[asyncio.Future[None]] = []

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> list[Record]:
        check_append(stream, events, self.max_append_events, expected_version)
        indices = self._streams.get(stream)
        current = len(indices) - 1 if indices is not None else 0
        message_id = events[0].headers.message_id
        if message_id is not None and indices is not None:
            seen = self._message_ids.get(stream, {}).get(message_id)
            if seen is not None:
                first, count = seen
                return [self._record(i) for i in indices[first : first + count]]
        if expected_version is not None and expected_version != current:
            raise WrongExpectedVersion(stream, expected_version, current)
        position = len(self._data_of)
        if indices is None:
            number = len(self._names)
            indices = self._streams[stream] = array("I", (number,))
            self._names.append(stream)
        else:
            number = indices[0]
        # Every value of the 4-byte columns (stream numbers, versions, indices) is at most the
        # last position: one comparison tells whether they all fit.
        if position + len(events) > _NARROW_TOP:
            indices = self._widened(stream)
        now = time.time()
        committed = [
            Record(
                stream=stream,
                version=current + offset,
                position=position + offset,
                type=event.type,
                timestamp=now if event.timestamp is None else event.timestamp,
                data=event.data,
                headers=event.headers,
            )
            for offset, event in enumerate(events, start=1)
        ]
        for record in committed:
            indices.append(record.position - 1)
            self._stream_of.append(number)
            self._version_of.append(record.version)
            kind = self._type_numbers.get(record.type)
            if kind is None:
                kind = self._new_type(record.type)  # first: it may widen the column
            self._type_of.append(kind)
            self._time_of.append(record.timestamp)
            self._data_of.append(record.data)
            headers = record.headers
            if self._headers_of is not None:
                self._headers_of.append(headers)
            elif headers is not NO_HEADERS:
                # The first record with headers of its own: the column starts now.
                self._headers_of = [NO_HEADERS] * (len(self._data_of) - 1)
                self._headers_of.append(headers)
        if message_id is not None:
            self._message_ids.setdefault(stream, {})[message_id] = (current + 1, len(committed))
        self._wake()
        return committed

    def _new_type(self, name: str) -> int:
        number = self._type_numbers[name] = len(self._types)
        self._types.append(name)
        if number > _BYTE_TOP and self._type_of.typecode == "B":
            self._type_of = array("q", self._type_of)
        return number

    def _widened(self, stream: str) -> array[int]:
        """Past 4 billion records (never in practice, but the narrow columns must not be a
        limit): the 4-byte columns and ``stream``'s indices go on in 8 bytes."""
        if self._stream_of.typecode == "I":
            self._stream_of = array("q", self._stream_of)
            self._version_of = array("q", self._version_of)
        indices = self._streams[stream]
        if indices.typecode == "I":
            indices = self._streams[stream] = array("q", indices)
        return indices

    async def read(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Record]:
        check_stream_id(stream)
        check_range(after_version, limit, "after_version")
        indices = self._streams.get(stream)
        if indices is None:
            return []
        start = max(after_version, 0)
        end = None if limit is None else start + limit
        # indices[0] is the stream's number: its records start at 1.
        return [self._record(i) for i in indices[start + 1 : None if end is None else end + 1]]

    async def last_version(self, stream: str) -> int:
        check_stream_id(stream)
        indices = self._streams.get(stream)
        return 0 if indices is None else len(indices) - 1

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        check_range(after_position, limit, "after_position")
        start = max(after_position, 0)
        stop = len(self._data_of) if limit is None else min(start + limit, len(self._data_of))
        return [self._record(i) for i in range(start, stop)]

    async def last_position(self) -> int:
        return len(self._data_of)

    def _record(self, index: int) -> Record:
        """The record at position ``index + 1``."""
        headers = self._headers_of
        return Record(
            stream=self._names[self._stream_of[index]],
            version=self._version_of[index],
            position=index + 1,
            type=self._types[self._type_of[index]],
            timestamp=self._time_of[index],
            data=self._data_of[index],
            headers=NO_HEADERS if headers is None else headers[index],
        )

    def subscribe(self, *, after_position: int = 0) -> Subscription:
        check_range(after_position, None, "after_position")
        return _MemorySubscription(self, after_position)

    async def streams(self) -> list[StreamInfo]:
        return [
            StreamInfo(
                stream=name,
                version=len(indices) - 1,
                last_position=indices[-1] + 1,
                last_timestamp=self._time_of[indices[-1]],
            )
            for name, indices in sorted(self._streams.items())
        ]

    async def save_snapshot(self, stream: str, version: int, data: bytes) -> None:
        check_snapshot(stream, version, data)
        self._snapshots[stream] = Snapshot(
            stream=stream, version=version, data=data, timestamp=time.time()
        )

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_id(stream)
        return self._snapshots.get(stream)

    async def _wait_for_append(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio
            if self._appended is None:
                self._appended = anyio.Event()
            await self._appended.wait()
            return
        # On asyncio, a bare future per waiter: an anyio.Event costs a backend lookup and an
        # asyncio.Event with a future of its own, on every append a subscriber waits for.
        future = loop.create_future()
        self._waiting.append(future)
        await future

    def _wake(self) -> None:
        if self._appended is not None:
            self._appended.set()
            self._appended = None
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            for future in waiting:
                if not future.done():  # a cancelled waiter's future is done already
                    # Not contextlib.suppress: this runs on every append a subscriber awaits.
                    try:  # noqa: SIM105
                        future.set_result(None)
                    except RuntimeError:  # its event loop was closed under it: nobody waits
                        pass


# The largest value of the 4-byte columns and of the type column.
_NARROW_TOP = 0xFFFF_FFFF
_BYTE_TOP = 0xFF


class _MemorySubscription(Subscription):
    def __init__(self, log: MemoryEventLog, after_position: int) -> None:
        self._log = log
        # Positions are list indices + 1, so the next record to yield is at this index.
        self._next = max(after_position, 0)
        self._closed = False

    async def __anext__(self) -> Record:
        log = self._log
        while not self._closed:
            if self._next < len(log._data_of):
                record = log._record(self._next)
                self._next += 1
                return record
            await log._wait_for_append()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed = True
        self._log._wake()
