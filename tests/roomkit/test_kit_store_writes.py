"""Writes 0.3.0 apps made on ``kit.store`` (it had no kit method for them) reach the rooms and
the log: a room's timers, a paused room made active, a room created there, a task completed, a
read marker. The ``kit`` fixture checks, after each test, that a kit rebuilt from the log holds
the same (so each write was logged)."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pydantic
import pytest

from eventlog import LogUnavailable, MemoryEventLog, NewEvent, Record
from eventlog.nats import NatsEventLog
from roomkit import (
    Access,
    AIChannel,
    ChannelBinding,
    ChannelCategory,
    ChannelType,
    EventRefusedError,
    EventSource,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    InboundMessage,
    InboundResult,
    InMemoryStore,
    LogUnavailableError,
    MockAIProvider,
    Observation,
    Participant,
    ParticipantRole,
    Room,
    RoomConflictError,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
    RoomNotFoundError,
    RoomStatus,
    RoomTimers,
    Task,
    TaskStatus,
    TextContent,
)
from roomkit.core._in_decision import DecisionWait, InDecision, held_up
from roomkit.store import ConversationStore
from tests.roomkit.kit_helpers import SimpleChannel, eventually, room_with, text
from tests.roomkit.test_kit_pipeline import two_channel_room
from tests.roomkit.test_kit_replay import assert_consistent

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def framework_events(kit: RoomKit, kind: str) -> list[FrameworkEvent]:
    seen: list[FrameworkEvent] = []

    async def note(event: FrameworkEvent) -> None:
        seen.append(event)

    kit.on(kind)(note)
    return seen


def cycle_refused(errors: list[FrameworkEvent], room_id: str, hook: str) -> str:
    """Check that the one hook error is room ``room_id``'s ``hook`` refused a command that
    closed a cycle of rooms deciding; return the refusal."""
    assert [(e.room_id, e.data["hook"]) for e in errors] == [(room_id, hook)]
    refusal = str(errors[0].data["error"])
    assert "each would wait for the other" in refusal
    return refusal


async def test_timers_set_on_a_room_the_router_made_pause_it(kit: RoomKit) -> None:
    # The 0.3.0 way: the router makes the room; the app sets timers through the store.
    kit.register_channel(SimpleChannel("sms"))
    paused = framework_events(kit, "room_paused")
    result = await kit.process_inbound(text("sms", "hi"))
    assert result.event is not None
    room = await kit.store.get_room(result.event.room_id)
    assert room is not None
    timers = RoomTimers(inactive_after_seconds=60, last_activity_at=AN_HOUR_AGO)
    await kit.store.update_room(room.model_copy(update={"timers": timers}))
    assert (await kit.get_room(room.id)).timers == timers
    checked = await kit.check_room_timers(room.id)
    assert checked.status == RoomStatus.PAUSED
    assert [e.data for e in paused] == [{"reason": "timer"}]


async def test_a_paused_room_made_active_through_the_store_pauses_again(kit: RoomKit) -> None:
    timers = RoomTimers(inactive_after_seconds=60, last_activity_at=AN_HOUR_AGO)
    await kit.create_room(room_id="r1", timers=timers)
    paused = framework_events(kit, "room_paused")
    assert (await kit.check_room_timers("r1")).status == RoomStatus.PAUSED
    room = await kit.store.get_room("r1")
    assert room is not None
    await kit.store.update_room(room.model_copy(update={"status": RoomStatus.ACTIVE}))
    assert (await kit.get_room("r1")).status == RoomStatus.ACTIVE
    assert (await kit.check_room_timers("r1")).status == RoomStatus.PAUSED
    assert len(paused) == 2  # it was paused once, and reported paused for ever after


async def test_a_room_written_back_keeps_the_counters_of_its_log(kit: RoomKit) -> None:
    await two_channel_room(kit)
    stale = await kit.get_room("r1")  # read before the message
    await kit.process_inbound(text("sms", "hi"), room_id="r1")
    written = await kit.store.update_room(stale.model_copy(update={"metadata": {"tier": "gold"}}))
    room = await kit.get_room("r1")
    assert room == written
    assert room.metadata == {"tier": "gold"}
    assert room.event_count == 3 and room.latest_index == 2  # two attached, one message
    assert room.created_at == stale.created_at
    version = await kit.log.last_version("r1")
    later = room.created_at + timedelta(days=1)
    assert await kit.update_room(room.model_copy(update={"created_at": later})) == room
    assert await kit.log.last_version("r1") == version  # the same room: nothing logged


async def test_a_room_created_through_the_store_is_the_kit_s(kit: RoomKit) -> None:
    kit.register_channel(SimpleChannel("sms"))
    created = framework_events(kit, "room_created")
    room = await kit.create_room(room_id="model")  # a model to copy from
    made = room.model_copy(update={"id": "r2", "organization_id": "acme"})
    await kit.store.create_room(made)
    await kit.attach_channel("r2", "sms")  # its actor knows it: not "not found"
    assert (await kit.get_room("r2")).organization_id == "acme"
    assert [e.room_id for e in created] == ["model"]  # a store write fired none in 0.3.0


async def test_update_room_of_a_room_that_does_not_exist_creates_it(kit: RoomKit) -> None:
    room = await kit.create_room(room_id="model")
    hooked: list[str] = []

    @kit.hook(HookTrigger.ON_ROOM_CREATED, execution=HookExecution.ASYNC)
    async def note(event: RoomEvent, context: RoomContext) -> None:
        hooked.append(context.room.id)

    await kit.update_room(room.model_copy(update={"id": "r3", "event_count": 7}))
    made = await kit.get_room("r3")
    assert (made.id, made.event_count, made.created_at) == ("r3", 0, room.created_at)
    assert hooked == []  # as 0.3.0's store write: no hook
    with pytest.raises(TypeError, match="takes a Room"):
        await kit.update_room({"id": "r4"})  # type: ignore[arg-type]
    with pytest.raises(RoomNotFoundError):
        await kit.get_room("r4")


async def test_a_task_completed_and_a_marker_set_through_the_store_are_logged(
    kit: RoomKit,
) -> None:
    await two_channel_room(kit)
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert result.event is not None
    task = Task(room_id="r1", title="call back")
    await kit.store.update_task(task)  # a task of the room's, as a hook would have made it
    await kit.store.update_task(task.model_copy(update={"status": TaskStatus.COMPLETED}))
    assert [t.status for t in await kit.list_tasks("r1")] == ["completed"]
    await kit.store.mark_read("r1", "ws", result.event.id)
    assert await kit.store.get_unread_count("r1", "ws") == 0
    await kit.store.mark_all_read("r1", "sms")
    assert await kit.store.get_unread_count("r1", "sms") == 0


async def test_the_store_given_is_the_read_model_behind_the_view() -> None:
    store = InMemoryStore()
    async with RoomKit(store=store) as kit:
        assert kit.store.read_model is store  # type: ignore[attr-defined]
        await kit.create_room(room_id="r1")
        assert (await store.get_room("r1")) == (await kit.store.get_room("r1"))
        assert await kit.store.idempotent_event_id("r1", "nope") is None


async def test_a_binding_written_through_the_store_is_the_room_s(kit: RoomKit) -> None:
    # 0.3.0 apps added and changed bindings in the store (a participant's phone in its
    # metadata, access NONE to stop deliveries): the room delivered by them.
    sms1, sms2 = SimpleChannel("sms1"), SimpleChannel("sms2")
    kit.register_channel(sms1)
    kit.register_channel(sms2)
    await room_with(kit, "r1", "sms1")
    binding = ChannelBinding(
        room_id="r1", channel_id="sms2", channel_type=ChannelType.SMS, metadata={"phone": "1"}
    )
    await kit.store.add_binding(binding)
    await kit.process_inbound(text("sms1", "one"), room_id="r1")
    assert sms2.texts() == ["one"]
    await kit.store.update_binding(binding.model_copy(update={"metadata": {"phone": "2"}}))
    await kit.update_binding_metadata("r1", "sms2", {"x": 1})  # merges into the store's edit
    assert (await kit.get_binding("r1", "sms2")).metadata == {"phone": "2", "x": 1}
    await kit.store.update_binding(binding.model_copy(update={"access": Access.NONE}))
    await kit.process_inbound(text("sms1", "two"), room_id="r1")
    assert sms2.texts() == ["one"]
    assert await kit.store.remove_binding("r1", "sms2") is True
    assert await kit.store.remove_binding("r1", "sms2") is False
    assert [b.channel_id for b in await kit.list_bindings("r1")] == ["sms1"]
    with pytest.raises(RoomNotFoundError):
        await kit.store.add_binding(binding.model_copy(update={"room_id": "elsewhere"}))


async def test_a_participant_written_through_the_store_is_the_room_s(kit: RoomKit) -> None:
    await two_channel_room(kit)
    seen: list[list[str]] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def note(event: RoomEvent, context: RoomContext) -> HookResult:
        seen.append([f"{p.display_name}:{p.role}" for p in context.participants])
        return HookResult.allow()

    alice = Participant(id="alice", room_id="r1", channel_id="sms", display_name="Alice")
    await kit.store.add_participant(alice.model_copy(update={"role": ParticipantRole.OWNER}))
    await kit.store.update_participant(
        alice.model_copy(update={"role": ParticipantRole.OWNER, "display_name": "Alice B."})
    )
    await kit.process_inbound(text("sms", "hi", sender="alice"), room_id="r1")
    assert seen == [["Alice B.:owner"]]
    kept = await kit.ensure_participant("r1", "sms", "alice", display_name="other")
    assert (kept.display_name, kept.role) == ("Alice B.", "owner")


async def test_history_with_an_id_stored_already_or_a_lower_index_stays_consistent(
    kit: RoomKit,
) -> None:
    # An event is recorded once: the read model refused a second one of an id, after the
    # room had counted it. A lower index left the room's latest index apart from the read
    # model's (the kit fixture checks they agree).
    await two_channel_room(kit)
    await room_with(kit, "r2", "sms")
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert result.event is not None
    with pytest.raises(ValueError, match="stored already"):
        await kit.store.add_event(result.event.model_copy(update={"room_id": "r2"}))
    old = RoomEvent(
        room_id="r1",
        index=0,
        source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
        content=TextContent(body="old"),
    )
    await kit.store.add_event(old)
    assert (await kit.get_room("r1")).latest_index == 2


@pytest.mark.nats
async def test_an_id_stored_already_is_refused_while_the_read_model_is_rebuilt(
    nats_log: NatsEventLog,
) -> None:
    # Looked up in a read model being rebuilt (empty, then filling up), it was found missing
    # and logged again: its second record failed every later rebuild.
    def event(event_id: str, room_id: str) -> RoomEvent:
        source = EventSource(channel_id="sms", channel_type=ChannelType.SMS)
        return RoomEvent(
            id=event_id, room_id=room_id, source=source, content=TextContent(body="x")
        )

    async with RoomKit(log=nats_log) as kit:
        await kit.create_room(room_id="a")
        await kit.create_room(room_id="b")
        for n in range(200):
            await kit.store.add_event(event(f"e{n}", "b"))
        await kit.store.add_event(event("dup", "a"))
        accepted: list[str] = []
        rebuilt = anyio.Event()

        async def add_again() -> None:
            while not rebuilt.is_set():
                try:
                    await kit.store.add_event(event("dup", "b"))
                    accepted.append("dup")
                    return
                except ValueError:
                    await anyio.sleep(0)

        for _ in range(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(add_again)
                await kit.rebuild_store()
                rebuilt.set()
            rebuilt = anyio.Event()
        assert accepted == []
        assert (await kit.store.get_event("dup")).room_id == "a"  # type: ignore[union-attr]


async def test_history_imported_through_the_store_is_the_room_s(kit: RoomKit) -> None:
    kit.register_channel(SimpleChannel("sms"))
    ws = SimpleChannel("ws")
    kit.register_channel(ws)
    await room_with(kit, "r1", "sms", "ws")  # two system events: indices 0 and 1
    for n in range(2):
        await kit.store.add_event(
            RoomEvent(
                room_id="r1",
                index=2 + n,
                source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
                content=TextContent(body=f"imported {n}"),
                idempotency_key=f"old-{n}",
            )
        )
    assert ws.delivered == []  # history: delivered to no one
    assert (await kit.get_room("r1")).timers.last_activity_at is None  # nor activity
    again = await kit.process_inbound(text("sms", "x", idempotency_key="old-1"), room_id="r1")
    assert again.blocked and again.reason == "duplicate"
    live = await kit.process_inbound(text("sms", "new"), room_id="r1")
    assert live.event is not None and live.event.index == 4
    bodies = [getattr(e.content, "body", "") for e in await kit.get_timeline("r1")]
    assert bodies[-3:] == ["imported 0", "imported 1", "new"]


async def test_an_observation_written_through_the_store_is_logged(kit: RoomKit) -> None:
    await kit.create_room(room_id="r1")
    observation = Observation(room_id="r1", channel_id="ai", content="upset", category="mood")
    await kit.store.add_observation(observation)
    assert await kit.list_observations("r1") == [observation]
    task = Task(room_id="r1", title="call back")
    await kit.store.add_task(task)
    assert [t.id for t in await kit.list_tasks("r1")] == [task.id]


async def test_a_room_is_never_deleted_and_create_room_writes_it_as_given(kit: RoomKit) -> None:
    await kit.create_room(room_id="r1", metadata={"v": 1})
    with pytest.raises(RoomKitError, match="cannot be deleted"):
        await kit.store.delete_room("r1")
    room = await kit.get_room("r1")
    await kit.store.create_room(room.model_copy(update={"metadata": {"v": 2}}))  # as 0.3.0
    assert (await kit.get_room("r1")).metadata == {"v": 2}


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the bad status's
async def test_a_write_that_would_not_read_back_is_refused_and_a_written_model_is_a_copy(
    kit: RoomKit,
) -> None:
    # model_copy(update=...) validates nothing: logged, a bad status would fail every replay
    # of the room. And the caller's model stays the caller's: changing it later changes
    # nothing the room holds.
    room = await kit.create_room(room_id="r1")
    with pytest.raises(pydantic.ValidationError):
        await kit.store.update_room(room.model_copy(update={"status": "weird"}))
    with pytest.raises(pydantic.ValidationError):
        await kit.store.add_participant(
            Participant.model_construct(id="p", room_id="r1", channel_id=None)
        )
    mine = room.model_copy(update={"metadata": {"v": 1}})
    await kit.store.update_room(mine)
    mine.metadata["v"] = 2
    assert (await kit.get_room("r1")).metadata == {"v": 1}


async def test_a_write_whose_json_cannot_be_read_is_refused_as_the_kit_s_calls_refuse_it(
    kit: RoomKit,
) -> None:
    # A number past 4,300 digits, nesting deeper than the reader goes, assigned in place:
    # kit.create_room refuses them with EventRefusedError, kit.store raised a ValidationError
    # quoting the JSON.
    room = await kit.create_room(room_id="r1")
    nested: dict[str, Any] = {}
    for _ in range(240):
        nested = {"d": nested}
    for metadata, why in (({"n": 10**5000}, "4,300 digits"), (nested, "recursion limit")):
        room.metadata = metadata
        with pytest.raises(EventRefusedError, match=f"^Room cannot be stored: .*{why}"):
            await kit.store.update_room(room)
    assert (await kit.get_room("r1")).metadata == {}


async def test_what_a_kit_call_answers_with_is_the_caller_s_own(kit: RoomKit) -> None:
    # The room, binding or participant a call answered with was the one its room held:
    # changing it in place changed the room unlogged (the timers it paused by, what the
    # next logged change wrote).
    kit.register_channel(SimpleChannel("sms"))
    timers = RoomTimers(inactive_after_seconds=3600)
    answers: list[Any] = [
        await kit.create_room(room_id="r1", metadata={"plan": "free"}, timers=timers),
        await kit.create_room(room_id="r1"),  # it exists: answered with it
        await kit.update_room_metadata("r1", {"seats": 1}),
        await kit.check_room_timers("r1"),
        await kit.attach_channel("r1", "sms", metadata={"phone": "+1"}),
        await kit.mute("r1", "sms"),
        await kit.ensure_participant("r1", "sms", "ana"),
        await kit.store.update_room(await kit.get_room("r1")),
    ]
    for answer in answers:
        if isinstance(answer, Room):
            answer.metadata["plan"] = "changed"
            answer.timers.inactive_after_seconds = 5
        elif isinstance(answer, ChannelBinding):
            answer.metadata["phone"] = "changed"
            answer.muted = False
        else:
            answer.display_name = "changed"
    closed = await kit.close_room("r1")
    closed.metadata["plan"] = "changed after the close"
    room = await kit.get_room("r1")
    assert room.metadata == {"plan": "free", "seats": 1}
    assert room.timers.inactive_after_seconds == 3600
    context = await kit._context("r1")
    assert context.room.metadata == room.metadata
    assert context.room.timers.inactive_after_seconds == 3600
    [binding] = context.bindings
    assert binding.metadata == {"phone": "+1"} and binding.muted
    assert [p.display_name for p in context.participants] == [None]


class _Prefixed(Task):
    """An app's task whose validator is not idempotent (it prefixes the title)."""

    @pydantic.field_validator("title")
    @classmethod
    def _prefix(cls, title: str) -> str:
        return f"[T] {title}"


