"""Chains of replies re-entering a room end: at ``max_chain_depth`` whatever depth a channel
gives its replies, and once their message's ``process_timeout`` ran out or its caller is gone
(0.3.0 ran the whole chain under ``asyncio.wait_for(process_timeout)``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from eventlog import MemoryEventLog
from roomkit import (
    AIChannel,
    AIContext,
    AIProvider,
    AIResponse,
    Channel,
    ChannelBinding,
    ChannelCategory,
    ChannelOutput,
    ChannelType,
    EventSource,
    EventStatus,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from tests.roomkit.kit_helpers import (
    CannedReplies,
    SimpleChannel,
    canned_reply,
    eventually,
    text,
)
from tests.roomkit.test_kit_replay import snapshot

# The ``blocked_by`` of a reply past its chain's process_timeout, and its Observation's
# category (roomkit.core.event_router.CHAIN_TIMEOUT_BLOCKED_BY).
CUT = "event_chain_process_timeout"

# Past any chain the tests make: as math.inf ("no limit"), which the kit takes too.
NO_LIMIT = 10**9

# Generous: a run on trio, on a loaded machine, of the slowest scenario (its kit's close
# included) takes a few seconds.
BOUND = 60


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The kit is pure anyio on the memory log: both backends."""
    param: str = request.param
    return param


class Chatty(AIProvider):
    """Answers whatever it is shown after a short while; notes what each call answered."""

    def __init__(self, called: anyio.Event | None = None) -> None:
        self.answered: list[str] = []
        self._called = called

    @property
    def model_name(self) -> str:
        return "chatty"

    async def generate(self, context: AIContext) -> AIResponse:
        last = context.messages[-1].content if context.messages else ""
        self.answered.append(last if isinstance(last, str) else "")
        if self._called is not None and len(self.answered) >= 3:
            self._called.set()
        # Not at once: a chain without a bound makes a few hundred replies a second, not
        # thousands.
        await anyio.sleep(0.01)
        return AIResponse(content=f"reply {len(self.answered)}")


class Bot(SimpleChannel):
    """An intelligence channel of the app's own that answers every other channel's event with
    a reply keeping RoomEvent's default ``chain_depth`` (0)."""

    category = ChannelCategory.INTELLIGENCE

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id, ChannelType.WEBHOOK)
        self.answered = 0

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if event.source.channel_id == self.channel_id:
            return ChannelOutput.empty()
        self.answered += 1
        reply = RoomEvent(
            room_id=event.room_id,
            source=EventSource(channel_id=self.channel_id, channel_type=ChannelType.WEBHOOK),
            content=TextContent(body=f"{self.channel_id} {self.answered}"),
        )
        return ChannelOutput(responded=True, response_events=[reply])


async def two_talkers(kit: RoomKit, first: Channel, second: Channel) -> SimpleChannel:
    """Room r1 with an SMS channel and two intelligence channels that answer each other."""
    sms = SimpleChannel("sms")
    kit.register_channel(sms)
    kit.register_channel(first)
    kit.register_channel(second)
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    for talker in (first, second):
        await kit.attach_channel("r1", talker.channel_id, category=ChannelCategory.INTELLIGENCE)
    return sms


async def replies(kit: RoomKit) -> list[RoomEvent]:
    return [
        e
        for e in await kit.get_timeline("r1", limit=100_000)
        if e.source.channel_id not in ("sms", "system") and e.type == "message"
    ]


async def cut_replies(kit: RoomKit) -> list[RoomEvent]:
    return [e for e in await replies(kit) if e.blocked_by == CUT]


async def assert_cut_as_recorded(kit: RoomKit) -> None:
    """Replies past their chain's bound are recorded BLOCKED, each with its Observation, as
    those over ``max_chain_depth`` are."""
    cut = await cut_replies(kit)
    assert cut and all(e.status == EventStatus.BLOCKED for e in cut)
    observations = {o.id: o for o in await kit.list_observations("r1")}
    for reply in cut:
        observation = observations[f"obs_{reply.id}"]
        assert observation.category == CUT
        assert observation.channel_id == reply.source.channel_id
        assert observation.metadata["chain_depth"] == reply.chain_depth


@pytest.fixture
def log() -> MemoryEventLog:
    """The test's log, which a second kit is rebuilt from at the end."""
    return MemoryEventLog()


async def assert_rebuilt_alike(log: MemoryEventLog, live: dict[str, Any]) -> None:
    """A kit rebuilt from ``log`` holds what the test's kit held (``live``): the blocked
    replies are events of the log, not state of the live kit only."""
    async with RoomKit(log=log) as rebuilt:
        assert await snapshot(rebuilt) == live, "state rebuilt from the log differs"


