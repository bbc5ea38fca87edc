"""ON_TASK_CREATED hooks get RoomKit 0.3.0's synthetic TASK_CREATED event (spec §3, §5.2 step 12).

The event is built from the message whose processing produced the task: its source and
content, visibility "internal", metadata ``{task_id, task_title}``; it is never stored. So a
hook filtered on the message's channel fires, and one filtered on another channel does not.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from roomkit import (
    ChannelBinding,
    ChannelDirection,
    ChannelOutput,
    ChannelType,
    EventType,
    HookExecution,
    HookResult,
    HookTrigger,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomNotFoundError,
    Task,
    TaskStatus,
    TextContent,
)
from tests.roomkit.kit_helpers import SimpleChannel, text


async def sms_and_ws_room(kit: RoomKit, ws: SimpleChannel | None = None) -> None:
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(ws or SimpleChannel("ws", ChannelType.WEBSOCKET))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")


def hook_making_task(kit: RoomKit, title: str = "call back") -> None:
    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def make_task(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.allow(tasks=[Task(room_id="r1", title=title)])


def record_task_events(
    kit: RoomKit,
    *,
    channel_ids: set[str] | None = None,
    channel_types: set[ChannelType] | None = None,
    directions: set[ChannelDirection] | None = None,
) -> list[RoomEvent]:
    """Register an ON_TASK_CREATED hook with these filters; return the events it receives."""
    seen: list[RoomEvent] = []

    @kit.hook(
        HookTrigger.ON_TASK_CREATED,
        execution=HookExecution.ASYNC,
        channel_ids=channel_ids,
        channel_types=channel_types,
        directions=directions,
    )
    async def task_created(event: RoomEvent, context: RoomContext) -> None:
        seen.append(event)

    return seen


class TaskMakingChannel(SimpleChannel):
    """A channel that answers every event it is shown with a task (``ChannelOutput.tasks``)."""

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.seen.append(event)
        return ChannelOutput(tasks=[Task(room_id=context.room.id, title="from channel")])


class TestSyntheticEvent:
    async def test_carries_the_message_source_and_content(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        hook_making_task(kit, "call back")
        seen = record_task_events(kit)

        result = await kit.process_inbound(text("sms", "please call me", sender="alice"))

        message = result.event
        assert message is not None
        [task] = await kit.list_tasks("r1")
        [event] = seen
        assert event.type == EventType.TASK_CREATED
        assert event.room_id == "r1"
        assert event.source == message.source
        assert event.source.channel_id == "sms"
        assert event.source.channel_type == ChannelType.SMS
        assert event.source.participant_id == "alice"
        assert event.content == TextContent(body="please call me")
        assert event.visibility == "internal"
        assert event.metadata == {"task_id": task.id, "task_title": "call back"}

    async def test_is_not_stored(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        hook_making_task(kit)
        seen = record_task_events(kit)

        result = await kit.process_inbound(text("sms", "hi"))

        [event] = seen
        timeline = await kit.get_timeline("r1")
        assert event.id not in {e.id for e in timeline}
        assert EventType.TASK_CREATED not in {e.type for e in timeline}
        assert result.event is not None and timeline[-1].id == result.event.id

    async def test_a_modified_message_gives_its_replacement_content(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        seen = record_task_events(kit)

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def redact(event: RoomEvent, context: RoomContext) -> HookResult:
            redacted = event.model_copy(update={"content": TextContent(body="[redacted]")})
            return HookResult(
                action="modify", event=redacted, tasks=[Task(room_id="r1", title="review")]
            )

        await kit.process_inbound(text("sms", "my card is 4111"))

        [event] = seen
        assert event.content == TextContent(body="[redacted]")
        assert event.source.channel_id == "sms"

    async def test_a_blocked_message_gives_its_source_and_content(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        seen = record_task_events(kit)

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def refuse(event: RoomEvent, context: RoomContext) -> HookResult:
            return HookResult.block("spam", tasks=[Task(room_id="r1", title="check sender")])

        result = await kit.process_inbound(text("sms", "buy now"))

        assert result.blocked
        [event] = seen
        assert event.source.channel_id == "sms"
        assert event.content == TextContent(body="buy now")
        assert event.metadata["task_title"] == "check sender"

    async def test_a_channel_task_gives_the_message_it_was_shown(self, kit: RoomKit) -> None:
        # Tasks a channel returns from a broadcast (ChannelOutput.tasks) belong to the
        # message broadcast, as in 0.3.0's step 12.
        await sms_and_ws_room(kit, ws=TaskMakingChannel("ws", ChannelType.WEBSOCKET))
        seen = record_task_events(kit)

        await kit.process_inbound(text("sms", "hello"))

        [task] = await kit.list_tasks("r1")
        [event] = seen
        assert event.type == EventType.TASK_CREATED
        assert event.source.channel_id == "sms"
        assert event.content == TextContent(body="hello")
        assert event.visibility == "internal"
        assert event.metadata == {"task_id": task.id, "task_title": "from channel"}


class TestHookFilters:
    async def test_a_hook_filtered_on_the_source_channel_fires(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        hook_making_task(kit, "call back")
        on_sms = record_task_events(kit, channel_ids={"sms"})
        on_ws = record_task_events(kit, channel_ids={"ws"})

        await kit.process_inbound(text("sms", "hi"))

        assert [e.metadata["task_title"] for e in on_sms] == ["call back"]
        assert on_ws == []

    async def test_type_and_direction_filters_match_the_source(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit)
        hook_making_task(kit)
        sms_inbound = record_task_events(
            kit, channel_types={ChannelType.SMS}, directions={ChannelDirection.INBOUND}
        )
        system = record_task_events(kit, channel_types={ChannelType.SYSTEM})

        await kit.process_inbound(text("sms", "hi"))

        assert len(sms_inbound) == 1
        assert system == []

    async def test_a_channel_task_fires_the_source_channel_hook(self, kit: RoomKit) -> None:
        await sms_and_ws_room(kit, ws=TaskMakingChannel("ws", ChannelType.WEBSOCKET))
        on_sms = record_task_events(kit, channel_ids={"sms"})
        on_ws = record_task_events(kit, channel_ids={"ws"})

        await kit.process_inbound(text("sms", "hello"))

        assert [e.metadata["task_title"] for e in on_sms] == ["from channel"]
        assert on_ws == []


async def test_a_task_changed_through_the_kit_outlives_a_rebuild(
    make_kit: Callable[..., RoomKit],
) -> None:
    """``kit.update_task`` logs the change: the read model rebuilt from the log (a new process,
    ``rebuild_store``) keeps it, where a change made on ``kit.store`` directly is lost. It
    runs no ON_TASK_CREATED hook: the task exists already."""
    async with make_kit() as kit:
        await sms_and_ws_room(kit)
        hook_making_task(kit)
        created = record_task_events(kit)
        await kit.process_inbound(text("sms", "please call me"), room_id="r1")
        (task,) = await kit.list_tasks("r1")
        done = await kit.update_task(task.model_copy(update={"status": TaskStatus.COMPLETED}))
        assert done.status == TaskStatus.COMPLETED
        assert [t.status for t in await kit.list_tasks("r1")] == [TaskStatus.COMPLETED]
        assert len(created) == 1
        await kit.rebuild_store()
        assert [t.status for t in await kit.list_tasks("r1")] == [TaskStatus.COMPLETED]
        with pytest.raises(TypeError, match="update_task takes a Task"):
            await kit.update_task({"id": task.id})  # type: ignore[arg-type]
        with pytest.raises(RoomNotFoundError):
            await kit.update_task(task.model_copy(update={"room_id": "nowhere"}))
    async with make_kit() as rebuilt:
        assert [(t.id, t.status) for t in await rebuilt.list_tasks("r1")] == [
            (task.id, TaskStatus.COMPLETED)
        ]