async def test_what_a_kit_call_answers_with_is_a_copy_not_a_model_made_again(kit: RoomKit) -> None:
    # Made again from its values, it ran the app's validators once more than the log had,
    # and marked every field as set.
    await kit.create_room(room_id="r1")
    task = await kit.store.add_task(_Prefixed(room_id="r1", title="refund"))
    stored = await kit.store.get_task(task.id)
    assert stored is not None and task.title == stored.title
    room = await kit.create_room(room_id="r2", metadata={"a": 1})
    assert "event_count" not in room.model_fields_set


async def test_a_hook_writing_its_own_room_through_the_store_does_not_hold_the_message(
    kit: RoomKit,
) -> None:
    # A BEFORE_BROADCAST hook runs inside its room's decision: waited for, its write waited
    # for that very decision, until process_timeout blocked the message and lost the write.
    kit.register_channel(SimpleChannel("sms"))
    ws = SimpleChannel("ws")
    kit.register_channel(ws)
    await room_with(kit, "r1", "sms", "ws")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=5.0)
    async def tag(event: RoomEvent, context: RoomContext) -> HookResult:
        room = await kit.store.get_room("r1")
        assert room is not None
        await kit.store.update_room(room.model_copy(update={"metadata": {"seen": True}}))
        await kit.store.mark_all_read("r1", "ws")
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert not result.blocked and ws.texts() == ["hi"] and errors == []
    room = await kit.get_room("r1")  # committed with the message
    assert room.metadata == {"seen": True}
    assert room.timers.last_activity_at is not None  # the message's, not taken back
    assert await kit.store.get_unread_count("r1", "ws") == 1  # the message came after


