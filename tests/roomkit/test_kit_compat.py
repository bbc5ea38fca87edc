"""0.3.0 behaviours a user's code may rely on (spec §4), beyond the pipeline's own tests."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from eventlog import InvalidAppend, MemoryEventLog
from roomkit import (
    Access,
    AIChannel,
    ChannelBinding,
    ChannelCategory,
    ChannelNotRegisteredError,
    ChannelOutput,
    ChannelType,
    EventSource,
    EventStatus,
    EventType,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    InboundMessage,
    InboundResult,
    InjectedEvent,
    MockAIProvider,
    Observation,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomNotFoundError,
    RoomStatus,
    Task,
    TextContent,
)
from roomkit.models.room import RoomTimers
from roomkit.store.memory import InMemoryStore
from tests.roomkit.kit_helpers import SimpleChannel, room_with, text


class TestAttachChannel:
    @pytest.mark.parametrize(
        ("category", "answers"),
        [(None, True), (ChannelCategory.INTELLIGENCE, False)],
    )
    async def test_the_category_defaults_to_transport_whatever_the_channel(
        self,
        kit: RoomKit,
        caplog: pytest.LogCaptureFixture,
        category: ChannelCategory | None,
        answers: bool,
    ) -> None:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["hello"])))
        await kit.create_room(room_id="r1")
        # The sms binding's "transport" visibility reaches TRANSPORT targets only.
        await kit.attach_channel("r1", "sms", visibility="transport")
        with caplog.at_level(logging.INFO, logger="roomkit.framework"):
            if category is None:
                binding = await kit.attach_channel("r1", "ai")
            else:
                binding = await kit.attach_channel("r1", "ai", category=category)
        assert binding.category == (category or ChannelCategory.TRANSPORT)
        said = "category=ChannelCategory.INTELLIGENCE" in caplog.text
        assert said is (category is None)
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        last = [e.source.channel_id for e in await kit.get_timeline("r1")][-1]
        assert (last == "ai") is answers

    def test_the_signature_shows_the_default_category(self) -> None:
        # A hidden placeholder stood there (wrappers and doc generators read signatures).
        default = inspect.signature(RoomKit.attach_channel).parameters["category"].default
        assert default is ChannelCategory.TRANSPORT

    async def test_a_missing_room_is_reported_before_an_unregistered_channel(
        self, kit: RoomKit
    ) -> None:
        with pytest.raises(RoomNotFoundError):
            await kit.attach_channel("nope", "not-registered")
        await kit.create_room(room_id="r1")
        with pytest.raises(ChannelNotRegisteredError):
            await kit.attach_channel("r1", "not-registered")


class TestUnknownRooms:
    async def test_detaching_from_a_missing_room_is_false(self, kit: RoomKit) -> None:
        kit.register_channel(SimpleChannel("sms"))
        assert await kit.detach_channel("nope", "sms") is False

    async def test_read_markers_of_a_missing_room_are_ignored(self, kit: RoomKit) -> None:
        await kit.mark_read("nope", "sms", "e1")
        await kit.mark_all_read("nope", "sms")
        assert await kit.store.get_room("nope") is None


class TestHooks:
    async def test_a_hook_without_a_timeout(self, kit: RoomKit) -> None:
        # 0.3.0 handed the timeout to asyncio.wait_for, where None means no bound.
        seen: list[str] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=None)
        async def unbounded(event: RoomEvent, context: RoomContext) -> None:
            seen.append(event.id)

        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert result.event is not None and seen == [result.event.id]

    async def test_a_hook_that_would_never_run_is_reported_once_at_registration(
        self, kit: RoomKit, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Quirk 8: 0.3.0 ignored it silently.
        with caplog.at_level(logging.WARNING, logger="roomkit.framework"):

            @kit.hook(HookTrigger.AFTER_BROADCAST)  # SYNC by default: AFTER_BROADCAST runs ASYNC
            async def log_it(event: RoomEvent, context: RoomContext) -> None:
                pass  # pragma: no cover

        (record,) = [r for r in caplog.records if "log_it" in r.getMessage()]
        text = record.getMessage()
        assert record.levelno == logging.WARNING
        assert text.count("log_it") == 1 and text.count("will never run") == 1
        assert "execution=HookExecution.ASYNC" in text

    async def test_a_lifecycle_hook_filtered_by_a_channel_is_reported_at_registration(
        self, kit: RoomKit, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Their events come from the "system" source: a hook for one channel's errors stayed
        # silent, and nothing said why.
        with caplog.at_level(logging.WARNING, logger="roomkit.framework"):

            @kit.hook(HookTrigger.ON_ERROR, HookExecution.ASYNC, channel_ids=["sms"])
            async def sms_errors(event: RoomEvent, context: RoomContext) -> None:
                pass  # pragma: no cover

            @kit.hook(
                HookTrigger.ON_CHANNEL_ATTACHED,
                HookExecution.ASYNC,
                channel_types=[ChannelType.SMS],
            )
            async def sms_attached(event: RoomEvent, context: RoomContext) -> None:
                pass  # pragma: no cover

            # These can run: no warning.
            @kit.hook(
                HookTrigger.ON_ERROR, HookExecution.ASYNC, channel_types=[ChannelType.SYSTEM]
            )
            async def system_errors(event: RoomEvent, context: RoomContext) -> None:
                pass  # pragma: no cover

            @kit.hook(HookTrigger.AFTER_BROADCAST, HookExecution.ASYNC, channel_ids=["sms"])
            async def sms_messages(event: RoomEvent, context: RoomContext) -> None:
                pass  # pragma: no cover

        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 2, warned
        assert "'sms_errors' for on_error" in warned[0] and "never run" in warned[0]
        assert "'sms_attached' for on_channel_attached" in warned[1]
        assert "content.data['channel_id']" in warned[0]

    async def test_the_decorator_names_a_hook_after_its_function(self, kit: RoomKit) -> None:
        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def moderation(event: RoomEvent, context: RoomContext) -> HookResult:
            return HookResult.block("spam")

        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert result.event is not None and result.event.blocked_by == "moderation"

    async def test_a_room_hook_added_without_a_name_stays_unnamed(self, kit: RoomKit) -> None:
        # As in 0.3.0: removed by the empty name; the stored event names the block's reason
        # and the event_blocked framework event the (empty) name.
        blocked: list[dict[str, Any]] = []

        @kit.on("event_blocked")
        async def on_blocked(event: FrameworkEvent) -> None:
            blocked.append(dict(event.data))

        async def moderation(event: RoomEvent, context: RoomContext) -> HookResult:
            return HookResult.block("spam")

        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        kit.add_room_hook("r1", HookTrigger.BEFORE_BROADCAST, HookExecution.SYNC, moderation)
        first = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert first.blocked and first.event is not None
        assert first.event.blocked_by == "spam"
        assert blocked == [{"reason": "spam", "blocked_by": ""}]
        assert kit.remove_room_hook("r1", "")
        second = await kit.process_inbound(text("sms", "hi again"), room_id="r1")
        assert not second.blocked


class _Bot(SimpleChannel):
    """Notes what history it sees each event with, and answers the user's messages."""

    def __init__(
        self, channel_id: str, answer: str | None, seen: list[tuple[str, str, list[str]]]
    ) -> None:
        super().__init__(channel_id)
        self.answer = answer
        self.seen = seen

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        history = [e.content.body for e in context.recent_events if e.type == "message"]  # type: ignore[union-attr]
        self.seen.append((self.channel_id, event.content.body, history))  # type: ignore[union-attr]
        if event.source.channel_id != "user" or self.answer is None:
            return ChannelOutput.empty()
        reply = RoomEvent(
            room_id=event.room_id,
            source=EventSource(channel_id=self.channel_id, channel_type="websocket"),
            content=TextContent(body=self.answer),
            chain_depth=event.chain_depth + 1,
        )
        return ChannelOutput(responded=True, response_events=[reply])


