"""What an idle room keeps: once it rests (``rest_after``), its models as JSON only."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Callable
from uuid import uuid4

import anyio
import msgspec
import pydantic
import pytest

from roomkit import (
    ChannelBinding,
    HookExecution,
    HookTrigger,
    InboundMessage,
    Participant,
    Room,
    RoomContext,
    RoomEvent,
    RoomKit,
)
from roomkit.core._room_actor import RoomActor
from roomkit.core._room_ids import room_stream
from roomkit.core._runtime import DELIVERY, ROOM
from tests.roomkit.kit_helpers import SimpleChannel, text


def _live_event_models(room_id: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RoomEvent) and o.room_id == room_id)


async def _room_with_two_channels(kit: RoomKit) -> tuple[str, list[SimpleChannel]]:
    """A room of its own (other tests' events may still be alive) with an sms and a ws."""
    channels = [SimpleChannel("sms"), SimpleChannel("ws")]
    for channel in channels:
        kit.register_channel(channel)
    room_id = f"idle-{uuid4().hex}"
    await kit.create_room(room_id=room_id)
    for channel in channels:
        await kit.attach_channel(room_id, channel.channel_id)
    return room_id, channels


async def test_an_idle_room_keeps_its_history_as_json_only(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(task_linger=0, rest_after=0) as kit:
        seen: list[list[str]] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def reads_the_history(event: RoomEvent, context: RoomContext) -> None:
            # As an AI channel or a moderation hook does: the room's events become models.
            seen.append([past.id for past in context.recent_events])

        room_id, channels = await _room_with_two_channels(kit)
        ids = []
        for n in range(5):
            result = await kit.process_inbound(text("sms", f"hello {n}"), room_id=room_id)
            assert result.event is not None
            ids.append(result.event.id)
        del result
        for channel in channels:
            channel.delivered.clear()
            channel.seen.clear()
        await anyio.wait_all_tasks_blocked()
        assert _live_event_models(room_id) == 0

        # The next message sees the same history, read again from the JSON.
        await kit.process_inbound(text("sms", "again"), room_id=room_id)
        assert seen[-1][-5:] == ids


async def test_a_late_read_of_the_history_does_not_fill_an_idle_room_again(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(task_linger=0, rest_after=0, wait_for_delivery=False) as kit:
        gate = anyio.Event()
        read: list[int] = []

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def reads_after_a_while(event: RoomEvent, context: RoomContext) -> None:
            await gate.wait()  # e.g. after a slow AI reply: the room is idle by then
            read.append(len(context.recent_events))

        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "hello"), room_id=room_id)
        await anyio.wait_all_tasks_blocked()  # the room's actor gave back its task
        gate.set()
        await anyio.wait_all_tasks_blocked()
        assert read == [3]  # two channel_attached system events and the message
        for channel in channels:
            channel.delivered.clear()
            channel.seen.clear()
        assert _live_event_models(room_id) == 0


async def test_after_a_pause_the_history_is_validated_once_for_every_reader(
    make_kit: Callable[..., RoomKit], monkeypatch: pytest.MonkeyPatch
) -> None:
    import roomkit.core._recent as recent_module

    validated: list[int] = []
    validate = recent_module._model

    def counting(raw: msgspec.Raw) -> RoomEvent:
        validated.append(1)
        return validate(raw)

    monkeypatch.setattr(recent_module, "_model", counting)
    async with make_kit(task_linger=0, rest_after=0) as kit:
        read: list[int] = []

        async def reads_the_history(event: RoomEvent, context: RoomContext) -> None:
            read.append(len(context.recent_events))

        kit.hook(HookTrigger.BEFORE_BROADCAST, name="moderation")(reads_the_history)
        kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, name="ai")(
            reads_the_history
        )
        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "hello"), room_id=room_id)
        await anyio.wait_all_tasks_blocked()  # idle: the models are forgotten
        validated.clear()
        await kit.process_inbound(text("sms", "again"), room_id=room_id)
        assert read[-2:] == [3, 4]
        # The three events before the message, once: both readers share them; and the
        # message, read from its JSON as it is appended (as a replay reads it).
        assert len(validated) == 4


def _live_room_models(room_id: str) -> list[object]:
    """The room's models alive now: its ``Room``, bindings and participants."""
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if (isinstance(o, Room) and o.id == room_id)
        or (isinstance(o, ChannelBinding | Participant) and o.room_id == room_id)
    ]


