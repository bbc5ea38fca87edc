"""``InMemoryRealtime``: ephemeral pub/sub inside one process, on anyio (asyncio or trio).

Each subscription owns a bounded queue (the oldest event is dropped when it is full) and one
delivery task, so a slow subscriber never slows the publisher or the other subscribers.

Task ownership: the delivery tasks live in a task group opened by ``run()``, which serves
until ``close()``. There are three ways to start it, all ending in the same ``run()``:

- structured, in the owner's task group: ``await tg.start(realtime.run)``;
- as an async context manager: ``async with InMemoryRealtime() as realtime: ...``;
- lazily: the first ``subscribe`` on a backend that is not running spawns ``run()`` as a host
  task on the running event loop (``loop.create_task`` on asyncio, a system task on trio). This
  keeps the RoomKit 0.3.0 usage working (``RoomKit()`` built synchronously, no ``async with``);
  the owner must then ``await close()``, which stops and joins the host task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from actors import check_count
from roomkit._host import spawn_host
from roomkit.core._cancel import raised_uncancelled
from roomkit.models._defaults import new_id
from roomkit.realtime.base import (
    EphemeralCallback,
    EphemeralEvent,
    RealtimeBackend,
    subscription_id_of,
)

__all__ = ["InMemoryRealtime"]

logger = logging.getLogger("roomkit.realtime")

# Seconds between two reports of dropped events (see InMemoryRealtime._report_drop).
_REPORT_EVERY = 10.0
# How often a publish yields to the delivery tasks while a subscriber's queue is full.
_YIELDS_WHEN_FULL = 4


@dataclass(eq=False)
class _Subscription:
    id: str
    channel: str
    callback: EphemeralCallback
    queue: deque[EphemeralEvent]
    # Created before the task runs, so unsubscribe can cancel a task that has not started yet.
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    # Set while the delivery task waits for an event; publish sets it to wake the task.
    wakeup: anyio.Event | None = None


class InMemoryRealtime(RealtimeBackend):
    """In-process realtime backend: one delivery task and bounded queue per subscription.

    Args:
        max_queue_size: Events buffered per subscription; when full, the oldest is dropped.
    """

    def __init__(self, max_queue_size: int = 100) -> None:
        max_queue_size = check_count("max_queue_size", max_queue_size)
        if max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        self._max_queue_size = max_queue_size
        # Publishes waiting for full queues to make room, in turn (see publish).
        self._held_back = 0
        self._publishing: anyio.Lock | None = None
        # Drops reported: the first at once, then one line per _REPORT_EVERY with the count.
        self._dropped = 0
        self._reported_at: float | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._by_channel: dict[str, dict[str, _Subscription]] = {}
        self._closed = False
        # Task group of the running ``run()``, or None when not running.
        self._task_group: TaskGroup | None = None
        # anyio events need a running loop, so they are created by the async methods.
        self._ready: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._done: anyio.Event | None = None
        # Strong reference to a lazily spawned asyncio host task (the loop keeps weak ones).
        self._exit_stack: AsyncExitStack | None = None
        # The asyncio loop run() serves in (or is being started in): None on trio; and the
        # thread it runs in.
        self._host_loop: asyncio.AbstractEventLoop | None = None
        self._host_thread: int | None = None

    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._subscriptions)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the delivery tasks until ``close``; start it with ``await tg.start(backend.run)``.

        Raises:
            RuntimeError: If the backend is already running.
        """
        if self._task_group is not None:
            raise RuntimeError("InMemoryRealtime is already running")
        # A lazy start has created these already (close() may be waiting on them).
        ready = self._ready = self._ready or anyio.Event()
        stop = self._stop = self._stop or anyio.Event()
        done = self._done = self._done or anyio.Event()
        try:
            if self._closed or stop.is_set():
                task_status.started()
                return
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                self._host_loop = asyncio._get_running_loop()
                self._host_thread = threading.get_ident()
                ready.set()
                task_status.started()
                await stop.wait()
                # run() is always its own task, so cancelling its group only stops deliveries.
                tg.cancel_scope.cancel()
        finally:
            self._task_group = None
            self._ready = self._stop = self._done = None
            # The turn lock is this run's too: one made on trio raised "must be called from
            # async context" under the asyncio run a kit went on in. A publish still holding
            # it releases the one it took.
            self._publishing = None
            # Delivery tasks died with the group: forget their subscriptions, so a backend
            # whose owner was cancelled without close() can start again cleanly.
            self._subscriptions.clear()
            self._by_channel.clear()
            ready.set()
            done.set()

    async def publish(self, channel: str, event: EphemeralEvent) -> None:
        """Queue ``event`` for every subscriber of ``channel``; ignored after ``close``."""
        if self._closed:
            return
        self._check_loop()
        subscribers = self._by_channel.get(channel)
        if not subscribers:
            return
        limit = self._max_queue_size
        if self._held_back or any(len(sub.queue) == limit for sub in subscribers.values()):
            # A publisher that never yields (a loop of publish_typing) kept the delivery
            # tasks from running: even a subscriber that takes events at once lost nine in
            # ten of a burst of 1,000. Yielding lets them take what they hold (more than once:
            # trio runs the tasks woken together in any order). The publishes that come
            # meanwhile wait their turn, in order: one appended first was delivered first.
            self._held_back += 1
            try:
                async with self._turn():
                    yields = 0
                    while yields < _YIELDS_WHEN_FULL and any(
                        len(sub.queue) == limit for sub in subscribers.values()
                    ):
                        await anyio.lowlevel.checkpoint()
                        subscribers = self._by_channel.get(channel) or {}
                        yields += 1
                    if not self._closed:
                        self._append(subscribers, event)
            finally:
                self._held_back -= 1
            return
        self._append(subscribers, event)

    def _turn(self) -> anyio.Lock:
        """The lock publishes held back take in turn (FIFO), made on first use."""
        if self._publishing is None:
            self._publishing = anyio.Lock()
        return self._publishing

    def _append(self, subscribers: dict[str, _Subscription], event: EphemeralEvent) -> None:
        for sub in subscribers.values():
            if len(sub.queue) == self._max_queue_size:
                self._report_drop(sub)
            sub.queue.append(event)  # a deque with maxlen drops the oldest by itself
            if sub.wakeup is not None:
                sub.wakeup.set()

    def _report_drop(self, sub: _Subscription) -> None:
        """Log a dropped event at WARNING: the first at once, then one line every
        ``_REPORT_EVERY`` seconds with how many since (a line per event was at DEBUG only,
        and the app never learned that its subscribers lose events)."""
        self._dropped += 1
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < _REPORT_EVERY:
            return
        more = f" ({self._dropped - 1} more since the last report)" if self._dropped > 1 else ""
        logger.warning(
            "realtime subscription %s of %r is full (max_queue_size %d, its subscriber is "
            "slower than the events): its oldest event dropped%s",
            sub.id,
            sub.channel,
            self._max_queue_size,
            more,
        )
        self._dropped = 0
        self._reported_at = now

    async def subscribe(self, channel: str, callback: EphemeralCallback) -> str:
        """Deliver the events of ``channel`` to ``callback``, one at a time, in order.

        Starts the backend lazily if it is not running (see the module docstring).

        Raises:
            RuntimeError: If the backend is closed.
        """
        if self._closed:
            raise RuntimeError("InMemoryRealtime is closed")
        self._check_loop()
        task_group = self._task_group or await self._start_lazily()
        sub = _Subscription(
            id=new_id(),
            channel=channel,
            callback=callback,
            queue=deque(maxlen=self._max_queue_size),
        )
        self._subscriptions[sub.id] = sub
        self._by_channel.setdefault(channel, {})[sub.id] = sub
        task_group.start_soon(self._deliver, sub, name=f"roomkit.realtime:{channel}:{sub.id}")
        return sub.id

    async def unsubscribe(
        self, subscription_id: str | None = None, *, sub_id: str | None = None
    ) -> bool:
        """Stop a subscription; events still queued for it are discarded. (``sub_id``: the
        same id under another name, see ``subscription_id_of``.)"""
        self._check_loop()
        sub = self._subscriptions.get(subscription_id_of(subscription_id, sub_id))
        if sub is None:
            return False
        self._forget(sub)
        sub.scope.cancel()
        return True

    async def close(self) -> None:
        """Stop every subscription and the delivery tasks; later publishes are ignored.

        Called from another event loop than the one ``run()`` serves in, still running (in
        another thread), it has that loop stop them and returns at once: waiting here for
        that loop's events never ended.
        """
        if self._trio_elsewhere():
            raise RuntimeError(
                "InMemoryRealtime serves in a trio run of another thread: close it from there"
            )
        serving = self._serving_elsewhere()
        if serving is None:
            self._forget_a_dead_loop()
        if self._dropped and not self._closed:  # counted since the last report (_report_drop)
            logger.warning("%d more realtime events dropped before closing", self._dropped)
            self._dropped = 0
        self._closed = True
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        self._by_channel.clear()
        stop, done = self._stop, self._done
        if serving is not None:
            serving.call_soon_threadsafe(_stop_all, subscriptions, stop)
            return
        _stop_all(subscriptions, stop)
        if done is not None:
            await done.wait()

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            await task_group.start(self.run)
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        try:
            await self.close()
        finally:
            if stack is not None:
                await stack.__aexit__(exc_type, exc, tb)

    async def _start_lazily(self) -> TaskGroup:
        if self._ready is None:
            # Concurrent first subscribers all wait on the same event; only one host spawns.
            self._ready = anyio.Event()
            self._stop = anyio.Event()
            self._done = anyio.Event()
            self._host_loop = asyncio._get_running_loop()
            self._host_thread = threading.get_ident()
            spawn_host(self.run, "roomkit.realtime")
        await self._ready.wait()
        if self._task_group is None:
            raise RuntimeError("InMemoryRealtime is closed")
        return self._task_group

    def _serving_elsewhere(self) -> asyncio.AbstractEventLoop | None:
        """The event loop ``run()`` serves in if it is not the running one and still runs
        (in another thread), else ``None``."""
        loop = self._host_loop
        if loop is None or loop is asyncio._get_running_loop() or not loop.is_running():
            return None
        return loop

    def _check_loop(self) -> None:
        """Refuse a call from another event loop than the one ``run()`` serves in, while it
        runs (in another thread): its queues and events are that loop's, and an event set
        from here did not wake it (published, it reached nobody until something else did).
        A loop that ended is forgotten instead (``_forget_a_dead_loop``).

        Raises:
            RuntimeError: another loop, still running, serves this backend.
        """
        if self._serving_elsewhere() is not None or self._trio_elsewhere():
            raise RuntimeError(
                "InMemoryRealtime serves in an event loop running in another thread: use it "
                "from that loop"
            )
        self._forget_a_dead_loop()

    def _trio_elsewhere(self) -> bool:
        """Whether ``run()`` serves in a trio run of another thread (trio has no loop object
        to hand work to: such a backend is used, and closed, from its own thread only)."""
        return (
            self._host_loop is None
            and self._task_group is not None
            and self._host_thread not in (None, threading.get_ident())
        )

    def _forget_a_dead_loop(self) -> None:
        """Start afresh if ``run()`` serves in an event loop that ended without having its
        tasks cancelled (a kit outlives its loop; ``asyncio.run`` cancels them, and
        ``run()`` then forgets its subscriptions itself). Its events and task group belong
        to that loop: setting one raised "Event loop is closed", and close() waited for ever."""
        loop = self._host_loop
        if loop is None or loop is asyncio._get_running_loop() or loop.is_running():
            return  # see _check_loop for a loop running in another thread
        self._host_loop = self._task_group = None
        self._ready = self._stop = self._done = None
        self._exit_stack = None
        self._publishing = None  # a lock of that loop's
        self._held_back = 0
        self._subscriptions.clear()
        self._by_channel.clear()

    def _forget(self, sub: _Subscription) -> None:
        if self._subscriptions.get(sub.id) is sub:
            del self._subscriptions[sub.id]
        subscribers = self._by_channel.get(sub.channel)
        if subscribers is not None and subscribers.get(sub.id) is sub:
            del subscribers[sub.id]
            if not subscribers:
                del self._by_channel[sub.channel]

    async def _deliver(self, sub: _Subscription) -> None:
        try:
            with sub.scope:
                queue = sub.queue
                while True:
                    # A callback without checkpoints would not see a pending cancellation, so
                    # an unsubscribe (or close) from inside a callback is checked explicitly.
                    while queue and not sub.scope.cancel_called:
                        event = queue.popleft()
                        try:
                            called = sub.callback(event)
                            # A plain function has done its work (awaiting its None failed
                            # every event after it had run).
                            if inspect.isawaitable(called):
                                await called
                        except Exception:
                            logger.exception(
                                "realtime callback of subscription %s on %r failed",
                                sub.id,
                                sub.channel,
                            )
                        except BaseException as exc:
                            # Its own CancelledError (a socket it forwards to torn down),
                            # nothing cancelling the delivery: it ended the backend's task
                            # group, and every subscription with it, without a word.
                            failure = raised_uncancelled(exc, "the callback")
                            logger.error(
                                "realtime callback of subscription %s on %r failed: %s",
                                sub.id,
                                sub.channel,
                                failure,
                            )
                    sub.wakeup = anyio.Event()
                    await sub.wakeup.wait()
                    sub.wakeup = None
        finally:
            self._forget(sub)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._task_group else "idle"
        return f"<InMemoryRealtime {state} subscriptions={self.subscription_count}>"


def _stop_all(subscriptions: list[_Subscription], stop: anyio.Event | None) -> None:
    """End ``subscriptions`` and, with ``stop``, the ``run()`` they are delivered by."""
    for sub in subscriptions:
        sub.scope.cancel()
    if stop is not None:
        stop.set()
