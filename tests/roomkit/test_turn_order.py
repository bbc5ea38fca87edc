"""The order of one inbound message's turn is 0.3.0's (spec §5.2): hook errors, injected
events, the broadcast, the replies with their own AFTER_BROADCAST, ON_TASK_CREATED, then the
message's AFTER_BROADCAST, then ``event_processed``."""

from __future__ import annotations

from typing import Any

from roomkit import (
    AIChannel,
    ChannelBinding,
    ChannelCategory,
    ChannelOutput,
    ChannelType,
    EventSource,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    MockAIProvider,
    RoomContext,
    RoomEvent,
    RoomKit,
    Task,
    TextContent,
)
from roomkit.models.hook import InjectedEvent
from tests.roomkit.kit_helpers import SimpleChannel, text


def body(event: RoomEvent) -> str:
    return event.content.body if isinstance(event.content, TextContent) else str(event.type)


def note_async_hooks(kit: RoomKit, log: list[str]) -> None:
    """Note each AFTER_BROADCAST and ON_TASK_CREATED hook run in ``log``."""

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
    async def after(event: RoomEvent, context: RoomContext) -> None:
        log.append(f"AFTER_BROADCAST {body(event)}")

    @kit.hook(HookTrigger.ON_TASK_CREATED, execution=HookExecution.ASYNC)
    async def task(event: RoomEvent, context: RoomContext) -> None:
        log.append(f"ON_TASK_CREATED {event.metadata['task_title']}")


class Tap(SimpleChannel):
    """Notes each delivery in the shared log."""

    def __init__(self, channel_id: str, log: list[str], channel_type: ChannelType) -> None:
        super().__init__(channel_id, channel_type)
        self.log = log

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.log.append(f"deliver {self.channel_id} <- {body(event)}")
        return await super().deliver(event, binding, context)


async def test_one_turn_runs_in_0_3_0_order(kit: RoomKit) -> None:
    log: list[str] = []
    kit.register_channel(Tap("sms", log, ChannelType.SMS))
    kit.register_channel(Tap("ws", log, ChannelType.WEBSOCKET))
    kit.register_channel(AIChannel("ai", provider=MockAIProvider(["AI says hi"])))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")
    await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)

    @kit.hook(HookTrigger.BEFORE_BROADCAST, priority=0)
    async def inject(event: RoomEvent, context: RoomContext) -> HookResult | None:
        log.append(f"BEFORE_BROADCAST {body(event)}")
        if event.source.channel_id != "sms":
            return None
        note = RoomEvent(
            room_id="r1",
            source=EventSource(channel_id="bot", channel_type=ChannelType.SYSTEM),
            content=TextContent(body="injected"),
        )
        result = HookResult.allow(injected=[InjectedEvent(event=note, target_channel_ids=["ws"])])
        return result.model_copy(update={"tasks": [Task(room_id="r1", title="follow up")]})

    @kit.hook(HookTrigger.BEFORE_BROADCAST, name="boom", priority=1)
    async def boom(event: RoomEvent, context: RoomContext) -> None:
        raise RuntimeError("boom")

    note_async_hooks(kit, log)

    async def framework(event: FrameworkEvent) -> None:
        log.append(f"FW {event.type}")

    for kind in ("hook_error", "event_processed"):
        kit.on(kind)(framework)

    await kit.process_inbound(text("sms", "hello"), room_id="r1")
    seen: list[Any] = [line for line in log if line != "deliver ws <- AI says hi"]
    assert seen == [
        "BEFORE_BROADCAST hello",
        "FW hook_error",
        "deliver ws <- injected",
        "deliver ws <- hello",
        "deliver sms <- AI says hi",
        "AFTER_BROADCAST AI says hi",
        "ON_TASK_CREATED follow up",
        "AFTER_BROADCAST hello",
        "FW event_processed",
    ]


