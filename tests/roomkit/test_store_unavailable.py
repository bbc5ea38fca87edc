"""A store that cannot be reached for a while (its database restarting) loses no record: the
store projection applies the record again until the store takes it, where a record that fails
otherwise is logged and skipped (a rebuild repairs it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from eventlog import MemoryEventLog
from roomkit import (
    HookExecution,
    HookTrigger,
    RoomContext,
    RoomEvent,
    RoomKit,
    StoreUnavailableError,
)
from roomkit.errors import KitClosedError
from roomkit.store import InMemoryStore
from tests.roomkit.kit_helpers import SimpleChannel, eventually, room_with, text


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FlakyStore(InMemoryStore):
    """Fails the next ``failures`` event writes with ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.error: Exception = StoreUnavailableError("database restarting")
        self.attempts = 0

    async def add_event_envelope(self, data: bytes) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        await super().add_event_envelope(data)


async def test_a_record_waits_for_a_store_that_is_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with RoomKit(store=store) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        store.failures = 3
        store.attempts = 0
        with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
            result = await kit.process_inbound(text("sms", "hello"))
        assert result.event is not None
        # Returned once the read model had it (read-your-writes), after three refusals.
        assert store.attempts == 4
        timeline = await kit.get_timeline("r1")
        assert [e.id for e in timeline][-1] == result.event.id
        room = await kit.get_room("r1")
        assert room.event_count == len(timeline)  # counted once
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the store is unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1


async def test_a_command_waits_for_an_unavailable_store_as_long_as_for_its_room() -> None:
    # It waited for the read model as long as the store was away (the whole outage), where
    # process_inbound returns at process_timeout: a caller that gave up and sent it again
    # recorded it twice.
    store = FlakyStore()
    async with RoomKit(store=store, process_timeout=0.2) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await room_with(kit, "r1", "sms")
        store.failures = 1_000_000
        with anyio.fail_after(10), pytest.raises(StoreUnavailableError, match="is recorded"):
            await kit.attach_channel("r1", "ws")  # recorded with its system message
        kit.register_channel(SimpleChannel("email"))
        with anyio.fail_after(10), pytest.raises(StoreUnavailableError, match="recorded nothing"):
            await kit.detach_channel("r1", "email")  # not attached: it changes nothing
        store.failures = 0

        async def shown() -> bool:
            return len(await kit.store.list_bindings("r1")) == 2

        await eventually(shown, what="the binding once the store is back")


async def test_a_message_is_routed_once_the_read_model_holds_what_the_process_recorded() -> None:
    # The room and its channel were recorded while the store was away (the calls said so):
    # routed on the read model without them, the next message of the channel was given a
    # room of its own, left in the log for good beside the app's.
    store = FlakyStore()
    log = MemoryEventLog()
    async with RoomKit(log=log, store=store, process_timeout=0.2) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="warmup")
        store.failures = 1_000_000
        with anyio.fail_after(10), pytest.raises(StoreUnavailableError, match="is recorded"):
            await room_with(kit, "support", "sms")
        # The store still away: the message cannot be routed, and nothing is recorded.
        with anyio.fail_after(10), pytest.raises(StoreUnavailableError, match="cannot be routed"):
            await kit.process_inbound(text("sms", "lost?"))
        assert sorted(s.stream for s in await log.streams()) == ["support", "warmup"]

        store.failures = 0
        with anyio.fail_after(10):
            while True:  # as the ingress does: an outage is waited out
                try:
                    result = await kit.process_inbound(text("sms", "hello"))
                    break
                except StoreUnavailableError:
                    pass  # the store projection pauses up to 5 s between its tries
        assert result.event is not None and result.event.room_id == "support"
        assert sorted(r.id for r in await kit.store.list_rooms()) == ["support", "warmup"]


async def test_messages_go_out_while_the_store_is_away() -> None:
    # Post-commit work waits for the read model to hold what it runs for (its hooks read the
    # kit), but not for a store that is away: the message still goes out.
    store = FlakyStore()
    async with RoomKit(store=store, process_timeout=20) as kit:
        sms, ws = SimpleChannel("sms"), SimpleChannel("ws")
        kit.register_channel(sms)
        kit.register_channel(ws)
        await room_with(kit, "r1", "sms", "ws")
        store.failures = 1_000_000
        async with anyio.create_task_group() as tg:
            tg.start_soon(kit.process_inbound, text("sms", "first"))  # waits for the store
            with anyio.fail_after(5):  # well short of process_timeout, the hooks' bound
                while ws.texts() != ["first"]:
                    await anyio.sleep(0.01)
            store.failures = 0


