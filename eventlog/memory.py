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
from eventlog.record import Headers, NewEvent, Record, Snapshot, StreamInfo

__all__ = ["MemoryEventLog"]


class MemoryEventLog(EventLog):
    """An event log held in memory. The embedded default: ``RoomKit()`` uses one."""

    dedup_window = None
    max_append_events = 10_000

    def __init__(self) -> None:
        # The records as columns, by position - 1: a Record object each cost ~140 bytes (the
        # struct, its position int, its timestamp float, two list slots), these ~50; a Record
        # is made when one is read. The payload bytes are the appender's, shared.
        self._stream_of: list[str] = []
        self._version_of = array("q")
        self._type_of: list[str] = []
        self._time_of = array("d")
        self._data_of: list[bytes] = []
        self._headers_of: list[Headers] = []
        # stream -> the index (position - 1) of each of its records, by version - 1
        self._streams: dict[str, array[int]] = {}
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
        current = len(indices) if indices is not None else 0
        message_id = events[0].headers.message_id
        if message_id is not None and indices is not None:
            seen = self._message_ids.get(stream, {}).get(message_id)
            if seen is not None:
                first, count = seen
                return [self._record(i) for i in indices[first - 1 : first - 1 + count]]
        if expected_version is not None and expected_version != current:
            raise WrongExpectedVersion(stream, expected_version, current)
        if indices is None:
            indices = self._streams[stream] = array("q")
        now = time.time()
        position = len(self._data_of)
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
            self._stream_of.append(stream)
            self._version_of.append(record.version)
            self._type_of.append(record.type)
            self._time_of.append(record.timestamp)
            self._data_of.append(record.data)
            self._headers_of.append(record.headers)
        if message_id is not None:
            self._message_ids.setdefault(stream, {})[message_id] = (current + 1, len(committed))
        self._wake()
        return committed

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
        return [self._record(i) for i in indices[start:end]]

    async def last_version(self, stream: str) -> int:
        check_stream_id(stream)
        return len(self._streams.get(stream, ()))

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        check_range(after_position, limit, "after_position")
        start = max(after_position, 0)
        stop = len(self._data_of) if limit is None else min(start + limit, len(self._data_of))
        return [self._record(i) for i in range(start, stop)]

    async def last_position(self) -> int:
        return len(self._data_of)

    def _record(self, index: int) -> Record:
        """The record at position ``index + 1``."""
        return Record(
            stream=self._stream_of[index],
            version=self._version_of[index],
            position=index + 1,
            type=self._type_of[index],
            timestamp=self._time_of[index],
            data=self._data_of[index],
            headers=self._headers_of[index],
        )

    def subscribe(self, *, after_position: int = 0) -> Subscription:
        check_range(after_position, None, "after_position")
        return _MemorySubscription(self, after_position)

    async def streams(self) -> list[StreamInfo]:
        return [
            StreamInfo(
                stream=name,
                version=len(indices),
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
