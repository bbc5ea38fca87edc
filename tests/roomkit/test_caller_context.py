"""User code sees a copy of its own message's caller's context variables (0.3.0 ran it all in
the caller's task): hooks, channels, AI providers, resolvers and handlers, on asyncio and trio."""

from __future__ import annotations

import contextvars
from collections import defaultdict
from typing import Any

import anyio
import pytest

from roomkit import (
    AIChannel,
    ChannelCategory,
    ChannelOutput,
    HookExecution,
    HookResult,
    HookTrigger,
    IdentityResolver,
    InboundMessage,
    MockAIProvider,
    RoomKit,
    TextContent,
    TransportChannel,
)
from roomkit.core._in_decision import deciding
from roomkit.core._post_commit import in_post_commit_work
from roomkit.core._taken_up import TakenUp
from roomkit.models.delivery import DeliveryStatus
from roomkit.models.enums import ChannelType, IdentificationStatus
from roomkit.models.identity import IdentityResult

RID: contextvars.ContextVar[str] = contextvars.ContextVar("test_rid", default="-")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _Seen:
    def __init__(self) -> None:
        self.by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.phase = "-"  # the call running: what its user code must see

    def note(self, kind: str) -> None:
        self.by_kind[kind].append((self.phase, RID.get()))


class _Probe(TransportChannel):
    def __init__(self, channel_id: str, seen: _Seen) -> None:
        super().__init__(channel_id, ChannelType.SMS)
        self.seen = seen

    async def handle_inbound(self, message: Any, context: Any) -> Any:
        self.seen.note("handle_inbound")
        # Never seen by anything else: it reached the hooks, and with an identity resolver
        # the caller too (handle_inbound ran in the caller's task there, in the room's not).
        RID.set("set-by-a-channel")
        return await super().handle_inbound(message, context)

    async def deliver(self, event: Any, binding: Any, context: Any) -> ChannelOutput:
        self.seen.note("deliver")
        return ChannelOutput.empty()

    async def on_event(self, event: Any, binding: Any, context: Any) -> ChannelOutput:
        self.seen.note("on_event")
        return ChannelOutput.empty()


class _Provider(MockAIProvider):
    def __init__(self, seen: _Seen) -> None:
        super().__init__(["hi"])
        self.seen = seen

    async def generate(self, context: Any) -> Any:
        self.seen.note("ai.generate")
        return await super().generate(context)


class _Resolver(IdentityResolver):
    def __init__(self, seen: _Seen) -> None:
        self.seen = seen

    async def resolve(self, message: Any, context: Any) -> IdentityResult:
        self.seen.note("identity resolver")
        return IdentityResult(status=IdentificationStatus.UNKNOWN)


class _Meta:
    def __init__(self, inbound: bool) -> None:
        self.is_inbound, self.is_status = inbound, not inbound

    def to_inbound(self, channel_id: str) -> InboundMessage:
        return InboundMessage(channel_id=channel_id, sender_id="u2", content=TextContent(body="w"))

    def to_status(self) -> DeliveryStatus:
        return DeliveryStatus(provider="mock", message_id="m1", status="delivered")


def _kit(seen: _Seen, *, resolver: bool) -> RoomKit:
    kit = RoomKit(identity_resolver=_Resolver(seen)) if resolver else RoomKit()
    kit.register_channel(_Probe("sms", seen))
    kit.register_channel(AIChannel("ai", provider=_Provider(seen)))
    for trigger, execution in (
        (HookTrigger.BEFORE_BROADCAST, HookExecution.SYNC),
        (HookTrigger.AFTER_BROADCAST, HookExecution.ASYNC),
        (HookTrigger.ON_ROOM_CREATED, HookExecution.ASYNC),
        (HookTrigger.ON_DELIVERY_STATUS, HookExecution.ASYNC),
        (HookTrigger.ON_IDENTITY_UNKNOWN, HookExecution.ASYNC),
    ):

        async def hook(event: Any, context: Any, kind: str = f"hook {trigger}") -> Any:
            seen.note(kind)
            RID.set("set-by-a-hook")  # never seen by anything else
            return HookResult.allow()

        kit.hook(trigger, execution=execution, name=f"h-{trigger}")(hook)

    @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
    async def identity_hook(event: Any, context: Any, result: Any) -> None:
        seen.note("identity hook")

    @kit.on_delivery_status
    def status_handler(status: Any) -> None:
        seen.note("delivery status handler")

    for name in ("room_created", "event_processed"):
        kit.on(name)(lambda event, name=name: seen.note(f"framework {name}"))
    return kit