async def _two_bots(kit: RoomKit, seen: list[tuple[str, str, list[str]]]) -> None:
    """Room r1: the user, two bots answering each of the user's messages, an observer."""
    for bot in (
        _Bot("user", None, seen),
        _Bot("bot1", "a1", seen),
        _Bot("bot2", "a2", seen),
        _Bot("obs", None, seen),
    ):
        kit.register_channel(bot)
    await room_with(kit, "r1", "user", "bot1", "bot2", "obs")


async def _timeline(kit: RoomKit) -> list[tuple[str, str]]:
    """Room r1's timeline as (type, body) pairs."""
    events = await kit.get_timeline("r1", limit=500)
    return [(e.type, e.content.body) for e in events]  # type: ignore[union-attr]


def _messages_in_window(bodies: list[tuple[str, str]], last: int) -> list[str]:
    """The messages among the 50 events up to ``bodies[last]`` (``last`` < 0), as a _Bot
    notes a history."""
    end = len(bodies) + last + 1
    return [body for kind, body in bodies[end - 50 : end] if kind == "message"]


class _SlowAI(MockAIProvider):
    """Notes what each generation sees, and takes a moment to answer."""

    def __init__(self) -> None:
        super().__init__([f"reply{n}" for n in range(1, 100)])
        self.seen: list[list[str]] = []
        self.pause = 0.05

    async def generate(self, context: Any) -> Any:
        self.seen.append([message.content for message in context.messages])
        await anyio.sleep(self.pause if len(self.seen) == 1 else 0)
        return await super().generate(context)