class _SlowAppends(MemoryEventLog):
    """A log whose appends take half a second once ``slow`` is set."""

    slow = False

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> list[Record]:
        if self.slow:
            await anyio.sleep(0.5)
        return await super().append(stream, events, expected_version=expected_version)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_hook_whose_time_runs_out_as_it_writes_through_the_store_timed_out(
    anyio_backend: str,
) -> None:
    # On trio, the write's append (shielded, so that it lands whole) held the timeout off
    # for good: the hook's block counted, where on asyncio it timed out (fail-open).
    log = _SlowAppends()
    async with RoomKit(log=log) as kit:
        _, ws = await two_channel_room(kit)

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=0.1)
        async def late(event: RoomEvent, context: RoomContext) -> HookResult:
            await kit.store.add_task(Task(id="t1", room_id="r1", title="follow up"))
            return HookResult.block("decided too late")

        errors = framework_events(kit, "hook_error")
        log.slow = True
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert not result.blocked and ws.texts() == ["hi"]
        assert [e.data["hook"] for e in errors] == ["late"]
        assert [t.id for t in await kit.store.list_tasks("r1")] == ["t1"]  # the write landed


async def test_a_hook_registering_the_sender_with_ensure_participant_does_not_fail(
    kit: RoomKit,
) -> None:
    # 0.3.0's ensure_participant took no room lock: a BEFORE_BROADCAST hook registering the
    # sender worked. Sent to the room from its own decision, it raised RoomKitError.
    _, ws = await two_channel_room(kit)
    joined: list[str] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def register(event: RoomEvent, context: RoomContext) -> HookResult:
        sender = event.source.participant_id
        assert sender is not None
        participant = await kit.ensure_participant("r1", "sms", sender, display_name="Ana")
        joined.append(participant.id)
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    first = await kit.process_inbound(text("sms", "hi", sender="+1555"), room_id="r1")
    second = await kit.process_inbound(text("sms", "again", sender="+1555"), room_id="r1")
    assert not first.blocked and not second.blocked and errors == []
    assert joined == ["+1555", "+1555"] and ws.texts() == ["hi", "again"]
    participants = await kit.store.list_participants("r1")
    assert [(p.id, p.display_name) for p in participants] == [("+1555", "Ana")]
    rebuilt = RoomKit(log=kit._log)  # the write is in the log, ahead of the message
    rebuilt.register_channel(SimpleChannel("sms"))
    rebuilt.register_channel(SimpleChannel("ws"))
    async with rebuilt:
        assert [p.id for p in await rebuilt.store.list_participants("r1")] == ["+1555"]


