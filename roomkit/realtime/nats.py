"""``NatsRealtime``: ephemeral events over core NATS, for kits in several processes.

``InMemoryRealtime`` reaches the subscribers of one process only. When several processes serve
the same rooms (two ingress processes on one JetStream, say), a typing indicator published in
one must reach the subscribers of the other (``kit.subscribe_room``, whose callbacks forward
it to their WebSocket clients): this backend publishes each event on a core NATS subject and
every process subscribed to it gets it. Nothing is stored (core NATS, not JetStream): a
subscriber that is not connected when an event is published never sees it, as ephemeral
events go.

Subjects: the events of channel ``C`` go on ``<subject_prefix>.rt.<token>``, where the token
is ``C`` itself when it is a plain name (``[A-Za-z0-9_-]``, at most 64 characters) and else
``~`` and the base64url of ``C`` (or of its SHA-256, past 45 bytes): ``room:support-1`` is
``roomkit.rt.~cm9vbTpzdXBwb3J0LTE``. The payload is ``EphemeralEvent.to_dict()`` as JSON.

Each process subscribes to a channel's subject once, however many subscribers it has there,
and fans its events out locally through an ``InMemoryRealtime``: every subscription has its
own bounded queue (its oldest event dropped when it falls ``max_queue_size`` behind) and
task, so a slow subscriber slows nobody else. ``publish`` never raises: to a server that is
away, the client buffers while it reconnects (up to its pending size) and then drops, and a
backend that cannot connect drops events (with a warning) without trying again for a second.
Runs on asyncio only, as nats-py does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import msgspec

from eventlog._nats_needed import nats_needed

try:
    import nats.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
except ModuleNotFoundError as missing:  # an optional dependency
    raise nats_needed(missing, "roomkit.realtime.nats (NatsRealtime)") from None

from actors import check_finite_seconds
from eventlog import LogUnavailable
from eventlog._nats_setup import (
    client_or_servers,
    close_quietly,
    open_client,
    require_asyncio,
)
from eventlog._redacted import redacted
from roomkit.errors import RoomKitError
from roomkit.models._defaults import new_id, utcnow
from roomkit.realtime.base import (
    EphemeralCallback,
    EphemeralEvent,
    EphemeralEventType,
    RealtimeBackend,
    subscription_id_of,
)
from roomkit.realtime.memory import InMemoryRealtime

__all__ = ["NatsRealtime", "RealtimeUnavailableError", "channel_subject"]

logger = logging.getLogger("roomkit.realtime")

_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX_TOKEN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_MAX_REVERSIBLE = 45  # bytes whose base64url (60 characters) still makes a short token
# After a failed connection, events are dropped (and subscribes refused) at once for this long
# rather than each waiting out another connect_timeout.
_RETRY_AFTER = 1.0
# Events dropped (NATS away) are reported at most once in this many seconds.
_REPORT_EVERY = 10.0
# Teardowns of closed backends, held until done (the loop keeps only weak references).
_TEARDOWNS: set[asyncio.Future[None]] = set()


class _WireEvent(msgspec.Struct):
    """An event as published (``EphemeralEvent.to_dict()``), checked field by field."""

    room_id: str
    type: EphemeralEventType
    user_id: str
    id: str | None = None
    channel_id: str | None = None
    data: dict[str, Any] = {}
    timestamp: datetime | None = None


_decode_event = msgspec.json.Decoder(_WireEvent).decode


class RealtimeUnavailableError(RoomKitError):
    """NATS could not be reached to subscribe (or the backend runs outside asyncio)."""


def channel_subject(subject_prefix: str, channel: str) -> str:
    """The NATS subject of realtime channel ``channel`` (see the module docstring)."""
    if _PLAIN.fullmatch(channel):
        token = channel
    else:
        raw = channel.encode("utf-8", "surrogatepass")
        if len(raw) > _MAX_REVERSIBLE:
            raw = hashlib.sha256(raw).digest()
        token = "~" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return f"{subject_prefix}.rt.{token}"


class NatsRealtime(RealtimeBackend):
    """Realtime backend over core NATS pub/sub (see the module docstring).

    Connects on first use; ``close()`` (or leaving ``async with``) closes its own connection.

    Args:
        nats_url: the NATS URL(s), or a connected nats-py client (used and left open).
        subject_prefix: dot-separated tokens; events go on ``<prefix>.rt.<channel token>``.
        max_queue_size: events a subscription may fall behind by before it loses its oldest.
        connect_timeout: bound of the first connection.
        connect_options: more keyword arguments for ``nats.connect`` (TLS, credentials, ...).

    Raises:
        ValueError: a bad prefix, or a non-positive size or timeout.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] | NatsClient = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "roomkit",
        max_queue_size: int = 100,
        connect_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(subject_prefix, str) or not _PREFIX_TOKEN.fullmatch(subject_prefix):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        self._local = InMemoryRealtime(max_queue_size)  # checks max_queue_size
        self._connect_timeout = check_finite_seconds("connect_timeout", connect_timeout)
        self._client, self._servers = client_or_servers(nats_url)
        self._connect_options = dict(connect_options or {})
        self.subject_prefix = subject_prefix
        self._nc: NatsClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one _nc runs in
        self._watch: _LoopWatch | None = None  # closes _nc as its loop ends
        self._connecting: anyio.Lock | None = None
        self._failed_at: float | None = None
        # Held while a NATS subscription is made or ended (not while it is confirmed).
        self._remote_lock: anyio.Lock | None = None
        # One NATS subscription per channel with local subscribers, and who they are.
        self._remote: dict[str, _Remote] = {}
        self._channel_of: dict[str, str] = {}  # subscription id -> channel
        self._subscribers: dict[str, set[str]] = {}  # channel -> subscription ids
        self._closed = False
        # Pings confirming subscriptions, until answered (close() ends those of its own
        # connection), and what close() sets for the subscribes waiting on them (made in the
        # connection's loop).
        self._pings: set[asyncio.Future[None]] = set()
        self._closing: asyncio.Future[None] | None = None
        # Drops reported: the first at once, then one line per _REPORT_EVERY with the count.
        self._dropped = 0
        self._reported_at: float | None = None

    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._channel_of)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    async def publish(self, channel: str, event: EphemeralEvent) -> None:
        """Publish ``event`` on ``channel``'s subject; ignored after ``close``.

        Best effort, as ephemeral events are: a failure (NATS unreachable, the connection
        closed, data that JSON cannot hold) is logged and the event dropped, never raised.
        """
        if self._closed:
            return
        try:
            data = msgspec.json.encode(event.to_dict())
            nc = await self._connected()
            await nc.publish(channel_subject(self.subject_prefix, channel), data)
        except (RealtimeUnavailableError, nats.errors.Error, OSError) as exc:
            self._report_drop(channel, exc)
        except (TypeError, ValueError, RecursionError) as exc:
            # Not JSON: an object, a lone surrogate (UnicodeEncodeError), an int of more than
            # 4,300 digits, nesting deeper than the encoder goes. The in-memory backend hands
            # such events on as they are; raised here, publish_typing failed the caller.
            self._report_drop(channel, exc)

    def _report_drop(self, channel: str, error: BaseException) -> None:
        """Log a dropped event: the first at once, then one line every ``_REPORT_EVERY``
        seconds with how many were dropped since (an outage logged a line per event: 25,000
        for 30,000 typing indicators)."""
        self._dropped += 1
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < _REPORT_EVERY:
            return
        more = f" ({self._dropped - 1} more since the last report)" if self._dropped > 1 else ""
        logger.warning("realtime event on %r dropped: %s%s", channel, error, more)
        self._dropped = 0
        self._reported_at = now

    async def subscribe(self, channel: str, callback: EphemeralCallback) -> str:
        """Call ``callback`` for every event published on ``channel`` (by any process) from
        now on, one at a time, in the order each publisher sent them.

        Raises:
            RuntimeError: the backend is closed.
            RealtimeUnavailableError: NATS could not be reached.
        """
        if self._closed:
            raise RuntimeError("NatsRealtime is closed")
        try:
            nc = await self._connected()
        except RealtimeUnavailableError as exc:
            if self._closed:  # as it connected
                raise RuntimeError("NatsRealtime is closed") from exc
            raise
        async with self._lock():  # two first subscribers of a channel: one NATS subscription
            if self._closed:
                raise RuntimeError("NatsRealtime is closed")
            remote = self._remote.get(channel)
            if remote is None:
                remote = await self._subscribed(nc, channel)
            remote.waiting += 1
        # Confirmed outside the lock: held, subscribes to other channels on a server that
        # stalled waited one after another (the sixth six connect_timeouts), and so did an
        # unsubscribe behind them.
        try:
            if not remote.confirmed:
                # A ping of its own, sent after the subscription: one shared by the waiters
                # was never answered once the connection that sent it dropped (nats-py forgets
                # the pongs it waits for as it reconnects), and no one could subscribe to
                # the channel while any waited on it.
                await self._confirmed(nc)
                remote.confirmed = True
            sub_id = await self._local.subscribe(channel, callback)
        except BaseException as exc:
            # Given up or failed: nothing of it is left (its NATS subscription stayed for the
            # process's life, with no subscriber to unsubscribe it).
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._connect_timeout):
                await self._leave(channel, remote)
            if isinstance(exc, Exception) and self._closed:  # its connection closed with it
                raise RuntimeError("NatsRealtime is closed") from exc
            if isinstance(exc, nats.errors.Error | OSError | TimeoutError):
                raise RealtimeUnavailableError(
                    f"cannot subscribe to {channel!r}: {exc!r}"
                ) from exc
            raise
        remote.waiting -= 1
        if self._closed:  # closed meanwhile: an id would never hear a thing
            await self._local.unsubscribe(sub_id)
            raise RuntimeError("NatsRealtime is closed")
        self._channel_of[sub_id] = channel
        self._subscribers.setdefault(channel, set()).add(sub_id)
        return sub_id

    async def _subscribed(self, nc: NatsClient, channel: str) -> _Remote:
        """Subscribe this process to ``channel``'s subject, not confirmed yet."""

        async def forward(msg: Msg) -> None:
            event = _event_of(msg)
            if event is not None:
                await self._local.publish(channel, event)  # queues (yields while one is full)

        subject = channel_subject(self.subject_prefix, channel)
        try:
            subscription = await nc.subscribe(subject, cb=forward)
        except (nats.errors.Error, OSError) as exc:
            raise RealtimeUnavailableError(f"cannot subscribe to {channel!r}: {exc!r}") from exc
        if self._closed:  # meanwhile, with the subscriptions it ended
            await _unsubscribe_quietly(subscription)
            raise RuntimeError("NatsRealtime is closed")
        # nats-py only queues the subscription: about one in ten of the events another process
        # published just after subscribe returned was missed, unconfirmed.
        remote = self._remote[channel] = _Remote(subscription)
        return remote

    async def _leave(self, channel: str, remote: _Remote) -> None:
        """A subscriber that waited for ``remote`` gives up: the last to leave a channel
        with no subscribers ends the NATS subscription."""
        async with self._lock():
            remote.waiting -= 1
            if (
                not remote.waiting
                and self._remote.get(channel) is remote
                and not self._subscribers.get(channel)
            ):
                del self._remote[channel]
                await _unsubscribe_quietly(remote.subscription)

    async def unsubscribe(
        self, subscription_id: str | None = None, *, sub_id: str | None = None
    ) -> bool:
        """Stop a subscription; ``False`` if there is none of that id. (``sub_id``: the same
        id under another name, see ``subscription_id_of``.)"""
        sub_id = subscription_id_of(subscription_id, sub_id)
        channel = self._channel_of.pop(sub_id, None)
        if channel is None:
            return False
        # Shielded: its id is gone, so a caller cancelled in between left the subscription
        # running for good (a retry answered False). The lock is held only while a NATS
        # subscription is made or ended, never for a round trip.
        with anyio.CancelScope(shield=True):
            async with self._lock():
                subscribers = self._subscribers.get(channel, set())
                subscribers.discard(sub_id)
                if not subscribers:  # the last one here: this process no longer listens
                    self._subscribers.pop(channel, None)
                    remote = self._remote.get(channel)
                    if remote is not None and not remote.waiting:
                        del self._remote[channel]
                        await _unsubscribe_quietly(remote.subscription)
            # Last: called from the subscription's own callback, this cancels what follows
            # (once the shield is left).
            await self._local.unsubscribe(sub_id)
        return True

    async def _confirmed(self, nc: NatsClient) -> None:
        """Return once the server has what ``nc`` sent so far (a subscription): it answered
        a ping sent after it (``_pinged_soon``).

        Raises:
            TimeoutError: not within ``connect_timeout``.
            RuntimeError: ``close`` was called meanwhile.
            nats.errors.Error: the connection failed.
        """
        if self._closed:  # meanwhile: close() ended the waits under way, not this one
            raise RuntimeError("NatsRealtime is closed")
        pinged = _pinged_soon(nc)
        self._pings.add(pinged)
        pinged.add_done_callback(self._pings.discard)
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        with anyio.fail_after(self._connect_timeout):
            # A cancelled wait leaves the ping be (see _pinged_soon).
            await asyncio.wait((pinged, self._closing), return_when=asyncio.FIRST_COMPLETED)
        if self._closed or pinged.cancelled():  # closed meanwhile (its ping maybe cancelled)
            raise RuntimeError("NatsRealtime is closed")
        pinged.result()

    async def close(self) -> None:
        """Stop every subscription and close the connection this backend made; later
        publishes are ignored."""
        if self._dropped and not self._closed:  # counted since the last report (_report_drop)
            logger.warning("%d more realtime events dropped before closing", self._dropped)
            self._dropped = 0
        self._closed = True
        remote = [each.subscription for each in self._remote.values()]
        self._remote = {}
        self._channel_of.clear()
        self._subscribers.clear()
        nc, self._nc = self._nc, None
        watch, self._watch = self._watch, None
        loop, self._loop = self._loop, None
        closing, self._closing = self._closing, None
        if loop is not None and loop is not asyncio._get_running_loop():
            # Another event loop's connection: closed in that loop by its watch (at once if
            # the loop runs, in another thread; else when its tasks are cancelled).
            if not loop.is_closed():
                if watch is not None:
                    loop.call_soon_threadsafe(watch.task.cancel)
                if closing is not None:
                    loop.call_soon_threadsafe(_done, closing)
            remote, nc = [], None
        else:
            if closing is not None:
                # The subscribes confirming waited out connect_timeout (a given client's
                # server may well answer: the backend is closed all the same).
                _done(closing)
            if watch is not None:
                watch.closes = False  # the teardown below is the one
                watch.task.cancel()
        if remote or nc is not None:
            own = nc if self._client is None else None
            # Of a connection closed, the pongs never come: its pings waited an hour.
            pings = list(self._pings) if own is not None else []
            # Its own task, awaited through a shield: a caller cancelled meanwhile (a callback
            # closing the backend it runs in is cancelled by that close) leaves no connection
            # open behind it.
            teardown = asyncio.ensure_future(_teardown(remote, own, pings))
            _TEARDOWNS.add(teardown)
            teardown.add_done_callback(_TEARDOWNS.discard)
            await asyncio.shield(teardown)
        await self._local.close()

    async def _connected(self) -> NatsClient:
        if self._nc is not None and self._loop is asyncio._get_running_loop():
            return self._nc
        require_asyncio("NatsRealtime", RealtimeUnavailableError)
        if self._nc is not None:
            if self._loop is not None and self._loop.is_running():  # in another thread
                raise RealtimeUnavailableError(
                    "NatsRealtime's connection runs in another event loop, still running"
                )
            self._start_over()
        self._check_not_failing()
        if self._connecting is None:
            self._connecting = anyio.Lock()
        async with self._connecting:  # concurrent first calls make one connection
            if self._nc is None:
                self._check_not_failing()  # the call before this one just failed
                if self._client is not None:
                    self._nc = self._client
                else:
                    try:
                        self._nc = await open_client(
                            self._servers,
                            connect_timeout=self._connect_timeout,
                            request_timeout=self._connect_timeout,
                            options={"name": "roomkit-realtime", **self._connect_options},
                        )
                    except LogUnavailable as exc:
                        self._failed_at = anyio.current_time()
                        raise RealtimeUnavailableError(str(exc)) from exc
                self._loop = asyncio.get_running_loop()
                if self._client is None and not self._closed:
                    self._watch = _LoopWatch(self._nc)
                    self._watch.task = self._loop.create_task(
                        self._close_with_the_loop(self._watch)
                    )
                if self._closed:  # closed while connecting
                    nc, self._nc = self._nc, None
                    if self._client is None:
                        await close_quietly(nc)
                    raise RealtimeUnavailableError("NatsRealtime is closed")
            nc = self._nc
        return nc

    def _start_over(self) -> None:
        """Forget the connection made in an event loop that no longer runs this backend (a
        kit used across two ``asyncio.run`` calls): it can neither be used nor closed from
        here, and its subscriptions ended with their loop's tasks, as the deliveries to the
        local subscribers did (``InMemoryRealtime`` forgets those). Kept, they left the kit's
        subscribers with nothing and no word. The caller connects again in the running loop.

        Raises:
            RealtimeUnavailableError: the backend was given a client, of that loop.
        """
        if self._client is not None:
            raise RealtimeUnavailableError(
                "the NATS client given to NatsRealtime runs in an event loop that has ended"
            )
        logger.info("realtime: connecting again, in a new event loop")
        self._forget_connection()

    async def _close_with_the_loop(self, watch: _LoopWatch) -> None:
        """Close the connection this backend made as its event loop ends (``asyncio.run``
        cancels the tasks left as it returns; a kit outlives that loop): its socket was left
        open, and the next use connects again in its own loop (``_connected``)."""
        try:
            await asyncio.Future()  # never done: cancelled by the loop's end or by close()
        finally:
            if watch.closes:
                if self._nc is watch.nc:
                    self._forget_connection()
                await close_quietly(watch.nc)

    def _forget_connection(self) -> None:
        self._nc = self._loop = self._watch = None
        self._remote.clear()
        self._channel_of.clear()
        self._subscribers.clear()
        self._connecting = self._remote_lock = self._closing = None
        self._pings = set()  # the ended loop's

    def _lock(self) -> anyio.Lock:
        if self._remote_lock is None:
            self._remote_lock = anyio.Lock()
        return self._remote_lock

    def _check_not_failing(self) -> None:
        failed_at = self._failed_at
        if failed_at is not None and anyio.current_time() - failed_at < _RETRY_AFTER:
            raise RealtimeUnavailableError(
                f"NATS at {redacted(self._servers)} was unreachable less than "
                f"{_RETRY_AFTER:g} s ago"
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._nc else "idle"
        return f"<NatsRealtime {state} subscriptions={self.subscription_count}>"


@dataclass(eq=False)
class _Remote:
    """This process's NATS subscription to a channel's subject."""

    subscription: Subscription
    confirmed: bool = False  # the server answered a ping sent after it
    waiting: int = 0  # subscribers waiting for it to be confirmed (they keep it)


@dataclass(eq=False)
class _LoopWatch:
    """The task closing a connection as its event loop ends (``_close_with_the_loop``)."""

    nc: NatsClient
    task: asyncio.Task[None] = field(init=False)
    closes: bool = True  # False once close() tears the connection down itself


def _event_of(msg: Msg) -> EphemeralEvent | None:
    """The event a message carries, or ``None`` (logged) if it is not one."""
    try:
        wire = _decode_event(msg.data)
    except (msgspec.DecodeError, RecursionError) as exc:
        logger.warning("realtime: not an ephemeral event on %s, ignored: %s", msg.subject, exc)
        return None
    return EphemeralEvent(
        room_id=wire.room_id,
        type=wire.type,
        user_id=wire.user_id,
        id=wire.id or new_id(),
        channel_id=wire.channel_id,
        data=wire.data,
        timestamp=wire.timestamp or utcnow(),
    )


# Pings confirming subscriptions (see NatsRealtime._confirmed), held until answered: the
# loop keeps only weak references to tasks.
_PINGS: set[asyncio.Future[None]] = set()
# Seconds nats-py waits for a pong: past any stall a connection lives through (its own ping
# interval ends a dead one sooner), so that no late pong finds its future gone.
_PONG_PATIENCE = 3600


def _pinged_soon(nc: NatsClient) -> asyncio.Future[None]:
    """Ping the server in a task of its own, answered once it has what ``nc`` sent so far.

    Nothing but ``close`` cancels it, and nats-py gets no timeout for it: a flush given up
    (its timeout, its caller cancelled) left a future the late pong could not be set on,
    which ended the connection's reader, every subscription of the process silent, the
    connection still up. Only the waits for it are bounded (``NatsRealtime._confirmed``).
    """
    pinged = asyncio.ensure_future(_pinged(nc))
    _PINGS.add(pinged)
    pinged.add_done_callback(_ping_done)
    return pinged


async def _pinged(nc: NatsClient) -> None:
    # Twice: nats-py writes a ping straight to the socket, ahead of what waits for its
    # flusher (the subscription), which writes it during the first round trip.
    for _ in range(2):
        await nc.flush(timeout=_PONG_PATIENCE)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _ping_done(pinged: asyncio.Future[None]) -> None:
    _PINGS.discard(pinged)
    if not pinged.cancelled():
        pinged.exception()  # retrieved: a connection closed meanwhile is no one's error


async def _unsubscribe_quietly(subscription: Subscription) -> None:
    try:
        await subscription.unsubscribe()
    except (nats.errors.Error, OSError) as exc:  # the connection is gone: so is the interest
        logger.info("realtime: unsubscribing from %s: %s", subscription.subject, exc)


async def _teardown(
    remote: list[Subscription], own: NatsClient | None, pings: list[asyncio.Future[None]]
) -> None:
    for subscription in remote:
        await _unsubscribe_quietly(subscription)
    if own is not None:
        await close_quietly(own)
    # Once closed: earlier, a pong answered as it was cancelled kept the task going (asyncio's
    # wait_for returns the result then), and its next ping waited for ever.
    for pinged in pings:
        pinged.cancel()