async def test_channels_keeping_depth_zero_stop_at_max_chain_depth(log: MemoryEventLog) -> None:
    # Two bots whose replies keep chain_depth 0 answered each other for ever under the
    # default max_chain_depth of 5: each reply counts one deeper than what it answers.
    with anyio.fail_after(BOUND):
        async with RoomKit(log=log, process_timeout=2.0) as kit:
            one, two = Bot("bot1"), Bot("bot2")
            sms = await two_talkers(kit, one, two)
            result = await kit.process_inbound(text("sms", "go"), room_id="r1")
            assert not result.blocked, result.reason
            answers = await replies(kit)
            delivered = [e for e in answers if e.status == EventStatus.DELIVERED]
            blocked = [e for e in answers if e.status == EventStatus.BLOCKED]
            assert sorted(e.chain_depth for e in delivered) == [1, 1, 2, 2, 3, 3, 4, 4]
            assert [e.chain_depth for e in blocked] == [5, 5]
            assert all(e.blocked_by == "event_chain_depth_limit" for e in blocked)
            assert one.answered + two.answered == 10
            assert sorted(e.id for e in sms.delivered) == sorted(e.id for e in delivered)
            live = await snapshot(kit)
        await assert_rebuilt_alike(log, live)


async def test_a_chain_stops_once_its_process_timeout_ran_out(log: MemoryEventLog) -> None:
    # No depth limit in practice. The caller is told process_timeout; the AIs
    # answered each other on, and the room's next message never reached a channel.
    with anyio.fail_after(BOUND):
        kit = RoomKit(log=log, process_timeout=1.0, max_chain_depth=NO_LIMIT)
        async with kit:
            one, two = Chatty(), Chatty()
            await two_talkers(kit, AIChannel("ai1", provider=one), AIChannel("ai2", provider=two))
            first = await kit.process_inbound(text("sms", "go"), room_id="r1")
            assert first.blocked and first.reason == "process_timeout"
            assert first.event is not None  # recorded; its chain overran
            await kit.process_inbound(text("sms", "next"), room_id="r1")
            # The room was freed for it: the AIs answered it.
            assert "next" in one.answered + two.answered
            await assert_cut_as_recorded(kit)
            # Closing does not wait for a chain that would go on for good.
            with anyio.fail_after(10):
                await kit.close()
            calls = len(one.answered) + len(two.answered)
            live = await snapshot(kit)
        assert len(one.answered) + len(two.answered) == calls
        await assert_rebuilt_alike(log, live)


async def test_a_chain_stops_once_its_caller_is_gone(log: MemoryEventLog) -> None:
    # The caller is cancelled well within its process_timeout: nobody waits for the chain,
    # which 0.3.0 cancelled with the caller's task.
    with anyio.fail_after(BOUND):
        async with RoomKit(log=log, process_timeout=6.0, max_chain_depth=NO_LIMIT) as kit:
            called = anyio.Event()
            one, two = Chatty(called), Chatty()
            await two_talkers(kit, AIChannel("ai1", provider=one), AIChannel("ai2", provider=two))
            async with anyio.create_task_group() as tg:

                async def send() -> None:
                    await kit.process_inbound(text("sms", "go"), room_id="r1")

                tg.start_soon(send)
                await called.wait()  # the chain runs
                tg.cancel_scope.cancel()

            async def cut() -> bool:
                return bool(await cut_replies(kit))

            # Well before the 6 s of its process_timeout.
            await eventually(cut, timeout=3.0, what="a reply recorded blocked, the chain cut")
            await assert_cut_as_recorded(kit)
        live = await snapshot(kit)
        await assert_rebuilt_alike(log, live)


async def test_a_chain_nobody_waits_for_stops_at_its_process_timeout(
    log: MemoryEventLog,
) -> None:
    # wait_for_delivery=False: the caller returns at the commit; the chain is still bound by
    # the message's process_timeout.
    with anyio.fail_after(BOUND):
        kit = RoomKit(
            log=log, process_timeout=0.5, max_chain_depth=NO_LIMIT, wait_for_delivery=False
        )
        async with kit:
            one, two = Chatty(), Chatty()
            await two_talkers(kit, AIChannel("ai1", provider=one), AIChannel("ai2", provider=two))
            result = await kit.process_inbound(text("sms", "go"), room_id="r1")
            assert not result.blocked

            async def cut() -> bool:
                return bool(await cut_replies(kit))

            await eventually(cut, timeout=10.0, what="a reply recorded blocked, the chain cut")
            await assert_cut_as_recorded(kit)
            with anyio.fail_after(10):
                await kit.close()
            live = await snapshot(kit)
        await assert_rebuilt_alike(log, live)