async def test_hooks_of_concurrent_messages_read_and_write_the_room_in_turn(
    kit: RoomKit,
) -> None:
    # Each hook reads the room through the store and writes it back with a count one up:
    # written after the messages queued, each write read a room without the others'.
    await two_channel_room(kit)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def count(event: RoomEvent, context: RoomContext) -> HookResult:
        room = await kit.store.get_room("r1")
        assert room is not None
        n = room.metadata.get("n", 0) + 1
        await kit.store.update_room(room.model_copy(update={"metadata": {"n": n}}))
        return HookResult.allow()

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(
                functools.partial(kit.process_inbound, room_id="r1"), text("sms", f"{n}")
            )
    assert (await kit.get_room("r1")).metadata == {"n": 20}


async def test_bindings_and_history_a_hook_writes_apply_to_the_message_it_decides(
    kit: RoomKit,
) -> None:
    # As in 0.3.0, whose store took them before the message was stored and broadcast: a
    # channel added gets the message, one set to access NONE does not, and history added
    # comes before the message in the timeline.
    _, ws = await two_channel_room(kit)
    late = SimpleChannel("late")
    kit.register_channel(late)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def rewire(event: RoomEvent, context: RoomContext) -> HookResult:
        ws_binding = await kit.store.get_binding("r1", "ws")
        assert ws_binding is not None
        await kit.store.update_binding(ws_binding.model_copy(update={"access": Access.NONE}))
        binding = ChannelBinding(room_id="r1", channel_id="late", channel_type=ChannelType.SMS)
        await kit.store.add_binding(binding)
        note = RoomEvent(
            room_id="r1",
            source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
            content=TextContent(body="note"),
        )
        await kit.store.add_event(note)
        return HookResult.allow()

    await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert (late.texts(), ws.texts()) == (["hi"], [])
    bodies = [getattr(e.content, "body", "") for e in await kit.get_timeline("r1")]
    assert bodies[-2:] == ["note", "hi"]


async def test_a_kit_command_to_its_own_room_from_a_hook_fails_at_once(kit: RoomKit) -> None:
    # The same wait, through the kit: the hook fails (the message goes through, fail-open)
    # with an error that says why, instead of at its timeout.
    await two_channel_room(kit)

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=5.0)
    async def tag(event: RoomEvent, context: RoomContext) -> HookResult:
        await kit.update_room_metadata("r1", {"seen": True})
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert not result.blocked
    assert [e.data["hook"] for e in errors] == ["tag"]
    assert "its own decision runs" in str(errors[0].data["error"])


async def test_the_refusal_names_what_a_decision_runs_beyond_its_own_hooks(kit: RoomKit) -> None:
    # r1's hook sends r2 a message: r2's event_processed handler runs inside r1's decision,
    # and a command from it to r1 is refused. The refusal names such code, not only r1's
    # channel and hooks (which had not called r1).
    await two_channel_room(kit)
    await room_with(kit, "r2", "sms")
    refusals: list[str] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
    async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.room_id == "r1":
            await kit.process_inbound(text("sms", "relay"), room_id="r2")
        return HookResult.allow()

    @kit.on("event_processed")
    async def tag_r1(event: FrameworkEvent) -> None:
        if event.room_id == "r2":
            try:
                await kit.update_room_metadata("r1", {"seen": True})
            except RoomKitError as exc:
                refusals.append(str(exc))

    await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert len(refusals) == 1
    assert "its own decision runs" in refusals[0]
    assert "identity resolution, hooks, deliveries and event handlers" in refusals[0]


