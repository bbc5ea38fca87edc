"""What a command costs when another process owns its room (``RoomKit(ownership=...)``).

Two kits on one JetStream, each with ``NatsOwnership`` (as two processes would be, here in one
event loop, so they share one CPU): workload (a) sent to a room by the kit that holds it, then
by the other one, whose every message makes a NATS request to the owner and waits for its own
read model to show the result.
"""

from __future__ import annotations

import anyio

from bench._table import Row, Stopwatch, rate, row
from bench.roomkit_inbound import RecordingChannel, _hooks, message
from eventlog.nats import NatsEventLog
from roomkit import RoomKit
from roomkit.ownership import partition_of
from roomkit.ownership.nats import NatsOwnership, NatsPlacement

_PARTITIONS = 8


def _kit(log: NatsEventLog, url: str, member: str, bucket: str) -> RoomKit:
    kit = RoomKit(
        log=log,
        ownership=NatsOwnership(
            url, member=member, partitions=_PARTITIONS, bucket=bucket, lease_ttl=3.0
        ),
    )
    kit.register_channel(RecordingChannel("in"))
    kit.register_channel(RecordingChannel("out0"))
    _hooks(kit)
    return kit


def _placement(kit: RoomKit) -> NatsPlacement:
    placement = kit._runtime.placement
    assert isinstance(placement, NatsPlacement)
    return placement


async def bench_ownership(url: str, messages: int = 2_000) -> list[Row]:
    name = "JetStream, 2 owners"
    async with (
        NatsEventLog(url, stream_name="BENCHOWN", subject_prefix="benchown") as log_a,
        NatsEventLog(url, stream_name="BENCHOWN", subject_prefix="benchown") as log_b,
        _kit(log_a, url, "a", "bench_owners") as a,
        _kit(log_b, url, "b", "bench_owners") as b,
    ):
        with anyio.fail_after(30):
            while not all(
                len(_placement(k).held) == _PARTITIONS // 2
                and len(_placement(k).owners) == _PARTITIONS
                for k in (a, b)
            ):
                await anyio.sleep(0.05)
        held = _placement(a).held
        room_id = next(f"busy-{n}" for n in range(1_000) if partition_of(f"busy-{n}", 8) in held)
        await a.create_room(room_id=room_id)
        for channel_id in ("in", "out0"):
            await a.attach_channel(room_id, channel_id)
        rates: dict[str, float] = {}
        for sender, label in ((a, "from the owner"), (b, "from another process")):
            with Stopwatch() as total:
                for n in range(messages):
                    await sender.process_inbound(message("in", n), room_id=room_id)
            rates[label] = rate(messages, total.seconds)
    local, forwarded = rates["from the owner"], rates["from another process"]
    return [
        row(name, f"(a) {messages:,} sequential, from the owner", local, "msg/s"),
        row(
            name,
            f"(a) {messages:,} sequential, from another process",
            forwarded,
            "msg/s",
            f"{1e6 / forwarded - 1e6 / local:.0f} µs more per message",
        ),
    ]
