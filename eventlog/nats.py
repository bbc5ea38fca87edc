"""``NatsEventLog``: the event log on NATS JetStream (nats-py, so asyncio only).

Layout on the server:

- one JetStream stream (``ROOMKIT`` by default) over the subjects ``<prefix>.ev.>``; the log
  stream ``room-1`` is the subject ``<prefix>.ev.room-1``;
- each ``append`` call is **one** JetStream message holding the list of its events (see
  ``eventlog._nats_codec``), so a multi-event append is atomic for free;
- optimistic concurrency with ``Nats-Expected-Last-Subject-Sequence``: a per-stream cache maps
  the stream's version to the JetStream sequence of its last message; a miss costs one direct
  get of the subject's last message;
- de-duplication with ``Nats-Msg-Id`` = ``<stream>:<message_id>`` (JetStream's ids are global to
  the JetStream stream, ours are per log stream);
- positions: the last event of the message with sequence ``seq`` is at ``seq * 1000``, the
  events before it in the same message count down from there (strictly increasing, not
  contiguous);
- snapshots in a KV bucket (``<stream name>_snapshots``), key = stream id, latest save wins.

What the contract leaves to the backend:

- ``dedup_window`` is the stream's ``duplicate_window`` (120 s by default). Inside it, a
  re-sent message id is recognised when the append names the current version (or
  ``ANY_VERSION``). With a stale expected version, JetStream checks the sequence first; the
  append then looks for itself where a first attempt put it, right after the version it
  names, and also recognises the stream's *last* append, at any age: exactly the retry after
  a lost acknowledgement, whatever was appended behind it since. A message id re-sent with
  another stale version than its first attempt's is refused (``MemoryEventLog`` recognises
  it under any version).
- An append that raised ``LogUnavailable`` may have been committed. Retrying it with the same
  message id and expected version is safe; appends without a message id get a private one,
  so the retries ``append`` makes by itself never duplicate: it makes them only within the
  window (less ``request_timeout``), and knows its own write behind another writer's.

Every nats-py exception is translated at the boundary (``LogUnavailable`` when the server is
away after bounded retries). The connection reconnects for ever, quickly (every 0.1 s), so the
log and its subscriptions survive a server restart.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import anyio
import anyio.lowlevel

from eventlog._nats_needed import nats_needed

try:
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NatsClient
    from nats.js.api import StorageType
    from nats.js.kv import KeyValue
except ModuleNotFoundError as missing:  # an optional dependency
    raise nats_needed(missing, "eventlog.nats (NatsEventLog)") from None

from eventlog._nats_codec import (
    MAX_EVENTS,
    ApiError,
    PubAck,
    decode_pub_ack,
    encode_batch,
    envelope_bytes,
    event_bytes,
    last_position_of,
    records_of,
)
from eventlog._nats_errors import (
    ERR_MESSAGE_TOO_LARGE,
    ERR_STORE_FAILED,
    ERR_WRONG_LAST_SEQUENCE,
    ServerBusy,
    is_transient,
)
from eventlog._nats_io import JetStreamIO, Stored
from eventlog._nats_reads import list_streams, read_log, read_stream, seq_of_version
from eventlog._nats_setup import (
    close_quietly,
    ensure_bucket,
    ensure_stream,
    existing_bucket,
    existing_stream,
    open_client,
    require_asyncio,
    servers_named,
)
from eventlog._nats_subscription import NatsSubscription
from eventlog._numbers import check_count, check_finite_seconds
from eventlog._streams import (
    MAX_POSITION,
    check_append,
    check_range,
    check_snapshot,
    check_stream_id,
)
from eventlog.base import EventLog, Subscription
from eventlog.codec import decode_snapshot, encode
from eventlog.errors import (
    EventLogError,
    InvalidAppend,
    LogUnavailable,
    WrongExpectedVersion,
)
from eventlog.record import NewEvent, Record, Snapshot, StreamInfo

__all__ = ["NatsEventLog", "close_nats_client", "is_transient_nats_error", "open_nats_client"]

# The connection helpers, public for other NATS users of the same process (the RoomKit
# ingress): one place decides the reconnect settings and which failures are transient.
open_nats_client = open_client
close_nats_client = close_quietly
is_transient_nats_error = is_transient

logger = logging.getLogger("roomkit.eventlog.nats")

# Appends without a message id still get a unique one: a random per-process prefix and a
# counter (unique across processes and restarts, and cheaper than a uuid per append).
_ids = itertools.count()
_id_prefix = secrets.token_hex(8)


def _new_id_source() -> None:
    # A forked child inherits both: a pre-forking server's workers sent the same ids, and
    # JetStream took a worker's append for another's (dropped, and reported stored).
    global _ids, _id_prefix
    _ids = itertools.count()
    _id_prefix = secrets.token_hex(8)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_id_source)

_MAX_STREAM_NAME = 255  # JetStream's limit on a stream's name, in bytes


def _check_name_size(what: str, name: str, most: int) -> None:
    size = len(name.encode())
    if size > most:
        raise ValueError(
            f"invalid JetStream {what} {name[:20]!r}...: {size} bytes, more than {most} "
            f"(JetStream's stream names are at most {_MAX_STREAM_NAME} bytes, a KV bucket's "
            "KV_<bucket> included)"
        )


# A message id is sent as a header value: anything a header cannot carry verbatim, or longer
# than this many bytes, is hashed.
_MAX_RAW_MESSAGE_ID = 128
# Room for the headers next to the payload when checking the server's max payload, which
# counts both. They take at most 279 bytes: "NATS/1.0" and CRLF (10), "Nats-Msg-Id: " (13)
# with the stream (64), a colon and the id (128; a digest is 65) and CRLF (2),
# "Nats-Expected-Last-Subject-Sequence: " (37) with 20 digits and CRLF, and the closing CRLF.
_HEADERS_ALLOWANCE = 512


class NatsEventLog(EventLog):
    """An event log stored in NATS JetStream.

    Use it as an async context manager (``async with NatsEventLog(url) as log``), or call
    ``connect`` and later ``aclose``.

    Args:
        servers: the NATS URL(s) to connect to (ignored when ``client`` is given).
        client: an already connected nats-py client to use; the log then leaves it open.
            (A client the log opens itself parses message headers faster: see
            ``eventlog._nats_client``.)
        stream_name: the JetStream stream, created with the settings below if missing; an
            existing one is used as it is (its storage, replicas and duplicate window win).
        subject_prefix: subjects are ``<subject_prefix>.ev.<stream id>``.
        kv_bucket: the KV bucket of snapshots (default ``<stream_name>_snapshots``).
        storage: ``"file"`` (survives restarts) or ``"memory"``.
        replicas: JetStream replicas of the stream and the bucket.
        duplicate_window: seconds during which JetStream recognises a re-sent message id.
            An append is retried only within the window of the stream (less
            ``request_timeout``): one shorter than ``retry_timeout`` ends its retries sooner.
        request_timeout: bound of each request to the server.
        retry_timeout: how long a call retries while the server is unreachable before it
            raises ``LogUnavailable``.
        connect_timeout: bound of the initial connection.
        idle_heartbeat: heartbeat of subscription consumers; one silent for three of them is
            replaced, which is how subscriptions survive a server restart.
        version_cache_size: how many streams' (version, sequence) pairs are kept.
        connect_options: more keyword arguments for ``nats.connect`` (TLS, credentials, name).
        read_only: open an existing log to read it, changing nothing on the server (a tool
            auditing it, an account that may only read): the stream must exist with direct
            gets on, a missing snapshot bucket reads as no snapshots, and appends and
            snapshot saves raise ``EventLogError``.

    Raises (when made):
        TypeError: a count or a duration is not a number (counts: not an integer).
        ValueError: a name or prefix JetStream refuses, a count below 1 (the cache: below
            0), a duration that is not positive and finite (``retry_timeout`` and
            ``duplicate_window``, the server's default window, may be 0).

    Raises (from every method):
        LogUnavailable: the server could not be reached in time.
        EventLogError: the server refused a request for another reason.
    """

    max_append_events = MAX_EVENTS

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        client: NatsClient | None = None,
        stream_name: str = "ROOMKIT",
        subject_prefix: str = "roomkit",
        kv_bucket: str | None = None,
        storage: Literal["file", "memory"] = "file",
        replicas: int = 1,
        duplicate_window: float = 120.0,
        request_timeout: float = 2.0,
        retry_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        idle_heartbeat: float = 1.0,
        version_cache_size: int = 100_000,
        connect_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        if not stream_name or any(c in stream_name for c in ".*> \t\r\n"):
            raise ValueError(f"invalid JetStream stream name {stream_name!r}")
        # JetStream takes names of up to 255 bytes, its snapshot bucket's stream's too
        # (KV_<bucket>): a longer one failed as the log opened, said as an outage.
        _check_name_size("stream name", stream_name, _MAX_STREAM_NAME)
        if not read_only:  # a reader makes no bucket
            bucket = kv_bucket or f"{stream_name}_snapshots"
            _check_name_size("snapshot bucket", bucket, _MAX_STREAM_NAME - len("KV_"))
        tokens = subject_prefix.split(".")
        if not all(tokens) or any(c in subject_prefix for c in "*> \t\r\n"):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        if storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', not {storage!r}")
        # Checked here, not where a task (or the server) first uses them.
        replicas = check_count("replicas", replicas)
        version_cache_size = check_count("version_cache_size", version_cache_size)
        if replicas < 1 or version_cache_size < 0:
            raise ValueError("replicas must be >= 1 and version_cache_size >= 0")
        duplicate_window = check_finite_seconds("duplicate_window", duplicate_window, zero=True)
        request_timeout = check_finite_seconds("request_timeout", request_timeout)
        retry_timeout = check_finite_seconds("retry_timeout", retry_timeout, zero=True)
        connect_timeout = check_finite_seconds("connect_timeout", connect_timeout)
        idle_heartbeat = check_finite_seconds("idle_heartbeat", idle_heartbeat)
        self.servers = [servers] if isinstance(servers, str) else servers_named(servers)
        self.stream_name = stream_name
        self.subject_prefix = subject_prefix
        self.kv_bucket = kv_bucket or f"{stream_name}_snapshots"
        self.storage = storage
        self.replicas = replicas
        self.duplicate_window = duplicate_window
        self.dedup_window = duplicate_window
        self.request_timeout = request_timeout
        self.retry_timeout = retry_timeout
        self.connect_timeout = connect_timeout
        self.idle_heartbeat = idle_heartbeat
        self._client = client
        self.read_only = read_only
        self._connect_options = dict(connect_options or {})
        self._version_cache_size = version_cache_size
        self._subject_base = f"{subject_prefix}.ev."
        self._all_subjects = f"{subject_prefix}.ev.>"
        self._owns_client = client is None
        self._io: JetStreamIO | None = None
        self._opening: JetStreamIO | None = None  # connect's, for last_failure
        self._kv: KeyValue | None = None
        self._max_msg_size: int | None = None  # the stream's own limit, read as it connects
        self._closed = False
        # stream -> (version, JetStream sequence of its last message), most recent last.
        self._versions: dict[str, tuple[int, int]] = {}
        self._subscriptions: set[NatsSubscription] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, and create the stream and the snapshot bucket if missing (``read_only``:
        check they exist, creating nothing). Idempotent.

        Raises:
            LogUnavailable: no server answered within ``connect_timeout``.
            EventLogError: it is closed, or the event loop is not asyncio's (nats-py runs on
                asyncio only).
        """
        if self._closed:
            raise EventLogError("this NatsEventLog is closed")
        if self._io is not None:
            return
        require_asyncio("NatsEventLog", EventLogError)
        if self._client is not None:
            nc = self._client
        else:
            nc = await open_client(
                self.servers,
                connect_timeout=self.connect_timeout,
                request_timeout=self.request_timeout,
                options=self._connect_options,
            )
        storage = StorageType.FILE if self.storage == "file" else StorageType.MEMORY
        try:
            js = nc.jetstream(timeout=self.request_timeout)
            io = JetStreamIO(
                nc,
                js,
                stream_name=self.stream_name,
                request_timeout=self.request_timeout,
                retry_timeout=self.retry_timeout,
                idle_heartbeat=self.idle_heartbeat,
            )
            self._opening = io
            if self.read_only:
                limits = await io.retrying(
                    "looking up the stream",
                    lambda: existing_stream(
                        js, name=self.stream_name, subjects=self._all_subjects
                    ),
                )
                self.duplicate_window = self.dedup_window = limits.duplicate_window
                self._max_msg_size = limits.max_msg_size
                self._kv = await io.retrying(
                    "looking up the snapshot bucket", lambda: existing_bucket(js, self.kv_bucket)
                )
                await io.retrying("subscribing", io.start)
                self._io = io
                return
            limits = await io.retrying(
                "creating the stream",
                lambda: ensure_stream(
                    js,
                    name=self.stream_name,
                    subjects=self._all_subjects,
                    storage=storage,
                    replicas=self.replicas,
                    duplicate_window=self.duplicate_window,
                    keeps_all=True,
                ),
            )
            self.duplicate_window = self.dedup_window = limits.duplicate_window
            self._max_msg_size = limits.max_msg_size
            self._kv = await io.retrying(
                "creating the snapshot bucket",
                lambda: ensure_bucket(
                    js, name=self.kv_bucket, storage=storage, replicas=self.replicas
                ),
            )
            await io.retrying("subscribing", io.start)
        except BaseException:
            if self._owns_client:
                with anyio.CancelScope(shield=True):
                    await close_quietly(nc)
            raise
        self._io = io

    async def aclose(self) -> None:
        """Close the subscriptions and, unless it was given, the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for subscription in list(self._subscriptions):
                await subscription.aclose()
            io, self._io = self._io, None
            if io is None:
                return
            if self._owns_client:
                await close_quietly(io.nc)
            else:
                with anyio.move_on_after(self.request_timeout):
                    await io.stop()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    def _check_writable(self) -> None:
        if self.read_only:
            raise EventLogError("this NatsEventLog is read-only (read_only=True)")

    def _connected(self) -> JetStreamIO:
        if self._io is None:
            if self._closed:
                raise EventLogError("this NatsEventLog is closed")
            raise EventLogError("NatsEventLog is not connected: use `async with` or connect()")
        return self._io

    @property
    def last_failure(self) -> EventLogError | None:
        """The last transient failure a retry of this log waited out (the server away,
        JetStream unavailable), or ``None``: why a ``connect()`` or an append that its caller
        timed out took so long (``roomkit serve`` says it when the log does not open)."""
        io = self._io or self._opening
        return None if io is None else io.last_failure

    @property
    def max_append_bytes(self) -> int:
        """The server's max payload, or the stream's ``max_msg_size`` when smaller (as it
        was when the log connected), less what an append carries besides its events.

        Raises:
            EventLogError: the log is not connected (the server says what it takes).
        """
        return append_bytes_limit(self._connected().nc.max_payload, self._max_msg_size)

    def append_size(self, events: Sequence[NewEvent]) -> int:
        return sum(event_bytes(event) for event in events)

    # -- versions ----------------------------------------------------------------------------

    def _subject(self, stream: str) -> str:
        return self._subject_base + stream

    def _remember(self, stream: str, version: int, seq: int) -> None:
        versions = self._versions
        known = versions.pop(stream, None)
        if known is not None and known[1] > seq:
            version, seq = known  # a concurrent call saw a later message: keep it
        versions[stream] = (version, seq)
        if len(versions) > self._version_cache_size:
            del versions[next(iter(versions))]

    def _remember_stored(self, stream: str, stored: Stored | None) -> tuple[int, int]:
        if stored is None:
            self._versions.pop(stream, None)
            return 0, 0
        self._remember(stream, stored.last_version, stored.seq)
        return stored.last_version, stored.seq

    # -- append ------------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> list[Record]:
        check_append(stream, events, self.max_append_events, expected_version)
        io = self._connected()
        self._check_writable()
        # A caller cancelled already writes nothing: nats-py queues a publish before its first
        # wait, and sent it all the same while the caller saw only its cancellation.
        await anyio.lowlevel.checkpoint_if_cancelled()
        # Every request below has its own timeout (nc.request); the deadline bounds retries,
        # which must reach the server within its duplicate window of the first send (a retry
        # after it is stored again): those of a short window end sooner.
        deadline = io.deadline()
        window = self.dedup_window
        if window is not None:
            deadline = min(deadline, time.monotonic() + max(0.0, window - io.request_timeout))
        return await self._append(io, stream, events, expected_version, deadline)

    async def _append(
        self,
        io: JetStreamIO,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int | None,
        deadline: float,
    ) -> list[Record]:
        msg_id = _msg_id(stream, events[0].headers.message_id)
        subject = self._subject(stream)
        known = self._versions.get(stream)
        if known is None:
            if expected_version == 0:
                known = (0, 0)  # a new stream, most likely: the server says so if not
            else:
                known = self._remember_stored(stream, await io.last_of(subject, deadline))
        if expected_version is not None and known[0] != expected_version:
            # Our view may be stale, or this may retry an append that already landed.
            last = await io.last_of(subject, deadline)
            if last is not None and last.msg_id == msg_id:
                self._remember_stored(stream, last)
                return records_of(stream, last.seq, last.batch)
            known = self._remember_stored(stream, last)
            if known[0] != expected_version:
                return await self._raise_unless_committed(
                    io, stream, events, expected_version, last
                )
        now = time.time()
        max_payload = io.nc.max_payload
        while True:
            version, seq = known
            payload, batch = encode_batch(version + 1, events, now, seq)
            if len(payload) + _HEADERS_ALLOWANCE > max_payload:
                raise InvalidAppend(
                    f"append to {stream!r}: {len(payload)} bytes, more than the server's "
                    f"max payload ({max_payload})"
                )
            headers = {
                "Nats-Msg-Id": msg_id,
                "Nats-Expected-Last-Subject-Sequence": str(seq),
            }
            sends = [0]  # counted by _publish: no coroutine of its own per attempt
            ack = await io.retrying(
                f"append to {stream!r}",
                lambda: self._publish(io, subject, payload, headers, sends),  # noqa: B023
                deadline,
            )
            if ack.error is None:
                if ack.duplicate:
                    return await self._committed(io, stream, ack.seq, deadline)
                self._remember(stream, version + len(events), ack.seq)
                return records_of(stream, ack.seq, batch)
            if ack.error.err_code == ERR_MESSAGE_TOO_LARGE:
                # The stream's own max_msg_size, below the server's max payload.
                raise InvalidAppend(
                    f"append to {stream!r} refused: {ack.error.description} (the stream's "
                    f"max_msg_size; {len(payload)} bytes)"
                )
            if _limit_reached(ack.error):
                # Answered at once: waited out as an outage, each append took the whole
                # retry_timeout, then said NATS did not answer.
                raise EventLogError(
                    f"append to {stream!r} refused: JetStream stream {self.stream_name} is full "
                    f"({ack.error.description}, its limits with discard=new): raise its "
                    "limits, or remove what it no longer needs to hold"
                )
            if ack.error.err_code != ERR_WRONG_LAST_SEQUENCE:
                raise EventLogError(
                    f"append to {stream!r} refused: {ack.error.description} "
                    f"(code {ack.error.code}/{ack.error.err_code})"
                )
            # The subject moved. JetStream checks the sequence before the message id, so a
            # retry of an append whose ack was lost lands here. Its first send, if stored, is
            # the subject's next message after the sequence it named, with others' maybe
            # behind it (taken for another writer's, it raised WrongExpectedVersion).
            if sends[0] > 1:
                mine = await io.next_of(subject, seq + 1)
                if mine is not None and mine.msg_id == msg_id:
                    return records_of(stream, mine.seq, mine.batch)
            last = await io.last_of(subject, deadline)
            if last is not None and last.msg_id == msg_id:
                self._remember_stored(stream, last)
                return records_of(stream, last.seq, last.batch)
            known = self._remember_stored(stream, last)
            if expected_version is not None and known[0] != expected_version:
                return await self._raise_unless_committed(
                    io, stream, events, expected_version, last
                )
            if time.monotonic() > deadline:
                raise LogUnavailable(f"append to {stream!r}: too much contention")

    async def _raise_unless_committed(
        self,
        io: JetStreamIO,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int,
        last: Stored | None,
    ) -> list[Record]:
        """The records of this very append if a first attempt committed it, at the version
        after ``expected_version``, behind which the stream has moved on; otherwise
        ``WrongExpectedVersion``.

        JetStream checks the expected sequence before the message id, so only this finds a
        retry whose acknowledgement was lost and which appends of others (or the writer's
        next ones) followed. Only for a caller's message id: a private one is never sent by
        two calls. A few direct gets (a binary search of the subject), on a conflict only.

        Raises:
            WrongExpectedVersion: always, unless the append is found.
        """
        current = last.last_version if last is not None else 0
        message_id = events[0].headers.message_id
        if last is not None and message_id is not None and expected_version < current:
            subject = self._subject(stream)
            wanted = expected_version + 1
            seq = await seq_of_version(io, subject, wanted, last.seq)
            found = await io.next_of(subject, seq)
            if (
                found is not None
                and found.batch.version == wanted
                and found.msg_id == _msg_id(stream, message_id)
            ):
                return records_of(stream, found.seq, found.batch)
        raise WrongExpectedVersion(stream, expected_version, current)

    async def _publish(
        self,
        io: JetStreamIO,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        sends: list[int],
    ) -> PubAck:
        sends[0] += 1
        ack = decode_pub_ack((await io.request(subject, payload, headers)).data)
        if ack.error is not None and ack.error.code == 503 and not _limit_reached(ack.error):
            raise ServerBusy(ack.error.description)
        return ack

    async def _committed(
        self, io: JetStreamIO, stream: str, seq: int, deadline: float
    ) -> list[Record]:
        stored = await io.at(seq, deadline)
        if stored is None:
            raise EventLogError(f"append to {stream!r}: duplicate of message {seq}, now gone")
        return records_of(stream, seq, stored.batch)

    # -- reads -------------------------------------------------------------------------------

    async def last_version(self, stream: str) -> int:
        check_stream_id(stream)
        io = self._connected()
        version, _ = self._remember_stored(stream, await io.last_of(self._subject(stream)))
        return version

    async def read(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Record]:
        check_stream_id(stream)
        check_range(after_version, limit, "after_version")
        io = self._connected()
        if limit == 0 or after_version >= MAX_POSITION:
            return []
        subject = self._subject(stream)
        last = await io.last_of(subject)
        self._remember_stored(stream, last)
        if last is None:
            return []
        return await read_stream(
            io, stream, subject, last, after_version=max(after_version, 0), limit=limit
        )

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        check_range(after_position, limit, "after_position")
        io = self._connected()
        if limit == 0 or after_position >= MAX_POSITION:
            return []
        return await read_log(io, self._subject_base, after_position=after_position, limit=limit)

    async def last_position(self) -> int:
        return last_position_of(await self._connected().last_seq())

    async def streams(self) -> list[StreamInfo]:
        return await list_streams(self._connected(), self._subject_base)

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, *, after_position: int = 0) -> Subscription:
        check_range(after_position, None, "after_position")
        subscription = NatsSubscription(
            self._connected(),
            subject=None,  # the whole JetStream stream: see _nats_reads.read_log
            subject_base=self._subject_base,
            after_position=after_position,
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    # -- snapshots ---------------------------------------------------------------------------

    async def save_snapshot(self, stream: str, version: int, data: bytes) -> None:
        check_snapshot(stream, version, data)
        io = self._connected()
        self._check_writable()
        kv = self._kv
        assert kv is not None
        value = encode(Snapshot(stream=stream, version=version, data=data, timestamp=time.time()))
        await io.retrying(f"saving a snapshot of {stream!r}", lambda: kv.put(stream, value))

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_id(stream)
        io = self._connected()
        kv = self._kv
        if kv is None:  # read-only, and the bucket was never made: no snapshot was saved
            return None

        async def get() -> bytes | None:
            try:
                entry = await kv.get(stream)
            except nats.js.errors.NotFoundError:  # never saved, or deleted
                return None
            return entry.value

        value = await io.retrying(f"loading the snapshot of {stream!r}", get)
        if value is None:
            return None
        try:
            return decode_snapshot(value)
        except Exception as exc:
            raise EventLogError(f"the snapshot of {stream!r} cannot be decoded") from exc


def append_bytes_limit(max_payload: int, max_msg_size: int | None = None) -> int:
    """``NatsEventLog.max_append_bytes`` on a server taking ``max_payload`` bytes per message,
    for a stream whose ``max_msg_size`` is given (``None``: a stream not made yet)."""
    limit = max_payload
    if max_msg_size is not None:
        # An operator's limit below it: an import cut to the server's alone was refused
        # half-way (its first appends stored, the rest not), or for good.
        limit = min(limit, max_msg_size)
    return limit - _HEADERS_ALLOWANCE - envelope_bytes()


def _msg_id(stream: str, message_id: str | None) -> str:
    """The ``Nats-Msg-Id`` of an append: scoped to the stream, unique when there is no id."""
    if message_id is None:
        # Still identify the append, so that a retry after a lost ack recognises its own write.
        return f"{stream}:~{_id_prefix}{next(_ids)}"
    if (
        len(message_id.encode()) <= _MAX_RAW_MESSAGE_ID
        and message_id.isprintable()
        and (message_id == message_id.strip())
    ):
        return f"{stream}:{message_id}"
    # nats-py strips and rewrites header values it cannot carry: send a digest instead.
    return f"{stream}:#{hashlib.sha256(message_id.encode()).hexdigest()}"


def _limit_reached(error: ApiError) -> bool:
    """Whether JetStream refused a publish for a limit of the stream reached with
    ``discard=new`` (answered at once, and only a change of the stream's limits cures it),
    not because it is busy or electing a leader (503s worth retrying)."""
    return error.err_code == ERR_STORE_FAILED and error.description.startswith("maximum ")