async def test_the_router_records_a_cut_chain_as_blocked_replies() -> None:
    from roomkit.core.event_router import CHAIN_TIMEOUT_BLOCKED_BY, BroadcastResult, EventRouter

    assert CHAIN_TIMEOUT_BLOCKED_BY == CUT
    reply = RoomEvent(
        room_id="r1",
        chain_depth=3,
        source=EventSource(channel_id="ai", channel_type=ChannelType.AI),
        content=TextContent(body="more"),
    )
    result = BroadcastResult(reentry_events=[reply], responders={reply.id: "ai"})
    router = EventRouter({}, call_timeout=2.0)
    (blocked,) = router.cut_chain(result)
    assert result.reentry_events == [] and result.responders == {}
    assert result.blocked_events == [blocked]
    assert blocked.id == reply.id and blocked.chain_depth == 3
    assert blocked.status == EventStatus.BLOCKED and blocked.blocked_by == CUT
    (observation,) = result.observations
    assert observation.id == f"obs_{reply.id}" and observation.category == CUT
    assert observation.channel_id == "ai" and observation.room_id == "r1"
    assert observation.metadata == {
        "chain_depth": 3,
        "process_timeout": 2.0,
        "source_channel": "ai",
    }


async def test_a_blocked_reply_naming_another_room_is_recorded_in_its_own(
    log: MemoryEventLog,
) -> None:
    # A reply that went through was recorded in the room it answered in; one the chain
    # limit blocked kept the room it named (a canned reply made for another room): the read
    # model filed it in that room's timeline, at this room's indexes, and this room's lacked
    # it (and a rebuild did the same).
    canned = canned_reply("r0")

    with anyio.fail_after(BOUND):
        async with RoomKit(log=log, max_chain_depth=0) as kit:
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(CannedReplies("ai", canned))
            await kit.create_room(room_id="r0")
            await kit.attach_channel("r0", "sms")
            await kit.create_room(room_id="r2")
            await kit.attach_channel("r2", "sms")
            await kit.attach_channel("r2", "ai", category=ChannelCategory.INTELLIGENCE)
            for n in range(2):
                await kit.process_inbound(text("sms", f"m{n}"), room_id="r2")
            assert [e.room_id for e in await kit.get_timeline("r0")] == ["r0"]  # its attach
            timeline = await kit.get_timeline("r2")
            assert [e.index for e in timeline] == list(range(len(timeline)))
            blocked = [e for e in timeline if e.status == EventStatus.BLOCKED]
            assert len(blocked) == 2 and all(e.room_id == "r2" for e in blocked)
            live = await snapshot(kit)
        await assert_rebuilt_alike(log, live)


def _exceeded_said(kit: RoomKit) -> list[str | None]:
    """The event ids the kit's ``chain_depth_exceeded`` framework events will name."""
    said: list[str | None] = []
    kit.on("chain_depth_exceeded")(lambda event: said.append(event.event_id))
    return said


async def _each_blocked_reply_said(kit: RoomKit, said: list[str | None]) -> list[str]:
    """Room ``r1``'s two blocked replies, once ``said`` names each as it is recorded."""

    async def both_said() -> bool:
        return len(said) == 2

    await eventually(both_said, what="two chain_depth_exceeded events")
    timeline = await kit.get_timeline("r1")
    blocked = [e.id for e in timeline if e.status == EventStatus.BLOCKED]
    assert len(set(blocked)) == 2
    assert said == blocked
    return blocked


async def test_chain_depth_exceeded_names_each_blocked_reply_as_recorded(
    log: MemoryEventLog,
) -> None:
    # One canned reply object blocked by the chain limit twice is recorded under two ids,
    # but both chain_depth_exceeded framework events named the first copy's id (said
    # before the room recorded the second copy under an id of its own).
    canned = canned_reply("r1")

    with anyio.fail_after(BOUND):
        async with RoomKit(log=log, max_chain_depth=0) as kit:
            said = _exceeded_said(kit)
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(CannedReplies("ai", canned))
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
            for n in range(2):
                await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")
            await _each_blocked_reply_said(kit, said)


async def test_one_reply_object_blocked_twice_in_one_broadcast_is_said_under_each_id(
    log: MemoryEventLog,
) -> None:
    # Two AI channels answering one message with one canned reply object, both blocked: the
    # copies were recorded under two ids, but the ids said were looked up by the reply's own
    # id, so both chain_depth_exceeded events named the second copy, and one Observation
    # (named after the second copy too) stood for the two blocked replies.
    canned = canned_reply("r1", "ai1")

    with anyio.fail_after(BOUND):
        async with RoomKit(log=log, max_chain_depth=0) as kit:
            said = _exceeded_said(kit)
            kit.register_channel(SimpleChannel("sms"))
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            for channel_id in ("ai1", "ai2"):
                kit.register_channel(CannedReplies(channel_id, canned))
                await kit.attach_channel("r1", channel_id, category=ChannelCategory.INTELLIGENCE)
            await kit.process_inbound(text("sms", "m0"), room_id="r1")
            blocked = await _each_blocked_reply_said(kit, said)
            observations = await kit.store.list_observations("r1")
            assert sorted(o.id for o in observations) == sorted(f"obs_{i}" for i in blocked)