async def test_a_record_the_store_fails_otherwise_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with RoomKit(store=store) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        store.failures = 1
        store.error = RuntimeError("a bug in the store")
        store.attempts = 0
        with caplog.at_level(logging.ERROR, logger="roomkit.projection.store"):
            result = await kit.process_inbound(text("sms", "hello"))
            after = await kit.process_inbound(text("sms", "again"))
        assert store.attempts == 2  # tried once: not again
        ids = [e.id for e in await kit.get_timeline("r1")]
        assert result.event is not None and result.event.id not in ids
        assert after.event is not None and after.event.id in ids
    assert any("store projection failed" in r.getMessage() for r in caplog.records)


async def five_messages(kit: RoomKit) -> list[str]:
    """Room r1 with channel sms and five messages; returns its timeline's event ids."""
    kit.register_channel(SimpleChannel("sms"))
    await room_with(kit, "r1", "sms")
    for n in range(5):
        await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
    return [e.id for e in await kit.get_timeline("r1")]


async def one_more_is_counted(kit: RoomKit, before: list[str]) -> None:
    """One more message: the timeline is ``before`` and it, and the room counts them all."""
    await kit.process_inbound(text("sms", "after"), room_id="r1")
    timeline = await kit.get_timeline("r1")
    assert [e.id for e in timeline][:-1] == before
    room = await kit.get_room("r1")
    assert room is not None and room.event_count == len(timeline)


async def test_a_rebuild_waits_for_a_store_without_a_transaction_that_is_unavailable() -> None:
    # It raised, leaving the store half refilled, and the live tail went on past the records
    # it had not put back: lost from the read model for good.
    store = FlakyStore()
    async with RoomKit(store=store) as kit:
        before = await five_messages(kit)
        store.failures = 3
        await kit.rebuild_store()
        assert [e.id for e in await kit.get_timeline("r1")] == before
        await one_more_is_counted(kit, before)


