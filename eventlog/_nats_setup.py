"""Connecting to NATS and creating what ``NatsEventLog`` needs: the stream and the KV bucket."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from eventlog._nats_client import RoomKitNatsClient
from eventlog._nats_errors import ERR_STREAM_NAME_IN_USE, ERR_SUBJECTS_OVERLAP
from eventlog._redacted import redacted
from eventlog.errors import EventLogError, LogUnavailable, StreamConflict

__all__ = [
    "client_or_servers",
    "close_quietly",
    "ensure_bucket",
    "ensure_stream",
    "existing_bucket",
    "existing_stream",
    "open_client",
    "require_asyncio",
    "servers_named",
]

logger = logging.getLogger("roomkit.eventlog.nats")


def require_asyncio(what: str, error: type[Exception]) -> None:
    """Refuse to go on outside asyncio: nats-py runs on asyncio only, and on trio its first
    call fails deep inside with "no running event loop", leaving a coroutine never awaited.

    Raises:
        error: the running event loop is not asyncio's (anyio's trio backend).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise error(
            f"{what} runs on asyncio only (nats-py is asyncio's): run it with anyio's "
            "asyncio backend"
        ) from None


def client_or_servers(
    nats_url: str | Sequence[str] | NatsClient,
) -> tuple[NatsClient | None, list[str]]:
    """A part's ``nats_url`` argument as (the connected client it was given, to use and leave
    open; or None) and the server URLs to connect to itself."""
    if isinstance(nats_url, NatsClient):
        return nats_url, []
    if isinstance(nats_url, str):
        return None, [nats_url]
    if not isinstance(nats_url, Sequence) or not all(isinstance(u, str) for u in nats_url):
        raise TypeError(
            "nats_url must be a URL, a list of URLs or a connected nats-py client, "
            f"got {nats_url!r}"
        )
    return None, servers_named(nats_url)


def servers_named(servers: Sequence[str]) -> list[str]:
    """``servers`` as a list, refused when empty: nats-py, given no server, retries for ever
    without once awaiting, and the event loop stops there (no timeout can fire).

    Raises:
        ValueError: ``servers`` is empty.
    """
    if not servers:
        raise ValueError("no NATS server given: name at least one URL")
    return list(servers)


async def open_client(
    servers: Sequence[str],
    *,
    connect_timeout: float,
    request_timeout: float,
    options: Mapping[str, Any],
) -> NatsClient:
    """Connect a client that reconnects for ever, quickly (so the log outlives a restart).

    Raises:
        LogUnavailable: no server answered within ``connect_timeout``.
    """
    nc = RoomKitNatsClient()
    theirs = options.get("reconnected_cb")
    if theirs is not None and not inspect.iscoroutinefunction(theirs):
        # nats-py checks its callbacks so; wrapped in ours, a plain function passed its check
        # and broke every reconnect.
        raise TypeError(f"reconnected_cb must be a coroutine function, not {theirs!r}")

    async def on_reconnected() -> None:
        logger.info("NATS: reconnected")
        nc.reconnected()
        if theirs is not None:
            await theirs()

    settings: dict[str, Any] = {
        "servers": list(servers),
        # Reconnect for ever and fast: the default 2 s wait stalls every outage by 2 s.
        "reconnect_time_wait": 0.1,
        "max_reconnect_attempts": -1,
        "connect_timeout": max(1, round(min(connect_timeout, request_timeout))),
        # Bounds the wait for a full outgoing buffer (unbounded by default).
        "flush_timeout": request_timeout,
        "error_cb": ErrorReporter().report,
        "disconnected_cb": _on_disconnected,
    }
    settings.update(options)
    settings["reconnected_cb"] = on_reconnected  # the caller's own runs too
    try:
        # With max_reconnect_attempts=-1 nats-py never gives up on the first connection
        # either: bound it here.
        with anyio.fail_after(connect_timeout):
            await nc.connect(**settings)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await close_quietly(nc)
        if isinstance(exc, TimeoutError | OSError | nats.errors.Error):
            raise LogUnavailable(f"cannot connect to NATS at {redacted(servers)}") from exc
        raise
    return nc


