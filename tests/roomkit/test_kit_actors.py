"""Rooms as actors: passivation and recovery, snapshots, concurrency across rooms."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from actors.eventsourced import _opened, _sealed
from eventlog import EventLog, LogUnavailable, MemoryEventLog, Record
from roomkit import (
    HookResult,
    HookTrigger,
    LogUnavailableError,
    RateLimit,
    RetryPolicy,
    Room,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomStatus,
    RoomTimers,
)
from roomkit.core._runtime import ROOM
from tests.roomkit.kit_helpers import SimpleChannel, text


@pytest.mark.parametrize("snapshot_every", [1, 1000])  # from a snapshot, from the log
async def test_a_room_back_from_passivation_shares_the_kits_capabilities(
    make_kit: Callable[..., RoomKit], snapshot_every: int
) -> None:
    async with make_kit(snapshot_every=snapshot_every) as kit:
        contexts: list[RoomContext] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def keeps_the_context(event: RoomEvent, context: RoomContext) -> None:
            contexts.append(context)

        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.process_inbound(text("sms", "one"))
        shared = [binding.capabilities for binding in contexts[-1].bindings]
        system = kit._runtime._system
        assert system is not None and await system.passivate(ROOM, "r1")
        await kit.process_inbound(text("sms", "two"))
        back = contexts[-1].bindings
        assert back == contexts[0].bindings
        # One instance per capabilities value in the whole kit, not a copy per binding.
        assert all(b.capabilities is c for b, c in zip(back, shared, strict=True))


async def test_a_passivated_room_comes_back_with_its_state(
    make_kit: Callable[..., RoomKit], caplog: pytest.LogCaptureFixture
) -> None:
    async with make_kit(snapshot_every=3) as kit:
        kit.register_channel(SimpleChannel("sms"))
        ws = SimpleChannel("ws")
        kit.register_channel(ws)
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        first = await kit.process_inbound(text("sms", "one", idempotency_key="k1"))
        system = kit._runtime._system
        assert system is not None and system.is_active(ROOM, "r1")
        assert await system.passivate(ROOM, "r1")
        assert not system.is_active(ROOM, "r1")
        # The next message activates a new incarnation, recovered from snapshot + tail.
        second = await kit.process_inbound(text("sms", "two"))
        duplicate = await kit.process_inbound(text("sms", "one", idempotency_key="k1"))
        assert first.event is not None and second.event is not None
        assert second.event.index == first.event.index + 1
        assert duplicate.reason == "duplicate"
        assert ws.texts() == ["one", "two"]
        snapshot = await kit.log.load_snapshot("r1")
        assert snapshot is not None and snapshot.version >= 3
        assert kit._runtime._system is not None
        assert kit._runtime._system.stats().restarts == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_recent_event_of_a_snapshot_that_does_not_read_is_left_out_of_it(
    make_kit: Callable[..., RoomKit], caplog: pytest.LogCaptureFixture
) -> None:
    # Its recent events were read lazily: the snapshot was trusted without a word, and every
    # hook reading the room's history failed (a moderation hook failed open) for 50 events.
    def moderating(kit: RoomKit) -> RoomKit:
        kit.register_channel(SimpleChannel("sms"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def moderate(event: RoomEvent, context: RoomContext) -> HookResult:
            assert all(e.id for e in context.recent_events)
            body = event.content.body  # type: ignore[union-attr]
            return HookResult.block("no") if "secret" in body else HookResult.allow()

        return kit

    async with moderating(make_kit(snapshot_every=5)) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        for n in range(6):
            await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
    snapshot = await kit.log.load_snapshot("r1")
    assert snapshot is not None
    opened = _opened(snapshot.data)
    assert opened is not None
    at, data = opened
    state = json.loads(data)
    state["recent"][0]["index"] = "x"  # as a corrupted value, or a later version's shape
    await kit.log.save_snapshot("r1", snapshot.version, _sealed(at, json.dumps(state).encode()))
    async with moderating(make_kit(snapshot_every=5)) as kit:
        result = await kit.process_inbound(text("sms", "a secret"), room_id="r1")
        assert result.blocked
    assert "stream 'r1': a recent event of its snapshot does not read, left out" in caplog.text


async def test_a_snapshot_past_the_stream_s_end_is_not_loaded_again_once_it_grew_past_it(
    make_kit: Callable[..., RoomKit], event_log: EventLog
) -> None:
    # Found past the end (its stream purged, or deleted and made again), it was replayed
    # past but left: once the stream grew past its version, it was loaded again and the new
    # records applied on the old room.
    async with make_kit(snapshot_every=2) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        for n in range(4):
            await kit.process_inbound(text("sms", f"old {n}"), room_id="r1")
    stale = await event_log.load_snapshot("r1")
    assert stale is not None and stale.version >= 4
    # The room made again from scratch (its old records gone), its old snapshot left.
    seen: list[str] = []
    async with make_kit(snapshot_every=1000) as kit:
        kit.register_channel(SimpleChannel("sms"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def look(event: RoomEvent, context: RoomContext) -> None:
            seen[:] = [e.content.body for e in context.recent_events if e.type == "message"]  # type: ignore[union-attr]

        await kit.create_room(room_id="r2")
        await kit.attach_channel("r2", "sms")
        old = stale.data.replace(b'"r1"', b'"r2"')  # r2's old self
        await event_log.save_snapshot("r2", stale.version, old)
        system = kit._runtime._system
        assert system is not None and await system.passivate(ROOM, "r2")
        for n in range(stale.version):
            await kit.process_inbound(text("sms", f"new {n}"), room_id="r2")
        assert await system.passivate(ROOM, "r2")
        await kit.process_inbound(text("sms", "last"), room_id="r2")
    assert seen and not [body for body in seen if body.startswith("old")]


async def test_room_snapshot_round_trips(make_kit: Callable[..., RoomKit]) -> None:
    from roomkit.core._room_actor import RoomActor

    async with make_kit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.ensure_participant("r1", "ws", "agent")
        for n in range(3):
            await kit.process_inbound(text("sms", f"m{n}", idempotency_key=f"k{n}"))
        actor = RoomActor("r1", kit._runtime.services)
        empty = actor.decode_state(actor.encode_state(actor.initial_state()))
        assert empty.room is None and empty.event_count == 0
        context = await kit._context("r1")
        from roomkit.core._facts import fact_from_record
        from roomkit.core._room_state import RoomState, evolve

        state = RoomState()
        for record in await kit.log.read("r1"):
            fact = fact_from_record(record)
            assert fact is not None
            evolve(state, fact.domain, at=fact.timestamp)
        restored = actor.decode_state(actor.encode_state(state))
        assert restored.room == state.room == context.room
        assert restored.bindings == state.bindings
        assert restored.participants == state.participants
        assert (
            restored.idempotency
            == state.idempotency
            == {
                "k0": restored.idempotency["k0"],
                "k1": restored.idempotency["k1"],
                "k2": restored.idempotency["k2"],
            }
        )
        assert list(restored.recent) == list(state.recent)
        assert restored.event_count == state.event_count


async def test_a_timer_sweep_wakes_only_the_rooms_whose_timers_are_due(
    make_kit: Callable[..., RoomKit],
) -> None:
    # It commanded every open room: a sweep more often than idle_timeout kept all of them
    # from passivating, and one less often reloaded each passivated room.
    async with make_kit() as kit:
        for n in range(3):
            await kit.create_room(room_id=f"r{n}")
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        timers = RoomTimers(inactive_after_seconds=3_600, last_activity_at=long_ago)
        room = await kit.get_room("r2")
        await kit.store.update_room(room.model_copy(update={"timers": timers}))
        system = kit._runtime._system
        assert system is not None
        for n in range(3):
            assert await system.passivate(ROOM, f"r{n}")
        changed = await kit.check_all_timers()
        assert [(r.id, r.status) for r in changed] == [("r2", RoomStatus.PAUSED)]
        assert system.active_keys(ROOM) == ["r2"]
        assert await kit.check_all_timers() == []  # paused: nothing more to do


async def test_two_sweeps_at_once_each_return_only_the_rooms_they_changed(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Each returned every room due when it began, changed by the other one or not: an app
    # telling its customers from what a sweep returns told them twice.
    async with make_kit() as kit:
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        timers = RoomTimers(inactive_after_seconds=3_600, last_activity_at=long_ago)
        for n in range(6):
            room = await kit.create_room(room_id=f"r{n}")
            await kit.store.update_room(room.model_copy(update={"timers": timers}))
        sweeps: list[list[Room]] = []

        async def sweep() -> None:
            sweeps.append(await kit.check_all_timers())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sweep)
            tasks.start_soon(sweep)
        changed = sorted(room.id for rooms in sweeps for room in rooms)
        assert changed == [f"r{n}" for n in range(6)]
        assert {room.status for rooms in sweeps for room in rooms} == {RoomStatus.PAUSED}


async def test_idle_rooms_passivate_by_themselves(make_kit: Callable[..., RoomKit]) -> None:
    async with make_kit(idle_timeout=0.05) as kit:
        kit.register_channel(SimpleChannel("sms"))
        for n in range(5):
            await kit.create_room(room_id=f"r{n}")
        system = kit._runtime._system
        assert system is not None
        with anyio.fail_after(10):
            while any(system.is_active(ROOM, f"r{n}") for n in range(5)):
                await anyio.sleep(0.02)  # polling observable state, bounded by fail_after
        assert system.stats().passivations >= 5
        room = await kit.get_room("r3")
        assert room.id == "r3"
        await kit.attach_channel("r3", "sms")  # reactivates and works
        assert [b.channel_id for b in await kit.list_bindings("r3")] == ["sms"]


async def test_rooms_run_concurrently(make_kit: Callable[..., RoomKit]) -> None:
    # A slow hook in one room does not hold the others (no global lock).
    from roomkit import HookResult, HookTrigger

    release = anyio.Event()
    async with make_kit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def gate(event: RoomEvent, context: RoomContext) -> HookResult:
            if context.room.id == "slow":
                await release.wait()
            return HookResult.allow()

        for room_id in ("slow", "fast"):
            await kit.create_room(room_id=room_id)
            await kit.attach_channel(room_id, "sms")
            await kit.attach_channel(room_id, "ws")
        done: list[str] = []
        async with anyio.create_task_group() as tg:

            async def send(room_id: str) -> None:
                await kit.process_inbound(text("sms", room_id), room_id=room_id)
                done.append(room_id)
                if room_id == "fast":
                    release.set()

            tg.start_soon(send, "slow")
            tg.start_soon(send, "fast")
        assert done == ["fast", "slow"]


async def test_infinite_limits_of_a_binding_survive_the_log(
    make_kit: Callable[..., RoomKit],
) -> None:
    # Written as JSON's null, an infinite delay failed every replay of its room.
    limits = {
        "retry_policy": RetryPolicy(max_delay_seconds=math.inf),
        "rate_limit": RateLimit(max_per_second=math.inf),
    }
    async with make_kit(snapshot_every=1000) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws", **limits)  # type: ignore[arg-type]
        system = kit._runtime._system
        assert system is not None and await system.passivate(ROOM, "r1")
        await kit.process_inbound(text("sms", "hello"), room_id="r1")  # replays the room
        context = await kit._context("r1")
        ws = next(b for b in context.bindings if b.channel_id == "ws")
        assert ws.retry_policy == limits["retry_policy"]
        assert ws.rate_limit == limits["rate_limit"]
        stored = await kit.store.get_binding("r1", "ws")
        assert stored is not None and stored.retry_policy == limits["retry_policy"]


class _DownForReads(MemoryEventLog):
    """A log that cannot be read while ``down`` (an outage)."""

    down = False
    failed_reads = 0

    async def read(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Record]:
        if self.down:
            self.failed_reads += 1
            raise LogUnavailable("the log is down")
        return await super().read(stream, after_version=after_version, limit=limit)


async def test_a_room_that_cannot_load_during_an_outage_says_the_log_is_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its actor gives up loading it; the caller (the ingress) must hear an outage, which it
    # waits out, not "room unavailable", which it dead-letters after a few tries. It hears
    # it after one attempt, which waited for the log as long as the log waits: four attempts
    # (the supervision's restarts) took four times that, each logged with its traceback.
    log = _DownForReads()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        system = kit._runtime._system
        assert system is not None
        await system.passivate(ROOM, "r1")
        log.down = True
        with pytest.raises(LogUnavailableError):
            await kit.process_inbound(text("sms", "during"), room_id="r1")
        assert log.failed_reads == 1
        assert not [r for r in caplog.records if r.exc_info is not None]
        log.down = False
        assert not (await kit.process_inbound(text("sms", "after"), room_id="r1")).blocked


class _SubscriptionBreaksOnce(MemoryEventLog):
    """The first subscription fails at its third record (a reader's bug, a broken link)."""

    broke = False

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def subscribe(self, *, after_position: int = 0) -> Any:
        inner = super().subscribe(after_position=after_position)
        log = self

        class Breaking:
            async def __aenter__(self) -> Breaking:
                self._records = await inner.__aenter__()
                self._seen = 0
                return self

            async def __aexit__(self, *exc: object) -> None:
                await inner.__aexit__(*exc)

            def __aiter__(self) -> Breaking:
                return self

            async def __anext__(self) -> Record:
                self._seen += 1
                if self._seen == 3 and not log.broke:
                    log.broke = True
                    raise log.error
                return await self._records.__anext__()

        return Breaking()


@pytest.mark.parametrize(
    "error", [RuntimeError("the subscription broke"), LogUnavailable("the log is down")]
)
async def test_the_read_model_goes_on_after_its_subscription_failed(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    # The failure used to end the kit's runtime: the rooms' work and the code inside
    # `async with RoomKit()` were cancelled.
    log = _SubscriptionBreaksOnce(error)
    with anyio.fail_after(10):
        async with RoomKit(log=log) as kit:
            kit.register_channel(SimpleChannel("sms"))
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            for n in range(3):
                await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
            assert log.broke
            timeline = await kit.get_timeline("r1")
            assert [e.content.body for e in timeline if e.type == "message"] == [  # type: ignore[union-attr]
                "m0",
                "m1",
                "m2",
            ]
    # A bug is logged with its traceback; the log's outage in one line (every 5 s at most
    # while it lasts), where it logged a traceback each time.
    logged = [r for r in caplog.records if r.name == "roomkit.projection.store"]
    outage = isinstance(error, LogUnavailable)
    assert [(r.levelname, r.exc_info is None) for r in logged] == [
        ("WARNING", True) if outage else ("ERROR", False)
    ]


class _SlowToRead(MemoryEventLog):
    """A log whose bulk reads take a while, as a server's do (the memory log's never wait)."""

    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        await anyio.sleep(0.02)
        return await super().read_all(after_position=after_position, limit=1)


async def test_reads_and_routing_during_rebuild_store_see_every_room() -> None:
    async with RoomKit(log=_SlowToRead()) as kit:
        for n in range(3):
            kit.register_channel(SimpleChannel(f"sms{n}"))
            await kit.create_room(room_id=f"r{n}")
            await kit.attach_channel(f"r{n}", f"sms{n}")
        seen: list[str] = []

        async def during_the_rebuild() -> None:
            read_model = kit.store.read_model  # the store itself: kit.store's reads wait
            while await read_model.get_room("r2") is not None:  # the store was just emptied
                await anyio.sleep(0.001)
            seen.append((await kit.get_room("r2")).id)
            room = await kit.store.get_room("r2")
            assert room is not None
            seen.append(room.id)
            routed = await kit.process_inbound(text("sms2", "hi again"))
            assert routed.event is not None
            seen.append(routed.event.room_id)

        async with anyio.create_task_group() as tg:
            tg.start_soon(during_the_rebuild)
            await kit.rebuild_store()
        assert seen == ["r2", "r2", "r2"]
        assert sorted(room.id for room in await kit.store.list_rooms()) == ["r0", "r1", "r2"]