@pytest.mark.parametrize("resolver", [False, True])
async def test_user_code_sees_the_context_of_the_call_that_caused_it(resolver: bool) -> None:
    seen = _Seen()
    kit = _kit(seen, resolver=resolver)
    async with kit:
        calls: list[tuple[str, Any]] = [
            ("create", lambda: kit.create_room(room_id="r1")),
            ("attach", lambda: kit.attach_channel("r1", "sms")),
            (
                "attach",
                lambda: kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE),
            ),
            (
                "inbound",
                lambda: kit.process_inbound(
                    InboundMessage(channel_id="sms", sender_id="u1", content=TextContent(body="x"))
                ),
            ),
            ("send", lambda: kit.send_event("r1", "sms", TextContent(body="s"))),
            ("webhook", lambda: kit.process_webhook(_Meta(True), "sms")),
            ("status", lambda: kit.process_webhook(_Meta(False), "sms")),
        ]
        for tag, call in calls:
            seen.phase = tag
            token = RID.set(tag)
            try:
                await call()
                assert RID.get() == tag
            finally:
                RID.reset(token)
            assert RID.get() == "-"
    wrong = {
        kind: values
        for kind, values in seen.by_kind.items()
        if any(phase != value for phase, value in values)
    }
    assert not wrong, wrong
    expected = {
        "handle_inbound", "deliver", "on_event", "ai.generate", "hook before_broadcast",
        "hook after_broadcast", "hook on_room_created", "hook on_delivery_status",
        "delivery status handler", "framework room_created", "framework event_processed",
    }  # fmt: skip
    if resolver:
        expected |= {"identity resolver", "identity hook", "hook on_identity_unknown"}
    assert expected <= set(seen.by_kind), set(seen.by_kind)


async def test_concurrent_messages_each_see_their_own_callers_context() -> None:
    seen: dict[str, set[str]] = defaultdict(set)  # body -> rids its user code saw

    class Slow(TransportChannel):
        async def deliver(self, event: Any, binding: Any, context: Any) -> ChannelOutput:
            await anyio.sleep(0)
            seen[event.content.body].add(RID.get())
            return ChannelOutput.empty()

    async with RoomKit() as kit:
        kit.register_channel(TransportChannel("sms", ChannelType.SMS))
        kit.register_channel(Slow("out", ChannelType.SMS))

        @kit.hook(HookTrigger.BEFORE_BROADCAST, name="bb")
        async def bb(event: Any, context: Any) -> HookResult:
            await anyio.sleep(0)
            seen[event.content.body].add(RID.get())
            return HookResult.allow()

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, name="ab")
        async def ab(event: Any, context: Any) -> None:
            await anyio.sleep(0)
            seen[event.content.body].add(RID.get())

        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "out")

        async def send(n: int) -> None:
            RID.set(f"req-{n}")
            message = InboundMessage(
                channel_id="sms", sender_id="u", content=TextContent(body=f"m{n}")
            )
            await kit.process_inbound(message, room_id="r1")

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(send, n)
    assert {body: rids for body, rids in seen.items()} == {
        f"m{n}": {f"req-{n}"} for n in range(20)
    }


async def test_the_kits_own_marks_are_not_carried_to_another_room() -> None:
    """A hook of room a's delivery (post-commit work) sends a message to room b: b's decision
    is b's own (not a's post-commit work, not a step of a's command), and sees the caller's
    variables."""
    observed: list[tuple[str, Any, bool, Any]] = []
    async with RoomKit() as kit:
        kit.register_channel(TransportChannel("sms", ChannelType.SMS))
        kit.register_channel(TransportChannel("sms2", ChannelType.SMS))

        @kit.hook(HookTrigger.BEFORE_BROADCAST, name="bb")
        async def bb(event: Any, context: Any) -> HookResult:
            decision = deciding()
            observed.append(
                (
                    RID.get(),
                    decision.room_id if decision else None,
                    in_post_commit_work(),
                    TakenUp._var.get(),
                )
            )
            return HookResult.allow()

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, name="ab")
        async def ab(event: Any, context: Any) -> None:
            if event.room_id == "a":
                assert in_post_commit_work()
                message = InboundMessage(
                    channel_id="sms2", sender_id="u", content=TextContent(body="fwd")
                )
                await kit.process_inbound(message, room_id="b")

        for room, channel in (("a", "sms"), ("b", "sms2")):
            await kit.create_room(room_id=room)
            await kit.attach_channel(room, channel)
        RID.set("outer")
        await kit.process_inbound(
            InboundMessage(channel_id="sms", sender_id="u", content=TextContent(body="go")),
            room_id="a",
        )
    assert observed == [("outer", "a", False, None), ("outer", "b", False, None)]


async def test_on_error_hooks_see_the_context_of_the_message_whose_work_failed() -> None:
    seen: list[tuple[str, bool]] = []

    class Failing(TransportChannel):
        async def deliver(self, event: Any, binding: Any, context: Any) -> ChannelOutput:
            raise RuntimeError("provider down")

    async with RoomKit() as kit:
        kit.register_channel(TransportChannel("sms", ChannelType.SMS))
        kit.register_channel(Failing("out", ChannelType.SMS))

        @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC, name="err")
        async def on_error(event: Any, context: Any) -> None:
            seen.append((RID.get(), in_post_commit_work()))

        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "out")
        RID.set("failing-request")
        await kit.process_inbound(
            InboundMessage(channel_id="sms", sender_id="u", content=TextContent(body="x")),
            room_id="r1",
        )
    assert seen and all(item == ("failing-request", True) for item in seen), seen