async def test_a_command_closing_a_cycle_of_rooms_deciding_fails_at_once(kit: RoomKit) -> None:
    # r1's hook sends r2 a message, whose hook sends r3 one, whose hook calls r1: r1's
    # decision waits for r2's, which waits for r3's. r3's hook fails at once, instead of every
    # room waiting until r1's hook timed out (and the cycle's messages being decided after).
    await two_channel_room(kit)
    for room_id in ("r2", "r3"):
        await room_with(kit, room_id, "sms")
    relays = {"r1": ("r2", "relay"), "r2": ("r3", "relay again")}

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
    async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.room_id in relays:
            room_id, body = relays[event.room_id]
            await kit.process_inbound(text("sms", body), room_id=room_id)
        else:
            await kit.update_room_metadata("r1", {"seen": True})
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert not result.blocked
    refusal = cycle_refused(errors, "r3", "relay")
    assert "room r1's decision waits for room r3's" in refusal
    for room_id, body in (("r1", "hi"), ("r2", "relay"), ("r3", "relay again")):
        timeline = await kit.get_timeline(room_id)
        assert timeline[-1].content.body == body  # type: ignore[union-attr]
    # Out of the decisions, the same call is taken.
    await kit.update_room_metadata("r1", {"seen": True})


async def test_a_message_relayed_from_a_hook_returns_once_delivered_and_answered(
    kit: RoomKit,
) -> None:
    # As in 0.3.0, where the broadcast and the AI's reply ran inside process_inbound: the
    # relaying hook reads the other room's answer right after its call.
    kit.register_channel(SimpleChannel("sms"))
    sms2 = SimpleChannel("sms2")
    kit.register_channel(sms2)
    kit.register_channel(AIChannel("ai", provider=MockAIProvider(["ai answer"])))
    await room_with(kit, "r1", "sms")
    await room_with(kit, "r2", "sms2")
    await kit.attach_channel("r2", "ai", category=ChannelCategory.INTELLIGENCE)
    seen: dict[str, list[str]] = {}

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.room_id == "r1":
            await kit.process_inbound(text("sms2", "relayed"), room_id="r2")
            timeline = await kit.get_timeline("r2")
            seen["timeline"] = [getattr(e.content, "body", "") for e in timeline]
            seen["sms2"] = sms2.texts()
        return HookResult.allow()

    await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert seen["timeline"][-2:] == ["relayed", "ai answer"]
    assert seen["sms2"] == ["ai answer"]


async def test_a_room_s_async_hook_may_message_a_room_whose_hook_messages_it_back(
    kit: RoomKit,
) -> None:
    # r1's AFTER_BROADCAST hook (as the cycle refusal advises) sends r2 a message, whose
    # hook sends r1 one. The latter waited for r1's deliveries, queued behind r1's async
    # hook, which waited for it: both were held until a hook timed out. It returns once
    # committed now; r1 delivers it once its hook is done.
    await two_channel_room(kit)
    await room_with(kit, "r2", "sms")
    answers: dict[str, InboundResult] = {}

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, timeout=3.0)
    async def forward(event: RoomEvent, context: RoomContext) -> None:
        if event.room_id == "r1" and getattr(event.content, "body", "") == "hello":
            answers["r2"] = await kit.process_inbound(text("sms", "to r2"), room_id="r2")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
    async def back(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.room_id == "r2":
            answers["r1"] = await kit.process_inbound(text("sms", "back"), room_id="r1")
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
    assert not result.blocked and errors == []
    assert not answers["r1"].blocked and not answers["r2"].blocked
    timeline = [getattr(e.content, "body", "") for e in await kit.get_timeline("r1")]
    assert timeline[-2:] == ["hello", "back"]


async def test_a_cycle_of_rooms_deciding_across_two_kits_fails_at_once(kit: RoomKit) -> None:
    # Two kits in one process: r1 of this kit sends the other kit's r2 a message, whose
    # hook commands r1. Only waits within one kit were known: it waited for the timeout.
    await two_channel_room(kit)
    other = RoomKit()
    other.register_channel(SimpleChannel("sms"))
    async with other:
        await room_with(other, "r2", "sms")

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
        async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
            await other.process_inbound(text("sms", "to r2"), room_id="r2")
            return HookResult.allow()

        @other.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
        async def back(event: RoomEvent, context: RoomContext) -> HookResult:
            await kit.update_room_metadata("r1", {"seen": True})
            return HookResult.allow()

        errors = framework_events(other, "hook_error")
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert not result.blocked
        cycle_refused(errors, "r2", "back")
        # The other kit's room r1 is another room: not refused.
        await other.create_room(room_id="r1")
        await other.update_room_metadata("r1", {"ok": True})


async def two_rooms_deciding_at_once(
    kit: RoomKit, command: Callable[[str, str], Awaitable[object]]
) -> dict[str, InboundResult]:
    """A message in r1 and one in r2 at once, whose hooks, once both rooms decide, each run
    ``command(its room, the other room)``; return the messages' results by room."""
    kit.register_channel(SimpleChannel("sms"))
    for room_id in ("r1", "r2"):
        await room_with(kit, room_id, "sms")
    both_deciding = anyio.Event()
    deciding: set[str] = set()

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=10.0)
    async def forward(event: RoomEvent, context: RoomContext) -> HookResult:
        if getattr(event.content, "body", "") != "forward":
            return HookResult.allow()
        deciding.add(context.room.id)
        if len(deciding) == 2:
            both_deciding.set()
        await both_deciding.wait()
        await command(context.room.id, "r2" if context.room.id == "r1" else "r1")
        return HookResult.allow()

    results: dict[str, InboundResult] = {}

    async def send(room_id: str) -> None:
        results[room_id] = await kit.process_inbound(text("sms", "forward"), room_id=room_id)

    with anyio.fail_after(8):  # process_timeout (30 s) before
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send, "r1")
            tasks.start_soon(send, "r2")
    return results


async def test_two_rooms_deciding_at_once_whose_hooks_send_to_each_other_fail_at_once(
    kit: RoomKit,
) -> None:
    # Each waited behind the other's decision until process_timeout, and both messages were
    # lost. The one that closes the circle is refused at once; the other goes through.
    async def send_to(here: str, other: str) -> None:
        await kit.process_inbound(text("sms", f"from {here}"), room_id=other)

    errors = framework_events(kit, "hook_error")
    results = await two_rooms_deciding_at_once(kit, send_to)
    assert all(not r.blocked for r in results.values())
    [error] = errors
    refused = error.room_id
    assert refused is not None and "each would wait for the other" in str(error.data["error"])
    through = "r2" if refused == "r1" else "r1"
    timeline = await kit.get_timeline(refused)
    assert [getattr(e.content, "body", None) for e in timeline][-2:] == [
        "forward",
        f"from {through}",
    ]


