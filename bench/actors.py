"""The actor runtime: message rates, memory per actor, activation (recovery) time.

``python -m bench.actors`` runs every workload on asyncio and on trio and prints one table;
``bench_actors()`` returns the rows for the current backend (``make bench`` runs it on asyncio).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import msgspec
import sniffio

from actors import Actor, ActorSystem, Effect, EventSourcedActor
from actors.eventsourced import _sealed
from bench._table import Row, Stopwatch, print_table, rate, row
from eventlog import EventLog, MemoryEventLog, NewEvent, Record

ROUND_TRIPS = 100_000
TELLS = 200_000
MANY_ACTORS = 10_000
MESSAGES_PER_ACTOR = 20
PRODUCERS = 100
RECOVERED_EVENTS = 1_000
RECOVERIES = 20
SNAPSHOT_AT = 950  # recovering "from a snapshot" replays a tail of 50 events


class Echo(Actor):
    """Replies with what it is sent; the cheapest possible actor."""

    async def receive(self, message: object) -> object:
        return message


class Added(msgspec.Struct, frozen=True):
    amount: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Added)
_STATE = msgspec.msgpack.Decoder(int)


class Total(EventSourcedActor[int, Added]):
    """An event-sourced running total: ``receive(n)`` appends ``Added(n)``; ``None`` queries."""

    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: Added) -> int:
        return state + event.amount

    async def decide(self, state: int, command: object) -> Effect[Added]:
        if command is None:
            return Effect.reply_only(state)
        assert isinstance(command, int)
        return Effect.persist(Added(command), reply_with=lambda total: total)

    def encode_event(self, event: Added) -> NewEvent:
        return NewEvent("total.added", _ENCODER.encode(event), timestamp=0.0)

    def decode_event(self, record: Record) -> Added:
        return _DECODER.decode(record.data)

    def encode_state(self, state: int) -> bytes:
        return _ENCODER.encode(state)

    def decode_state(self, data: bytes) -> int:
        return _STATE.decode(data)


def _backend() -> str:
    return f"anyio/{sniffio.current_async_library()}"


async def _ask_rate(backend: str) -> Row:
    system = ActorSystem()
    system.register("echo", Echo)
    async with system:
        ref = system.ref("echo", "one")
        await ref.ask(0)
        with Stopwatch() as sw:
            for n in range(ROUND_TRIPS):
                await ref.ask(n)
    return row(backend, "ask round trip, 1 actor, no log", rate(ROUND_TRIPS, sw.seconds), "asks/s")


async def _tell_rate(backend: str) -> Row:
    system = ActorSystem()
    system.register("echo", Echo)
    async with system:
        ref = system.ref("echo", "one")
        await ref.ask(0)
        with Stopwatch() as sw:
            for n in range(TELLS):
                await ref.tell(n)
            await ref.ask("flush")  # every tell handled, not just queued
    return row(
        backend,
        "tell, 1 actor, no log",
        rate(TELLS, sw.seconds),
        "msgs/s",
        "sent and handled; mailbox 1024",
    )


async def _many_actors(backend: str) -> list[Row]:
    system = ActorSystem()
    system.register("echo", Echo)
    keys = [f"k{n}" for n in range(MANY_ACTORS)]
    async with system:
        refs = [system.ref("echo", key) for key in keys]
        chunk_refs = [refs[n::PRODUCERS] for n in range(PRODUCERS)]

        async def activate(part: list[Any]) -> None:
            for ref in part:
                await ref.ask(None)

        async def produce(part: list[Any]) -> None:
            for n in range(MESSAGES_PER_ACTOR - 1):
                for ref in part:
                    await ref.tell(n)
            for ref in part:
                await ref.ask("last")

        with Stopwatch() as activation:
            await _in_parallel(activate, chunk_refs)
        with Stopwatch() as sw:
            await _in_parallel(produce, chunk_refs)
        assert system.stats().active_actors == MANY_ACTORS
    total = MANY_ACTORS * MESSAGES_PER_ACTOR
    return [
        row(
            backend,
            f"first message to {MANY_ACTORS:,} actors",
            rate(MANY_ACTORS, activation.seconds),
            "activations/s",
            f"{PRODUCERS} concurrent askers",
        ),
        row(
            backend,
            f"aggregate, {MANY_ACTORS:,} actors",
            rate(total, sw.seconds),
            "msgs/s",
            f"{MESSAGES_PER_ACTOR} msgs each from {PRODUCERS} producers",
        ),
    ]


async def _in_parallel(fn: Callable[[Any], Coroutine[Any, Any, None]], parts: list[Any]) -> None:
    async with anyio.create_task_group() as tg:
        for part in parts:
            tg.start_soon(fn, part)


async def _memory(backend: str) -> list[Row]:
    rows: list[Row] = []
    for linger, label in ((0, "task released"), (None, "task parked")):
        system = ActorSystem(task_linger=linger)
        system.register("echo", Echo)
        keys = [f"k{n:06d}" for n in range(MANY_ACTORS)]
        async with system:
            # Warm up: first use of a backend imports and allocates lazily.
            for n in range(200):
                await system.ref("echo", f"warm{n}").ask(None)
                await system.passivate("echo", f"warm{n}")
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for key in keys:
                await system.ref("echo", key).ask(None)
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            active = tracemalloc.get_traced_memory()[0]
            stats = system.stats()
            assert stats.active_actors == MANY_ACTORS
            assert stats.running_actors == (0 if linger == 0 else MANY_ACTORS)
            for key in keys:
                await system.passivate("echo", key)
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            passivated = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        rows.append(
            row(
                backend,
                f"memory per idle active actor ({label})",
                (active - before) / MANY_ACTORS,
                "bytes",
                f"tracemalloc, {MANY_ACTORS:,} Echo actors, task_linger={linger}",
            )
        )
        if linger == 0:
            rows.append(
                row(
                    backend,
                    "memory per actor after passivation",
                    (passivated - before) / MANY_ACTORS,
                    "bytes",
                    "what is left: the registry's grown hash tables",
                )
            )
    return rows


async def _fill(log: EventLog, stream: str, events: int) -> None:
    batch = [NewEvent("total.added", _ENCODER.encode(Added(1)), timestamp=0.0)] * 100
    for version in range(0, events, 100):
        await log.append(stream, batch, expected_version=version)


async def _activation(backend: str, log: EventLog, name: str, *, snapshot: bool) -> Row:
    streams = [f"recover-{'s' if snapshot else 'f'}-{n}" for n in range(RECOVERIES)]
    for stream in streams:
        await _fill(log, stream, RECOVERED_EVENTS)
        if snapshot:
            # Sealed with the record it was taken at, as the actor writes one: a snapshot
            # naming none is replayed past (one written before they named their record).
            (at,) = await log.read(stream, after_version=SNAPSHOT_AT - 1, limit=1)
            state = _sealed((at.position, at.timestamp), _ENCODER.encode(SNAPSHOT_AT))
            await log.save_snapshot(stream, SNAPSHOT_AT, state)
    system = ActorSystem(log, snapshot_every=None if not snapshot else 100)
    system.register("total", Total)
    async with system:
        with Stopwatch() as sw:
            for stream in streams:
                assert await system.ref("total", stream).ask(None) == RECOVERED_EVENTS
    how = (
        f"from a snapshot + {RECOVERED_EVENTS - SNAPSHOT_AT} events"
        if snapshot
        else f"replaying {RECOVERED_EVENTS:,} events"
    )
    return row(
        backend,
        f"activation {how}, {name}",
        sw.seconds / RECOVERIES * 1000,
        "ms",
        f"first ask to a passivated actor, reply included; mean of {RECOVERIES}",
    )


async def _event_sourced_rate(backend: str) -> Row:
    system = ActorSystem(MemoryEventLog())
    system.register("total", Total)
    commands = 20_000
    async with system:
        ref = system.ref("total", "t")
        await ref.ask(None)
        with Stopwatch() as sw:
            for _ in range(commands):
                await ref.ask(1)
    return row(
        backend,
        "event-sourced command round trip, memory log",
        rate(commands, sw.seconds),
        "cmds/s",
        "decide, append, evolve, reply; snapshot every 100",
    )


async def _nats_activation(backend: str) -> list[Row]:
    """Activation from JetStream: a real nats-server on loopback, in a temporary directory."""
    try:
        from eventlog.nats import NatsEventLog
        from eventlog.testing_nats import NatsServer, NatsServerError
    except ImportError as exc:
        return [_skipped(backend, f"NatsEventLog unavailable ({exc})")]
    with tempfile.TemporaryDirectory(prefix="bench-actors-nats-") as directory:
        server = NatsServer(directory)
        try:
            server.start()
        except NatsServerError as exc:
            return [_skipped(backend, f"no nats-server ({exc})")]
        try:
            async with NatsEventLog(server.url) as log:
                return [
                    await _activation(backend, log, "JetStream", snapshot=False),
                    await _activation(backend, log, "JetStream", snapshot=True),
                ]
        finally:
            server.stop()


def _skipped(backend: str, why: str) -> Row:
    return row(backend, "activation from JetStream", float("nan"), "ms", f"skipped: {why}")


async def bench_actors() -> list[Row]:
    """Run every actor workload on the current anyio backend and return the rows."""
    backend = _backend()
    rows = [await _ask_rate(backend), await _tell_rate(backend)]
    rows += await _many_actors(backend)
    rows.append(await _event_sourced_rate(backend))
    rows += await _memory(backend)
    memory_log = MemoryEventLog()
    rows.append(await _activation(backend, memory_log, "memory log", snapshot=False))
    rows.append(await _activation(backend, memory_log, "memory log", snapshot=True))
    if backend == "anyio/asyncio":
        rows += await _nats_activation(backend)
    return rows


async def suite() -> list[tuple[str, list[Row]]]:
    """The ``python -m bench actors`` entry point."""
    return [("actors", await bench_actors())]


def main() -> None:
    backends = sys.argv[1:] or ["asyncio", "trio"]
    rows: list[Row] = []
    for backend in backends:
        rows += anyio.run(bench_actors, backend=backend)
    print_table("actors", rows)


if __name__ == "__main__":
    main()
