"""Event-sourced actors on NATS JetStream (a real nats-server): passivation and recovery from
snapshot + tail, restart of the whole process, and a second process writing the same stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import nats
import pytest

from actors import ActorSystem, ConcurrencyConflict
from actors.eventsourced import _opened
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from tests.actors.models import Add, AddMany, Counter, CounterState, Get, Incremented, replay

pytestmark = pytest.mark.nats


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
async def log(nats_server: NatsServer) -> AsyncIterator[NatsEventLog]:
    async with NatsEventLog(nats_server.url, retry_timeout=5.0) as log:
        yield log


def counter_system(log: NatsEventLog, **options: object) -> ActorSystem:
    system = ActorSystem(log, **options)  # type: ignore[arg-type]
    system.register("counter", Counter)
    return system


async def test_an_idle_actor_passivates_and_recovers_from_snapshot_plus_tail(
    log: NatsEventLog,
) -> None:
    stopped = anyio.Event()

    class Watched(Counter):
        async def on_stop(self) -> None:
            stopped.set()

    system = ActorSystem(log, idle_timeout=0.05, snapshot_every=3)
    system.register("counter", Watched)
    async with system:
        ref = system.ref("counter", "room-1")
        for amount in range(1, 8):
            await ref.ask(Add(amount))
        with anyio.fail_after(10):
            await stopped.wait()
        assert not system.is_active("counter", "room-1")
        snapshot = await log.load_snapshot("room-1")
        assert snapshot is not None and snapshot.version == 6  # the tail is one event
        recovered = await ref.ask(Get())
    records = await log.read("room-1")
    assert [r.version for r in records] == list(range(1, 8))
    assert recovered == replay(records) == CounterState(28, 7, (1, 2, 3, 4, 5, 6, 7))


@asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[NatsEventLog, ActorSystem, ActorSystem]]:
    """Two systems on connections of their own (two processes but for the memory): the first
    one's log, and the two systems."""
    async with (
        NatsEventLog(url) as log_one,
        NatsEventLog(url) as log_two,
        counter_system(log_one) as one,
        counter_system(log_two) as two,
    ):
        yield log_one, one, two


async def test_a_new_process_recovers_the_same_state(nats_server: NatsServer) -> None:
    async with NatsEventLog(nats_server.url) as log, counter_system(log) as system:
        await system.ref("counter", "room-1").ask(AddMany((1, 2, 3)))
        await system.ref("counter", "room-1").ask(Add(4))
        before = await system.ref("counter", "room-1").ask(Get())
    # Another connection, another system: nothing shared but the server.
    async with NatsEventLog(nats_server.url) as log, counter_system(log) as system:
        after = await system.ref("counter", "room-1").ask(Get())
        assert await system.ref("counter", "room-1").ask(Add(5)) == 15
    assert before == after == CounterState(10, 4, (1, 2, 3, 4))


async def test_another_process_s_append_of_the_same_message_id_is_folded_in(
    nats_server: NatsServer,
) -> None:
    async with two_processes(nats_server.url) as (log_one, one, two):
        a, b = one.ref("counter", "room-k"), two.ref("counter", "room-k")
        assert await a.ask(Get()) == CounterState()
        assert await b.ask(Add(5, idempotency_key="k")) == 5
        assert await a.ask(Add(7, idempotency_key="k")) == 5  # JetStream's dedup: b's record
        assert await a.ask(Get()) == replay(await log_one.read("room-k"))
        assert [events for _, events, _ in Counter.after_commit_calls] == [[Incremented(5, "k")]]


async def test_a_second_process_writing_the_stream_is_reloaded_never_forked(
    nats_server: NatsServer,
) -> None:
    async with two_processes(nats_server.url) as (_, one, two):
        a, b = one.ref("counter", "room-1"), two.ref("counter", "room-1")
        assert await a.ask(Add(1)) == 1
        assert await b.ask(Add(10)) == 11
        assert await a.ask(Add(100)) == 111  # conflict, reload, re-run
        assert await b.ask(Add(1000)) == 1111

        # Both writers at once, many times: every command lands exactly once, or fails clearly.
        outcomes: list[object] = []

        async def hammer(ref: object, amount: int) -> None:
            for _ in range(10):
                try:
                    outcomes.append(await ref.ask(Add(amount)))  # type: ignore[attr-defined]
                except ConcurrencyConflict as exc:
                    outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(hammer, a, 1)
            tg.start_soon(hammer, b, 2)
    async with NatsEventLog(nats_server.url) as log:
        records = await log.read("room-1")
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    applied = [o for o in outcomes if not isinstance(o, ConcurrencyConflict)]
    state = replay(records)
    assert state.amounts[:4] == (1, 10, 100, 1000)
    assert len(state.amounts) == 4 + len(applied)
    assert state.total == 1111 + sum(state.amounts[4:])


@pytest.mark.parametrize("written", ["now", "before snapshots named their record"])
async def test_a_snapshot_whose_record_the_stream_dropped_is_taken_up(
    nats_server: NatsServer, log: NatsEventLog, written: str
) -> None:
    # A stream keeping the last 15 records of each subject (max_msgs_per_subject; max_age
    # and discard=old do the same) no longer holds the snapshot's record: the snapshot was
    # taken for an earlier stream's, the stream replayed from a start it no longer holds,
    # and the actor failed to start ("jumps from version 0 to 21").
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(log.stream_name)).config
        config.max_msgs_per_subject = 15
        await js.update_stream(config)
    finally:
        await nc.close()
    async with counter_system(log, snapshot_every=20) as system:
        for amount in range(1, 36):
            await system.ref("counter", "c").ask(Add(amount))
    snapshot = await log.load_snapshot("c")
    assert snapshot is not None and snapshot.version == 20
    assert [r.version for r in await log.read("c")] == list(range(21, 36))
    if written != "now":
        opened = _opened(snapshot.data)
        assert opened is not None
        await log.save_snapshot("c", snapshot.version, opened[1])  # the state alone
    async with counter_system(log, snapshot_every=20) as system:
        state = await system.ref("counter", "c").ask(Get())
    assert (state.total, state.count) == (sum(range(1, 36)), 35)
