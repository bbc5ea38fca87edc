"""The NATS ingress: a backlog of messages over many rooms, drained by one ``Ingress``."""

from __future__ import annotations

import statistics
import tempfile
import time

import anyio

from bench._table import Row, print_table, row
from bench.roomkit_inbound import RecordingChannel
from eventlog import EventLog, MemoryEventLog
from roomkit import InboundMessage, RoomKit, TextContent


def _message(room: str, n: int) -> InboundMessage:
    return InboundMessage(
        channel_id="in",
        sender_id="bench",
        content=TextContent(body=f"{room} #{n}"),
        idempotency_key=f"{room}-{n}",
    )


async def _scenario(
    url: str, log: EventLog, rooms: int, in_flight: int, tag: str, messages: int
) -> tuple[float, float]:
    import nats

    from roomkit.ingress import Ingress, publish_inbound

    names = [f"{tag}-{n}" for n in range(rooms)]
    options = {
        "subject_prefix": f"b{tag}",
        "stream_name": f"IN_{tag}",
        "durable": f"d{tag}",
        "dlq_stream": f"DLQ_{tag}",
    }
    async with RoomKit(log=log) as kit:
        kit.register_channel(RecordingChannel("in"))
        for name in names:
            await kit.create_room(room_id=name)
            await kit.attach_channel(name, "in")
        async with Ingress(kit, url, **options):
            pass  # creates the stream and the durable consumer
        nc = await nats.connect(url)
        try:
            limiter = anyio.CapacityLimiter(256)

            async def publish(room: str, n: int) -> None:
                async with limiter:
                    await publish_inbound(
                        nc,
                        _message(room, n),
                        room_id=room,
                        subject_prefix=options["subject_prefix"],
                    )

            per_room = messages // rooms
            for n in range(per_room):  # in rounds, so that each room's order is kept
                async with anyio.create_task_group() as tg:
                    for name in names:
                        tg.start_soon(publish, name, n)
            total = per_room * rooms
            start = time.perf_counter()
            async with Ingress(kit, url, max_in_flight=in_flight, **options) as ingress:
                while ingress.stats.processed < total:
                    await anyio.sleep(0.005)  # polling a counter: this is a benchmark
                drained = total / (time.perf_counter() - start)
                latencies = []
                for n in range(200):
                    sent = time.perf_counter()
                    reply = await publish_inbound(
                        nc,
                        _message(names[0], 10_000 + n),
                        room_id=names[0],
                        subject_prefix=options["subject_prefix"],
                        reply_timeout=10,
                    )
                    assert reply.ok
                    latencies.append((time.perf_counter() - sent) * 1000)
            return drained, statistics.median(latencies)
        finally:
            await nc.close()


async def bench_ingress(messages: int = 4_000) -> list[Row]:
    from eventlog.nats import NatsEventLog
    from eventlog.testing_nats import NatsServer

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as directory, NatsServer(directory) as server:
        n = 0
        for kind in ("memory log", "JetStream"):
            for rooms, in_flight in ((1, 64), (50, 64), (500, 64)):
                n += 1
                tag = f"s{n}"
                if kind == "memory log":
                    log: EventLog = MemoryEventLog()
                    rate, p50 = await _scenario(server.url, log, rooms, in_flight, tag, messages)
                else:
                    async with NatsEventLog(server.url, stream_name=f"LOG_{tag}",
                                            subject_prefix=f"log{tag}") as log:  # fmt: skip
                        rate, p50 = await _scenario(
                            server.url, log, rooms, in_flight, tag, messages
                        )
                label = f"ingress drain, {messages:,} msgs over {rooms} room(s)"
                rows.append(row(kind, label, rate, "msg/s", f"{in_flight} in flight"))
                rows.append(row(kind, f"request-reply over the ingress, {rooms} room(s)", p50,
                                "ms", "p50 of 200, one at a time"))  # fmt: skip
    return rows


async def suite() -> list[tuple[str, list[Row]]]:
    return [("NATS ingress (loopback, file storage)", await bench_ingress())]


def main() -> None:
    for title, rows in anyio.run(suite):
        print_table(title, rows)


if __name__ == "__main__":
    main()