class _Gates:
    """AIs that answer q1 once q2 is recorded, and q2 once ``ask`` lets them; ``ask`` sends q1,
    then q2 while they answer q1."""

    def __init__(self) -> None:
        self.answering_q1 = anyio.Event()
        self.q2_recorded = anyio.Event()
        self.answer_q2 = anyio.Event()

    def provider(self, replies: list[str]) -> MockAIProvider:
        gates = self

        class Gated(MockAIProvider):
            async def generate(self, context: Any) -> Any:
                last = context.messages[-1].content
                if last == "q1":
                    gates.answering_q1.set()
                    await gates.q2_recorded.wait()
                elif last == "q2":
                    await gates.answer_q2.wait()
                return await super().generate(context)

        return Gated(replies)

    async def ask(
        self, kit: RoomKit, by_q1_return: Callable[[], bool]
    ) -> dict[str, InboundResult]:
        """Send q1 and q2 to room r1; ``by_q1_return`` must hold once q1's caller is back,
        before the AIs answer q2. The results by body."""

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def note(event: RoomEvent, context: RoomContext) -> None:
            if getattr(event.content, "body", None) == "q2":
                self.q2_recorded.set()

        answered: dict[str, InboundResult] = {}
        q1_back = anyio.Event()

        async def send(body: str) -> None:
            answered[body] = await kit.process_inbound(text("user", body), room_id="r1")
            if body == "q1":
                q1_back.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send, "q1")
                await self.answering_q1.wait()
                tg.start_soon(send, "q2")  # while the AIs answer q1
                await q1_back.wait()
                assert by_q1_return()
                self.answer_q2.set()
        return answered


class _Persona(SimpleChannel):
    """An intelligence channel answering in the name of a channel the room does not bind."""

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if event.chain_depth > 0:
            return ChannelOutput.empty()
        reply = RoomEvent(
            room_id=context.room.id,
            source=EventSource(channel_id="persona-bot", channel_type=ChannelType.AI),
            content=TextContent(body="persona reply"),
            chain_depth=event.chain_depth + 1,
        )
        return ChannelOutput(responded=True, response_events=[reply])


