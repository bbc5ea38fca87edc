"""``NatsEventLog``: the event log on NATS JetStream (nats-py, asyncio only).

Layout on the server:

- one JetStream stream (``ROOMKIT`` by default) over the subjects ``<prefix>.ev.>``; the log
  stream ``room-1`` is the subject ``<prefix>.ev.room-1``;
- each ``append`` call is **one** JetStream message holding the list of its events (see
  ``eventlog._nats_codec``), so a multi-event append is atomic for free;
- optimistic concurrency with ``Nats-Expected-Last-Subject-Sequence``: a per-stream cache maps
  the stream's version to the JetStream sequence of its last message; a miss costs one direct
  get of the subject's last message;
- de-duplication with ``Nats-Msg-Id`` = ``<stream>:<message_id>`` (JetStream's ids are global to
  the JetStream stream, ours are per log stream), inside the stream's ``duplicate_window``;
- positions: the last event of the message with sequence ``seq`` is at ``seq * 1000``;
- snapshots in a KV bucket, key = stream id.

Every nats-py exception is translated at the boundary (``LogUnavailable`` when the server is
away after bounded retries). The connection reconnects forever, quickly (0.1 s), so the log
survives a server restart.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from eventlog._nats_codec import (
    MAX_EVENTS,
    PubAck,
    decode_pub_ack,
    encode_batch,
    first_seq_after,
    last_position_of,
    records_of,
)
from eventlog._nats_errors import (
    ERR_STREAM_NAME_IN_USE,
    ERR_WRONG_LAST_SEQUENCE,
    ServerBusy,
)
from eventlog._nats_io import DIRECT_BATCH, JetStreamIO, MessageHandler, Stored, decode_message
from eventlog._nats_subscription import NatsSubscription
from eventlog._streams import check_stream_id
from eventlog.base import EventLog, Subscription
from eventlog.codec import decode_snapshot, encode
from eventlog.errors import (
    EventLogError,
    InvalidAppend,
    LogUnavailable,
    WrongExpectedVersion,
)
from eventlog.record import NewEvent, Record, Snapshot, StreamInfo

__all__ = ["NatsEventLog"]

logger = logging.getLogger("roomkit.eventlog.nats")

# Appends without a message id still get a unique one: a random per-process prefix and a
# counter (unique across processes and restarts, and cheaper than a uuid per append).
_ids = itertools.count()
_id_prefix = secrets.token_hex(8)

# Room for the headers next to the payload when checking the server's max payload.
_HEADERS_ALLOWANCE = 256
# A message id is sent as a header value: anything a header cannot carry verbatim is hashed.
_MAX_RAW_MESSAGE_ID = 128


class NatsEventLog(EventLog):
    """An event log stored in NATS JetStream.

    Use it as an async context manager (``async with NatsEventLog(url) as log``), or call
    ``connect`` and later ``aclose``.

    Args:
        servers: the NATS URL(s) to connect to (ignored when ``client`` is given).
        client: an already connected nats-py client to use; the log then leaves it open.
        stream_name: the JetStream stream (created, or updated if its config differs).
        subject_prefix: subjects are ``<subject_prefix>.ev.<stream id>``.
        kv_bucket: the KV bucket of snapshots (default ``<stream_name>_snapshots``).
        storage: ``"file"`` (survives restarts) or ``"memory"``.
        replicas: JetStream replicas of the stream and the bucket.
        duplicate_window: seconds during which JetStream recognises a re-sent message id.
        request_timeout: bound of each request to the server.
        retry_timeout: how long a call retries while the server is unreachable before it
            raises ``LogUnavailable``.
        connect_timeout: bound of the initial connection.
        idle_heartbeat: heartbeat of push consumers (replays, subscriptions); a consumer silent
            for three of them is replaced, which is how subscriptions survive a restart.
        version_cache_size: how many streams' (version, sequence) pairs are kept.
        connect_options: more keyword arguments for ``nats.connect`` (TLS, credentials, name).

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
    ) -> None:
        if not stream_name or any(c in stream_name for c in ".*> \t\r\n"):
            raise ValueError(f"invalid JetStream stream name {stream_name!r}")
        tokens = subject_prefix.split(".")
        if not all(tokens) or any(c in subject_prefix for c in "*> \t\r\n"):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        if storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', not {storage!r}")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
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
        self._connect_options = dict(connect_options or {})
        self._version_cache_size = version_cache_size
        self._subject_base = f"{subject_prefix}.ev."
        self._all_subjects = f"{subject_prefix}.ev.>"
        self._nc: NatsClient | None = None
        self._owns_client = client is None
        self._io: JetStreamIO | None = None
        self._kv: KeyValue | None = None
        self._closed = False
        # stream -> (version, JetStream sequence of its last message), most recent last.
        self._versions: dict[str, tuple[int, int]] = {}
        self._subscriptions: set[NatsSubscription] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, and create (or update) the stream and the snapshot bucket. Idempotent.

        Raises:
            LogUnavailable: no server answered within ``connect_timeout``.
        """
        if self._closed:
            raise EventLogError("this NatsEventLog is closed")
        if self._io is not None:
            return
        nc = self._client if self._client is not None else await self._open_client()
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
            await io.retrying("creating the stream", lambda: self._ensure_stream(js))
            self._kv = await io.retrying("creating the snapshot bucket", lambda: self._bucket(js))
            await io.retrying("subscribing", io.start)
        except BaseException:
            if self._owns_client:
                with anyio.CancelScope(shield=True):
                    await _close_quietly(nc)
            raise
        self._nc = nc
        self._io = io

    async def _open_client(self) -> NatsClient:
        nc = NatsClient()
        options: dict[str, Any] = {
            "servers": self.servers,
            # Reconnect for ever and fast: the default 2 s wait stalls every outage by 2 s.
            "reconnect_time_wait": 0.1,
            "max_reconnect_attempts": -1,
            "connect_timeout": max(1, round(min(self.connect_timeout, self.request_timeout))),
            "flush_timeout": self.request_timeout,
            "error_cb": _on_error,
            "disconnected_cb": _on_disconnected,
            "reconnected_cb": _on_reconnected,
        }
        options.update(self._connect_options)
        try:
            # With max_reconnect_attempts=-1 nats-py never gives up on the first connection
            # either: bound it here.
            with anyio.fail_after(self.connect_timeout):
                await nc.connect(**options)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await _close_quietly(nc)
            if isinstance(exc, TimeoutError | OSError | nats.errors.Error):
                raise LogUnavailable(f"cannot connect to NATS at {self.servers}") from exc
            raise
        return nc

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = StreamConfig(
            name=self.stream_name,
            subjects=[self._all_subjects],
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            # Direct gets read a stream's last message, or a batch, without a consumer.
            allow_direct=True,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.APIError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
            logger.info("updating the configuration of JetStream stream %s", self.stream_name)
            await js.update_stream(config)

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        config = KeyValueConfig(
            bucket=self.kv_bucket,
            history=1,
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            replicas=self.replicas,
            direct=True,
        )
        try:
            return await js.create_key_value(config)
        except nats.js.errors.APIError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
            # It exists with another configuration (made by an operator): use it as it is.
            return await js.key_value(self.kv_bucket)

    async def aclose(self) -> None:
        """Close the subscriptions and, unless it was given, the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for subscription in list(self._subscriptions):
                await subscription.aclose()
            nc, self._nc, self._io = self._nc, None, None
            if nc is not None and self._owns_client:
                await _close_quietly(nc)

    async def __aenter__(self) -> NatsEventLog:
        await self.connect()
        return self

    def _connected(self) -> JetStreamIO:
        if self._io is None:
            if self._closed:
                raise EventLogError("this NatsEventLog is closed")
            raise EventLogError("NatsEventLog is not connected: use `async with` or connect()")
        return self._io

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
        check_stream_id(stream)
        if not events:
            raise InvalidAppend(f"append to {stream!r} with no events")
        if len(events) > MAX_EVENTS:
            raise InvalidAppend(
                f"append to {stream!r} with {len(events)} events; at most {MAX_EVENTS} per call"
            )
        io = self._connected()
        # Every request below has its own timeout (nc.request); the deadline bounds retries.
        return await self._append(io, stream, events, expected_version, io.deadline())

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
                raise WrongExpectedVersion(stream, expected_version, known[0])
        now = time.time()
        max_payload = io.nc.max_payload
        while True:
            version, seq = known
            payload, batch = encode_batch(version + 1, events, now)
            if len(payload) + _HEADERS_ALLOWANCE > max_payload:
                raise InvalidAppend(
                    f"append to {stream!r}: {len(payload)} bytes, more than the server's "
                    f"max payload ({max_payload})"
                )
            headers = {
                "Nats-Msg-Id": msg_id,
                "Nats-Expected-Last-Subject-Sequence": str(seq),
            }
            ack = await io.retrying(
                f"append to {stream!r}",
                lambda: self._publish(io, subject, payload, headers),  # noqa: B023 - awaited now
                deadline,
            )
            if ack.error is None:
                if ack.duplicate:
                    return await self._committed(io, stream, ack.seq, deadline)
                self._remember(stream, version + len(events), ack.seq)
                return records_of(stream, ack.seq, batch)
            if ack.error.err_code != ERR_WRONG_LAST_SEQUENCE:
                raise EventLogError(
                    f"append to {stream!r} refused: {ack.error.description} "
                    f"(code {ack.error.code}/{ack.error.err_code})"
                )
            # The subject moved. JetStream checks the sequence before the message id, so a
            # retry of an append whose ack was lost lands here: look at the last message.
            last = await io.last_of(subject, deadline)
            if last is not None and last.msg_id == msg_id:
                self._remember_stored(stream, last)
                return records_of(stream, last.seq, last.batch)
            known = self._remember_stored(stream, last)
            if expected_version is not None and known[0] != expected_version:
                raise WrongExpectedVersion(stream, expected_version, known[0])
            if time.monotonic() > deadline:
                raise LogUnavailable(f"append to {stream!r}: too much contention")

    async def _publish(
        self, io: JetStreamIO, subject: str, payload: bytes, headers: dict[str, str]
    ) -> PubAck:
        ack = decode_pub_ack((await io.request(subject, payload, headers)).data)
        if ack.error is not None and ack.error.code == 503:
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
        io = self._connected()
        if limit is not None and limit <= 0:
            return []
        after_version = max(after_version, 0)
        subject = self._subject(stream)
        last = await io.last_of(subject)
        last_version, last_seq = self._remember_stored(stream, last)
        if last is None or after_version >= last_version:
            return []
        wanted = last_version - after_version
        if limit is not None:
            wanted = min(wanted, limit)
        if last.batch.version <= after_version + 1:
            # The usual case after a snapshot: the tail is in the last message.
            skip = after_version + 1 - last.batch.version
            return records_of(stream, last_seq, last.batch)[skip : skip + wanted]
        start = 1
        if after_version > 0:
            start = await self._seq_of_version(io, subject, after_version + 1, last_seq - 1)
        records: list[Record] = []

        def handle(_subject: str, seq: int, data: bytes) -> bool:
            batch = decode_message(data, seq)
            if batch.version + len(batch.events) - 1 > after_version:
                skip = max(after_version + 1 - batch.version, 0)
                records.extend(records_of(stream, seq, batch)[skip:])
            return len(records) < wanted and seq < last_seq

        await self._scan(io, subject, start, handle, wanted)
        return records[:wanted]

    async def _seq_of_version(self, io: JetStreamIO, subject: str, version: int, high: int) -> int:
        """Binary search of the message of ``subject`` holding ``version`` (in ``1..high``).

        Each probe is one direct get of the subject's next message from a sequence, so finding
        the start of a tail costs log2(stream length) round trips instead of reading the
        stream's older messages.
        """
        low = 1
        while low <= high:
            middle = (low + high) // 2
            found = await io.next_of(subject, middle)
            if found is None or found.seq > high:
                high = middle - 1
            elif found.last_version < version:
                low = found.seq + 1
            elif found.batch.version > version:
                high = middle - 1
            else:
                return found.seq
        return low

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        io = self._connected()
        if limit is not None and limit <= 0:
            return []
        base = len(self._subject_base)
        records: list[Record] = []

        def handle(subject: str, seq: int, data: bytes) -> bool:
            batch = decode_message(data, seq)
            batch_records = records_of(subject[base:], seq, batch)
            if batch_records[0].position <= after_position:
                batch_records = [r for r in batch_records if r.position > after_position]
            records.extend(batch_records)
            return limit is None or len(records) < limit

        wanted = limit if limit is not None else None
        await self._scan(io, self._all_subjects, first_seq_after(after_position), handle, wanted)
        return records if limit is None else records[:limit]

    async def _scan(
        self,
        io: JetStreamIO,
        subject: str,
        start: int,
        handle: MessageHandler,
        wanted: int | None,
    ) -> None:
        # A few messages: batched direct gets (one round trip, no server state). Many: a push
        # consumer, about twice as fast per message.
        if wanted is not None and wanted <= DIRECT_BATCH:
            await io.scan_direct(subject, start, handle, max_messages=wanted)
        else:
            await io.scan_consumer(subject, start, handle)

    async def last_position(self) -> int:
        io = self._connected()
        info = await io.retrying(
            "reading the stream state", lambda: io.js.stream_info(self.stream_name)
        )
        return last_position_of(info.state.last_seq)

    async def streams(self) -> list[StreamInfo]:
        io = self._connected()
        base = len(self._subject_base)
        found: dict[str, StreamInfo] = {}

        def handle(subject: str, seq: int, data: bytes) -> bool:
            batch = decode_message(data, seq)
            stream = subject[base:]
            found[stream] = StreamInfo(
                stream=stream,
                version=batch.version + len(batch.events) - 1,
                last_position=last_position_of(seq),
                last_timestamp=batch.events[-1].timestamp,
            )
            return True

        # One consumer delivering each subject's last message: ~70k streams per second.
        await io.scan_consumer(self._all_subjects, 1, handle, last_per_subject=True)
        return [found[name] for name in sorted(found)]

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, *, after_position: int = 0) -> Subscription:
        subscription = NatsSubscription(
            self._connected(),
            subject=self._all_subjects,
            subject_base=self._subject_base,
            after_position=after_position,
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    # -- snapshots ---------------------------------------------------------------------------

    async def save_snapshot(self, stream: str, version: int, data: bytes) -> None:
        check_stream_id(stream)
        io = self._connected()
        kv = self._kv
        assert kv is not None
        value = encode(Snapshot(stream=stream, version=version, data=data, timestamp=time.time()))
        await io.retrying(f"saving a snapshot of {stream!r}", lambda: kv.put(stream, value))

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream_id(stream)
        io = self._connected()
        kv = self._kv
        assert kv is not None

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


def _msg_id(stream: str, message_id: str | None) -> str:
    """The ``Nats-Msg-Id`` of an append: scoped to the stream, unique when there is no id."""
    if message_id is None:
        # Still identify the append, so that a retry after a lost ack recognises its own write.
        return f"{stream}:~{_id_prefix}{next(_ids)}"
    if (
        len(message_id) <= _MAX_RAW_MESSAGE_ID
        and message_id.isprintable()
        and (message_id == message_id.strip())
    ):
        return f"{stream}:{message_id}"
    # nats-py strips and rewrites header values it cannot carry: send a digest instead.
    return f"{stream}:#{hashlib.sha256(message_id.encode()).hexdigest()}"


async def _close_quietly(nc: NatsClient) -> None:
    try:
        with anyio.move_on_after(5):
            await nc.close()
    except Exception as exc:  # closing is best effort; the caller already has a better error
        logger.debug("closing the NATS connection: %r", exc)


async def _on_error(exc: Exception) -> None:
    # nats-py reports here what happens in its own tasks (failed reconnects, slow consumers).
    logger.warning("NATS: %r", exc)


async def _on_disconnected() -> None:
    logger.info("NATS: disconnected")


async def _on_reconnected() -> None:
    logger.info("NATS: reconnected")