async def test_an_idle_room_keeps_its_room_bindings_and_participants_as_json_only(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(task_linger=0, rest_after=0) as kit:
        contexts: list[RoomContext] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def keeps_the_context(event: RoomEvent, context: RoomContext) -> None:
            contexts.append(context)

        room_id, channels = await _room_with_two_channels(kit)
        await kit.ensure_participant(room_id, "sms", "ana", display_name="Ana")
        await kit.process_inbound(text("sms", "hello", sender="ana"), room_id=room_id)
        before = contexts.pop()
        del before.recent_events[:]  # the hook's copy: only the models count here
        shared = [binding.capabilities for binding in before.bindings]
        await anyio.wait_all_tasks_blocked()  # idle: the actor gave back its task
        models = [id(m) for m in (before.room, *before.bindings, *before.participants)]
        assert {id(m) for m in _live_room_models(room_id)} == set(models)
        del models

        # The next message finds the same room, bindings and participants, and is routed.
        await kit.process_inbound(text("sms", "again", sender="ana"), room_id=room_id)
        after = contexts.pop()
        assert after.room.model_dump(exclude={"event_count", "latest_index", "timers"}) == (
            before.room.model_dump(exclude={"event_count", "latest_index", "timers"})
        )
        assert after.room.event_count == before.room.event_count + 1
        assert after.bindings == before.bindings
        assert after.participants == before.participants
        # New models, validated from the JSON: the room held none of them while it rested.
        for now, then in zip(
            [*after.bindings, *after.participants],
            [*before.bindings, *before.participants],
            strict=True,
        ):
            assert now is not then
        # A binding's capabilities stay the instance the kit shares for their value.
        assert all(
            binding.capabilities is capabilities
            for binding, capabilities in zip(after.bindings, shared, strict=True)
        )
        delivered = [event.content for event in channels[1].delivered]
        assert [getattr(content, "body", None) for content in delivered] == ["hello", "again"]


async def test_a_resting_room_takes_every_kind_of_command(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(task_linger=0, rest_after=0) as kit:
        room_id, channels = await _room_with_two_channels(kit)
        await anyio.wait_all_tasks_blocked()
        await kit.mute(room_id, "ws")
        await anyio.wait_all_tasks_blocked()
        await kit.mute(room_id, "sms")  # changed after waking: not the JSON it woke from
        await anyio.wait_all_tasks_blocked()
        await kit.update_room_metadata(room_id, {"topic": "billing"})
        await anyio.wait_all_tasks_blocked()
        await kit.ensure_participant(room_id, "sms", "ana")
        await anyio.wait_all_tasks_blocked()
        assert await kit.detach_channel(room_id, "ws")
        await anyio.wait_all_tasks_blocked()
        context = await kit._context(room_id)
        assert [(b.channel_id, b.muted) for b in context.bindings] == [("sms", True)]
        assert context.room.metadata == {"topic": "billing"}
        assert [p.id for p in context.participants] == ["ana"]
        assert context.bindings == await kit.store.list_bindings(room_id)


async def test_a_model_changed_in_place_does_not_cost_a_resting_room_its_state(
    make_kit: Callable[..., RoomKit], caplog: pytest.LogCaptureFixture
) -> None:
    async with make_kit(task_linger=0, rest_after=0) as kit:

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def breaks_the_room_in_place(event: RoomEvent, context: RoomContext) -> None:
            # pydantic does not validate assignments: this value would not validate again.
            context.room.timers.inactive_after_seconds = -5

        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "one"), room_id=room_id)
        await anyio.wait_all_tasks_blocked()  # the room rests with that value in its JSON
        with caplog.at_level(logging.WARNING, logger="roomkit.room"):
            await kit.process_inbound(text("sms", "two"), room_id=room_id)
        assert "reloads from the log" in caplog.text
        await anyio.wait_all_tasks_blocked()
        await kit.process_inbound(text("sms", "three"), room_id=room_id)
        delivered = [getattr(event.content, "body", None) for event in channels[1].delivered]
        assert delivered == ["one", "two", "three"]
        context = await kit._context(room_id)
        assert [b.channel_id for b in context.bindings] == ["sms", "ws"]
        records = await kit.log.read(room_stream(room_id))
        assert [r.type for r in records].count("room.created") == 1


