"""``Handover``: a bounded queue from nats-py's delivery task to one reader, on asyncio futures.

A NATS subscription's reader keeps up with the log most of the time, so it waits for nearly
every batch. An anyio memory object stream made that wait cost an anyio event, and the stall
check around it a cancel scope: together ~15 µs a record, a tenth of a JetStream subscriber's
work. Here the reader waits on one future under one timer handle, and a writer that finds room
appends without yielding. ``NatsEventLog`` runs on asyncio only (nats-py), so nothing is lost
by leaving anyio out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Handover", "HandoverClosed"]

T = TypeVar("T")


class HandoverClosed(Exception):
    """The handover was closed: nothing more goes in."""


class Handover(Generic[T]):
    """Items in order from writers to one reader, at most ``capacity`` waiting.

    A reader cancelled while it waits loses nothing: items stay queued until taken.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._reader: asyncio.Future[bool] | None = None
        self._writers: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """Queue ``item`` if there is room; return whether it was queued.

        Raises:
            HandoverClosed: the handover was closed.
        """
        if self._closed:
            raise HandoverClosed
        if len(self._items) >= self._capacity or self._writers:
            return False  # writers already waiting go first
        self._items.append(item)
        self._wake_reader(True)
        return True

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting for room (backpressure on the writer).

        Raises:
            HandoverClosed: the handover was closed before the item went in.
        """
        if self.put_nowait(item):
            return
        loop = asyncio.get_running_loop()
        while True:
            room: asyncio.Future[None] = loop.create_future()
            self._writers.append(room)
            try:
                await room
            except BaseException:
                if room.done() and not room.cancelled():
                    self._wake_writer()  # it was this writer's turn: pass it on
                raise
            finally:
                if room in self._writers:
                    self._writers.remove(room)
            if self._closed:
                raise HandoverClosed
            if len(self._items) < self._capacity:
                self._items.append(item)
                self._wake_reader(True)
                self._wake_writer()  # room may be left for the next one
                return

    def take(self) -> T | None:
        """The oldest item, or None when none is queued; never waits."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._wake_writer()
        return item

    async def wait(self, timeout: float) -> bool:
        """Wait until an item is queued or the handover is closed (True), or ``timeout``
        seconds pass (False). One reader at a time."""
        if self._items or self._closed:
            return True
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bool] = loop.create_future()
        self._reader = ready
        timer = loop.call_later(timeout, _settle, ready, False)
        try:
            return await ready
        finally:
            timer.cancel()
            self._reader = None

    def close(self) -> None:
        """Take nothing more; wake the reader and every waiting writer."""
        self._closed = True
        self._wake_reader(True)
        for room in self._writers:
            _settle(room, None)
        self._writers.clear()

    def _wake_reader(self, value: bool) -> None:
        if self._reader is not None:
            _settle(self._reader, value)

    def _wake_writer(self) -> None:
        while self._writers:
            room = self._writers.popleft()
            if not room.done():
                room.set_result(None)
                return


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)
