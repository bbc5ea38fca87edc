"""Identity resolution in the inbound pipeline: every branch of reference §5.1 step 5."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from roomkit import (
    DeliveryStatus,
    EventSource,
    FrameworkEvent,
    HookExecution,
    HookTrigger,
    IdentificationStatus,
    Identity,
    IdentityHookResult,
    IdentityResult,
    InboundMessage,
    InjectedEvent,
    MockIdentityResolver,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from roomkit.identity.base import IdentityResolver
from tests.roomkit.kit_helpers import SimpleChannel, text

KitWith = Callable[..., Awaitable[RoomKit]]

ANA = Identity(id="id-ana", display_name="Ana")
BOB = Identity(id="id-bob", display_name="Bob")


@pytest.fixture
def kit_with(make_kit: Callable[..., RoomKit]) -> Callable[..., Awaitable[RoomKit]]:
    return lambda resolver, **kwargs: _kit_with(make_kit, resolver, **kwargs)


async def _kit_with(
    make_kit: Callable[..., RoomKit], resolver: IdentityResolver, **kwargs: object
) -> RoomKit:
    kit = make_kit(identity_resolver=resolver, **kwargs)
    await kit.__aenter__()
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")
    await kit.attach_channel("r1", "ws")
    await kit.store.create_identity(ANA)
    return kit


@pytest.fixture
async def resolver() -> AsyncIterator[MockIdentityResolver]:
    yield MockIdentityResolver(mapping={"+1": ANA}, ambiguous={"+2": [ANA, BOB]})


async def test_identified_sender_becomes_a_participant(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    kit = await kit_with(resolver)
    result = await kit.process_inbound(text("sms", "hi", sender="+1"))
    assert result.event is not None
    assert result.event.source.participant_id == "id-ana"
    participants = await kit.store.list_participants("r1")
    assert [(p.id, p.identification) for p in participants] == [
        ("id-ana", IdentificationStatus.IDENTIFIED)
    ]
    await kit.process_inbound(text("sms", "again", sender="+1"))
    assert len(await kit.store.list_participants("r1")) == 1  # idempotent
    await kit.close()


@pytest.mark.parametrize(("named", "expected"), [(None, "Ana Smith"), ("Ana", "Ana")])
async def test_an_identified_participant_keeps_its_name_unless_the_identity_has_one(
    make_kit: Callable[..., RoomKit], named: str | None, expected: str
) -> None:
    # The upgrade of a participant the app made (with a name) to identified set the name to
    # the identity's, None when the identity had none; 0.3.0 kept the participant's.
    resolver = MockIdentityResolver(mapping={"+1": Identity(id="ana", display_name=named)})
    kit = await _kit_with(make_kit, resolver)
    await kit.ensure_participant("r1", "sms", "ana", display_name="Ana Smith")
    await kit.process_inbound(text("sms", "hi", sender="+1"), room_id="r1")
    (participant,) = await kit.store.list_participants("r1")
    assert participant.identification == IdentificationStatus.IDENTIFIED
    assert participant.display_name == expected
    await kit.close()


async def test_ambiguous_sender_without_hook_is_pending(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    kit = await kit_with(resolver)
    result = await kit.process_inbound(text("sms", "who am i", sender="+2"))
    assert not result.blocked
    (participant,) = await kit.store.list_participants("r1")
    assert participant.identification == IdentificationStatus.PENDING
    assert participant.candidates == ["id-ana", "id-bob"]
    await kit.close()


@pytest.mark.parametrize(
    ("candidates", "expected"), [([BOB], ["id-bob"]), (None, ["id-ana", "id-bob"])]
)
async def test_a_pending_hook_result_names_the_participant_and_its_candidates(
    resolver: MockIdentityResolver,
    kit_with: KitWith,
    candidates: list[Identity] | None,
    expected: list[str],
) -> None:
    # Documented in docs/quirks.md: 0.3.0 ignored both.
    kit = await kit_with(resolver)

    @kit.identity_hook(HookTrigger.ON_IDENTITY_AMBIGUOUS)
    async def narrow(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        return IdentityHookResult.pending(display_name="Caller +2", candidates=candidates)

    await kit.process_inbound(text("sms", "who am i", sender="+2"))
    (participant,) = await kit.store.list_participants("r1")
    assert participant.identification == IdentificationStatus.PENDING
    assert (participant.display_name, participant.candidates) == ("Caller +2", expected)
    await kit.close()


async def test_ambiguous_hook_can_identify_challenge_or_reject(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    kit = await kit_with(resolver)
    sms = kit.get_channel("sms")
    assert isinstance(sms, SimpleChannel)
    decisions = iter(["identify", "challenge", "reject"])

    @kit.identity_hook(HookTrigger.ON_IDENTITY_AMBIGUOUS)
    async def decide(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        decision = next(decisions)
        if decision == "identify":
            return IdentityHookResult.resolved(BOB)
        if decision == "challenge":
            question = RoomEvent(
                room_id="r1",
                source=EventSource(channel_id="system", channel_type="system"),
                content=TextContent(body="Are you Ana or Bob?"),
            )
            return IdentityHookResult.challenge(
                InjectedEvent(event=question, target_channel_ids=["sms"])
            )
        return IdentityHookResult.reject("not welcome")

    identified = await kit.process_inbound(text("sms", "1", sender="+2"))
    assert identified.event is not None and identified.event.source.participant_id == "id-bob"
    challenged = await kit.process_inbound(text("sms", "2", sender="+2"))
    assert challenged.blocked and challenged.reason == "identity_challenge_sent"
    assert sms.texts() == ["Are you Ana or Bob?"]
    rejected = await kit.process_inbound(text("sms", "3", sender="+2"))
    assert rejected.blocked and rejected.reason == "not welcome"
    timeline_bodies = [getattr(e.content, "body", "") for e in await kit.get_timeline("r1")]
    assert "2" not in timeline_bodies and "3" not in timeline_bodies
    await kit.close()


async def test_a_challenge_copied_from_the_message_does_not_answer_for_its_key(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    # The challenge written as event.model_copy(update=...) kept the message's key: the
    # provider's retry was answered "duplicate" with the challenge for its event, and the
    # sender was never asked again.
    kit = await kit_with(resolver)
    sms = kit.get_channel("sms")
    assert isinstance(sms, SimpleChannel)

    @kit.identity_hook(HookTrigger.ON_IDENTITY_AMBIGUOUS)
    async def ask(event: RoomEvent, context: RoomContext, result: IdentityResult) -> Any:
        update = {
            "id": f"question-{len(sms.delivered)}",
            "source": EventSource(channel_id="system", channel_type="system"),
            "content": TextContent(body="Are you Ana or Bob?"),
        }
        question = event.model_copy(update=update)
        return IdentityHookResult.challenge(
            InjectedEvent(event=question, target_channel_ids=["sms"])
        )

    for _ in range(2):
        answer = await kit.process_inbound(text("sms", "hi", sender="+2", idempotency_key="SM1"))
        assert answer.blocked and answer.reason == "identity_challenge_sent"
    assert sms.texts() == ["Are you Ana or Bob?"] * 2
    questions = [e for e in await kit.get_timeline("r1") if e.id.startswith("question-")]
    assert [q.idempotency_key for q in questions] == [None, None]
    await kit.close()


@pytest.mark.parametrize("second", ["in the same kit", "after a restart"])
async def test_one_challenge_object_given_in_two_rooms_is_recorded_apart(
    make_kit: Callable[..., RoomKit], second: str
) -> None:
    # A challenge made once and given for every ambiguous sender kept its id (it was never
    # checked): recorded in room r2 under the id it has in room r1, it was refused by the
    # read model there, and the sender's room showed no challenge.
    question = RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="system", channel_type="system"),
        content=TextContent(body="Are you Ana or Bob?"),
    )

    def challenging_kit() -> RoomKit:
        resolver = MockIdentityResolver(mapping={}, ambiguous={"+2": [ANA, BOB]})
        kit = make_kit(identity_resolver=resolver)
        kit.register_channel(SimpleChannel("sms"))

        @kit.identity_hook(HookTrigger.ON_IDENTITY_AMBIGUOUS)
        async def ask(event: RoomEvent, context: RoomContext, result: IdentityResult) -> Any:
            return IdentityHookResult.challenge(
                InjectedEvent(event=question, target_channel_ids=["sms"])
            )

        return kit

    async def challenged(kit: RoomKit, room_id: str) -> None:
        answer = await kit.process_inbound(text("sms", "hi", sender="+2"), room_id=room_id)
        assert answer.blocked and answer.reason == "identity_challenge_sent"

    async with challenging_kit() as kit:
        for room_id in ("r1", "r2"):
            await kit.create_room(room_id=room_id)
            await kit.attach_channel(room_id, "sms")
        await challenged(kit, "r1")
        if second == "in the same kit":
            await challenged(kit, "r2")
    if second == "after a restart":
        async with challenging_kit() as kit:
            await challenged(kit, "r2")
    async with challenging_kit() as kit:  # its read model rebuilt from the log
        questions = []
        for room_id in ("r1", "r2"):
            timeline = await kit.get_timeline(room_id, limit=100)
            assert (await kit.get_room(room_id)).event_count == len(timeline)
            questions += [
                e.id
                for e in timeline
                if e.source.channel_id == "system"
                and getattr(e.content, "body", "") == "Are you Ana or Bob?"
            ]
        assert len(questions) == len(set(questions)) == 2


async def test_unknown_sender_rejected_by_hook(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:

    kit = await kit_with(resolver)

    @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
    async def reject(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        return IdentityHookResult.reject()

    result = await kit.process_inbound(text("sms", "hello", sender="+9"))
    assert result.blocked and result.reason == "Unknown sender"
    await kit.close()


@pytest.mark.parametrize("plain", [True, False], ids=["def", "async def"])
async def test_an_identity_hook_sets_context_variables_apart(
    resolver: MockIdentityResolver, kit_with: KitWith, plain: bool
) -> None:
    # It ran in the caller's task and context: what it set stayed set for the caller of
    # process_inbound.
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")
    kit = await kit_with(resolver)

    def set_tag(event: RoomEvent, context: RoomContext, result: IdentityResult) -> None:
        tag.set("set by an identity hook")

    async def set_tag_async(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> None:
        set_tag(event, context, result)

    kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)(set_tag if plain else set_tag_async)
    result = await kit.process_inbound(text("sms", "hello", sender="+9"))
    assert not result.blocked
    assert tag.get() == "unset"
    await kit.close()


@pytest.mark.parametrize("plain", [True, False], ids=["def", "async def"])
async def test_a_delivery_status_handler_sets_context_variables_apart(
    make_kit: Callable[..., RoomKit], plain: bool
) -> None:
    # It ran in the caller's context: what it set stayed set for the caller.
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")
    seen: list[str] = []

    def handler(status: DeliveryStatus) -> None:
        seen.append(status.message_id)
        tag.set("set by a delivery status handler")

    async def async_handler(status: DeliveryStatus) -> None:
        handler(status)

    async with make_kit() as kit:
        kit.on_delivery_status(handler if plain else async_handler)
        await kit.process_delivery_status(
            DeliveryStatus(provider="p", message_id="m1", status="delivered")
        )
    assert seen == ["m1"] and tag.get() == "unset"


async def test_a_failed_async_identity_hook_is_reported(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    # As any failed async hook is (a hook_error framework event, the ON_ERROR hooks); it was
    # only logged.
    kit = await kit_with(resolver)
    reported: list[dict[str, Any]] = []
    on_error: list[str] = []
    kit.on("hook_error")(lambda event: reported.append(event.data))

    @kit.hook(HookTrigger.ON_IDENTITY_UNKNOWN, execution=HookExecution.ASYNC, name="crm")
    async def broken(event: RoomEvent, context: RoomContext) -> None:
        raise RuntimeError("the CRM is down")

    @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        on_error.append(f"{event.room_id}: {event.content.body}")  # type: ignore[union-attr]

    result = await kit.process_inbound(text("sms", "hello", sender="+9"))
    assert not result.blocked
    assert reported == [{"hook": "crm", "error": "the CRM is down"}]
    assert on_error == ["r1: hook crm failed: the CRM is down"]
    await kit.close()


async def test_a_failed_identity_hook_is_reported(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    # An identity hook that raised or answered something else was only logged: one meant to
    # reject unknown senders let them through, and the app was never told.
    kit = await kit_with(resolver)
    reported: list[dict[str, Any]] = []
    on_error: list[str] = []
    kit.on("hook_error")(lambda event: reported.append(event.data))

    @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
    async def gatekeeper(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        raise RuntimeError("the CRM is down")

    @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
    def confused(event: RoomEvent, context: RoomContext, result: IdentityResult) -> Any:
        return "reject"

    @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        on_error.append(f"{event.room_id}: {event.content.body}")  # type: ignore[union-attr]

    result = await kit.process_inbound(text("sms", "hello", sender="+9"))
    assert not result.blocked  # fail-open, as a failed hook is
    wrong = "returned str, expected IdentityHookResult or None"
    assert reported == [
        {"hook": "gatekeeper", "error": "the CRM is down"},
        {"hook": "confused", "error": wrong},
    ]
    assert on_error == [
        "r1: hook gatekeeper failed: the CRM is down",
        f"r1: hook confused failed: {wrong}",
    ]
    await kit.close()


@pytest.mark.parametrize(
    ("trigger", "sender"),
    [(HookTrigger.ON_IDENTITY_UNKNOWN, "+9"), (HookTrigger.ON_IDENTITY_AMBIGUOUS, "+2")],
)
async def test_a_hung_identity_hook_times_out_and_the_next_one_is_tried(
    resolver: MockIdentityResolver, kit_with: KitWith, trigger: HookTrigger, sender: str
) -> None:
    # An identity hook that never answered (a CRM call without a timeout) held its message's
    # process_inbound for good: process_timeout did not reach it, nothing was reported, and
    # the caller was still waiting after close(). It is bounded by identity_timeout, as the
    # resolver is, and a timed-out hook is a failed one: reported, and the next one tried.
    kit = await kit_with(resolver, identity_timeout=0.05)
    reported: list[dict[str, Any]] = []
    on_error: list[str] = []
    kit.on("hook_error")(lambda event: reported.append(event.data))

    @kit.identity_hook(trigger)
    async def crm(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    @kit.identity_hook(trigger)
    async def gatekeeper(
        event: RoomEvent, context: RoomContext, result: IdentityResult
    ) -> IdentityHookResult:
        return IdentityHookResult.reject("no CRM answer")

    @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        on_error.append(f"{event.room_id}: {event.content.body}")  # type: ignore[union-attr]

    with anyio.fail_after(5):  # the hang this guards against, cut short
        result = await kit.process_inbound(text("sms", "hello", sender=sender))
    assert result.blocked and result.reason == "no CRM answer"
    assert reported == [{"hook": "crm", "error": "timeout (0.05s)"}]
    assert on_error == ["r1: hook crm failed: timeout (0.05s)"]
    await kit.close()


async def test_unknown_sender_without_hook_goes_through(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:
    kit = await kit_with(resolver)
    result = await kit.process_inbound(text("sms", "hello", sender="+9"))
    assert not result.blocked
    assert await kit.store.list_participants("r1") == []
    await kit.close()


class SlowResolver(IdentityResolver):
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_identity_timeout_counts_as_unknown(kit_with: KitWith) -> None:
    kit = await kit_with(SlowResolver(), identity_timeout=0.05)
    timeouts: list[FrameworkEvent] = []

    @kit.on("identity_timeout")
    async def on_timeout(event: FrameworkEvent) -> None:
        timeouts.append(event)

    result = await kit.process_inbound(text("sms", "hello", sender="+1"))
    assert not result.blocked
    assert timeouts[0].data == {"timeout": 0.05}
    await kit.close()


async def test_a_close_that_gives_up_says_the_messages_still_resolving(
    kit_with: KitWith, caplog: pytest.LogCaptureFixture
) -> None:
    # A message still resolving its sender is no turn yet: the close's warning said "0
    # turn(s) still running" of it, and nothing of what it gave up.
    kit = await kit_with(SlowResolver(), identity_timeout=60, process_timeout=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(kit.process_inbound, text("sms", "hello", sender="+1"))
        await anyio.sleep(0.05)
        with anyio.fail_after(10):
            await kit.close()  # waits 4 x process_timeout for it
        tg.cancel_scope.cancel()
    assert "1 command(s) not yet answered and 0 turn(s)" in caplog.text


async def test_resolve_participant_manually(
    resolver: MockIdentityResolver, kit_with: KitWith
) -> None:

    kit = await kit_with(resolver)
    identified: list[str] = []

    @kit.hook(HookTrigger.ON_PARTICIPANT_IDENTIFIED, execution=HookExecution.ASYNC)
    async def on_identified(event: RoomEvent, context: RoomContext) -> None:
        identified.append(event.content.data["identity_id"])  # type: ignore[union-attr]

    await kit.process_inbound(text("sms", "?", sender="+2"))
    (pending,) = await kit.store.list_participants("r1")
    resolved = await kit.resolve_participant("r1", pending.id, "id-ana")
    assert resolved.identification == IdentificationStatus.IDENTIFIED
    assert resolved.identity_id == "id-ana"
    assert identified == ["id-ana"]
    binding = await kit.get_binding("r1", "sms")
    assert binding.participant_id == "id-ana"
    await kit.close()