async def test_a_room_rests_after_rest_after_with_its_task_still_parked(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(rest_after=0.05, task_linger=None) as kit:
        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "hello"), room_id=room_id)
        system = kit._runtime._system
        assert system is not None
        cell = system._cells[(ROOM, room_id)]
        actor = cell.actor
        assert isinstance(actor, RoomActor) and not actor.state.resting
        with anyio.fail_after(5):
            while not actor.state.resting:
                await anyio.wait_all_tasks_blocked()
        assert system.stats().running_actors >= 1  # rested while its task stays parked
        await kit.process_inbound(text("sms", "again"), room_id=room_id)
        delivered = [getattr(event.content, "body", None) for event in channels[1].delivered]
        assert delivered == ["hello", "again"]


async def test_a_resting_room_holds_no_delivery_worker_and_delivers_its_next_message(
    make_kit: Callable[..., RoomKit],
) -> None:
    # The worker stops when it has been idle as long as its room before resting (~0.8 KB
    # less per idle room); the room's next commit starts another.
    async with make_kit(rest_after=0.05, task_linger=None) as kit:
        after: list[str] = []

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def noted(event: RoomEvent, context: RoomContext) -> None:
            after.append(event.content.body)  # type: ignore[union-attr]

        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "hello"), room_id=room_id)
        system = kit._runtime._system
        assert system is not None and system.is_active(DELIVERY, room_id)
        with anyio.fail_after(5):
            while system.is_active(DELIVERY, room_id):
                await anyio.sleep(0.01)
        await kit.process_inbound(text("sms", "again"), room_id=room_id)
        delivered = [getattr(event.content, "body", None) for event in channels[1].delivered]
        assert delivered == ["hello", "again"] and after == ["hello", "again"]


def test_waking_takes_every_model_or_none() -> None:
    from roomkit.core._room_state import RoomState

    state = RoomState(room=Room(id="r1"))
    for channel_id in ("sms", "ws"):
        binding = ChannelBinding(room_id="r1", channel_id=channel_id, channel_type="sms")
        state.bindings[channel_id] = binding
    state.participants["ana"] = Participant(id="ana", room_id="r1", channel_id="sms")
    awake = RoomState(
        room=state.room, bindings=dict(state.bindings), participants=dict(state.participants)
    )
    state.rest()
    assert state.resting
    good = state._at_rest
    assert good is not None
    # The last model to validate does not.
    at_rest = state._at_rest = dataclasses.replace(good, participants=(b'{"id": 5}',))
    with pytest.raises(pydantic.ValidationError):
        state.wake()
    assert state.resting and state._at_rest is at_rest  # nothing taken in
    state._at_rest = good
    state.wake()
    assert not state.resting
    assert state == awake


async def test_a_snapshot_that_would_not_read_back_is_not_taken(
    make_kit: Callable[..., RoomKit], caplog: pytest.LogCaptureFixture
) -> None:
    async with make_kit(snapshot_every=1) as kit:
        broken = False

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def breaks_the_room_in_place(event: RoomEvent, context: RoomContext) -> None:
            if broken:
                context.room.timers.inactive_after_seconds = -5

        room_id, channels = await _room_with_two_channels(kit)
        await kit.process_inbound(text("sms", "one"), room_id=room_id)
        snapshot = await kit.log.load_snapshot(room_stream(room_id))
        assert snapshot is not None
        broken = True
        with caplog.at_level(logging.WARNING, logger="roomkit.actors"):
            await kit.process_inbound(text("sms", "two"), room_id=room_id)
        assert "snapshot of stream" in caplog.text
        # The last snapshot is still the one that reads back.
        kept = await kit.log.load_snapshot(room_stream(room_id))
        assert kept is not None and kept.version == snapshot.version


def test_actor_settings_are_checked_when_the_kit_is_made() -> None:
    for settings in (
        {"task_linger": -1},
        {"rest_after": -1},
        {"idle_timeout": 0},
        {"mailbox_size": 0},
        {"snapshot_every": 0},
        {"outcome_delay": -0.1},
    ):
        with pytest.raises(ValueError, match=next(iter(settings))):
            RoomKit(**settings)  # type: ignore[arg-type]


async def test_a_room_keeps_no_inbound_message_once_it_is_decided(kit: RoomKit) -> None:
    # The room noted when it first took up its last message (a retry keeps its budget), the
    # message with it: each idle room kept its last one, until it was passivated.
    room_id, _ = await _room_with_two_channels(kit)
    marker = f"kept? {uuid4().hex}"
    await kit.process_inbound(text("sms", marker), room_id=room_id)
    gc.collect()
    kept = [
        o
        for o in gc.get_objects()
        if isinstance(o, InboundMessage) and getattr(o.content, "body", None) == marker
    ]
    assert kept == []