class _SlowFirst(SimpleChannel):
    """Takes a moment over m0; notes when each message reached it."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.got: dict[str, anyio.Event] = {}

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        body = event.content.body  # type: ignore[union-attr]
        if body == "m0":
            await anyio.sleep(0.3)
        self.got.setdefault(body, anyio.Event()).set()
        return await super().deliver(event, binding, context)


class TestReplies:
    async def test_a_reply_in_the_name_of_a_channel_not_in_the_room_is_recorded(
        self, kit: RoomKit
    ) -> None:
        # 0.3.0 stored a response as it was (spec §5.2 step 11); it goes to nobody.
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(_Persona("brain"))
        await room_with(kit, "r1", "sms")
        await kit.attach_channel("r1", "brain", category=ChannelCategory.INTELLIGENCE)
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
        assert bodies[-2:] == ["hi", "persona reply"]

    async def test_a_message_queued_behind_a_burst_keeps_its_history(self, kit: RoomKit) -> None:
        # Its history was taken from the room's latest 50 events, past which everything
        # before it, and then itself, fell out.
        provider = _SlowAI()
        kit.register_channel(SimpleChannel("user"))
        kit.register_channel(AIChannel("ai", provider=provider))
        await room_with(kit, "r1", "user")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        provider.pause = 0.5
        async with anyio.create_task_group() as tg:
            for n in range(1, 56):
                send = functools.partial(kit.process_inbound, room_id="r1")
                tg.start_soon(send, text("user", f"q{n}"))
                await anyio.sleep(0.001 if n > 1 else 0.02)
        assert provider.seen[1] == ["q1", "reply1", "q2"]

    async def test_a_queued_message_s_history_does_not_wait_on_the_room(
        self, kit: RoomKit
    ) -> None:
        # It asked the room for its history: a room deciding a message whose hook waits for
        # an earlier message's delivery held both until the hook timed out (10 s here).
        out = _SlowFirst("out")
        kit.register_channel(SimpleChannel("user"))
        kit.register_channel(out)
        await room_with(kit, "r1", "user", "out")
        waited: list[str] = []

        @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=10)
        async def waits(event: RoomEvent, context: RoomContext) -> HookResult:
            if getattr(event.content, "body", None) == "m2":
                await out.got.setdefault("m1", anyio.Event()).wait()
                waited.append("m1")
            return HookResult.allow()

        errors: list[FrameworkEvent] = []

        @kit.on("hook_error")
        async def note(event: FrameworkEvent) -> None:
            errors.append(event)

        with anyio.fail_after(8):
            async with anyio.create_task_group() as tg:
                for body in ("m0", "m1", "m1b", "m2"):
                    tg.start_soon(
                        functools.partial(kit.process_inbound, room_id="r1"), text("user", body)
                    )
                    await anyio.sleep(0.02)
        assert waited == ["m1"] and errors == []

    async def test_an_ai_answering_a_message_that_came_while_it_answered_sees_its_reply(
        self, kit: RoomKit
    ) -> None:
        # 0.3.0 held the room until a message's AI reply was in: q2, sent while the AI
        # answered q1, was recorded after reply1, and the AI answering q2 saw reply1. Here
        # q2 is recorded at once, before reply1; its AI was given the room as of q2's commit,
        # without its own earlier reply. q3, sent after q2, is not in q2's history.
        provider = _SlowAI()
        kit.register_channel(SimpleChannel("user"))
        kit.register_channel(AIChannel("ai", provider=provider))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "user")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        async with anyio.create_task_group() as tg:
            for body in ("q1", "q2", "q3"):
                tg.start_soon(
                    functools.partial(kit.process_inbound, room_id="r1"), text("user", body)
                )
                await anyio.sleep(0.01)  # in that order, each while the AI answers q1
        first, second, third = provider.seen
        assert (first, second) == (["q1"], ["q1", "reply1", "q2"])
        # The replies recorded since come before the message answered (which of them answers
        # which message the room does not keep: they come after the messages before it).
        assert third[-1] == "q3" and sorted(third) == ["q1", "q2", "q3", "reply1", "reply2"]

    async def test_a_reply_goes_out_before_the_ai_answers_the_next_message(
        self, kit: RoomKit
    ) -> None:
        # 0.3.0 delivered q1's reply before it took q2 up. Here q2 is recorded while the AI
        # answers q1, and its broadcast (the AI answering q2) was queued ahead of reply1's:
        # reply1 reached the user, and q1's caller returned, only once q2 was answered.
        gates = _Gates()
        user = SimpleChannel("user")
        kit.register_channel(user)
        kit.register_channel(AIChannel("ai", provider=gates.provider(["reply1", "reply2"])))
        await room_with(kit, "r1", "user")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        # q1's caller is back, its reply delivered, while the AI has not answered q2.
        answered = await gates.ask(kit, lambda: user.texts() == ["reply1"])
        assert not answered["q1"].blocked
        assert user.texts() == ["reply1", "reply2"]

    async def test_replies_the_log_refuses_together_still_go_out_before_the_next_answer(
        self,
    ) -> None:
        # Recorded one by one once the log refused them together (its max payload), they
        # were queued behind the room's later turns again.
        class Limited(MemoryEventLog):
            async def append(self, stream: str, events: Any, **options: Any) -> Any:
                if sum(b"BIG" in e.data for e in events) > 1:
                    raise InvalidAppend("too large for the log")
                return await super().append(stream, events, **options)

        gates = _Gates()
        async with RoomKit(log=Limited(), max_chain_depth=2) as kit:
            user = SimpleChannel("user")
            kit.register_channel(user)
            for name in ("ai1", "ai2"):
                kit.register_channel(AIChannel(name, provider=gates.provider([f"BIG-{name}"])))
            await room_with(kit, "r1", "user")
            for name in ("ai1", "ai2"):
                await kit.attach_channel("r1", name, category=ChannelCategory.INTELLIGENCE)
            await gates.ask(kit, lambda: sorted(user.texts()) == ["BIG-ai1", "BIG-ai2"])
            assert len(user.texts()) == 4

    async def test_replies_recorded_together_each_see_the_history_up_to_themselves(
        self, kit: RoomKit
    ) -> None:
        # Two bots answer one message: 0.3.0 stored each reply just before broadcasting it,
        # so the first reply's readers did not see the second.
        seen: list[tuple[str, str, list[str]]] = []
        await _two_bots(kit, seen)
        await kit.process_inbound(text("user", "q"), room_id="r1")
        by_reader = {(reader, body): history for reader, body, history in seen}
        assert by_reader[("obs", "q")] == ["q"]
        assert by_reader[("obs", "a1")] == ["q", "a1"]
        assert by_reader[("obs", "a2")] == ["q", "a1", "a2"]
        assert by_reader[("bot2", "a1")] == ["q", "a1"]

    async def test_a_reply_recorded_with_another_sees_a_full_window_of_history(
        self, kit: RoomKit
    ) -> None:
        # 0.3.0 read the last 50 events as each reply was broadcast. The first reply's
        # history ends before the second reply, and still holds 50 events (it held 49).
        seen: list[tuple[str, str, list[str]]] = []
        await _two_bots(kit, seen)
        for n in range(20):  # 60 events and 4 system events: the window is full
            await kit.process_inbound(text("user", f"q{n}"), room_id="r1")
        seen.clear()
        await kit.process_inbound(text("user", "last"), room_id="r1")
        by_reader = {(reader, body): history for reader, body, history in seen}
        timeline = [e.content.body for e in await kit.get_timeline("r1", limit=100)]  # type: ignore[union-attr]
        assert timeline[-3:] == ["last", "a1", "a2"]
        assert by_reader[("obs", "a1")] == timeline[-51:-1]
        assert by_reader[("obs", "a2")] == timeline[-50:]
        assert by_reader[("obs", "last")] == timeline[-52:-2]  # broadcast before the replies
        many: list[tuple[str, str, list[str]]] = []
        for n in range(3, 11):  # nine more bots: ten replies recorded together
            bot = _Bot(f"bot{n}", f"a{n}", many)
            kit.register_channel(bot)
            await kit.attach_channel("r1", bot.channel_id)
        await kit.process_inbound(text("user", "to all"), room_id="r1")
        bodies = await _timeline(kit)
        replies = [body for _, body in bodies[-10:]]
        assert sorted(replies) == sorted(["a1", "a2", *[f"a{n}" for n in range(3, 11)]])
        by_reader = {(reader, body): history for reader, body, history in seen}
        for at, reply in enumerate(replies):  # each with the 50 events up to itself
            assert by_reader[("obs", reply)] == _messages_in_window(bodies, at - 10)
        for n in range(3):  # and the next turns see the room's window as before
            await kit.process_inbound(text("user", f"again{n}"), room_id="r1")
            by_reader = {(reader, body): history for reader, body, history in seen}
            bodies = await _timeline(kit)
            a1 = max(i for i, (_, body) in enumerate(bodies) if body == "a1") - len(bodies)
            assert by_reader[("obs", "a1")] == _messages_in_window(bodies, a1)

    async def test_a_message_is_broadcast_with_the_events_its_hooks_injected(
        self, kit: RoomKit
    ) -> None:
        seen: dict[str, list[str]] = {}

        class Observer(SimpleChannel):
            async def on_event(
                self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
            ) -> ChannelOutput:
                seen[event.content.body] = [e.content.body for e in context.recent_events]  # type: ignore[union-attr]
                return ChannelOutput.empty()

        kit.register_channel(SimpleChannel("user"))
        kit.register_channel(Observer("obs"))
        await room_with(kit, "r1", "user", "obs")

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def note(event: RoomEvent, context: RoomContext) -> HookResult:
            extra = RoomEvent(
                room_id="r1",
                source=EventSource(channel_id="sys", channel_type="system"),
                content=TextContent(body="note"),
            )
            return HookResult.allow(
                injected=[InjectedEvent(event=extra, target_channel_ids=["obs"])]
            )

        await kit.process_inbound(text("user", "q"), room_id="r1")
        assert seen["q"][-2:] == ["q", "note"]


class TestActivityAndFrameworkEvents:
    """0.3.0 reported deliveries and counted room activity for inbound messages only."""

    async def room(self, kit: RoomKit, events: list[str]) -> None:
        for kind in ("delivery_succeeded", "event_processed", "broadcast_partial_failure"):

            @kit.on(kind)
            async def note(event: FrameworkEvent) -> None:
                events.append(event.type)

        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["noted"])))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")

    async def test_an_inbound_message_is_activity_and_reported(self, kit: RoomKit) -> None:
        events: list[str] = []
        await self.room(kit, events)
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert result.event is not None
        room = await kit.get_room("r1")
        last = room.timers.last_activity_at
        assert last is not None and last >= result.event.created_at  # when it was recorded
        assert sorted(events) == ["delivery_succeeded", "event_processed"]

    @pytest.mark.parametrize("hours", [-2, 2])
    async def test_activity_is_when_a_message_is_recorded_whatever_time_its_channel_gives(
        self, kit: RoomKit, hours: int
    ) -> None:
        # A channel passing on a provider's time (a webhook delivered late, a clock ahead):
        # 0.3.0 took the time it processed the message. The event's time made a room that had
        # just had a message pause at the next check, or never pause.
        class ProviderTime(SimpleChannel):
            async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> Any:
                event = await super().handle_inbound(message, context)
                return event.model_copy(update={"created_at": then})

        then = datetime.now(UTC) + timedelta(hours=hours)
        kit.register_channel(ProviderTime("sms"))
        kit.register_channel(SimpleChannel("ws"))
        timers = RoomTimers(inactive_after_seconds=3600)
        await kit.create_room(room_id="r1", timers=timers)
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        before = datetime.now(UTC)
        result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert result.event is not None and result.event.created_at == then
        last = (await kit.get_room("r1")).timers.last_activity_at
        assert last is not None and before <= last <= datetime.now(UTC)
        assert (await kit.check_room_timers("r1")).status == RoomStatus.ACTIVE

    @pytest.mark.parametrize("kind", [EventType.REACTION, EventType.SYSTEM])
    async def test_an_inbound_event_of_any_type_is_activity(
        self, kit: RoomKit, kind: EventType
    ) -> None:
        # 0.3.0 counted every inbound event from a bound channel (a reaction, an edit, even
        # one its channel typed as system); only messages counted, so a room whose people
        # only reacted paused.
        class Typed(SimpleChannel):
            async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> Any:
                event = await super().handle_inbound(message, context)
                return event.model_copy(update={"type": kind})

        kit.register_channel(Typed("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1", timers=RoomTimers(inactive_after_seconds=3600))
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        assert (await kit.get_room("r1")).timers.last_activity_at is None  # attaching is not
        result = await kit.process_inbound(text("sms", "+1"), room_id="r1")
        assert result.event is not None and result.event.type == kind
        room = await kit.get_room("r1")
        assert room.timers.last_activity_at is not None

    async def test_the_room_s_bookkeeping_and_a_blocked_message_are_not_activity(
        self, kit: RoomKit
    ) -> None:
        # Channel changes (mute, visibility, access, metadata), participants, tasks and
        # observations are recorded as system events: none is the people's activity. Nor is
        # a message a hook blocked.
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1", timers=RoomTimers(inactive_after_seconds=3600))
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def gate(event: RoomEvent, context: RoomContext) -> HookResult:
            return HookResult(
                action="block",
                reason="no",
                tasks=[Task(room_id="r1", title="look")],
                observations=[Observation(room_id="r1", channel_id="sms", content="x")],
            )

        await kit.mute("r1", "ws")
        await kit.set_visibility("r1", "sms", "internal")
        await kit.set_access("r1", "sms", Access.READ_WRITE)
        await kit.update_binding_metadata("r1", "sms", {"k": 1})
        await kit.ensure_participant("r1", "sms", "u1", display_name="U")
        result = await kit.process_inbound(text("sms", "hi", sender="u1"), room_id="r1")
        assert result.blocked
        timeline = await kit.get_timeline("r1")
        assert {e.type for e in timeline} >= {EventType.CHANNEL_UPDATED, EventType.CHANNEL_MUTED}
        assert (await kit.get_room("r1")).timers.last_activity_at is None

    async def test_a_sent_event_and_an_ai_reply_are_neither(self, kit: RoomKit) -> None:
        events: list[str] = []
        await self.room(kit, events)
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        sent = await kit.send_event("r1", "ws", TextContent(body="from the agent"))
        timeline = await kit.get_timeline("r1")
        reply = timeline[-1]
        assert reply.source.channel_id == "ai" and reply.content.body == "noted"  # type: ignore[union-attr]
        assert sent.status == reply.status == EventStatus.DELIVERED
        assert (await kit.get_room("r1")).timers.last_activity_at is None
        assert events == []

    async def test_a_message_from_an_unbound_channel_is_recorded_only(self, kit: RoomKit) -> None:
        events: list[str] = []
        await self.room(kit, events)
        kit.register_channel(SimpleChannel("email"))
        result = await kit.process_inbound(text("email", "stray"), room_id="r1")
        assert result.event is not None and not result.blocked
        assert result.event.id in {e.id for e in await kit.get_timeline("r1")}
        assert (await kit.get_room("r1")).timers.last_activity_at is None
        assert events == []


class _SupportKit(RoomKit):
    """A 0.3.0 app's kit: every room it makes gets the AI channel and the tenant."""

    async def create_room(
        self,
        room_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        room = await super().create_room(
            room_id=room_id, metadata={**(metadata or {}), "tenant": "acme"}, **kwargs
        )
        await self.attach_channel(room.id, "ai", category=ChannelCategory.INTELLIGENCE)
        return room

    async def check_room_timers(self, room_id: str) -> Any:
        self.checked.append(room_id)
        return await super().check_room_timers(room_id)

    checked: list[str]


class TestSubclassOfTheKit:
    async def test_a_room_made_for_a_message_is_made_by_its_create_room(self) -> None:
        # The kit made it itself (one append): the app's create_room was not called, and the
        # room had neither its AI channel nor its metadata.
        async with _SupportKit() as kit:
            sms = SimpleChannel("sms")
            kit.register_channel(sms)
            kit.register_channel(AIChannel("ai", provider=MockAIProvider(["Hi, the AI here"])))
            result = await kit.process_inbound(text("sms", "hello"))
            assert result.event is not None
            room = await kit.get_room(result.event.room_id)
            assert room.metadata == {"tenant": "acme"}
            bindings = await kit.list_bindings(room.id)
            assert sorted(b.channel_id for b in bindings) == ["ai", "sms"]
            assert sms.texts() == ["Hi, the AI here"]

    async def test_check_all_timers_calls_its_check_room_timers_for_each_room(self) -> None:
        # Only the rooms due were checked, by the kit itself.
        async with _SupportKit() as kit:
            kit.checked = []
            kit.register_channel(AIChannel("ai", provider=MockAIProvider(["x"])))
            kit.register_channel(SimpleChannel("sms"))
            for room_id in ("a", "b"):
                await kit.create_room(room_id=room_id)
            await kit.create_room(room_id="due", timers=RoomTimers(inactive_after_seconds=0))
            await kit.attach_channel("due", "sms")
            await kit.process_inbound(text("sms", "hi"), room_id="due")  # its activity
            changed = await kit.check_all_timers()
            assert set(kit.checked) == {"a", "b", "due"}  # "due" again once paused, as in 0.3.0
            assert [room.id for room in changed] == ["due"]
            assert (await kit.get_room("due")).status == RoomStatus.PAUSED


async def test_a_store_holding_rooms_a_log_holding_nothing_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 0.3.0 app's own durable store, with the default memory log: after a restart the kit
    # showed the stored rooms and refused every command to them, and said nothing.
    store = InMemoryStore()  # standing for a store of the app's that outlives the process
    async with RoomKit(store=store) as kit:
        await kit.create_room(room_id="support")
    with caplog.at_level(logging.WARNING, logger="roomkit"):
        async with RoomKit(store=store) as kit:
            assert (await kit.get_room("support")).id == "support"  # the store's
            with pytest.raises(RoomNotFoundError):
                await kit.update_room_metadata("support", {"a": 1})  # not the log's
    assert any("the event log holds nothing" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="roomkit"):
        async with RoomKit(store=InMemoryStore()) as kit:
            await kit.create_room(room_id="fresh")
    assert not any("the event log holds nothing" in r.getMessage() for r in caplog.records)