async def test_a_blocked_turn_runs_in_0_3_0_order(kit: RoomKit) -> None:
    log: list[str] = []
    kit.register_channel(Tap("sms", log, ChannelType.SMS))
    kit.register_channel(Tap("ws", log, ChannelType.WEBSOCKET))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, name="boom", priority=0)
    async def boom(event: RoomEvent, context: RoomContext) -> None:
        raise RuntimeError("boom")

    @kit.hook(HookTrigger.BEFORE_BROADCAST, name="guard", priority=1)
    async def guard(event: RoomEvent, context: RoomContext) -> HookResult:
        note = RoomEvent(
            room_id="r1",
            source=EventSource(channel_id="bot", channel_type=ChannelType.SYSTEM),
            content=TextContent(body="we removed a message"),
        )
        return HookResult.block(
            "no",
            injected=[InjectedEvent(event=note, target_channel_ids=["ws"])],
            tasks=[Task(room_id="r1", title="review")],
        )

    @kit.hook(HookTrigger.ON_TASK_CREATED, execution=HookExecution.ASYNC)
    async def task(event: RoomEvent, context: RoomContext) -> None:
        log.append(f"ON_TASK_CREATED {event.metadata['task_title']}")

    async def framework(event: FrameworkEvent) -> None:
        log.append(f"FW {event.type}")

    for kind in ("hook_error", "event_blocked", "event_processed"):
        kit.on(kind)(framework)

    result = await kit.process_inbound(text("sms", "bad"), room_id="r1")
    assert result.blocked and result.reason == "no"
    assert log == [
        "FW hook_error",
        "FW event_blocked",
        "deliver ws <- we removed a message",
        "ON_TASK_CREATED review",
    ]


class TaskingBrain(SimpleChannel):
    """An intelligence channel answering each of the user's messages with a reply and a
    task, named after it."""

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if event.source.channel_id != "sms":
            return ChannelOutput.empty()
        reply = RoomEvent(
            room_id=context.room.id,
            source=EventSource(channel_id=self.channel_id, channel_type=ChannelType.AI),
            content=TextContent(body=f"re: {body(event)}"),
            chain_depth=event.chain_depth + 1,
        )
        task = Task(room_id=context.room.id, title=f"about {body(event)}")
        return ChannelOutput(responded=True, response_events=[reply], tasks=[task])


async def test_the_hooks_tasks_come_before_the_broadcasts(kit: RoomKit) -> None:
    # 0.3.0 (spec §5.2, step 12): ON_TASK_CREATED for the sync hooks' tasks, then for the
    # broadcast's. The broadcast's came first once the worker ran the work of what the
    # room recorded of its broadcast from its own queue: it reached the turn's last work
    # before the hook's task, which came through the room's mailbox.
    log: list[str] = []
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(TaskingBrain("brain"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "brain", category=ChannelCategory.INTELLIGENCE)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def tasking(event: RoomEvent, context: RoomContext) -> HookResult | None:
        if event.source.channel_id != "sms":
            return None
        result = HookResult.allow()
        return result.model_copy(update={"tasks": [Task(room_id="r1", title="hook task")]})

    note_async_hooks(kit, log)

    await kit.process_inbound(text("sms", "hello"), room_id="r1")
    assert log == [
        "AFTER_BROADCAST re: hello",
        "ON_TASK_CREATED hook task",
        "ON_TASK_CREATED about hello",
        "AFTER_BROADCAST hello",
    ]


async def test_a_sent_events_turn_runs_in_the_order_of_an_inbound_ones(kit: RoomKit) -> None:
    # Quirk 6 fixed: send_event's replies and tasks are handled like inbound's; its own
    # AFTER_BROADCAST ran first, before them (an inbound message's runs last).
    log: list[str] = []
    kit.register_channel(Tap("sms", log, ChannelType.SMS))
    kit.register_channel(TaskingBrain("brain"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "brain", category=ChannelCategory.INTELLIGENCE)
    note_async_hooks(kit, log)

    await kit.process_inbound(text("sms", "in"), room_id="r1")
    log.append("process_inbound returned")
    await kit.send_event("r1", "sms", TextContent(body="sent"))
    log.append("send_event returned")
    assert log == [
        "deliver sms <- re: in",
        "AFTER_BROADCAST re: in",
        "ON_TASK_CREATED about in",
        "AFTER_BROADCAST in",
        "process_inbound returned",
        "deliver sms <- re: sent",
        "AFTER_BROADCAST re: sent",
        "ON_TASK_CREATED about sent",
        "AFTER_BROADCAST sent",
        "send_event returned",
    ]
