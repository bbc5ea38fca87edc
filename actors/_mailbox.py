"""``Mailbox``: a bounded FIFO of messages with back-pressure, owned by one consumer.

Why not an anyio memory object stream: a stream pair plus its parked receiver costs about 8 KB
per actor, and the receiver must be a task. This mailbox is a deque allocated on first use and
dropped when the actor goes idle without a task, so an idle actor costs a few hundred bytes.
Senders that find it full wait in FIFO order; the consumer moves the first waiting sender's
message into the queue each time it takes one, so the arrival order is the admission order and a
newcomer never overtakes a waiting sender.
"""

from __future__ import annotations

import contextlib
from collections import deque

import anyio

from actors._ask import Ask

__all__ = ["Mailbox"]


class _Sender:
    """A sender waiting for room; ``delivered`` tells it whether its message got in."""

    __slots__ = ("delivered", "event", "item")

    def __init__(self, item: object) -> None:
        self.item = item
        self.event = anyio.Event()
        self.delivered = False


class Mailbox:
    """The message queue half of an actor cell (subclassed by ``Cell``).

    ``_on_message`` is called after every admission, to wake or start the consumer.
    """

    __slots__ = ("_queue", "_senders", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a mailbox needs room for at least one message, got {capacity}")
        self.capacity = capacity
        self._queue: deque[object] | None = None
        self._senders: deque[_Sender] | None = None

    @property
    def depth(self) -> int:
        """Messages queued, senders waiting for room included."""
        queued = len(self._queue) if self._queue is not None else 0
        return queued + (len(self._senders) if self._senders else 0)

    def offer(self, item: object) -> bool:
        """Queue ``item`` if there is room and nobody waits for room; return whether it did."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self.capacity or self._senders:
            return False
        queue.append(item)
        self._on_message()
        return True

    async def put(self, item: object) -> bool:
        """Queue ``item``, waiting for room as long as it takes.

        Returns:
            ``True`` once queued; ``False`` if the mailbox was failed (``fail_all``) first.
        """
        if self.offer(item):
            return True
        sender = _Sender(item)
        if self._senders is None:
            self._senders = deque()
        self._senders.append(sender)
        try:
            await sender.event.wait()
        except BaseException:
            if not sender.delivered and self._senders is not None:
                with contextlib.suppress(ValueError):
                    self._senders.remove(sender)
            raise
        return sender.delivered

    def take(self) -> object:
        """Remove and return the oldest message, admitting the first waiting sender.

        Raises:
            IndexError: the mailbox is empty.
        """
        queue = self._queue
        if queue is None:
            raise IndexError("empty mailbox")
        item = queue.popleft()
        senders = self._senders
        if senders:
            sender = senders.popleft()
            queue.append(sender.item)
            sender.delivered = True
            sender.event.set()
        return item

    def release(self) -> None:
        """Drop the queue's memory if it is empty (the actor is going idle)."""
        if not self._queue and not self._senders:
            self._queue = None
            self._senders = None

    def fail_all(self, error: BaseException) -> int:
        """Empty the mailbox: queued asks fail with ``error``; waiting senders are released.

        Returns:
            How many told messages were dropped.
        """
        dropped = 0
        items: list[object] = list(self._queue or ())
        senders = list(self._senders or ())
        self._queue = None
        self._senders = None
        for sender in senders:
            items.append(sender.item)
            sender.event.set()
        for item in items:
            if type(item) is Ask:
                item.fail(error)
            else:
                dropped += 1
        return dropped

    def _on_message(self) -> None:
        raise NotImplementedError