async def test_a_room_that_answered_a_decision_is_not_taken_for_one_it_waits_for(
    kit: RoomKit,
) -> None:
    # A's hook commanded B; B answered and went on at once to its next message, whose hook
    # commanded A before A's code resumed: that was refused as a circle.
    kit.register_channel(SimpleChannel("a"))
    kit.register_channel(SimpleChannel("b"))
    held = anyio.Event()
    failed: list[BaseException] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=["a"])
    async def on_a(event: RoomEvent, context: RoomContext) -> HookResult:
        await kit.update_room_metadata("B", {"from_a": True})
        return HookResult.allow()

    @kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=["b"])
    async def on_b(event: RoomEvent, context: RoomContext) -> HookResult:
        body = getattr(event.content, "body", "")
        if body == "first":
            await held.wait()
        elif body == "second":
            try:
                await kit.update_room_metadata("A", {"from_b": True})
            except RoomKitError as exc:
                failed.append(exc)
        return HookResult.allow()

    await room_with(kit, "A", "a")
    await room_with(kit, "B", "b")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            # B decides "first"; A's command waits behind it; then "second" behind that.
            for channel_id, room_id, body in (
                ("b", "B", "first"),
                ("a", "A", "m"),
                ("b", "B", "second"),
            ):
                tasks.start_soon(
                    functools.partial(kit.process_inbound, text(channel_id, body), room_id=room_id)
                )
                await anyio.wait_all_tasks_blocked()
            held.set()
    assert failed == []
    assert (await kit.get_room("A")).metadata == {"from_b": True}


async def test_a_circle_through_tasks_the_hooks_wait_for_fails_at_once(kit: RoomKit) -> None:
    # Each hook commands the other room from a task it waits for (a task group, as
    # asyncio.wait_for or gather make one): the circle is known there too.
    refused: list[str] = []

    async def command_from_a_task(here: str, other: str) -> None:
        async def command() -> None:
            try:
                await kit.update_room_metadata(other, {"from": here})
            except RoomKitError:
                refused.append(here)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(command)

    await two_rooms_deciding_at_once(kit, command_from_a_task)
    assert len(refused) == 1


def test_a_chain_of_waits_holds_only_up_to_its_first_link_no_longer_live() -> None:
    # r1 waits for r2's decision, r2 sent r3 its message from a task and is decided: r3
    # may command r1 (it waits for r1's decision to end), but not r2 while r2 waits.
    kit = object()

    def decision(room_id: str) -> InDecision:
        return InDecision(kit, room_id, 0, commit=lambda command: anyio.sleep(0))

    r1, r2 = decision("r1"), decision("r2")
    r1_waits, r2_waits = DecisionWait(r1), DecisionWait(r2)
    chain = (r2_waits, r1_waits)  # as r3's decision holds it: the nearest first
    assert held_up(chain, "r1", kit) and held_up(chain, "r2", kit)
    assert not held_up(chain, "r3", kit) and not held_up(chain, "r1", object())
    r2.active = False  # r2's decision is over: r1 waits for r2's turn, not for r3
    assert not held_up(chain, "r1", kit) and not held_up(chain, "r2", kit)
    r2.active = True
    r2_waits.active = False  # r2's call returned (or gave up)
    assert not held_up(chain, "r1", kit)


async def test_a_room_whose_decision_is_over_takes_commands_from_the_one_it_messaged(
    kit: RoomKit,
) -> None:
    # r1's hook leaves a task sending r2 a message; r2's hook commands r1 once r1's
    # decision is over. r1 waits for nothing then: it was refused as a cycle.
    await two_channel_room(kit)
    await room_with(kit, "r2", "sms")
    sent, r1_done = anyio.Event(), anyio.Event()
    relayed: list[InboundResult] = []

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=3.0)
    async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.room_id == "r1":

            async def later() -> None:
                sent.set()
                relayed.append(await kit.process_inbound(text("sms", "relay"), room_id="r2"))

            tasks.start_soon(later)
            await sent.wait()  # sent while r1's decision runs
        else:
            await r1_done.wait()
            await kit.update_room_metadata("r1", {"seen": True})
        return HookResult.allow()

    errors = framework_events(kit, "hook_error")
    async with anyio.create_task_group() as tasks:
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        r1_done.set()
    assert errors == []
    room = await kit.get_room("r1")
    assert room is not None and room.metadata == {"seen": True}
    assert len(relayed) == 1 and relayed[0].event is not None


async def test_a_task_a_hook_started_commands_its_room_once_the_decision_is_done(
    kit: RoomKit,
) -> None:
    # The task copied the hook's context, mark and all: only while the decision runs does
    # the mark refuse a command to the room.
    await two_channel_room(kit)
    decided = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def later() -> None:
            await decided.wait()
            await kit.update_room_metadata("r1", {"later": True})

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def start(event: RoomEvent, context: RoomContext) -> HookResult:
            tg.start_soon(later)
            return HookResult.allow()

        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        decided.set()
    assert (await kit.get_room("r1")).metadata == {"later": True}


def test_the_store_view_can_be_copied() -> None:
    kit = RoomKit()
    assert copy.copy(kit.store).read_model is kit.store.read_model  # type: ignore[attr-defined]
    copy.deepcopy(kit.store)


async def test_writes_a_hook_makes_apply_in_turn_and_its_reads_show_them(kit: RoomKit) -> None:
    # Each write is the room's at once: a binding added then removed is gone, a room changed
    # then written back as it was is as it was, and history imported then a room written
    # back keeps the room's count. Decided all on the room before the message, they undid
    # each other wrongly (the binding stayed, the change stuck, the count went back).
    _, ws = await two_channel_room(kit)
    late = SimpleChannel("late")
    kit.register_channel(late)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def churn(event: RoomEvent, context: RoomContext) -> HookResult:
        binding = ChannelBinding(room_id="r1", channel_id="late", channel_type=ChannelType.SMS)
        await kit.store.add_binding(binding)
        assert await kit.store.get_binding("r1", "late") is not None  # reads show it
        assert await kit.store.remove_binding("r1", "late") is True
        room = await kit.store.get_room("r1")
        assert room is not None
        await kit.store.update_room(room.model_copy(update={"metadata": {"x": 1}}))
        await kit.store.update_room(room)
        note = RoomEvent(
            room_id="r1",
            source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
            content=TextContent(body="note"),
        )
        await kit.store.add_event(note)
        with pytest.raises(ValueError, match="stored already"):
            await kit.store.add_event(note)
        with pytest.raises(ValueError, match="being decided"):
            await kit.store.add_event(event)
        after = await kit.store.get_room("r1")
        assert after is not None
        await kit.store.update_room(after.model_copy(update={"metadata": {"y": 2}}))
        await kit.store.mark_read("r1", "ws", event.id)  # the message itself, once recorded
        return HookResult.allow()

    await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert (late.texts(), ws.texts()) == ([], ["hi"])
    room = await kit.get_room("r1")
    assert room.metadata == {"y": 2} and room.event_count == 4
    assert await kit.store.get_unread_count("r1", "ws") == 0


