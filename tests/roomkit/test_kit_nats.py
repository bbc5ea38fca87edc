"""A kit on JetStream survives a server crash and a process restart with the same rooms."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import nats
import pytest

from eventlog import MemoryEventLog
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from roomkit import (
    AIChannel,
    ChannelBinding,
    ChannelCategory,
    ChannelOutput,
    EventRefusedError,
    HookResult,
    HookTrigger,
    Identity,
    MockAIProvider,
    RoomConflictError,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
    RoomStatus,
    Task,
    TextContent,
)
from roomkit.models.event import EventSource
from tests.roomkit.kit_helpers import SimpleChannel, errors_said, eventually, text
from tests.roomkit.test_kit_replay import snapshot

pytestmark = pytest.mark.nats


def kit_on(log: NatsEventLog) -> RoomKit:
    kit = RoomKit(log=log)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    return kit


@asynccontextmanager
async def two_processes(
    nats_server: NatsServer,
) -> AsyncIterator[tuple[NatsEventLog, RoomKit, RoomKit]]:
    """Two kits, as two processes would have, each on its own client of one JetStream; room
    "shared" made, with channel "sms" attached. Yields the first's log and both kits."""
    async with (
        NatsEventLog(nats_server.url) as log_a,
        NatsEventLog(nats_server.url) as log_b,
        kit_on(log_a) as kit_a,
        kit_on(log_b) as kit_b,
    ):
        await kit_a.create_room(room_id="shared")
        await kit_a.attach_channel("shared", "sms")
        yield log_a, kit_a, kit_b