async def ensure_stream(
    js: JetStreamContext,
    *,
    name: str,
    subjects: str,
    storage: StorageType,
    replicas: int,
    duplicate_window: float,
    keeps_all: bool = False,
) -> StreamLimits:
    """Create the JetStream stream, or use the existing one as it is.

    An existing stream keeps its storage, replicas and duplicate window: another process, or an
    operator, chose them, and a client that reconfigured the shared stream on connect would
    fight every other client (or fail: storage cannot change). Only what the log cannot work
    without is checked (our subjects) or turned on (direct gets). With ``keeps_all`` (an event
    log's stream), limits that drop stored messages are warned of: a room whose first records
    are dropped can no longer be rebuilt, and nothing else would say so.

    Returns:
        The stream's duplicate window (the log's ``dedup_window``) and message size limit.

    Raises:
        StreamConflict: the stream exists without our subjects, or another stream holds
            them.
    """
    config = StreamConfig(
        name=name,
        subjects=[subjects],
        storage=storage,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        # Direct gets read a subject's last message, or a batch, without a consumer.
        allow_direct=True,
    )
    try:
        await js.add_stream(config)
        return StreamLimits(duplicate_window, None)
    except nats.js.errors.APIError as exc:
        if exc.err_code == ERR_SUBJECTS_OVERLAP:
            raise StreamConflict(
                f"JetStream stream {name} cannot be made: another stream holds subjects "
                f"overlapping {subjects!r} ({exc.description}): use that stream's name, or "
                "another subject prefix"
            ) from exc
        if exc.err_code != ERR_STREAM_NAME_IN_USE:
            raise
    existing = (await js.stream_info(name)).config
    _check_subjects(existing, subjects, "choose another stream name or subject prefix")
    dropping = _dropping_limits(existing) if keeps_all else []
    if dropping:
        logger.warning(
            "JetStream stream %s drops stored messages (%s): what it drops is lost to the "
            "event log (a room whose first records are gone can no longer be read); give it "
            "no such limits, or discard=new to refuse appends once full",
            name,
            ", ".join(dropping),
        )
    if not existing.allow_direct:
        logger.info("turning direct gets on for JetStream stream %s", name)
        existing.allow_direct = True
        await js.update_stream(existing)
    return StreamLimits(existing.duplicate_window or duplicate_window, _max_msg_size(existing))


async def existing_stream(js: JetStreamContext, *, name: str, subjects: str) -> StreamLimits:
    """Check the JetStream stream a reader opens, changing nothing (``ensure_stream`` turns
    direct gets on, and creates a missing stream: a tool that only reads must do neither, and
    a read-only account may not).

    Returns:
        The stream's duplicate window and message size limit.

    Raises:
        EventLogError: it does not exist, or its direct gets (which reads use) are off.
        StreamConflict: it holds other subjects.
    """
    try:
        existing = (await js.stream_info(name)).config
    except nats.js.errors.NotFoundError as exc:
        raise EventLogError(f"there is no JetStream stream {name}") from exc
    _check_subjects(existing, subjects, "give the stream name and subject prefix its writers use")
    if not existing.allow_direct:
        raise EventLogError(
            f"JetStream stream {name} has direct gets off (allow_direct), which reading the "
            "log uses: a writer's NatsEventLog turns them on as it connects"
        )
    return StreamLimits(existing.duplicate_window or 0.0, _max_msg_size(existing))


class StreamLimits(NamedTuple):
    """What an event log's stream takes, as its configuration says."""

    duplicate_window: float
    """Seconds within which a message id is recognised as sent before."""
    max_msg_size: int | None
    """The largest message it stores, in bytes (None: the server's max payload)."""


def _max_msg_size(config: StreamConfig) -> int | None:
    # -1 (or unset): no limit of its own.
    size = config.max_msg_size
    return size if size is not None and size > 0 else None


async def existing_bucket(js: JetStreamContext, name: str) -> KeyValue | None:
    """The KV bucket of snapshots, if it exists (None: a reader then finds no snapshot)."""
    try:
        return await js.key_value(name)
    except nats.js.errors.NotFoundError:  # BucketNotFoundError is one
        return None


def _check_subjects(existing: StreamConfig, subjects: str, advice: str) -> None:
    """Raise ``StreamConflict`` (saying ``advice``) if the stream does not hold ``subjects``."""
    if subjects not in (existing.subjects or []):
        raise StreamConflict(
            f"JetStream stream {existing.name} holds subjects {existing.subjects}, not "
            f"{subjects!r}: {advice}"
        )


def _dropping_limits(config: StreamConfig) -> list[str]:
    """The limits of ``config`` under which JetStream removes stored messages by itself."""
    dropping = []
    discards_old = config.discard != DiscardPolicy.NEW
    for limit in ("max_msgs", "max_bytes"):
        value = getattr(config, limit) or 0
        if value > 0 and discards_old:
            dropping.append(f"{limit}={value}, discard=old")
    if (config.max_age or 0) > 0:
        dropping.append(f"max_age={config.max_age:g} s")
    per_subject = config.max_msgs_per_subject or 0
    if per_subject > 0 and not (not discards_old and config.discard_new_per_subject):
        dropping.append(f"max_msgs_per_subject={per_subject}")
    return dropping


