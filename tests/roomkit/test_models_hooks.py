"""HookResult and IdentityHookResult: factories and validation (spec sections 5.4 and 8)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from roomkit.models import (
    ChannelType,
    EventSource,
    HookResult,
    IdentificationStatus,
    Identity,
    IdentityHookResult,
    InjectedEvent,
    Observation,
    RoomEvent,
    Task,
    TextContent,
)


def event(body: str = "hi") -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms-1", channel_type=ChannelType.SMS),
        content=TextContent(body=body),
    )


def injected(body: str = "note", targets: list[str] | None = None) -> InjectedEvent:
    return InjectedEvent(event=event(body), target_channel_ids=targets)


class TestHookResultFactories:
    def test_allow(self) -> None:
        result = HookResult.allow()
        assert result.action == "allow"
        assert (result.event, result.reason) == (None, None)
        assert (result.injected_events, result.tasks, result.observations) == ([], [], [])
        assert result.metadata == {}

    def test_allow_with_injected_events(self) -> None:
        extra = injected(targets=["sms-1"])
        result = HookResult.allow([extra])
        assert result.injected_events == [extra]
        assert result.injected_events[0].target_channel_ids == ["sms-1"]

    def test_block(self) -> None:
        task = Task(room_id="r1", title="review")
        observation = Observation(room_id="r1", channel_id="sms-1", content="spam")
        extra = injected()
        result = HookResult.block("spam", [extra], [task], [observation])
        assert (result.action, result.reason, result.event) == ("block", "spam", None)
        assert result.injected_events == [extra]
        assert result.tasks == [task]
        assert result.observations == [observation]

    def test_block_keywords(self) -> None:
        task = Task(room_id="r1", title="review")
        result = HookResult.block(reason="spam", tasks=[task])
        assert result.tasks == [task]
        assert result.injected_events == []

    def test_modify(self) -> None:
        replacement = event("[redacted]")
        result = HookResult.modify(replacement, [injected()])
        assert result.action == "modify"
        assert result.event is replacement
        assert len(result.injected_events) == 1

    def test_allow_and_modify_also_carry_side_effects(self) -> None:
        task = Task(room_id="r1", title="follow up")
        observation = Observation(room_id="r1", channel_id="ai", content="intent: buy")
        assert HookResult.allow(tasks=[task]).tasks == [task]
        assert HookResult.modify(event(), observations=[observation]).observations == [observation]


class TestHookResultValidation:
    def test_modify_requires_an_event(self) -> None:
        with pytest.raises(ValidationError, match="action='modify' requires 'event' to be set"):
            HookResult(action="modify")

    def test_block_requires_a_reason_which_may_be_empty_as_in_0_3_0(self) -> None:
        with pytest.raises(ValidationError, match="action='block' requires 'reason' to be set"):
            HookResult(action="block")
        with pytest.raises(ValidationError):
            HookResult.block(None)  # type: ignore[arg-type]
        assert HookResult.block("").reason == ""
        assert HookResult(action="block", reason="").action == "block"

    def test_unknown_action(self) -> None:
        with pytest.raises(ValidationError):
            HookResult(action="drop")  # type: ignore[arg-type]

    def test_action_is_required(self) -> None:
        with pytest.raises(ValidationError):
            HookResult()  # type: ignore[call-arg]

    def test_round_trip(self) -> None:
        result = HookResult.modify(event("x"), [injected(targets=["a", "b"])])
        assert HookResult.model_validate_json(result.model_dump_json()) == result

    def test_injected_event_defaults_to_all_channels(self) -> None:
        assert injected().target_channel_ids is None


class TestIdentityHookResult:
    def test_resolved(self) -> None:
        identity = Identity(id="u1", display_name="Ada")
        result = IdentityHookResult.resolved(identity)
        assert result.status is IdentificationStatus.IDENTIFIED
        assert result.identity is identity

    def test_pending(self) -> None:
        candidates = [Identity(id="u1"), Identity(id="u2")]
        result = IdentityHookResult.pending(display_name="Guest", candidates=candidates)
        assert result.status is IdentificationStatus.PENDING
        assert result.display_name == "Guest"
        assert [c.id for c in result.candidates or ()] == ["u1", "u2"]
        bare = IdentityHookResult.pending()
        assert (bare.display_name, bare.candidates) == (None, None)  # as in 0.3.0
        assert IdentityHookResult(status="pending", candidates=None).candidates is None

    def test_challenge(self) -> None:
        question = injected("Who are you?", ["sms-1"])
        result = IdentityHookResult.challenge(question, message="asked for a name")
        assert result.status is IdentificationStatus.CHALLENGE_SENT
        assert result.inject is question
        assert result.message == "asked for a name"
        assert IdentityHookResult.challenge(question).message is None

    def test_reject(self) -> None:
        assert IdentityHookResult.reject().reason == "Unknown sender"
        result = IdentityHookResult.reject("blocked number")
        assert result.status is IdentificationStatus.REJECTED
        assert result.reason == "blocked number"

    def test_defaults_and_status_validation(self) -> None:
        result = IdentityHookResult(status="ambiguous")  # type: ignore[arg-type]
        assert result.status is IdentificationStatus.AMBIGUOUS
        assert (result.identity, result.display_name, result.inject, result.reason) == (
            None,
            None,
            None,
            None,
        )
        assert (result.challenge_type, result.message, result.candidates) == (None, None, None)
        with pytest.raises(ValidationError):
            IdentityHookResult(status="maybe")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            IdentityHookResult()  # type: ignore[call-arg]