async def test_rooms_survive_a_server_kill_and_a_new_process(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    async with NatsEventLog(server.url, retry_timeout=10.0) as log, kit_on(log) as kit:
        await kit.create_room(room_id="support-1")
        await kit.attach_channel("support-1", "sms")
        await kit.attach_channel("support-1", "ws")
        first = await kit.process_inbound(text("sms", "hello", idempotency_key="SM1"))
        await kit.process_inbound(text("ws", "hi, how can I help?"))
        before = await snapshot(kit)
    assert first.event is not None

    server.kill()  # SIGKILL: no clean shutdown
    server.restart()

    # A new process: a new connection, a new kit, nothing in memory.
    async with NatsEventLog(server.url, retry_timeout=10.0) as log, kit_on(log) as kit:
        assert await snapshot(kit) == before
        again = await kit.process_inbound(text("sms", "hello", idempotency_key="SM1"))
        assert again.blocked and again.reason == "duplicate"
        assert again.event is not None and again.event.id == first.event.id
        after = await kit.process_inbound(text("sms", "still there?"))
        assert after.event is not None
        assert after.event.index == before["support-1"]["room"]["event_count"]


async def test_a_stream_purged_behind_the_kit_says_its_records_are_lost(
    nats_server: NatsServer,
) -> None:
    # Taken for another writer's appends, the room re-ran the command against a history no
    # longer there, and said it "kept changing under another writer".
    async with NatsEventLog(nats_server.url) as log, kit_on(log) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.process_inbound(text("sms", "hello"), room_id="r1")
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().purge_stream(log.stream_name)
        finally:
            await nc.close()
        with pytest.raises(RoomKitError, match="the log lost records") as lost:
            await kit.process_inbound(text("sms", "again"), room_id="r1")
        assert "restart" in str(lost.value) and not isinstance(lost.value, RoomConflictError)


async def test_two_processes_writing_one_room_never_fork_its_history(
    nats_server: NatsServer,
) -> None:
    # Two kits (as two processes would) on one JetStream: each room actor caches its state,
    # so the second writer's append is rejected by the expected-sequence check, reloads the
    # room from the log and re-runs the command. Nothing is lost, nothing is overwritten.
    async with two_processes(nats_server) as (log_a, kit_a, kit_b):
        await kit_a.attach_channel("shared", "ws")
        for n in range(6):
            writer = kit_a if n % 2 == 0 else kit_b
            result = await writer.process_inbound(text("sms", f"m{n}"), room_id="shared")
            assert result.event is not None and not result.blocked
        records = await log_a.read("shared")
        # kit_a's read model follows the other writer through its log subscription.
        await kit_a._runtime.projection.wait(await log_a.last_position())
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        timeline = [
            e for e in (await kit_a.get_timeline("shared", limit=100)) if e.type == "message"
        ]
        assert [e.content.body for e in timeline] == [f"m{n}" for n in range(6)]  # type: ignore[union-attr]
        assert [e.index for e in timeline] == sorted({e.index for e in timeline})


async def test_a_message_another_process_keeps_getting_ahead_of_is_decided_again(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # While process B decides its message, process A appends to the room three times in a
    # row: B's append conflicts three times, and B decides it again on the room as it is
    # each time. It failed with RoomConflictError at the second conflict (one retry).
    async with two_processes(nats_server) as (log_a, kit_a, kit_b):
        decided: list[int] = []

        @kit_b.hook(HookTrigger.BEFORE_BROADCAST)
        async def meanwhile(event: RoomEvent, context: RoomContext) -> HookResult:
            decided.append(len(context.recent_events))
            if len(decided) <= 3:  # the other process gets ahead again
                await kit_a.process_inbound(text("sms", f"a{len(decided)}"), room_id="shared")
            return HookResult.allow()

        with caplog.at_level(logging.INFO, logger="roomkit.actors"):
            result = await kit_b.process_inbound(text("sms", "b"), room_id="shared")
        assert result.event is not None and not result.blocked
        retries = [r for r in caplog.records if "re-running the command" in r.getMessage()]
        assert len(retries) == 3
        assert decided == [1, 2, 3, 4]  # each time on the room with A's messages so far
        await kit_a._runtime.projection.wait(await log_a.last_position())
        events = await kit_a.get_timeline("shared", limit=100)
        bodies = [e.content.body for e in events if e.type == "message"]  # type: ignore[union-attr]
        assert bodies == ["a1", "a2", "a3", "b"]
        assert [e.index for e in events] == list(range(len(events)))


async def test_a_message_decided_again_keeps_its_process_timeout() -> None:
    # Each decision after another writer's append had a process_timeout of its own: with a
    # slow hook and the other writer always ahead, the message took 3.7 s for a 1 s
    # process_timeout and ran its hook 9 times (two kits on one log, as two processes).
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit_a, RoomKit(log=log, process_timeout=1.0) as kit_b:
        for kit in (kit_a, kit_b):
            kit.register_channel(SimpleChannel("sms"))
        await kit_a.create_room(room_id="shared")
        await kit_a.attach_channel("shared", "sms")
        runs = 0

        @kit_b.hook(HookTrigger.BEFORE_BROADCAST, timeout=5.0)
        async def meanwhile(event: RoomEvent, context: RoomContext) -> HookResult:
            nonlocal runs
            runs += 1
            await kit_a.process_inbound(text("sms", f"a{runs}"), room_id="shared")
            await anyio.sleep(0.4)  # a slow hook: the budget runs out on the third run
            return HookResult.allow()

        result = await kit_b.process_inbound(text("sms", "b"), room_id="shared")
        assert result.blocked and result.reason == "process_timeout"
        assert runs <= 4
        bodies = [getattr(e.content, "body", "") for e in await kit_a.get_timeline("shared")]
        assert "b" not in bodies


async def test_a_message_too_large_for_the_log_is_refused_and_the_room_goes_on(
    nats_server: NatsServer, nats_log: NatsEventLog
) -> None:
    """JetStream refuses a message past the server's max payload: that is the message's fault,
    not an outage, so it is an ``EventRefusedError`` (a ``ValueError``), and nothing is logged."""
    async with kit_on(nats_log) as kit:
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        before = await nats_log.last_version("r1")
        with pytest.raises(EventRefusedError, match="refused room r1's events") as info:
            await kit.process_inbound(text("sms", "x" * 1_100_000))
        assert isinstance(info.value, ValueError)
        assert await nats_log.last_version("r1") == before
        after = await kit.process_inbound(text("sms", "a normal one"))
        assert after.event is not None and not after.blocked


async def test_an_ai_reply_too_large_for_the_log_loses_only_itself(
    nats_server: NatsServer, nats_log: NatsEventLog
) -> None:
    """Two AI channels answer one message; one reply is past JetStream's max payload. The
    outcome of the delivery is one append, which the server refuses as a whole: its parts are
    recorded one by one, and only the reply too large is lost (the other AI's reply was lost
    with it, without a word to the caller). The loss is said to the ON_ERROR hooks (it was
    only logged)."""
    sms = SimpleChannel("sms")
    async with RoomKit(log=nats_log) as kit:
        errors = errors_said(kit)

        kit.register_channel(sms)
        kit.register_channel(AIChannel("big", provider=MockAIProvider(["x" * 1_100_000])))
        kit.register_channel(AIChannel("small", provider=MockAIProvider(["a small reply"])))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        for ai in ("big", "small"):
            await kit.attach_channel("r1", ai, category=ChannelCategory.INTELLIGENCE)
        result = await kit.process_inbound(text("sms", "hi"))
        assert result.event is not None and not result.blocked
        assert sms.texts() == ["a small reply"]
        bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
        assert bodies[-2:] == ["hi", "a small reply"]

        async def said() -> bool:
            return bool(errors)

        await eventually(said, what="the ON_ERROR hook of the reply not recorded")
        # Big answers the message, then the small reply (another AI's message): both lost.
        assert {(e["code"], e["channel_id"]) for e in errors} == {("outcome_not_recorded", "big")}
        assert errors[0]["event_id"] == result.event.id


async def test_an_outcome_recorded_in_parts_keeps_the_order_of_one_append(
    nats_server: NatsServer, nats_log: NatsEventLog
) -> None:
    """A channel answers with a reply too large for the log and a task; another AI replies.
    In parts, the records come in the order one append would have given them: the delivery
    results, the replies, then the task."""

    class Planner(SimpleChannel):
        async def on_event(
            self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
        ) -> ChannelOutput:
            if event.source.channel_id != "sms":
                return ChannelOutput.empty()
            huge = RoomEvent(
                room_id="r1",
                source=EventSource(channel_id=self.channel_id, channel_type="sms"),
                content=TextContent(body="x" * 1_100_000),
            )
            task = Task(id="t1", room_id="r1", title="call back")
            return ChannelOutput(responded=True, response_events=[huge], tasks=[task])

    async with RoomKit(log=nats_log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(Planner("planner"))
        kit.register_channel(AIChannel("small", provider=MockAIProvider(["a small reply"])))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "planner")
        await kit.attach_channel("r1", "small", category=ChannelCategory.INTELLIGENCE)
        before = await nats_log.last_version("r1")
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        kinds = [r.type for r in await nats_log.read("r1", after_version=before)]
        first_part = kinds.index("delivery.recorded")
        assert kinds[first_part : first_part + 3] == [
            "delivery.recorded",
            "message.recorded",  # the small reply
            "task.recorded",
        ]
        assert [t.id for t in await kit.list_tasks("r1")] == ["t1"]


async def test_a_process_answers_from_the_room_another_process_changed(
    nats_server: NatsServer,
) -> None:
    # B's actor for the room is active; A attaches a channel, adds a participant, closes
    # the room. B answered from the room as it had it until B itself appended (a conflict
    # made it reload) or its actor passivated: ChannelNotFoundError for A's channel,
    # ParticipantNotFoundError, a detach that did nothing, the room still active.
    async with two_processes(nats_server) as (log_a, kit_a, kit_b):
        identity = Identity(id="id-ana", display_name="Ana")
        await kit_b.store.create_identity(identity)
        await kit_b.update_room_metadata("shared", {"b": True})  # B's actor now holds it
        await kit_a.attach_channel("shared", "ws")
        await kit_a.ensure_participant("shared", "ws", "agent")
        await kit_b._runtime.projection.wait(await log_a.last_position())
        assert (await kit_b.mute("shared", "ws")).muted
        sent = await kit_b.send_event("shared", "ws", TextContent(body="from b"))
        assert sent.source.channel_id == "ws"
        resolved = await kit_b.resolve_participant("shared", "agent", "id-ana")
        assert resolved.identity_id == "id-ana"
        assert await kit_b.detach_channel("shared", "ws")
        await kit_a.close_room("shared")
        await kit_b._runtime.projection.wait(await log_a.last_position())
        assert (await kit_b.check_room_timers("shared")).status == RoomStatus.CLOSED
        await kit_a._runtime.projection.wait(await log_a.last_position())
        assert [b.channel_id for b in await kit_a.list_bindings("shared")] == ["sms"]


class _Contended(MemoryEventLog):
    """Another writer (``other``, a kit of its own) gets ahead of each of the next
    ``contended`` appends that record an AI reply: each conflicts."""

    def __init__(self) -> None:
        super().__init__()
        self.other: RoomKit | None = None
        self.contended = 0

    async def append(self, stream: str, events: Any, *, expected_version: Any) -> Any:
        if self.contended and any(b"the reply" in event.data for event in events):
            self.contended -= 1
            assert self.other is not None
            await self.other.update_room_metadata("shared", {"ahead": self.contended})
        return await super().append(stream, events, expected_version=expected_version)


async def test_an_ai_reply_another_process_keeps_getting_ahead_of_is_recorded() -> None:
    # The reply's append conflicted more than the 8 times a message is decided again: the
    # reply was lost, its message's caller told it was delivered, and the only trace an
    # ERROR line ("post-commit work failed"). The kit's own outcome is retried far longer.
    log = _Contended()
    sms = SimpleChannel("sms")
    async with RoomKit(log=log) as kit_a, RoomKit(log=log) as kit_b:
        log.other = kit_a
        kit_a.register_channel(SimpleChannel("sms"))
        kit_b.register_channel(sms)
        kit_b.register_channel(AIChannel("ai", provider=MockAIProvider(["the reply"])))
        await kit_b.create_room(room_id="shared")
        await kit_b.attach_channel("shared", "sms")
        await kit_b.attach_channel("shared", "ai", category=ChannelCategory.INTELLIGENCE)
        log.contended = 12
        result = await kit_b.process_inbound(text("sms", "hello"), room_id="shared")
        assert not result.blocked
        assert log.contended == 0
        assert sms.texts() == ["the reply"]
        bodies = [getattr(e.content, "body", None) for e in await kit_b.get_timeline("shared")]
        assert bodies[-2:] == ["hello", "the reply"]


async def test_a_resting_room_another_process_wrote_takes_its_next_messages() -> None:
    # B's room rests holding a model a hook changed in place; A records a message. Taking A's
    # record up before B's next command woke the state inside the catch-up, which failed
    # half-applied: each of B's messages failed, and the same record was counted again.
    log = MemoryEventLog()
    ws = SimpleChannel("ws")
    async with RoomKit(log=log) as kit_a, RoomKit(log=log, task_linger=0, rest_after=0) as kit_b:
        for kit in (kit_a, kit_b):
            kit.register_channel(SimpleChannel("sms"))
        kit_a.register_channel(SimpleChannel("ws"))
        kit_b.register_channel(ws)

        @kit_b.hook(HookTrigger.BEFORE_BROADCAST)
        async def breaks(event: RoomEvent, context: RoomContext) -> None:
            context.room.timers.inactive_after_seconds = -5  # type: ignore[assignment]

        await kit_b.create_room(room_id="r")
        await kit_b.attach_channel("r", "sms")
        await kit_b.attach_channel("r", "ws")
        await kit_b.process_inbound(text("sms", "one"), room_id="r")
        await anyio.wait_all_tasks_blocked()  # B's room rests with the changed model
        await kit_a.process_inbound(text("sms", "from a"), room_id="r")
        await kit_b._runtime.projection.wait(await log.last_position())
        for body in ("two", "three"):
            assert not (await kit_b.process_inbound(text("sms", body), room_id="r")).blocked
            await anyio.wait_all_tasks_blocked()
        assert ws.texts() == ["one", "two", "three"]  # A's message went out through A
        timeline = await kit_b.get_timeline("r")
        assert [e.content.body for e in timeline if e.type == "message"] == [  # type: ignore[union-attr]
            "one",
            "from a",
            "two",
            "three",
        ]
