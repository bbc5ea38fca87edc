"""NatsEventLog against the raw nats-py client, on local nats-servers (file storage).

Run standalone with ``python -m bench.eventlog_nats``; ``python -m bench eventlog`` includes it.
Each workload starts its own server. Every NatsEventLog figure is paired with the raw client
doing the same work against the same server (sequential ``js.publish`` awaiting each ack, as an
append must; 1,000 concurrent publishers; an ordered-consumer replay), and reported as a ratio
of it; the noisiest pairs alternate rounds and keep the median, so a busy machine slows both.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import nats
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from nats.js.client import JetStreamContext

from bench._table import Row, Stopwatch, print_table, rate, row
from eventlog import NewEvent
from eventlog.codec import encode
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer

PAYLOAD = b"x" * 200
RAW = "raw nats-py"
LOG = "NatsEventLog"
ROUNDS = 5


@asynccontextmanager
async def _server() -> AsyncIterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="roomkit-bench-") as directory:
        server = NatsServer(directory)
        await anyio.to_thread.run_sync(server.start)
        try:
            yield server
        finally:
            await anyio.to_thread.run_sync(server.stop)


async def _raw_sequential(js: JetStreamContext, count: int) -> float:
    # The same bytes an append of one event sends.
    payload = encode([1, [["bench", 0.0, PAYLOAD, {}]]])
    with Stopwatch() as sw:
        for _ in range(count):
            await js.publish("raw.one", payload)
    return rate(count, sw.seconds)


async def _log_sequential(log: NatsEventLog, count: int) -> float:
    event = NewEvent("bench", PAYLOAD, timestamp=0.0)
    start = await log.last_version("one")
    with Stopwatch() as sw:
        for version in range(start, start + count):
            await log.append("one", [event], expected_version=version)
    return rate(count, sw.seconds)


async def _raw_pipelined(url: str, count: int, window: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="RAW", subjects=["raw.>"], storage=StorageType.FILE))
        payload = encode([1, [["bench", 0.0, PAYLOAD, {}]]])
        with Stopwatch() as sw:
            futures: list[asyncio.Future[object]] = []
            for _ in range(count):
                futures.append(await js.publish_async("raw.one", payload))
                if len(futures) >= window:
                    await asyncio.gather(*futures)
                    futures.clear()
            await asyncio.gather(*futures)
        return rate(count, sw.seconds)
    finally:
        await nc.close()


async def _raw_concurrent(url: str, streams: int, per_stream: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="RAW", subjects=["raw.>"], storage=StorageType.FILE))
        payload = encode([1, [["bench", 0.0, PAYLOAD, {}]]])

        async def writer(subject: str) -> None:
            for _ in range(per_stream):
                await js.publish(subject, payload)

        with Stopwatch() as sw:
            async with anyio.create_task_group() as tg:
                for n in range(streams):
                    tg.start_soon(writer, f"raw.s{n}")
        return rate(streams * per_stream, sw.seconds)
    finally:
        await nc.close()


async def _raw_replay(url: str, count: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        done = anyio.Event()
        received = 0

        async def on_message(msg: Msg) -> None:
            nonlocal received
            received += 1
            if received == count:
                done.set()

        with Stopwatch() as sw:
            subscription = await js.subscribe(
                "roomkit.ev.>", cb=on_message, ordered_consumer=True, stream="ROOMKIT"
            )
            await done.wait()
        await subscription.unsubscribe()
        return rate(count, sw.seconds)
    finally:
        await nc.close()


async def bench_nats(
    sequential: int = 10_000, events: int = 100_000, streams: int = 1_000
) -> list[Row]:
    """Measure NatsEventLog and the raw client; return the table rows."""
    rows: list[Row] = []
    event = NewEvent("bench", PAYLOAD, timestamp=0.0)

    # One server, alternating rounds: a ratio of two noisy figures is only fair if both see the
    # same machine at the same time.
    raw_rounds: list[float] = []
    log_rounds: list[float] = []
    async with _server() as server, NatsEventLog(server.url) as log:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(name="RAW", subjects=["raw.>"], storage=StorageType.FILE)
            )
            for _ in range(ROUNDS):
                raw_rounds.append(await _raw_sequential(js, sequential // ROUNDS))
                log_rounds.append(await _log_sequential(log, sequential // ROUNDS))
        finally:
            await nc.close()
        raw_seq = statistics.median(raw_rounds)
        seq_rate = statistics.median(log_rounds)
        rows.append(
            row(
                RAW,
                "sequential js.publish, 1 subject",
                raw_seq,
                "msgs/s",
                f"await each ack; median of {ROUNDS}",
            )
        )
        rows.append(
            row(
                LOG,
                "sequential append, 1 stream",
                seq_rate,
                "appends/s",
                f"{seq_rate / raw_seq:.0%} of raw sequential; median of {ROUNDS}",
            )
        )
        one_stream: list[float] = []
        for _ in range(3):
            with Stopwatch() as sw:
                replayed = len(await log.read("one"))
            one_stream.append(rate(replayed, sw.seconds))
        rows.append(
            row(
                LOG,
                f"replay one stream, {replayed:,} events (1 per message)",
                statistics.median(one_stream),
                "events/s",
                "median of 3",
            )
        )

    async with _server() as server:
        raw_256 = await _raw_pipelined(server.url, events, 256)
    rows.append(row(RAW, "pipelined js.publish_async, 256 in flight", raw_256, "msgs/s"))
    per_stream = max(events // streams, 1)
    async with _server() as server:
        raw_concurrent = await _raw_concurrent(server.url, streams, per_stream)
    rows.append(
        row(
            RAW,
            f"concurrent js.publish, {streams:,} subjects",
            raw_concurrent,
            "msgs/s",
            "1 task per subject, await each ack",
        )
    )

    async with _server() as server, NatsEventLog(server.url) as log:

        async def writer(stream: str) -> None:
            for version in range(per_stream):
                await log.append(stream, [event], expected_version=version)

        with Stopwatch() as sw:
            async with anyio.create_task_group() as tg:
                for n in range(streams):
                    tg.start_soon(writer, f"s{n}")
        total = streams * per_stream
        concurrent = rate(total, sw.seconds)
        rows.append(
            row(
                LOG,
                f"concurrent append, {streams:,} streams",
                concurrent,
                "appends/s",
                f"{concurrent / raw_concurrent:.0%} of raw concurrent",
            )
        )

        # Replays, alternating with the raw client's on the same messages (medians of 3).
        raw_replays: list[float] = []
        whole: list[float] = []
        paged: list[float] = []
        caught_up: list[float] = []
        for _ in range(3):
            raw_replays.append(await _raw_replay(server.url, total))
            with Stopwatch() as sw:
                replayed_count = len(await log.read_all())
            whole.append(rate(replayed_count, sw.seconds))
            with Stopwatch() as sw:
                replayed_count = 0
                position = 0
                while batch := await log.read_all(after_position=position, limit=10_000):
                    replayed_count += len(batch)
                    position = batch[-1].position
            paged.append(rate(replayed_count, sw.seconds))
            with Stopwatch() as sw:
                followed = 0
                async with log.subscribe() as subscription:
                    async for _ in subscription:
                        followed += 1
                        if followed == total:
                            break
            caught_up.append(rate(followed, sw.seconds))
        raw_replay = statistics.median(raw_replays)
        rows.append(
            row(
                RAW,
                f"replay {total:,} messages, ordered consumer",
                raw_replay,
                "msgs/s",
                "callback, no decoding; median of 3",
            )
        )
        for workload, rates in (
            (f"replay read_all, {replayed_count:,} events, one call", whole),
            (f"replay read_all, {replayed_count:,} events, pages of 10,000", paged),
            (f"subscribe, catch up on {total:,} events", caught_up),
        ):
            value = statistics.median(rates)
            rows.append(
                row(
                    LOG,
                    workload,
                    value,
                    "events/s",
                    f"{value / raw_replay:.0%} of raw; median of 3",
                )
            )
        with Stopwatch() as sw:
            infos = await log.streams()
        rows.append(row(LOG, f"streams(), {len(infos):,} streams", sw.seconds * 1000, "ms"))

        for version in range(0, events, 1000):
            await log.append("big", [event] * 1000, expected_version=version)
        with Stopwatch() as sw:
            stored = await log.read("big")
        rows.append(
            row(
                LOG,
                f"replay one stream, {len(stored):,} events (1,000 per message)",
                rate(len(stored), sw.seconds),
                "events/s",
            )
        )
        with Stopwatch() as sw:
            tail = await log.read("s7", after_version=per_stream - 10)
        rows.append(
            row(
                LOG,
                f"read a {len(tail)}-event tail of 1 stream among {streams:,}",
                sw.seconds * 1000,
                "ms",
                "binary search + direct get",
            )
        )
    return rows


async def after_restart(rounds: int = 3) -> list[Row]:
    """The first append issued as the server is killed and restarted, and the wait until a
    subscriber has it: what a message arriving then waits (medians of ``rounds``)."""
    appends: list[float] = []
    seen: list[float] = []
    event = NewEvent("bench", PAYLOAD)
    async with _server() as server, NatsEventLog(server.url) as log:
        subscription = log.subscribe()
        version = 0
        for _ in range(rounds):
            version = (await log.append("s", [event], expected_version=version))[-1].version
            await subscription.__anext__()
            # Blocking the loop: the client has not seen its connection die when it sends
            # the append, as for a message that arrives as the server dies.
            server.kill()
            server.restart()
            start = time.perf_counter()
            version = (await log.append("s", [event], expected_version=version))[-1].version
            appends.append(time.perf_counter() - start)
            await subscription.__anext__()
            seen.append(time.perf_counter() - start)
        await subscription.aclose()
    return [
        row(LOG, "first append after a kill -9 + restart", statistics.median(appends) * 1e3, "ms"),
        row(LOG, "... until a subscriber has it", statistics.median(seen) * 1e3, "ms"),
    ]


async def _bench_all() -> list[Row]:
    return [*await bench_nats(), *await after_restart()]


def main() -> None:
    print_table("event log: NatsEventLog vs raw nats-py", anyio.run(_bench_all))


if __name__ == "__main__":
    main()
