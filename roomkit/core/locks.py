"""Per-room locks, kept only for compatibility with RoomKit 0.3.0.

The kit itself takes no locks: each room is an actor that handles one command at a time, which
serialises the room's writes. ``RoomKit(lock_manager=...)`` is still accepted, and these classes
stay importable for code that used them directly.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

__all__ = ["InMemoryLockManager", "RoomLockManager"]


class RoomLockManager(abc.ABC):
    """Gives mutual exclusion per room id."""

    @abc.abstractmethod
    def locked(self, room_id: str) -> AbstractAsyncContextManager[None]:
        """Return an async context manager that holds the lock of ``room_id`` while inside."""


class InMemoryLockManager(RoomLockManager):
    """One ``anyio.Lock`` per room, the least recently used evicted beyond ``max_locks``.

    Eviction stops at the first lock that is held (or handed to a waiter), so a lock is never
    replaced while someone relies on it; the table can then exceed ``max_locks`` for a while.

    Args:
        max_locks: Number of idle locks to keep.
    """

    def __init__(self, max_locks: int = 1024) -> None:
        if max_locks < 1:
            raise ValueError("max_locks must be at least 1")
        self._max_locks = max_locks
        self._locks: OrderedDict[str, anyio.Lock] = OrderedDict()

    @property
    def size(self) -> int:
        """Number of locks currently kept."""
        return len(self._locks)

    @asynccontextmanager
    async def locked(self, room_id: str) -> AsyncIterator[None]:
        """Hold the lock of ``room_id`` for the duration of the ``async with`` block."""
        async with self._get_lock(room_id):
            yield

    def _get_lock(self, room_id: str) -> anyio.Lock:
        lock = self._locks.get(room_id)
        if lock is not None:
            self._locks.move_to_end(room_id)
            return lock
        lock = self._locks[room_id] = anyio.Lock()
        self._evict()
        return lock

    def _evict(self) -> None:
        while len(self._locks) > self._max_locks:
            oldest_id, oldest = next(iter(self._locks.items()))
            if oldest.locked():
                break
            del self._locks[oldest_id]