class StallingStore(InMemoryStore):
    """Its ``stall_at``-th event write from now never ends (until cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.stall_at: int | None = None
        self.stalled = anyio.Event()
        self.away = False  # from its stall on, every write stalls (the database is away)

    async def add_event_envelope(self, data: bytes) -> None:
        if self.away and self.stalled.is_set():
            await anyio.sleep_forever()
        if self.stall_at is not None:
            self.stall_at -= 1
            if self.stall_at == 0:
                self.stall_at = None
                self.stalled.set()
                await anyio.sleep_forever()
        await super().add_event_envelope(data)


async def test_a_rebuild_cut_short_is_finished_by_the_live_tail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its caller's timeout cut it: the store (no transaction) kept half the log, and the
    # live tail went on from where it was, past the records the rebuild had not put back.
    store = StallingStore()
    async with RoomKit(store=store) as kit:
        before = await five_messages(kit)
        store.stall_at = 3
        with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
            async with anyio.create_task_group() as tg:

                async def rebuild() -> None:
                    await kit.rebuild_store()

                tg.start_soon(rebuild)
                await store.stalled.wait()
                tg.cancel_scope.cancel()
            # Reads wait until the store holds again what it held (a guard against waiting
            # for ever, not a timing).
            with anyio.fail_after(10):
                assert [e.id for e in await kit.get_timeline("r1")] == before
        assert any("rebuild of the store stopped" in r.getMessage() for r in caplog.records)
        await one_more_is_counted(kit, before)


async def test_a_call_waiting_for_an_unavailable_store_raises_when_the_kit_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It waited for ever: closing stopped the projection's retry and nobody woke it. (The
    # closing kit's last catch-up with the log stalls too, up to its bound, made short here.)
    monkeypatch.setattr("roomkit.core._runtime._LAST_CATCH_UP", 0.2)
    store = StallingStore()
    store.away = True
    kit = RoomKit(store=store)
    kit.register_channel(SimpleChannel("sms"))
    raised: list[BaseException] = []
    async with kit:
        await room_with(kit, "r1", "sms")
        store.stall_at = 1
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                with pytest.raises(KitClosedError, match="before its read model held") as info:
                    await kit.process_inbound(text("sms", "hello"), room_id="r1")
                raised.append(info.value)

            tg.start_soon(send)
            await store.stalled.wait()
            await kit.close()
    assert len(raised) == 1
    # What was recorded is in the log: a kit on it has the message.
    async with RoomKit(log=kit._log) as again:
        (last,) = (await again.get_timeline("r1"))[-1:]
        assert last.content.body == "hello"  # type: ignore[union-attr]


class TransactionalStore(InMemoryStore):
    """Keeps its log position, as a database's tables do; its next rebuild pauses at its first
    record until ``resume`` is set, then fails at the record at ``fail_at`` (undone whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.position = 0
        self.rebuilding_now = False
        self.paused = anyio.Event()
        self.resume = anyio.Event()
        self.fail_at = 0

    async def applied_position(self) -> int:
        return self.position

    async def apply_record(
        self, position: int, apply: Callable[[], Awaitable[None]], *, after: int = 0
    ) -> bool:
        if self.rebuilding_now:
            self.paused.set()
            await self.resume.wait()
            if position == self.fail_at:
                raise StoreUnavailableError("the database restarted mid-rebuild")
        await apply()
        self.position = position
        return True

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[None]:
        # clear() gives the store new containers: the old ones are what it held before.
        held = dict(self.__dict__)
        self.rebuilding_now = True
        try:
            yield
        except BaseException:
            self.__dict__.update(held)  # undone whole
            raise
        finally:
            self.rebuilding_now = False


async def test_a_caller_that_began_waiting_during_a_failed_rebuild_is_released() -> None:
    # Its message was in the store before the rebuild; it waited for the read model only
    # once its delivery ended, during the rebuild (the checkpoint back at 0). The failed
    # rebuild put the checkpoint back, and nobody released the caller.
    store = TransactionalStore()
    hook_gate = anyio.Event()
    hook_entered = anyio.Event()
    async with RoomKit(store=store) as kit:
        await five_messages(kit)

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def slow(event: RoomEvent, context: RoomContext) -> None:
            hook_entered.set()
            await hook_gate.wait()

        returned = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                await kit.process_inbound(text("sms", "hi"), room_id="r1")
                returned.set()

            async def rebuild() -> None:
                with pytest.raises(StoreUnavailableError):
                    await kit.rebuild_store()

            tg.start_soon(send)
            await hook_entered.wait()  # committed and applied; its delivery goes on
            store.fail_at = await kit._log.last_position()
            tg.start_soon(rebuild)
            await store.paused.wait()
            hook_gate.set()  # the caller now waits for the read model, from 0

            async def waiting() -> bool:
                return bool(kit._runtime.projection._waiters)

            await eventually(waiting, what="the caller waiting for the read model")
            store.resume.set()  # the rebuild fails at its last record
            with anyio.fail_after(10):  # a guard against the hang, not a timing
                await returned.wait()
        timeline = await kit.get_timeline("r1")
        assert timeline[-1].content.body == "hi"  # type: ignore[union-attr]


def test_a_store_repaired_before_its_event_loop_ended_holds_no_reads_of_the_next() -> None:
    # A rebuild cut short, then repaired by the live tail while nobody read; the kit goes on
    # in a new event loop (without close(), as 0.3.0 apps did): its reads waited there for
    # a repair done already.
    store = StallingStore()
    kit = RoomKit(store=store)

    async def first_loop() -> list[str]:
        before = await five_messages(kit)
        store.stall_at = 3
        async with anyio.create_task_group() as tg:
            tg.start_soon(kit.rebuild_store)
            await store.stalled.wait()
            tg.cancel_scope.cancel()
        projection = kit._runtime.projection
        last = await kit._log.last_position()

        async def repaired() -> bool:
            return projection.checkpoint >= last

        await eventually(repaired, what="the live tail back at the log's end")
        return before

    async def second_loop() -> list[str]:
        try:
            with anyio.fail_after(10):  # a guard against waiting for ever, not a timing
                return [e.id for e in await kit.get_timeline("r1")]
        finally:
            await kit.close()

    before = anyio.run(first_loop)
    assert anyio.run(second_loop) == before
