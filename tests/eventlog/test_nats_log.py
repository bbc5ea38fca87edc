"""What NatsEventLog does beyond the shared contract, against a real nats-server."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import re
import socket
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import anyio
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig

from eventlog import (
    ANY_VERSION,
    EventLogError,
    Headers,
    InvalidAppend,
    LogUnavailable,
    MemoryEventLog,
    NewEvent,
    Record,
    StreamConflict,
    WrongExpectedVersion,
)
from eventlog._nats_client import PUBLISHED_STATUS, parse_header_lines
from eventlog.nats import NatsEventLog
from eventlog.testing import event
from eventlog.testing_nats import NatsServer

pytestmark = pytest.mark.nats


def payloads(records: list[Record]) -> list[bytes]:
    return [r.data for r in records]


# -- layout: positions, versions, reads -------------------------------------------------------


async def test_positions_end_each_message_at_its_sequence_times_1000(
    nats_log: NatsEventLog,
) -> None:
    first = await nats_log.append("a", [event(1), event(2), event(3)], expected_version=0)
    second = await nats_log.append("b", [event(4)], expected_version=0)
    assert [r.position for r in first] == [998, 999, 1000]
    assert [r.position for r in second] == [2000]
    assert await nats_log.last_position() == 2000
    assert payloads(await nats_log.read_all(after_position=998)) == [b"2", b"3", b"4"]
    assert payloads(await nats_log.read_all(after_position=1000)) == [b"4"]


async def test_a_caller_cancelled_already_appends_nothing(nats_log: NatsEventLog) -> None:
    # nats-py queues a publish before its first wait: the append landed, and the caller saw
    # only its cancellation.
    await nats_log.append("known", [event(0)], expected_version=0)
    for stream, expected in (("s", 0), ("known", 1)):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await nats_log.append(stream, [event(1)], expected_version=expected)
        assert scope.cancelled_caught
    await anyio.sleep(0.2)  # what the client's flusher would have sent
    assert await nats_log.last_version("s") == 0
    assert payloads(await nats_log.read("known")) == [b"0"]


async def test_each_message_points_to_the_previous_one_of_its_stream(
    nats_log: NatsEventLog,
) -> None:
    for n in range(6):
        for stream in ("a", "b"):
            await nats_log.append(stream, [event(n)], expected_version=ANY_VERSION)
    io = nats_log._connected()
    stored = await io.last_of("roomkit.ev.a")
    versions: list[int] = []
    while stored is not None:
        versions.append(stored.batch.version)
        stored = await io.at(stored.batch.prev_seq) if stored.batch.prev_seq else None
    assert versions == [6, 5, 4, 3, 2, 1]


async def test_reads_of_any_tail_in_an_interleaved_log(nats_log: NatsEventLog) -> None:
    # Batches of 1 to 3 events on three interleaved streams: read(after_version=k) finds the
    # message holding k + 1 (binary search), possibly in the middle of a batch.
    for n in range(60):
        for stream in ("x", "y", "z"):
            size = 1 + (n + len(stream)) % 3
            batch = [event(f"{stream}{n}.{i}") for i in range(size)]
            await nats_log.append(stream, batch, expected_version=ANY_VERSION)
    whole = await nats_log.read("y")
    assert [r.version for r in whole] == list(range(1, len(whole) + 1))
    for after in (0, 1, 2, 7, 50, len(whole) // 2, len(whole) - 3, len(whole) - 1):
        assert await nats_log.read("y", after_version=after) == whole[after:]
        assert await nats_log.read("y", after_version=after, limit=4) == whole[after : after + 4]
    assert await nats_log.read("y", after_version=len(whole)) == []


async def test_large_reads_go_through_a_consumer(nats_log: NatsEventLog) -> None:
    # More than 1,000 events to read: the push consumer path, for one stream and for all.
    for version in range(0, 1200, 100):
        batch = [event(version + i) for i in range(100)]
        await nats_log.append("big", batch, expected_version=version)
    for n in range(1100):
        await nats_log.append(f"s{n % 7}", [event(f"s{n}")], expected_version=ANY_VERSION)
    big = await nats_log.read("big")
    assert payloads(big) == [str(n).encode() for n in range(1200)]
    assert await nats_log.read("big", after_version=150) == big[150:]
    everything = await nats_log.read_all()
    assert len(everything) == 2300
    positions = [r.position for r in everything]
    assert positions == sorted(set(positions))
    paged: list[Record] = []
    while page := await nats_log.read_all(
        after_position=paged[-1].position if paged else 0, limit=333
    ):
        paged.extend(page)
    assert paged == everything
    assert await nats_log.read_all(limit=1500) == everything[:1500]


async def test_replays_of_large_messages_span_several_requests(nats_log: NatsEventLog) -> None:
    # 12 MB in all: more than one request carries (8 MB), so the replay asks again.
    blob = b"x" * 200_000
    for version in range(0, 60, 4):
        batch = [NewEvent(type="blob", data=blob + str(version + i).encode()) for i in range(4)]
        await nats_log.append("blobs", batch, expected_version=version)
    records = await nats_log.read("blobs")  # batched direct gets
    assert [r.data[200_000:] for r in records] == [str(n).encode() for n in range(60)]
    assert await nats_log.read_all() == records  # a pull consumer


async def test_streams_lists_each_stream_once_with_its_last_record(
    nats_log: NatsEventLog,
) -> None:
    last: dict[str, Record] = {}
    for n in range(120):
        stream = f"room-{n % 40:02d}"
        [record] = await nats_log.append(stream, [event(n)], expected_version=ANY_VERSION)
        last[stream] = record
    infos = await nats_log.streams()
    assert [i.stream for i in infos] == sorted(last)
    for info in infos:
        assert (info.version, info.last_position) == (3, last[info.stream].position)


# -- de-duplication --------------------------------------------------------------------------


async def test_an_older_duplicate_inside_the_window_is_recognised(nats_log: NatsEventLog) -> None:
    # With the current expected version, JetStream's window recognises any earlier append.
    first = await nats_log.append("s1", [event(1, message_id="m-1")], expected_version=0)
    await nats_log.append("s1", [event(2, message_id="m-2")], expected_version=1)
    assert await nats_log.append("s1", [event(1, message_id="m-1")], expected_version=2) == first
    again = await nats_log.append("s1", [event(1, message_id="m-1")], expected_version=ANY_VERSION)
    assert again == first
    assert await nats_log.last_version("s1") == 2


@pytest.mark.parametrize(
    "message_id", ["with spaces inside", " padded ", "line\r\nbreak", "x" * 500, "é-ü"]
)
async def test_message_ids_that_a_header_cannot_carry_still_deduplicate(
    nats_log: NatsEventLog, message_id: str
) -> None:
    batch = [event(1, message_id=message_id)]
    original = await nats_log.append("s1", batch, expected_version=0)
    assert await nats_log.append("s1", batch, expected_version=0) == original
    assert await nats_log.append("s1", batch, expected_version=1) == original
    assert original[0].headers.message_id == message_id
    assert await nats_log.last_version("s1") == 1


# -- concurrency across processes ------------------------------------------------------------


async def test_a_write_by_another_process_is_detected(nats_server: NatsServer) -> None:
    async with NatsEventLog(nats_server.url) as one, NatsEventLog(nats_server.url) as other:
        await one.append("s1", [event(1)], expected_version=0)
        await other.append("s1", [event(2)], expected_version=1)
        with pytest.raises(WrongExpectedVersion) as caught:
            await one.append("s1", [event(3)], expected_version=1)  # its cache says 1
        assert caught.value.actual == 2
        records = await one.append("s1", [event(3)], expected_version=2)
        assert records[0].version == 3
        assert payloads(await other.read("s1")) == [b"1", b"2", b"3"]


# -- setup and lifecycle ---------------------------------------------------------------------


async def test_an_existing_stream_is_used_as_it_is(nats_server: NatsServer) -> None:
    # Another process (or an operator) made the stream: its settings win, nothing is
    # reconfigured on connect except direct gets, which the log needs.
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name="LOG",
                subjects=["app.ev.>"],
                duplicate_window=5,
                storage=StorageType.MEMORY,
            )
        )
        async with NatsEventLog(
            nats_server.url, stream_name="LOG", subject_prefix="app", duplicate_window=42
        ) as log:
            await log.append("s1", [event(1)], expected_version=0)
            info = await js.stream_info("LOG")
            assert info.config.duplicate_window == 5
            assert info.config.storage == StorageType.MEMORY
            assert info.config.allow_direct
            assert log.dedup_window == 5
    finally:
        await nc.close()


async def test_an_existing_stream_with_other_subjects_is_refused(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name="LOG", subjects=["orders.>"]))
        with pytest.raises(StreamConflict, match="holds subjects"):
            async with NatsEventLog(nats_server.url, stream_name="LOG", subject_prefix="app"):
                pass  # pragma: no cover
    finally:
        await nc.close()


async def test_a_stream_whose_subjects_another_stream_holds_is_a_stream_conflict(
    nats_server: NatsServer,
) -> None:
    async with NatsEventLog(nats_server.url, stream_name="FIRST", subject_prefix="app"):
        pass
    with pytest.raises(StreamConflict, match="another stream holds subjects"):
        async with NatsEventLog(nats_server.url, stream_name="SECOND", subject_prefix="app"):
            pass  # pragma: no cover


async def test_a_stream_at_its_limits_refuses_at_once_and_says_why(
    nats_server: NatsServer,
) -> None:
    # A full stream (discard=new) was waited out as an outage: each append took the whole
    # retry_timeout, then said NATS did not answer. A message over the stream's own
    # max_msg_size was a plain EventLogError, not the refusal (InvalidAppend) it is.
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(
                name="LOG",
                subjects=["app.ev.>"],
                max_msgs=2,
                max_msg_size=2_000,
                discard=DiscardPolicy.NEW,
            )
        )
        async with NatsEventLog(
            nats_server.url, stream_name="LOG", subject_prefix="app", retry_timeout=30
        ) as log:
            with pytest.raises(InvalidAppend, match="max_msg_size"):
                await log.append("s1", [event("x" * 3_000)], expected_version=0)
            await log.append("s1", [event(1)], expected_version=0)
            await log.append("s1", [event(2)], expected_version=1)
            with anyio.fail_after(5):  # not retry_timeout
                with pytest.raises(EventLogError, match="is full .maximum messages exceeded"):
                    await log.append("s1", [event(3)], expected_version=2)
            assert payloads(await log.read("s1")) == [b"1", b"2"]
    finally:
        await nc.close()


async def test_limits_that_drop_stored_messages_are_warned_of(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # JetStream removed a room's first records, and a kit started later found no room.
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name="LOG", subjects=["app.ev.>"], max_msgs=100, max_age=3_600)
        )
        with caplog.at_level(logging.WARNING, logger="roomkit.eventlog"):
            async with NatsEventLog(nats_server.url, stream_name="LOG", subject_prefix="app"):
                pass
        assert "JetStream stream LOG drops stored messages" in caplog.text
        assert "max_msgs=100, discard=old" in caplog.text and "max_age=3600 s" in caplog.text
        caplog.clear()
        async with NatsEventLog(nats_server.url, stream_name="OWN", subject_prefix="own"):
            pass
        assert "drops stored messages" not in caplog.text
    finally:
        await nc.close()


async def test_a_read_only_log_reads_and_changes_nothing(nats_server: NatsServer) -> None:
    async def streams() -> set[str]:
        return {info.config.name for info in await nc.jetstream().streams_info()}

    nc = await nats.connect(nats_server.url)
    try:
        with pytest.raises(EventLogError, match="there is no JetStream stream RO"):
            await NatsEventLog(nats_server.url, stream_name="RO", read_only=True).connect()
        assert await streams() == set()
        await nc.jetstream().add_stream(StreamConfig(name="RO", subjects=["ro.ev.>"]))
        async with NatsEventLog(nats_server.url, stream_name="WR", subject_prefix="wr") as log:
            await log.append("s1", [event(1)], expected_version=0)
        await nc.jetstream().delete_key_value("WR_snapshots")
        reader = NatsEventLog(
            nats_server.url, stream_name="WR", subject_prefix="wr", read_only=True
        )
        async with reader:
            assert payloads(await reader.read("s1")) == [b"1"]
            assert await reader.load_snapshot("s1") is None  # no bucket: no snapshot
            with pytest.raises(EventLogError, match="read-only"):
                await reader.append("s1", [event(2)], expected_version=1)
            with pytest.raises(EventLogError, match="read-only"):
                await reader.save_snapshot("s1", 1, b"{}")
        # Direct gets off (a stream made elsewhere): said, not turned on.
        with pytest.raises(EventLogError, match="direct gets off"):
            await NatsEventLog(
                nats_server.url, stream_name="RO", subject_prefix="ro", read_only=True
            ).connect()
        assert await streams() == {"RO", "WR"}
        assert not (await nc.jetstream().stream_info("RO")).config.allow_direct
    finally:
        await nc.close()


async def test_a_given_client_is_used_and_left_open(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        async with NatsEventLog(client=nc, stream_name="MINE", subject_prefix="mine") as log:
            await log.append("s1", [event(1)], expected_version=0)
            assert payloads(await log.read("s1")) == [b"1"]
        assert nc.is_connected
        subjects = await nc.jetstream().stream_info("MINE", subjects_filter=">")
        assert subjects.state.subjects == {"mine.ev.s1": 1}
    finally:
        await nc.close()


async def test_a_given_client_its_owner_closed_is_no_outage(nats_server: NatsServer) -> None:
    # It was LogUnavailable, which callers wait out (the ingress retries it for ever): the
    # log's own client reconnects for ever, so a closed one was closed for good.
    nc = await nats.connect(nats_server.url)
    async with NatsEventLog(client=nc, stream_name="MINE", subject_prefix="mine") as log:
        await log.append("s1", [event(1)], expected_version=0)
        await nc.close()
        for call in (
            lambda: log.append("s1", [event(2)], expected_version=1),
            lambda: log.read("s1"),
        ):
            with pytest.raises(EventLogError, match="connection is closed") as failed:
                await call()
            assert not isinstance(failed.value, LogUnavailable)


async def test_an_append_to_a_stream_deleted_under_the_log_says_so(
    nats_server: NatsServer,
) -> None:
    # It said "NATS did not answer (NoRespondersError())": the server answered, and the
    # stream was missing, which the operator is to know.
    async with NatsEventLog(nats_server.url, retry_timeout=0.3) as log:
        await log.append("s1", [event(1)], expected_version=0)
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().delete_stream(log.stream_name)
        finally:
            await nc.close()
        with pytest.raises(LogUnavailable, match="the stream is missing"):
            await log.append("s1", [event(2)], expected_version=1)


async def test_a_server_without_jetstream_is_said_so(tmp_path: Path) -> None:
    # Its 503s were retried as "NATS did not answer (ServiceUnavailableError())", and a
    # caller that timed the connect out (roomkit serve's --timeout) could say nothing more.
    with NatsServer(tmp_path / "nats", extra_args=("-js=false",)) as plain:
        log = NatsEventLog(plain.url, retry_timeout=0.3)
        timed_out = NatsEventLog(plain.url, retry_timeout=30)
        unavailable = "the server's JetStream is unavailable (not enabled there"
        try:
            assert log.last_failure is None
            with pytest.raises(LogUnavailable, match=re.escape(unavailable)):
                await log.connect()
            assert unavailable in str(log.last_failure)
            with anyio.move_on_after(0.3):
                await timed_out.connect()
            assert isinstance(timed_out.last_failure, LogUnavailable)
            assert unavailable in str(timed_out.last_failure)
        finally:
            await log.aclose()
            await timed_out.aclose()


async def test_a_snapshot_bucket_at_its_limits_refuses_at_once(nats_server: NatsServer) -> None:
    # Its 503 ("maximum bytes exceeded") was retried as an outage for the whole
    # retry_timeout, then said "JetStream is unavailable": the command that took the
    # snapshot waited with it, at every snapshot_every events.
    nc = await nats.connect(nats_server.url)
    try:
        config = KeyValueConfig(bucket="ROOMKIT_snapshots", history=1, max_bytes=1500)
        await nc.jetstream().create_key_value(config)
    finally:
        await nc.close()
    async with NatsEventLog(nats_server.url, retry_timeout=60) as log:
        for stream in ("a", "b"):
            await log.save_snapshot(stream, 1, b"x" * 600)
        with anyio.fail_after(30), pytest.raises(EventLogError) as refused:
            await log.save_snapshot("c", 1, b"x" * 600)
    assert not isinstance(refused.value, LogUnavailable)
    assert "a limit of the JetStream stream or bucket is reached (maximum bytes" in str(
        refused.value
    )


async def test_connecting_to_no_server_raises_log_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    with anyio.fail_after(10), pytest.raises(LogUnavailable):
        async with NatsEventLog(f"nats://127.0.0.1:{port}", connect_timeout=0.5):
            pass  # pragma: no cover


def test_trio_is_refused_with_a_clear_error(nats_server: NatsServer) -> None:
    # nats-py runs on asyncio only: on trio it failed deep inside with "no running event
    # loop", leaving a coroutine never awaited.
    async def connect() -> None:
        async with NatsEventLog(nats_server.url):
            pass  # pragma: no cover

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(EventLogError, match="asyncio only"):
            anyio.run(connect, backend="trio")
        gc.collect()  # a coroutine never awaited is reported when it is collected
    assert [str(w.message) for w in warned] == []


async def test_a_closed_log_refuses_calls(nats_server: NatsServer) -> None:
    log = NatsEventLog(nats_server.url)
    with pytest.raises(EventLogError, match="not connected"):
        await log.read("s1")
    await log.connect()
    await log.connect()  # idempotent
    await log.aclose()
    await log.aclose()  # idempotent
    with pytest.raises(EventLogError, match="closed"):
        await log.append("s1", [event(1)], expected_version=0)


def test_no_server_is_refused_up_front() -> None:
    # nats-py, given no server, retried for ever without awaiting: the event loop hung.
    for servers in ([], ()):
        with pytest.raises(ValueError, match="no NATS server given"):
            NatsEventLog(servers)


def test_bad_names_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="stream name"):
        NatsEventLog(stream_name="a.b")
    with pytest.raises(ValueError, match="subject prefix"):
        NatsEventLog(subject_prefix="rooms.*")
    # Longer than JetStream takes, its snapshot bucket's name included: it failed as the log
    # opened, said as an outage (the CLI's "log unreachable").
    NatsEventLog(stream_name="S" * 242)  # its bucket's stream: KV_<name>_snapshots
    with pytest.raises(ValueError, match="snapshot bucket 'SSS.*253 bytes, more than 252"):
        NatsEventLog(stream_name="S" * 243)
    NatsEventLog(stream_name="S" * 250, kv_bucket="snapshots")
    with pytest.raises(ValueError, match="snapshot bucket 'bbb.*253 bytes, more than 252"):
        NatsEventLog(kv_bucket="b" * 253)
    NatsEventLog(stream_name="S" * 255, read_only=True)  # a reader makes no bucket
    with pytest.raises(ValueError, match="stream name 'SSS.*256 bytes, more than 255"):
        NatsEventLog(stream_name="S" * 256, read_only=True)
    with pytest.raises(ValueError, match="stream name .*400 bytes, more than 255"):
        NatsEventLog(stream_name="é" * 200)  # JetStream counts bytes


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("replicas", 0, ValueError),
        ("replicas", 1.0, TypeError),
        ("version_cache_size", -1, ValueError),
        ("version_cache_size", "100", TypeError),
        ("duplicate_window", -1, ValueError),  # 0 is the server's default window
        ("duplicate_window", math.inf, ValueError),  # the server takes it in nanoseconds
        ("request_timeout", 10**400, ValueError),
        ("request_timeout", "2", TypeError),
        ("retry_timeout", -1, ValueError),
        ("connect_timeout", math.nan, ValueError),
        ("idle_heartbeat", None, TypeError),
    ],
)
def test_bad_settings_are_refused_up_front(
    setting: str, value: object, error: type[Exception]
) -> None:
    # Not when a request, a retry or a subscription's stall check first uses them.
    with pytest.raises(error, match=setting):
        NatsEventLog(**{setting: value})


def test_settings_take_numbers_of_any_kind() -> None:
    log = NatsEventLog(request_timeout=Fraction(1, 2), retry_timeout=0, idle_heartbeat=2)
    assert (log.request_timeout, log.retry_timeout, log.idle_heartbeat) == (0.5, 0.0, 2.0)
    assert NatsEventLog(duplicate_window=0).duplicate_window == 0  # the server's default


# -- refusals and foreign data ---------------------------------------------------------------


async def test_an_append_larger_than_the_max_payload_is_refused(nats_log: NatsEventLog) -> None:
    huge = [NewEvent(type="big", data=b"x" * 600_000) for _ in range(2)]
    with pytest.raises(InvalidAppend, match="max payload"):
        await nats_log.append("s1", huge, expected_version=0)
    assert await nats_log.read("s1") == []


@pytest.mark.parametrize("events", [1, 3])
async def test_events_that_fit_max_append_bytes_are_taken_and_one_byte_more_is_refused(
    nats_log: NatsEventLog, events: int
) -> None:
    # What an import plans its appends by: append_size must never be below what the
    # server is sent, nor check_append take what append refuses.
    def batch(extra: int) -> list[NewEvent]:
        head = [NewEvent(type="big", data=b"x" * 1000) for _ in range(events - 1)]
        room = nats_log.max_append_bytes - nats_log.append_size(head)
        overhead = nats_log.append_size([NewEvent(type="big", data=b"x" * room)]) - room
        return [*head, NewEvent(type="big", data=b"x" * (room - overhead + extra))]

    fits, too_big = batch(0), batch(1)
    assert nats_log.append_size(fits) == nats_log.max_append_bytes
    nats_log.check_append("s1", fits, expected_version=0)
    with pytest.raises(InvalidAppend, match="bytes"):
        nats_log.check_append("s1", too_big, expected_version=0)
    assert len(await nats_log.append("s1", fits, expected_version=0)) == events


async def test_an_append_filling_max_append_bytes_is_taken_with_the_longest_headers(
    nats_log: NatsEventLog,
) -> None:
    # The server counts the headers in its max payload: a 64-character stream and a message id
    # of 128 non-ASCII characters (256 bytes) took more than the room the log left for them,
    # and the server closed the connection (LogUnavailable, an outage to retry for ever).
    stream = "s" * 64
    head = NewEvent(type="big", data=b"", headers=Headers(message_id="\u00e9" * 128))
    room = nats_log.max_append_bytes
    overhead = nats_log.append_size([head]) - len(head.data)
    fits = [NewEvent(type="big", data=b"x" * (room - overhead - 3), headers=head.headers)]
    assert room - 8 <= nats_log.append_size(fits) <= room
    nats_log.check_append(stream, fits, expected_version=0)
    assert len(await nats_log.append(stream, fits, expected_version=0)) == 1


def test_the_memory_log_counts_events_only() -> None:
    log = MemoryEventLog()
    assert log.max_append_bytes is None
    assert log.append_size([NewEvent(type="big", data=b"x" * 10**6)]) == 0
    log.check_append("s1", [NewEvent(type="big", data=b"x" * 10**6)])
    with pytest.raises(InvalidAppend, match="at most"):
        log.check_append("s1", [NewEvent(type="t", data=b"")] * (log.max_append_events + 1))


async def test_a_foreign_message_on_a_log_subject_is_reported(nats_server: NatsServer) -> None:
    async with NatsEventLog(nats_server.url) as log:
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish("roomkit.ev.alien", b"not a batch")
        finally:
            await nc.close()
        with pytest.raises(EventLogError, match="not a RoomKit event batch"):
            await log.read("alien")
        assert await log.read_all() == []  # no stream's record: skipped (see below)


async def test_a_retry_behind_newer_appends_is_recognised_after_the_duplicate_window(
    nats_server: NatsServer,
) -> None:
    # Found where its expected version puts it, not by JetStream's window: sent again once
    # the window is over, it would be stored a second time.
    async with NatsEventLog(nats_server.url, duplicate_window=0.5) as log:
        first = await log.append("s1", [event(1, message_id="m-1")], expected_version=0)
        await log.append("s1", [event(2, message_id="m-2")], expected_version=1)
        await anyio.sleep(0.7)  # the window forgets m-1
        assert await log.append("s1", [event(1, message_id="m-1")], expected_version=0) == first
        assert payloads(await log.read("s1")) == [b"1", b"2"]
        with pytest.raises(WrongExpectedVersion):  # another append at that version
            await log.append("s1", [event(3, message_id="m-3")], expected_version=0)


# -- outages ---------------------------------------------------------------------------------


async def test_appends_raise_log_unavailable_while_the_server_is_down(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    async with NatsEventLog(server.url, request_timeout=0.3, retry_timeout=0.6) as log:
        await log.append("s1", [event(1, message_id="m-1")], expected_version=0)
        server.stop()
        with anyio.fail_after(10), pytest.raises(LogUnavailable):
            await log.append("s1", [event(2, message_id="m-2")], expected_version=1)
        await anyio.to_thread.run_sync(server.restart)
        # The failed append may have landed or not: retrying it with its message id is safe.
        with anyio.fail_after(10):
            while True:
                try:
                    records = await log.append(
                        "s1", [event(2, message_id="m-2")], expected_version=1
                    )
                    break
                except LogUnavailable:
                    continue
        assert records[0].version == 2
        assert payloads(await log.read("s1")) == [b"1", b"2"]


async def test_a_replay_waits_for_a_restarting_server(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    async with NatsEventLog(server.url, request_timeout=0.5, retry_timeout=10) as log:
        written = await log.append("s1", [event(n) for n in range(1000)], expected_version=0)
        written += await log.append("s1", [event(n) for n in range(200)], expected_version=1000)
        server.stop()
        replayed: list[Record] = []
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def replay() -> None:
                    replayed.extend(await log.read_all())

                tg.start_soon(replay)
                await anyio.to_thread.run_sync(server.restart)
        assert replayed == written


async def test_a_subscription_survives_a_server_restart(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    seen: list[bytes] = []
    async with NatsEventLog(server.url, idle_heartbeat=0.2, retry_timeout=10) as log:
        with anyio.fail_after(30):
            async with log.subscribe() as subscription:
                for n in range(5):
                    await log.append("s1", [event(n)], expected_version=n)
                async for record in subscription:
                    seen.append(record.data)
                    if len(seen) == 5:
                        server.kill()
                        await anyio.to_thread.run_sync(server.restart)
                        for n in range(5, 10):
                            await log.append("s1", [event(n)], expected_version=n)
                    if len(seen) == 10:
                        break
    assert seen == [str(n).encode() for n in range(10)]


async def test_closing_during_an_outage_ends_every_task_of_the_connection_at_once(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    before = asyncio.all_tasks()
    # A request_timeout longer than the test's bound: closing waited it out for the delete of
    # the subscription's consumer, which nobody could confirm.
    log = NatsEventLog(server.url, request_timeout=30.0, retry_timeout=5.0)
    await log.connect()
    subscription = log.subscribe()
    await log.append("s1", [event(1)], expected_version=0)
    with anyio.fail_after(10):
        assert (await subscription.__anext__()).data == b"1"
    server.stop()
    with anyio.fail_after(10):
        while log._io is not None and log._io.nc.is_connected:  # until the client noticed
            await anyio.sleep(0.01)
    started = anyio.current_time()
    with anyio.fail_after(60):
        await log.aclose()
    assert anyio.current_time() - started < 30.0  # it did not wait out the delete's timeout
    await anyio.sleep(0.1)  # the cancelled tasks end
    # nats-py's close failed flushing into the lost connection before it ended the
    # subscriptions' tasks: they waited for messages for ever.
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert left == []


# -- subscriptions ---------------------------------------------------------------------------


async def test_a_slow_subscriber_gets_every_record_once_in_order(nats_log: NatsEventLog) -> None:
    async def writer(stream: str) -> None:
        for version in range(100):
            await nats_log.append(stream, [event(f"{stream}.{version}")], expected_version=version)

    seen: list[Record] = []
    with anyio.fail_after(60):
        async with nats_log.subscribe() as subscription, anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(writer, f"w{n}")
            async for record in subscription:
                seen.append(record)
                await anyio.lowlevel.checkpoint()  # a reader that yields on every record
                if len(seen) == 2000:
                    break
    assert seen == await nats_log.read_all()


async def test_a_message_not_of_the_log_is_skipped_by_whole_log_reads_and_subscriptions(
    nats_log: NatsEventLog, nats_server: NatsServer
) -> None:
    # Someone else published on the log's subjects: it is no stream's record. One such
    # message stopped every reader of the whole log (a kit's read model, its start) for good.
    await nats_log.append("a", [event(1)], expected_version=0)
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(f"{nats_log.subject_prefix}.ev.junk", b"\x00not ours")
    finally:
        await nc.close()
    await nats_log.append("b", [event(2)], expected_version=0)
    assert payloads(await nats_log.read_all()) == [b"1", b"2"]
    # A page the foreign message takes part of still holds the records after it: a short
    # page reads as the log's end to a reader catching up.
    assert payloads(await nats_log.read_all(after_position=1000, limit=1)) == [b"2"]
    assert [info.stream for info in await nats_log.streams()] == ["a", "b"]
    with anyio.fail_after(10):
        async with nats_log.subscribe() as subscription:
            seen = [await subscription.__anext__(), await subscription.__anext__()]
    assert payloads(seen) == [b"1", b"2"]
    with pytest.raises(EventLogError, match="not a RoomKit event batch"):
        await nats_log.read("junk")  # the stream it pretends to be is unreadable


async def test_closing_a_subscription_deletes_its_consumer(nats_log: NatsEventLog) -> None:
    await nats_log.append("s1", [event(1)], expected_version=0)
    async with nats_log.subscribe() as subscription:
        assert (await subscription.__anext__()).data == b"1"
    nc = await nats.connect(nats_log.servers[0])
    try:
        assert (await nc.jetstream().stream_info("ROOMKIT")).state.consumer_count == 0
    finally:
        await nc.close()


# -- packaging -------------------------------------------------------------------------------


def test_importing_eventlog_does_not_import_nats() -> None:
    code = "import sys, eventlog; assert 'nats' not in sys.modules, 'nats imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "raw",
    [
        b"Nats-Msg-Id: s1:m-1\r\nNats-Expected-Last-Subject-Sequence: 12\r\n\r\n",
        b"A:1\r\nB:\t two words \r\nBad Name: x\r\n\r\n",
        b"Caf\xc3\xa9: x\r\nK: caf\xc3\xa9\r\nNoColon\r\n\xff: y\r\nE: \xff\r\n",
    ],
)
def test_the_fast_header_parser_agrees_with_nats_py(raw: bytes) -> None:
    assert parse_header_lines(raw) == NatsClient._parse_header_lines(raw)


def test_a_published_status_header_is_kept_apart_from_the_servers_status() -> None:
    raw = b"Status: 503\r\nstatus: 1\r\nA: b\r\n\r\n"
    assert parse_header_lines(raw) == {PUBLISHED_STATUS: "503", "status": "1", "A": "b"}


# -- requests: one reply inbox, one timer -----------------------------------------------------


async def test_requests_time_out_each_at_its_own_deadline(nats_log: NatsEventLog) -> None:
    io = nats_log._connected()
    silent = await io.nc.subscribe("test.silent")  # takes requests, never answers

    async def answer(msg: Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    echo = await io.nc.subscribe("test.echo", cb=answer)
    try:
        io.request_timeout = 60.0
        patient = asyncio.ensure_future(io.request("test.silent", b"1"))
        await anyio.sleep(0.01)
        io.request_timeout = 0.05  # a later request with an earlier deadline
        with anyio.fail_after(10), pytest.raises(TimeoutError, match="test.silent"):
            await io.request("test.silent", b"2")
        assert not patient.done()
        # Answered requests get their reply meanwhile, and leave nothing behind.
        replies = await asyncio.gather(*(io.request("test.echo", b"%d" % n) for n in range(20)))
        assert [r.data for r in replies] == [b"pong:%d" % n for n in range(20)]
        patient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await patient
        assert io._requests == {}
    finally:
        await silent.unsubscribe()
        await echo.unsubscribe()


async def test_a_timed_out_request_does_not_stop_the_next_ones_from_timing_out(
    nats_log: NatsEventLog,
) -> None:
    io = nats_log._connected()
    silent = await io.nc.subscribe("test.silent")
    try:
        io.request_timeout = 0.05
        for n in range(3):  # the timer is armed again after each
            with anyio.fail_after(10), pytest.raises(TimeoutError):
                await io.request("test.silent", b"%d" % n)
        results = await asyncio.gather(
            *(io.request("test.silent", b"x") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, TimeoutError) for r in results)
        # A request still waiting when the timer fired for an earlier one gets its own turn.
        first = asyncio.ensure_future(io.request("test.silent", b"first"))
        await anyio.sleep(0.01)
        io.request_timeout = 0.5
        with anyio.fail_after(10), pytest.raises(TimeoutError):
            await io.request("test.silent", b"second")
        assert first.done() and isinstance(first.exception(), TimeoutError)
        assert io._requests == {}
    finally:
        await silent.unsubscribe()


def test_without_nats_py_the_error_names_the_extra_to_install() -> None:
    # A bare "No module named 'nats'", from a module itself named nats, left users guessing.
    script = """
import sys
sys.modules["nats"] = None  # nats-py not installed
for name in ("eventlog.nats", "roomkit.realtime.nats", "roomkit.ownership.nats"):
    try:
        __import__(name)
    except ModuleNotFoundError as exc:
        print(exc)
try:
    from roomkit.ingress import serve_ingress
except ModuleNotFoundError as exc:
    print(exc)
import anyio
from roomkit import RoomKit

async def main():
    async with RoomKit() as kit:
        try:
            await kit.serve_ingress("nats://127.0.0.1:4222")
        except ModuleNotFoundError as exc:
            print(exc)

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    lines = done.stdout.splitlines()
    assert [line.split(" needs nats-py")[0] for line in lines] == [
        "eventlog.nats (NatsEventLog)",
        "roomkit.realtime.nats (NatsRealtime)",
        "roomkit.ownership.nats (NatsOwnership)",
        "roomkit.ingress (serve_ingress)",
        "serve_ingress",
    ]
    assert all("pip install 'roomkit[nats]'" in line for line in lines)