async def test_a_write_a_channel_makes_before_failing_is_kept(kit: RoomKit) -> None:
    # As 0.3.0's store kept it: the write was done when the channel failed.
    class Noting(SimpleChannel):
        async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> Any:
            room = context.room.model_copy(update={"metadata": {"seen": True}})
            await kit.store.update_room(room)
            raise RuntimeError("provider payload unreadable")

    kit.register_channel(Noting("sms"))
    await room_with(kit, "r1", "sms")
    with pytest.raises(RuntimeError, match="unreadable"):
        await kit.process_inbound(text("sms", "hi"), room_id="r1")

    async def kept() -> bool:  # committed; the read model follows the log on its own
        return (await kit.get_room("r1")).metadata == {"seen": True}

    await eventually(kept, what="the channel's write in the read model")


async def test_a_hook_writing_another_kit_s_room_of_the_same_id_writes_that_kit() -> None:
    # The decision's mark is kit A's: B's room of the same id is not A's (the write went to
    # A), and B's read model is not waited for up to A's log (it waited for good).
    async with RoomKit() as a, RoomKit() as b:
        for k in (a, b):
            k.register_channel(SimpleChannel("sms"))
            k.register_channel(SimpleChannel("ws"))
            await room_with(k, "r1", "sms", "ws")
        for n in range(5):  # A's log longer than B's
            await a.process_inbound(text("sms", f"{n}"), room_id="r1")

        @a.hook(HookTrigger.BEFORE_BROADCAST, timeout=None)
        async def mirror(event: RoomEvent, context: RoomContext) -> HookResult:
            room = await b.store.get_room("r1")
            assert room is not None
            await b.store.update_room(room.model_copy(update={"metadata": {"mirrored": True}}))
            return HookResult.allow()

        with anyio.fail_after(10):  # a guard against the wait for good, not a time limit
            await a.process_inbound(text("sms", "hi"), room_id="r1")
        assert (await a.get_room("r1")).metadata == {}
        assert (await b.get_room("r1")).metadata == {"mirrored": True}


class _SlowOrLostAck(MemoryEventLog):
    """Lands each append, then answers ``slow_ack`` seconds late or, ``lose_ack`` times, not
    at all (``LogUnavailable``): a server under load, an answer lost."""

    lose_ack = 0
    slow_ack = 0.0

    async def append(self, stream: str, events: Any, *, expected_version: Any) -> Any:
        records = await super().append(stream, events, expected_version=expected_version)
        if self.lose_ack:
            self.lose_ack -= 1
            raise LogUnavailable("ack lost")
        if self.slow_ack:
            await anyio.sleep(self.slow_ack)
        return records


async def _bump(kit: RoomKit) -> None:
    room = await kit.store.get_room("r1")
    assert room is not None
    n = room.metadata.get("n", 0)
    await kit.store.update_room(room.model_copy(update={"metadata": {"n": n + 1}}))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("cut_by", ["hook timeout", "process_timeout", "the hook's own scope"])
@pytest.mark.parametrize("answer", ["slow", "lost"])
async def test_a_timeout_while_a_hook_s_write_is_appended_leaves_it_whole(
    cut_by: str, answer: str
) -> None:
    # The cancellation came mid-append: the write landed and the room never applied it (its
    # state behind its log), or the message then conflicted with it and ran its hook again
    # (anyio's scope cancels again and again; an answer lost then was not even reported).
    log = _SlowOrLostAck()
    hook_timeout, process_timeout = (0.05, None) if cut_by == "hook timeout" else (5.0, None)
    if cut_by == "process_timeout":
        process_timeout = 0.05
    async with RoomKit(log=log, process_timeout=process_timeout) as kit:
        await two_channel_room(kit)
        runs: list[int] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=hook_timeout)
        async def bump(event: RoomEvent, context: RoomContext) -> HookResult:
            runs.append(1)
            log.slow_ack = 0.2
            log.lose_ack = 1 if answer == "lost" else 0
            try:
                with anyio.move_on_after(0.05 if cut_by == "the hook's own scope" else 5.0):
                    await _bump(kit)
            finally:
                log.slow_ack, log.lose_ack = 0.0, 0
            return HookResult.allow()

        if answer == "lost":  # the write is in doubt: settled by the room's next command
            with pytest.raises(LogUnavailableError):
                await kit.process_inbound(text("sms", "hi"), room_id="r1")
            await kit.update_room_metadata("r1", {})
        else:
            await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert runs == [1] and (await kit.get_room("r1")).metadata == {"n": 1}
        await assert_consistent(kit)


async def test_a_hook_s_write_in_doubt_fails_the_message_and_is_applied_once() -> None:
    # The hook's write landed, its answer lost: the message was appended after it anyway,
    # conflicted, and its hook ran again, writing twice.
    log = _SlowOrLostAck()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await room_with(kit, "r1", "sms", "ws")

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def bump(event: RoomEvent, context: RoomContext) -> HookResult:
            log.lose_ack = 1
            await _bump(kit)
            return HookResult.allow()

        with pytest.raises(LogUnavailableError):
            await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert (await kit.get_room("r1")).metadata == {"n": 1}
        await assert_consistent(kit)


async def test_a_message_whose_hooks_wrote_is_not_decided_again_after_a_conflict() -> None:
    # Another process moved the room meanwhile: decided again, the hook wrote twice.
    log = MemoryEventLog()
    async with RoomKit(log=log) as a, RoomKit(log=log) as b:
        for k in (a, b):
            k.register_channel(SimpleChannel("sms"))
            k.register_channel(SimpleChannel("ws"))
        await room_with(a, "r1", "sms", "ws")
        await b.get_room("r1")

        @a.hook(HookTrigger.BEFORE_BROADCAST)
        async def bump(event: RoomEvent, context: RoomContext) -> HookResult:
            await _bump(a)
            await b.send_event("r1", "ws", TextContent(body="other"))
            return HookResult.allow()

        with pytest.raises(RoomConflictError, match="their writes are kept"):
            await a.process_inbound(text("sms", "hi"), room_id="r1")
        assert (await a.get_room("r1")).metadata == {"n": 1}


