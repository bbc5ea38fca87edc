"""``HookResult``: what a sync hook decides (allow, block, modify), and ``InjectedEvent``."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from roomkit.models._copy import constructed
from roomkit.models.event import RoomEvent
from roomkit.models.task import Observation, Task

__all__ = ["HookAction", "HookResult", "InjectedEvent"]

HookAction = Literal["allow", "block", "modify"]

# The fields ``HookResult.allow()`` sets (as pydantic counts them: those it is given).
_ALLOW_FIELDS_SET = frozenset({"action", "injected_events", "tasks", "observations"})


class InjectedEvent(BaseModel):
    """An extra event a hook adds to the room: recorded, and sent to the bound channels
    ``target_channel_ids`` names; ``None`` (as in 0.3.0): recorded only, sent to none."""

    event: RoomEvent
    target_channel_ids: list[str] | None = None


class HookResult(BaseModel):
    """Decision of a hook, plus injected events, tasks and observations it raises.

    ``modify`` requires the replacement ``event``; ``block`` requires a ``reason``.
    """

    action: HookAction
    event: RoomEvent | None = None
    reason: str | None = None
    injected_events: list[InjectedEvent] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    observations: list[Observation] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _action_needs(self) -> Self:
        if self.action == "modify" and self.event is None:
            raise ValueError("action='modify' requires 'event' to be set")  # 0.3.0's words
        # None only: 0.3.0 took an empty reason, and refusing it would make the hook fail,
        # which lets the message through (fail-open), the opposite of what it asked.
        if self.action == "block" and self.reason is None:
            raise ValueError("action='block' requires 'reason' to be set")
        return self

    @classmethod
    def allow(
        cls,
        injected: list[InjectedEvent] | None = None,
        *,
        tasks: list[Task] | None = None,
        observations: list[Observation] | None = None,
    ) -> HookResult:
        """Let the event through unchanged.

        Args:
            injected: Extra events to send to the room.
            tasks: Tasks to record.
            observations: Observations to record.
        """
        if cls is HookResult and not injected and not tasks and not observations:
            # What the call below makes, without pydantic's generic path (a sync hook's
            # usual answer, once per hook and message): nothing here needs validating, and
            # the "after" validator has nothing to say of "allow".
            return constructed(
                cls,
                {
                    "action": "allow",
                    "event": None,
                    "reason": None,
                    "injected_events": [],
                    "tasks": [],
                    "observations": [],
                    "metadata": {},
                },
                fields_set=_ALLOW_FIELDS_SET,
            )
        return cls(
            action="allow",
            injected_events=injected or [],
            tasks=tasks or [],
            observations=observations or [],
        )

    @classmethod
    def block(
        cls,
        reason: str,
        injected: list[InjectedEvent] | None = None,
        tasks: list[Task] | None = None,
        observations: list[Observation] | None = None,
    ) -> HookResult:
        """Stop the event: it is recorded as BLOCKED and not broadcast.

        Args:
            reason: Why the event is blocked (required; may be empty).
            injected: Extra events to send to the room anyway.
            tasks: Tasks to record.
            observations: Observations to record.

        Raises:
            pydantic.ValidationError: If ``reason`` is not a string.
        """
        return cls(
            action="block",
            reason=reason,
            injected_events=injected or [],
            tasks=tasks or [],
            observations=observations or [],
        )

    @classmethod
    def modify(
        cls,
        event: RoomEvent,
        injected: list[InjectedEvent] | None = None,
        *,
        tasks: list[Task] | None = None,
        observations: list[Observation] | None = None,
    ) -> HookResult:
        """Replace the event by ``event`` for the following hooks and the broadcast.

        Args:
            event: The replacement event.
            injected: Extra events to send to the room.
            tasks: Tasks to record.
            observations: Observations to record.
        """
        return cls(
            action="modify",
            event=event,
            injected_events=injected or [],
            tasks=tasks or [],
            observations=observations or [],
        )
