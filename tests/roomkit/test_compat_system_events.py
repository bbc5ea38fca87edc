"""What a RoomKit 0.3.0 application sees of the kit's own events, as 0.3.0 showed it.

Stored system events (the timeline) have the source ``"system"``/SYSTEM and 0.3.0's bodies and
data; the synthetic events of lifecycle hooks and ON_TASK_CREATED have 0.3.0's bodies, data
and status; framework events carry 0.3.0's fields; and errors come in 0.3.0's order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from eventlog import MemoryEventLog
from roomkit import (
    Access,
    AIChannel,
    ChannelNotFoundError,
    ChannelType,
    EventSource,
    EventStatus,
    EventType,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    Identity,
    IdentityNotFoundError,
    IdentityResolver,
    IdentityResult,
    InboundMessage,
    MockAIProvider,
    MockIdentityResolver,
    ParticipantNotFoundError,
    RoomContext,
    RoomEvent,
    RoomKit,
    SystemContent,
    Task,
)
from roomkit.core._domain import (
    ChannelAttached,
    MessageRecorded,
    RoomCreated,
    dump,
    encode_domain_event,
)
from roomkit.models.channel import ChannelBinding
from roomkit.models.room import Room, RoomTimers
from tests.roomkit.kit_helpers import SimpleChannel, eventually, text

SYSTEM = ("system", ChannelType.SYSTEM)
META = "Channel a metadata updated"
PAUSED, CLOSED = HookTrigger.ON_ROOM_PAUSED, HookTrigger.ON_ROOM_CLOSED


def system_events(events: list[RoomEvent]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """``(code, body, data)`` of each system event, checking that its source is "system"."""
    out = []
    for event in events:
        if isinstance(event.content, SystemContent):
            assert (event.source.channel_id, event.source.channel_type) == SYSTEM, event
            out.append((event.content.code or "", event.content.body, dict(event.content.data)))
    return out


def record_hooks(kit: RoomKit, *triggers: HookTrigger) -> list[tuple[HookTrigger, RoomEvent]]:
    seen: list[tuple[HookTrigger, RoomEvent]] = []
    for trigger in triggers:

        def make(trigger: HookTrigger) -> Any:
            async def hook(event: RoomEvent, context: RoomContext) -> None:
                seen.append((trigger, event))

            hook.__name__ = f"on_{trigger.value}"
            return hook

        kit.hook(trigger, execution=HookExecution.ASYNC)(make(trigger))
    return seen


def record_framework(kit: RoomKit, *types: str) -> list[FrameworkEvent]:
    seen: list[FrameworkEvent] = []
    for event_type in types:
        kit.on(event_type)(seen.append)
    return seen


def register(kit: RoomKit, *channel_ids: str) -> None:
    for channel_id in channel_ids:
        kit.register_channel(SimpleChannel(channel_id))


# -- the timeline ------------------------------------------------------------------------------


async def test_binding_changes_are_stored_with_0_3_0_texts(kit: RoomKit) -> None:
    register(kit, "a", "b")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.attach_channel("r1", "b", access=Access.READ_ONLY, visibility="transport")
    await kit.mute("r1", "a")
    await kit.unmute("r1", "a")
    await kit.set_visibility("r1", "a", "transport")
    await kit.set_access("r1", "a", Access.READ_ONLY)
    await kit.update_binding_metadata("r1", "a", {"x": 1, "y": 2})
    await kit.update_binding_metadata("r1", "a", {"z": 3})
    await kit.detach_channel("r1", "b")
    assert system_events(await kit.get_timeline("r1")) == [
        (
            "channel_attached",
            "Channel a attached (read_write, all)",
            {"channel_id": "a", "access": "read_write", "visibility": "all"},
        ),
        (
            "channel_attached",
            "Channel b attached (read_only, transport)",
            {"channel_id": "b", "access": "read_only", "visibility": "transport"},
        ),
        ("channel_muted", "Channel a muted", {"channel_id": "a"}),
        ("channel_unmuted", "Channel a unmuted", {"channel_id": "a"}),
        (
            "channel_visibility_changed",
            "Channel a visibility: all -> transport",
            {"channel_id": "a", "old_visibility": "all", "visibility": "transport"},
        ),
        (
            "channel_access_changed",
            "Channel a access: read_write -> read_only",
            {"channel_id": "a", "old_access": "read_write", "access": "read_only"},
        ),
        ("channel_metadata_updated", META, {"channel_id": "a", "keys": ["x", "y"]}),
        ("channel_metadata_updated", META, {"channel_id": "a", "keys": ["z"]}),
        ("channel_detached", "Channel b detached", {"channel_id": "b"}),
    ]


async def test_a_resolved_participant_is_stored_with_its_identitys_name(kit: RoomKit) -> None:
    register(kit, "a")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.ensure_participant("r1", "a", "p1")
    await kit.ensure_participant("r1", "a", "p2")
    await kit.store.create_identity(Identity(id="i1", display_name="Alice"))
    await kit.store.create_identity(Identity(id="i2"))
    await kit.resolve_participant("r1", "p1", "i1")
    await kit.resolve_participant("r1", "p2", "i2", resolved_by="agent")
    # ensure_participant stores no system event, in 0.3.0 as here.
    assert system_events(await kit.get_timeline("r1"))[1:] == [
        (
            "participant_identified",
            "Participant p1 identified as Alice",
            {"participant_id": "p1", "identity_id": "i1", "resolved_by": "manual"},
        ),
        (
            "participant_identified",
            "Participant p2 identified as None",  # 0.3.0 wrote the missing name so
            {"participant_id": "p2", "identity_id": "i2", "resolved_by": "agent"},
        ),
    ]


async def test_participants_joined_through_identity_resolution(
    make_kit: Callable[..., RoomKit],
) -> None:
    resolver = MockIdentityResolver(
        mapping={"+1": Identity(id="id-ana", display_name="Ana")},
        ambiguous={"+2": [Identity(id="x"), Identity(id="y")]},
    )
    async with make_kit(identity_resolver=resolver) as kit:
        register(kit, "a")
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "a")
        await kit.process_inbound(text("a", "hi", sender="+1"), room_id="r1")
        await kit.process_inbound(text("a", "hello", sender="+2"), room_id="r1")
        joined = [e for e in system_events(await kit.get_timeline("r1")) if "joined" in e[0]]
    assert joined == [
        (
            "participant_joined_identified",
            "Participant id-ana joined as identified",
            {"participant_id": "id-ana", "status": "identified"},
        ),
        (
            "participant_joined_pending",
            "Participant +2 joined with pending identification",
            {"participant_id": "+2", "status": "pending"},
        ),
    ]


async def test_timers_store_and_announce_0_3_0_texts(
    kit: RoomKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(kit, "a")
    seen = record_hooks(kit, HookTrigger.ON_ROOM_PAUSED, HookTrigger.ON_ROOM_CLOSED)
    closed = record_framework(kit, "room_closed", "room_paused")
    timers = RoomTimers(inactive_after_seconds=60, closed_after_seconds=600)
    await kit.create_room(room_id="r1", timers=timers)
    await kit.attach_channel("r1", "a")
    await kit.process_inbound(text("a", "hi"), room_id="r1")
    start = datetime.now(UTC)
    for seconds in (120, 1200):
        later = start + timedelta(seconds=seconds)
        monkeypatch.setattr("roomkit.core._room_lifecycle.utcnow", lambda later=later: later)
        await kit.check_room_timers("r1")
    stored = [e for e in system_events(await kit.get_timeline("r1")) if "timer" in e[0]]
    assert [(code, data["threshold"]) for code, _, data in stored] == [
        ("room_paused_by_timer", 60),
        ("room_closed_by_timer", 600),
    ]
    assert [sorted(data) for _, _, data in stored] == [["elapsed_seconds", "threshold"]] * 2
    assert stored[0][1] is not None and stored[1][1] is not None
    assert stored[0][1].startswith("Room r1 paused after ")
    assert stored[0][1].endswith("s inactivity")
    assert stored[1][1].startswith("Room r1 closed after ")
    hooks = [(t, e.content) for t, e in seen]
    assert [(t, c.code, c.body, sorted(c.data)) for t, c in hooks] == [  # type: ignore[union-attr]
        (PAUSED, "room_paused_by_timer", "Room r1 paused by timer", ["elapsed_seconds"]),
        (CLOSED, "room_closed_by_timer", "Room r1 closed by timer", ["elapsed_seconds"]),
    ]
    assert [(f.type, f.data) for f in closed] == [
        ("room_paused", {"reason": "timer"}),
        ("room_closed", {"reason": "timer"}),
    ]


async def test_a_log_written_before_holds_its_system_events_as_stored() -> None:
    # Before, a stored system event named its channel as its source: such a log replays, and
    # its events read back as they were stored; what is stored now has the "system" source.
    log = MemoryEventLog()
    now = datetime.now(UTC)
    binding = ChannelBinding(channel_id="a", room_id="r1", channel_type=ChannelType.SMS)
    old = RoomEvent(
        room_id="r1",
        type=EventType.CHANNEL_ATTACHED,
        source=EventSource(channel_id="a", channel_type=ChannelType.SYSTEM),
        content=SystemContent(body="Channel a attached", code="channel_attached"),
        status=EventStatus.DELIVERED,
        visibility="internal",
        index=0,
    )
    for version, domain in enumerate(
        [
            RoomCreated(room=dump(Room(id="r1"))),
            ChannelAttached(binding=dump(binding)),
            MessageRecorded(event=dump(old), deliver=False),
        ]
    ):
        new = encode_domain_event(domain, timestamp=now.timestamp())
        await log.append("r1", [new], expected_version=version)
    async with RoomKit(log=log) as kit:
        register(kit, "a", "b")
        await kit.attach_channel("r1", "b")
        timeline = await kit.get_timeline("r1")
    got = [(e.source.channel_id, e.content.body, e.index) for e in timeline]  # type: ignore[union-attr]
    assert got == [
        ("a", "Channel a attached", 0),
        ("system", "Channel b attached (read_write, all)", 1),
    ]


# -- lifecycle hooks ---------------------------------------------------------------------------


async def test_lifecycle_hooks_get_0_3_0_events(kit: RoomKit) -> None:
    register(kit, "a", "b")
    seen = record_hooks(
        kit,
        HookTrigger.ON_ROOM_CREATED,
        HookTrigger.ON_CHANNEL_ATTACHED,
        HookTrigger.ON_CHANNEL_MUTED,
        HookTrigger.ON_CHANNEL_UNMUTED,
        HookTrigger.ON_CHANNEL_DETACHED,
        HookTrigger.ON_PARTICIPANT_IDENTIFIED,
        HookTrigger.ON_ROOM_CLOSED,
    )
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a", visibility="transport")
    await kit.attach_channel("r1", "b")
    await kit.mute("r1", "a")
    await kit.unmute("r1", "a")
    await kit.detach_channel("r1", "b")
    await kit.ensure_participant("r1", "a", "p1")
    await kit.store.create_identity(Identity(id="i1", display_name="Alice"))
    await kit.resolve_participant("r1", "p1", "i1", resolved_by="agent")
    await kit.close_room("r1")
    for _, event in seen:
        assert (event.source.channel_id, event.source.channel_type) == SYSTEM
        assert event.status == EventStatus.DELIVERED and event.visibility == "internal"
    # (trigger, type, code, body, data) of each hook's event
    got = [
        (t.value, e.type.value, e.content.code, e.content.body, dict(e.content.data))  # type: ignore[union-attr]
        for t, e in seen
    ]
    a = {"channel_id": "a"}
    assert got == [
        ("on_room_created", "system", "room_created", "Room r1 created", {"room_id": "r1"}),
        (
            "on_channel_attached", "channel_attached", "channel_attached", "Channel a attached",
            {"channel_id": "a", "access": "read_write", "visibility": "transport"},
        ),
        (
            "on_channel_attached", "channel_attached", "channel_attached", "Channel b attached",
            {"channel_id": "b", "access": "read_write", "visibility": "all"},
        ),
        ("on_channel_muted", "channel_muted", "channel_muted", "Channel a muted", a),
        ("on_channel_unmuted", "channel_unmuted", "channel_unmuted", "Channel a unmuted", a),
        (
            "on_channel_detached", "channel_detached", "channel_detached", "Channel b detached",
            {"channel_id": "b"},
        ),
        (
            "on_participant_identified", "participant_identified", "participant_identified",
            "Participant identified", {"participant_id": "p1", "identity_id": "i1"},
        ),
        ("on_room_closed", "system", "room_closed", "Room r1 closed", {"room_id": "r1"}),
    ]  # fmt: skip


async def test_on_task_created_gets_a_delivered_event(kit: RoomKit) -> None:
    register(kit, "a")
    seen = record_hooks(kit, HookTrigger.ON_TASK_CREATED)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def make_task(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.allow(tasks=[Task(id="t1", room_id="r1", title="follow up")])

    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.process_inbound(text("a", "hi"), room_id="r1")
    [(_, event)] = seen
    assert event.type == EventType.TASK_CREATED
    assert event.status == EventStatus.DELIVERED
    assert event.metadata == {"task_id": "t1", "task_title": "follow up"}


# -- framework events --------------------------------------------------------------------------


def fields(event: FrameworkEvent) -> tuple[str, str | None, bool, dict[str, Any]]:
    return (event.type, event.channel_id, event.event_id is not None, dict(event.data))


async def test_room_and_channel_framework_events_carry_0_3_0_data(kit: RoomKit) -> None:
    register(kit, "a", "b")
    seen = record_framework(kit, "room_created", "room_channel_attached", "room_closed")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a", access=Access.WRITE_ONLY, visibility="transport")
    await kit.close_room("r1")
    # A message no room takes creates one, with its channel attached.
    result = await kit.process_inbound(text("b", "hi"))
    assert result.event is not None
    new_room = result.event.room_id
    attached = "room_channel_attached"
    assert [(f.room_id, *fields(f)) for f in seen] == [
        ("r1", "room_created", None, False, {"room_id": "r1"}),
        ("r1", attached, "a", False, {"access": "write_only", "visibility": "transport"}),
        ("r1", "room_closed", None, False, {"room_id": "r1"}),
        (new_room, "room_created", None, False, {"room_id": new_room}),
        (new_room, attached, "b", False, {"access": "read_write", "visibility": "all"}),
    ]


async def test_message_framework_events_name_no_channel(kit: RoomKit) -> None:
    register(kit, "a", "b")
    seen = record_framework(kit, "event_processed", "event_blocked", "hook_error")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.attach_channel("r1", "b")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=0.05)
    async def slow(event: RoomEvent, context: RoomContext) -> HookResult | None:
        if event.content.body == "slow":  # type: ignore[union-attr]
            await anyio.sleep(5)
        return None

    @kit.hook(HookTrigger.BEFORE_BROADCAST, priority=1)
    async def blocker(event: RoomEvent, context: RoomContext) -> HookResult:
        if event.content.body == "spam":  # type: ignore[union-attr]
            return HookResult.block("spam detected")
        return HookResult.allow()

    processed = await kit.process_inbound(text("a", "hello"), room_id="r1")
    blocked = await kit.process_inbound(text("a", "spam"), room_id="r1")
    timed = await kit.process_inbound(text("a", "slow"), room_id="r1")
    assert processed.event and blocked.event and timed.event
    blocking = {"reason": "spam detected", "blocked_by": "blocker"}
    assert [(f.type, f.channel_id, f.event_id, dict(f.data)) for f in seen] == [
        ("event_processed", None, processed.event.id, {}),
        ("event_blocked", None, blocked.event.id, blocking),
        ("hook_error", None, timed.event.id, {"hook": "slow", "error": "timeout (0.05s)"}),
        ("event_processed", None, timed.event.id, {}),
    ]


async def test_a_hook_timeout_is_reported_with_the_timeout_as_given(kit: RoomKit) -> None:
    register(kit, "a")
    seen = record_framework(kit, "hook_error")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=1)
    async def stuck(event: RoomEvent, context: RoomContext) -> None:
        await anyio.sleep(5)

    await kit.process_inbound(text("a", "hi"), room_id="r1")
    assert [f.data for f in seen] == [{"hook": "stuck", "error": "timeout (1s)"}]


async def test_an_async_hook_timeout_is_reported_in_the_same_words(kit: RoomKit) -> None:
    # An async hook's said "hook 'late' timed out after 0.2s": apps match 0.3.0's words.
    register(kit, "a")
    seen = record_framework(kit, "hook_error")
    on_error: list[str] = []
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, timeout=0.2)
    async def late(event: RoomEvent, context: RoomContext) -> None:
        await anyio.sleep(5)

    @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        on_error.append(event.content.body)  # type: ignore[union-attr]

    result = await kit.process_inbound(text("a", "hi"), room_id="r1")
    await eventually(lambda: _said(on_error), what="the ON_ERROR hook")
    assert [f.data for f in seen] == [{"hook": "late", "error": "timeout (0.2s)"}]
    assert on_error == ["hook late failed: timeout (0.2s)"]
    # It names the message it ran for, as a failed sync hook's does (it named none).
    assert result.event is not None
    assert [f.event_id for f in seen] == [result.event.id]


async def test_a_failed_after_broadcast_hook_names_its_message_when_an_ai_answers(
    kit: RoomKit,
) -> None:
    # With an AI in the room the message's AFTER_BROADCAST hooks run once its reply is
    # delivered: their hook_error named no event there.
    register(kit, "a")
    kit.register_channel(AIChannel("ai", provider=MockAIProvider(["on it"])))
    seen = record_framework(kit, "hook_error")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.attach_channel("r1", "ai")

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
    async def after(event: RoomEvent, context: RoomContext) -> None:
        raise RuntimeError("after failed")

    result = await kit.process_inbound(text("a", "hi"), room_id="r1")
    await eventually(lambda: _two(seen), what="both hook errors")
    (reply,) = [e for e in await kit.get_timeline("r1") if e.source.channel_id == "ai"]
    assert result.event is not None
    assert sorted(f.event_id or "" for f in seen) == sorted([result.event.id, reply.id])


async def _two(seen: list[FrameworkEvent]) -> bool:
    return len(seen) == 2


async def _said(lines: list[str]) -> bool:
    return bool(lines)


class SlowResolver(IdentityResolver):
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        await anyio.sleep(5)
        raise AssertionError("not reached")


async def test_identity_timeout_names_the_messages_channel(
    make_kit: Callable[..., RoomKit],
) -> None:
    async with make_kit(identity_resolver=SlowResolver(), identity_timeout=0.05) as kit:
        register(kit, "a")
        seen = record_framework(kit, "identity_timeout")
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "a")
        await kit.process_inbound(text("a", "hi"), room_id="r1")
    assert [(f.room_id, *fields(f)) for f in seen] == [
        ("r1", "identity_timeout", "a", False, {"timeout": 0.05})
    ]


async def test_process_timeout_names_the_message_built_before_the_room(
    make_kit: Callable[..., RoomKit],
) -> None:
    # With identity resolution the event is built before the room takes the message up, as
    # 0.3.0 built it before taking the room's lock: process_timeout names it.
    built: list[RoomEvent] = []

    class Recording(SimpleChannel):
        async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
            event = await super().handle_inbound(message, context)
            built.append(event)
            return event

    resolver = MockIdentityResolver(mapping={"user-1": Identity(id="u1")})
    async with make_kit(identity_resolver=resolver, process_timeout=0.2) as kit:
        kit.register_channel(Recording("a"))
        seen = record_framework(kit, "process_timeout")
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "a")

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=5)
        async def slow(event: RoomEvent, context: RoomContext) -> None:
            await anyio.sleep(0.5)

        result = await kit.process_inbound(text("a", "hi"), room_id="r1")
    assert result.blocked and result.reason == "process_timeout"
    [event] = built
    assert [(f.type, f.event_id, f.data) for f in seen] == [
        ("process_timeout", event.id, {"timeout": 0.2})
    ]


# -- errors ------------------------------------------------------------------------------------


async def test_resolve_participant_checks_the_participant_first(kit: RoomKit) -> None:
    register(kit, "a")
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "a")
    await kit.ensure_participant("r1", "a", "p1")
    await kit.store.create_identity(Identity(id="i1"))
    nobody = "Participant nobody not found in room r1"
    no_room = "Participant p1 not found in room nope"
    cases = [
        ("r1", "nobody", "missing", ParticipantNotFoundError, nobody),
        ("r1", "nobody", "i1", ParticipantNotFoundError, nobody),
        ("nope", "p1", "missing", ParticipantNotFoundError, no_room),
        ("nope", "p1", "i1", ParticipantNotFoundError, no_room),
        ("r1", "p1", "missing", IdentityNotFoundError, "Identity missing not found"),
    ]
    for room_id, participant_id, identity_id, error, message in cases:
        with pytest.raises(error) as raised:
            await kit.resolve_participant(room_id, participant_id, identity_id)
        assert str(raised.value) == message


@pytest.mark.parametrize(
    "change",
    [
        lambda kit: kit.mute("nope", "a"),
        lambda kit: kit.unmute("nope", "a"),
        lambda kit: kit.set_visibility("nope", "a", "all"),
        lambda kit: kit.set_access("nope", "a", Access.READ_ONLY),
        lambda kit: kit.update_binding_metadata("nope", "a", {"x": 1}),
        lambda kit: kit.get_binding("nope", "a"),
    ],
    ids=["mute", "unmute", "set_visibility", "set_access", "update_binding_metadata", "get"],
)
async def test_binding_operations_on_an_unknown_room_find_no_channel(
    kit: RoomKit, change: Callable[[RoomKit], Any]
) -> None:
    register(kit, "a")
    with pytest.raises(ChannelNotFoundError, match=r"^Channel a not in room nope$"):
        await change(kit)
    await kit.create_room(room_id="r1")
    with pytest.raises(ChannelNotFoundError, match=r"^Channel b not in room r1$"):
        await kit.mute("r1", "b")
