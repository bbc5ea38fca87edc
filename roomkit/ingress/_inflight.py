"""The messages an ingress holds: fetched from JetStream, not yet settled.

The bound on them (``max_in_flight``) is what keeps a flood in JetStream instead of in memory;
and since every held message is settled exactly once (acknowledged, terminated or handed
back), what is held when the ingress stops is exactly what must go back to JetStream.
"""

from __future__ import annotations

import anyio

from roomkit.ingress._work import WorkItem

__all__ = ["Inflight", "pause"]


class Inflight:
    """At most ``limit`` held messages; slots are reserved before a fetch asks for messages.

    Args:
        limit: the most messages held at a time.
    """

    def __init__(self, limit: int) -> None:
        self._slots = anyio.Semaphore(limit)
        self._items: dict[int, WorkItem] = {}
        self._idle = anyio.Event()
        # Messages held without a slot (see ``hold_over``): the first ones released free no
        # slot, so that the bound comes back.
        self._over = 0

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[WorkItem]:
        """A copy of the held messages."""
        return list(self._items.values())

    async def reserve(self, wanted: int) -> int:
        """Wait for a free slot, then take up to ``wanted``; return how many were taken."""
        await self._slots.acquire()
        taken = 1
        while taken < wanted and self._slots.value > 0:
            self._slots.acquire_nowait()
            taken += 1
        return taken

    def unreserve(self, count: int) -> None:
        """Give back ``count`` reserved slots that no message filled."""
        for _ in range(count):
            self._slots.release()

    def hold(self, item: WorkItem) -> None:
        """Hold ``item`` in a slot reserved for it (or counted by ``hold_over``)."""
        self._items[id(item)] = item

    def hold_over(self, count: int) -> None:
        """``count`` messages came beyond the slots reserved for them: held all the same
        (each must be settled, and in order), past the bound until as many are released."""
        self._over += count

    def release(self, item: WorkItem) -> bool:
        """Stop holding ``item`` and free its slot; ``False`` if it was not held."""
        if self._items.pop(id(item), None) is None:
            return False
        if self._over:
            self._over -= 1
        else:
            self._slots.release()
        if not self._items:
            self._idle.set()
        return True

    async def wait_empty(self, stopping: anyio.Event) -> None:
        """Wait until nothing is held, or ``stopping`` is set (``wake`` must then be called)."""
        while self._items and not stopping.is_set():
            self._idle = anyio.Event()
            await self._idle.wait()

    def wake(self) -> None:
        """Wake ``wait_empty`` (the ingress is stopping)."""
        self._idle.set()


async def pause(stopping: anyio.Event, seconds: float) -> None:
    """Sleep up to ``seconds`` (a retry's back-off); wake up early once ``stopping`` is set."""
    with anyio.move_on_after(seconds):
        await stopping.wait()
