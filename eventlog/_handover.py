"""``Handover``: a bounded queue from nats-py's delivery task to one reader, on asyncio futures.

A NATS subscription's reader keeps up with the log most of the time, so it waits for nearly
every batch. An anyio memory object stream made that wait cost an anyio event, and the stall
check around it a cancel scope (JetStream workload (a) ran ~7% faster without them). Here the
reader waits on one future under one timer handle, and a writer that finds room
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

    A reader cancelled while it waits loses nothing: items stay queued until taken. Writers
    that wait for room get it in the order they came: each slot the reader frees is kept for
    the first of them until it runs, and an item goes in only when its writer runs, so a
    writer cancelled while it waits never put its item in (and passes a kept slot on).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._reader: asyncio.Future[bool] | None = None
        self._writers: deque[asyncio.Future[None]] = deque()
        self._kept = 0  # slots kept for writers woken but not run yet
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
        if self._writers or self._kept or len(self._items) >= self._capacity:
            return False  # writers that waited go first, also those woken but not run yet
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
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writers.append(room)
        try:
            await room
        except BaseException:
            if not room.done() or room.cancelled():
                if room in self._writers:  # still in line (_wake_writer drops cancelled ones)
                    self._writers.remove(room)
            elif not self._closed:
                self._kept -= 1  # woken with a slot kept for it: pass the slot on
                self._wake_writer()
            raise
        if self._closed:
            raise HandoverClosed
        self._kept -= 1
        self._items.append(item)
        self._wake_reader(True)

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

    def interrupt(self) -> None:
        """End the reader's wait as if its timeout had passed (False)."""
        self._wake_reader(False)

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
        """Keep the free slot, if there is one, for the first writer still waiting."""
        if len(self._items) + self._kept >= self._capacity:
            return
        while self._writers:
            room = self._writers.popleft()
            if not room.done():
                self._kept += 1
                room.set_result(None)
                return


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)