async def ensure_bucket(
    js: JetStreamContext, *, name: str, storage: StorageType, replicas: int
) -> KeyValue:
    """Create the KV bucket of snapshots (one value per key), or bind to the existing one."""
    config = KeyValueConfig(
        bucket=name, history=1, storage=storage, replicas=replicas, direct=True
    )
    try:
        return await js.create_key_value(config)
    except nats.js.errors.APIError as exc:
        if exc.err_code != ERR_STREAM_NAME_IN_USE:
            raise
        # It exists with another configuration (made by an operator): use it as it is.
        return await js.key_value(name)


async def close_quietly(nc: NatsClient) -> None:
    """Close ``nc`` within 5 s, logging (not raising) what goes wrong; the connection's tasks
    end either way."""
    try:
        with anyio.move_on_after(5):
            await nc.close()
    except Exception as exc:  # closing is best effort; the caller already has a better error
        logger.debug("closing the NATS connection: %r", exc)
    _end_what_close_left(nc)


def _end_what_close_left(nc: NatsClient) -> None:
    """End the subscriptions' tasks and the transport that ``nc.close()`` did not get to.

    With the server away, nats-py's close flushes what was queued during the outage (a
    subscription's unsubscribe, say) into the lost connection, which raises before it cancels
    its subscriptions' tasks: each waited for messages for ever, and kept the client alive.
    (nats-py has no public call for this: its own attributes, read defensively.)
    """
    subscriptions = getattr(nc, "_subs", None)
    if subscriptions:
        for subscription in list(subscriptions.values()):
            task = getattr(subscription, "_wait_for_msgs_task", None)
            if task is not None and not task.done():
                task.cancel()
            iterator = getattr(subscription, "_message_iterator", None)
            if iterator is not None:
                iterator._cancel()
            waiting = getattr(subscription, "_pending_next_msgs_calls", None)
            if waiting:
                for future in waiting.values():
                    future.cancel()
                waiting.clear()
        subscriptions.clear()
    transport = getattr(nc, "_transport", None)
    if transport is not None and nc.is_closed:
        with contextlib.suppress(Exception):
            transport.close()


class ErrorReporter:
    """Logs what nats-py reports from its own tasks for one connection (``error_cb``).

    A slow consumer is reported once per dropped message: under a flood that is a warning per
    message, which costs the overloaded process more time still. Drops are warned about once
    per ``every`` seconds per subscription, with the count since the last warning; each one
    is still logged at DEBUG level.
    """

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        # Per subscription (sid): when its last warning was logged, and the drops since.
        self._warned_at: dict[int, float] = {}
        self._dropped: dict[int, int] = {}

    async def report(self, exc: Exception) -> None:
        """The callback (nats-py takes only coroutine functions)."""
        if isinstance(exc, nats.errors.SlowConsumerError):
            self._slow_consumer(exc)
        elif isinstance(exc, OSError | nats.errors.StaleConnectionError):
            # While the server is away each reconnect attempt (every 0.1 s) fails with a
            # connection error: not worth a warning each.
            logger.debug("NATS: %r", exc)
        else:
            logger.warning("NATS: %r", exc)

    def _slow_consumer(self, exc: nats.errors.SlowConsumerError) -> None:
        sid = exc.sid
        dropped = self._dropped.get(sid, 0) + 1
        now = self._clock()
        warned_at = self._warned_at.get(sid)
        if warned_at is not None and now - warned_at < self._every:
            self._dropped[sid] = dropped
            logger.debug("NATS: slow consumer on %s dropped a message", exc.subject)
            return
        if warned_at is None:
            self._forget_quiet(now)
        self._warned_at[sid] = now
        self._dropped[sid] = 0
        logger.warning(
            "NATS: slow consumer on %s (subscription %d): %d message%s dropped%s",
            exc.subject,
            sid,
            dropped,
            "" if dropped == 1 else "s",
            "" if warned_at is None else f" in the last {now - warned_at:.0f} s",
        )

    def _forget_quiet(self, now: float) -> None:
        """Forget the subscriptions with nothing to report (so the dicts do not grow with
        every subscription that ever dropped a message)."""
        for sid, warned_at in list(self._warned_at.items()):
            if now - warned_at >= self._every and not self._dropped.get(sid):
                del self._warned_at[sid]
                self._dropped.pop(sid, None)


async def _on_disconnected() -> None:
    logger.info("NATS: disconnected")