async def test_events_given_as_json_are_logged_as_add_event_s_are(kit: RoomKit) -> None:
    # add_event_json and add_event_envelope changed the read model alone: a rebuild lost them.
    await two_channel_room(kit)
    made = RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
        content=TextContent(body="imported as JSON"),
    )
    await kit.store.add_event_json(made.model_dump_json().encode())
    enveloped = made.model_copy(update={"id": "enveloped", "content": TextContent(body="env")})
    await kit.store.add_event_envelope(b'{"event": %s}' % enveloped.model_dump_json().encode())
    with pytest.raises(ValueError, match="stored already"):
        await kit.store.add_event_json(made.model_dump_json().encode())
    await kit.rebuild_store()
    bodies = [e.content.body for e in await kit.get_timeline("r1")]  # type: ignore[union-attr]
    assert bodies[-2:] == ["imported as JSON", "env"]
    assert (await kit.get_room("r1")).event_count == len(bodies)


async def test_an_imported_event_with_a_key_the_room_holds_is_refused(kit: RoomKit) -> None:
    # Appended, the room held two events with one idempotency key, and a retry of the message
    # was answered "duplicate" with the imported event, not the one first recorded.
    await two_channel_room(kit)
    first = await kit.process_inbound(text("sms", "hello", idempotency_key="k"), room_id="r1")
    assert first.event is not None
    imported = RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
        content=TextContent(body="imported again"),
        idempotency_key="k",
    )
    with pytest.raises(ValueError, match="idempotency key 'k'"):
        await kit.store.add_event(imported)
    again = await kit.process_inbound(text("sms", "hello", idempotency_key="k"), room_id="r1")
    assert again.reason == "duplicate" and again.event is not None
    assert again.event.id == first.event.id
    keyed = [e.id for e in await kit.get_timeline("r1") if e.idempotency_key == "k"]
    assert keyed == [first.event.id]
    await kit.store.add_event(imported.model_copy(update={"idempotency_key": "other"}))


async def test_the_read_model_s_own_writes_are_refused_through_kit_store(kit: RoomKit) -> None:
    # Made through kit.store, they changed the read model alone: clear() emptied it while the
    # rooms' actors kept their rooms, and the next message of a conversation made a new room.
    kit.register_channel(SimpleChannel("sms"))
    first = await kit.process_inbound(text("sms", "hi"))
    assert first.event is not None
    room_id = first.event.room_id

    async def nothing() -> None:
        return None

    refused = [
        kit.store.count_event(room_id, 99, None),
        kit.store.apply_record(1, nothing),
        kit.store.clear(),
    ]
    for call in refused:
        with pytest.raises(RoomKitError, match="kit.rebuild_store"):
            await call
    with pytest.raises(RoomKitError, match="kit.rebuild_store"):
        kit.store.rebuilding()
    again = await kit.process_inbound(text("sms", "again"))
    assert again.event is not None and again.event.room_id == room_id
    timeline = await kit.get_timeline(room_id)
    assert [e.id for e in timeline][-2:] == [first.event.id, again.event.id]
    assert (await kit.get_room(room_id)).event_count == len(timeline)


class _WaitingStore(InMemoryStore):
    """Reads that wait, as a database's do."""

    async def get_event(self, event_id: str) -> RoomEvent | None:
        await anyio.sleep(0.01)
        return await super().get_event(event_id)


@pytest.mark.parametrize("store", [InMemoryStore, _WaitingStore])
async def test_two_adds_of_one_event_id_at_once_store_it_once(store: type[InMemoryStore]) -> None:
    # Both found the id missing and both were logged: the second room's copy was missing from
    # the read model, or the room counted an event its timeline did not show.
    async with RoomKit(store=store()) as kit:
        for room_id in ("r1", "r2"):
            await kit.create_room(room_id=room_id)
        results: list[str] = []

        async def add(room_id: str) -> None:
            event = RoomEvent(
                id="one-id",
                room_id=room_id,
                source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
                content=TextContent(body=f"from {room_id}"),
            )
            try:
                await kit.store.add_event(event)
                results.append("stored")
            except ValueError:
                results.append("refused")

        async with anyio.create_task_group() as tg:
            for room_id in ("r1", "r2", "r1"):
                tg.start_soon(add, room_id)
        assert sorted(results) == ["refused", "refused", "stored"]
        assert await kit.store.get_event("one-id") is not None
        for room_id in ("r1", "r2"):
            room = await kit.get_room(room_id)
            assert room.event_count == len(await kit.get_timeline(room_id))


def test_kit_store_s_reads_have_the_contract_s_signatures() -> None:
    kit = RoomKit()
    assert list(inspect.signature(kit.store.list_events).parameters) == list(
        inspect.signature(InMemoryStore().list_events).parameters
    )
    assert kit.store.get_room.__doc__ == ConversationStore.get_room.__doc__


async def test_a_subclass_of_the_in_memory_store_sees_the_kit_s_writes_through_its_overrides() -> (
    None
):
    # 0.3.0's pattern "ABC + default implementation": an app subclasses InMemoryStore to
    # observe writes. The kit wrote events through the store's shortcuts (add_event_envelope,
    # count_event), which the overrides never saw.
    class AuditStore(InMemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, str]] = []

        async def add_event(self, event: RoomEvent) -> RoomEvent:
            self.seen.append(("add_event", str(event.type)))
            return await super().add_event(event)

        async def update_room(self, room: Any) -> Any:
            self.seen.append(("update_room", room.id))
            return await super().update_room(room)

    store = AuditStore()
    async with RoomKit(store=store) as kit:
        sms, ws = await two_channel_room(kit)
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        events = [e for kind, e in store.seen if kind == "add_event"]
        assert events == ["channel_attached", "channel_attached", "message"]
        assert ("update_room", "r1") in store.seen  # counting the message in
        room = await kit.get_room("r1")
        assert room.event_count == 3 and room.latest_index == 2
        assert [e.type for e in await kit.get_timeline("r1")][-1] == "message"


async def test_a_subclass_of_the_in_memory_store_overriding_its_shortcut_keeps_it() -> None:
    class Counting(InMemoryStore):
        envelopes = 0

        async def add_event_envelope(self, data: bytes) -> None:
            self.envelopes += 1
            await super().add_event_envelope(data)

    store = Counting()
    async with RoomKit(store=store) as kit:
        await two_channel_room(kit)
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert store.envelopes == 3
        assert (await kit.get_room("r1")).event_count == 3
