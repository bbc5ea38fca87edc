"""Commands to a room actor and its replies.

Commands live only in memory (they are never logged): the actor turns each one into zero or
more domain events. Every command that needs a time carries it (``now``), so that deciding
reads no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from roomkit.core._in_decision import DecisionWait
from roomkit.models.channel import ChannelBinding
from roomkit.models.enums import EventType
from roomkit.models.event import RoomEvent
from roomkit.models.hook import InjectedEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task


@dataclass(frozen=True, slots=True)
class CreateRoom:
    """Create a room, with channels attached in the same append (inbound auto-create)."""

    room: Room
    bindings: tuple[ChannelBinding, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateRoomMetadata:
    metadata: dict[str, Any]
    now: datetime


@dataclass(frozen=True, slots=True)
class ReplaceRoom:
    """Take the room's own fields (status, timers, metadata, organization...) from ``room``;
    its counters stay the log's."""

    room: Room


@dataclass(frozen=True, slots=True)
class PutBinding:
    """Attach ``binding`` as it is, or replace the room's binding of its channel, with no
    system event or hook (a 0.3.0 app's ``kit.store.add_binding`` / ``update_binding``)."""

    binding: ChannelBinding


@dataclass(frozen=True, slots=True)
class RemoveBinding:
    """Detach the channel with no system event or hook (``kit.store.remove_binding``)."""

    channel_id: str


@dataclass(frozen=True, slots=True)
class PutParticipant:
    """Add ``participant`` as it is, or replace it (``kit.store.add_participant`` /
    ``update_participant``)."""

    participant: Participant


@dataclass(frozen=True, slots=True)
class RecordObservation:
    """Record ``observation`` (``kit.store.add_observation``)."""

    observation: Observation


@dataclass(frozen=True, slots=True)
class ImportEvent:
    """Record ``event`` in the timeline as it is, delivered to no one (history imported
    with ``kit.store.add_event``): its idempotency key counts."""

    event: RoomEvent


@dataclass(frozen=True, slots=True)
class CloseRoom:
    now: datetime


@dataclass(frozen=True, slots=True)
class CheckTimers:
    now: datetime


@dataclass(frozen=True, slots=True)
class AttachChannel:
    binding: ChannelBinding
    now: datetime


@dataclass(frozen=True, slots=True)
class DetachChannel:
    channel_id: str
    now: datetime


@dataclass(frozen=True, slots=True)
class UpdateBinding:
    """Mute, unmute, set visibility or access, merge metadata."""

    channel_id: str
    change: str  # muted | unmuted | visibility | access | metadata
    updates: dict[str, Any]
    now: datetime


@dataclass(frozen=True, slots=True)
class EnsureParticipant:
    participant: Participant
    # When set, an existing participant that is not identified yet gets these fields.
    upgrade: dict[str, Any] | None = None
    system_code: str | None = None
    now: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResolveParticipant:
    participant_id: str
    identity: Identity
    resolved_by: str
    now: datetime


class ProcessInbound(msgspec.Struct, frozen=True):  # a struct: made per message (see Fact)
    """Record an inbound event: idempotency, BEFORE_BROADCAST hooks, commit, then delivery.

    Either ``event`` is given (the caller already ran the channel's ``handle_inbound``, e.g. to
    resolve the sender's identity), or ``message`` and ``channel``: the room then builds the
    event itself with its own context, which saves a round trip to the room.
    """

    event: RoomEvent | None = None
    message: Any = None  # InboundMessage
    channel: Any = None  # Channel
    # Seconds the room may spend on it (the kit's process_timeout), counted from when the room
    # takes it up, as 0.3.0 counted from when its lock was taken; None: no bound.
    budget: float | None = None
    # The waits of the decisions that wait for this one (a hook of theirs sent it): see
    # _in_decision.
    waiting: tuple[DecisionWait, ...] = ()


@dataclass(frozen=True, slots=True)
class SendEvent:
    """Record an event sent directly by a bound channel (``send_event``); runs no
    BEFORE_BROADCAST hooks. The room builds the event from its binding of the channel."""

    channel_id: str
    content: Any  # EventContent
    event_type: EventType
    chain_depth: int
    participant_id: str | None
    metadata: dict[str, Any]
    visibility: str
    now: datetime
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RecordInjected:
    """Record events injected by an identity hook (e.g. a challenge) and deliver them."""

    injected: list[InjectedEvent]
    root: str
    message_key: str | None = None  # the idempotency key of the message challenged
    # The ids of ``injected`` the read model holds (see _reused_ids): a tuple, which travels
    # to the room's owner as itself (a set arrives as a list).
    stored: tuple[str, ...] = ()


class RecordOutcome(msgspec.Struct, frozen=True):  # a struct: made per message (see Fact)
    """What the delivery of one event produced, sent back by the room's delivery worker."""

    event_id: str
    root: str
    results: list[Any] = msgspec.field(default_factory=list)  # DeliveryResult
    replies: list[RoomEvent] = msgspec.field(default_factory=list)
    # The channel that gave each reply (BroadcastResult.responders).
    responders: dict[str, str] = msgspec.field(default_factory=dict)
    blocked: list[RoomEvent] = msgspec.field(default_factory=list)
    tasks: list[Task] = msgspec.field(default_factory=list)
    observations: list[Observation] = msgspec.field(default_factory=list)
    # The event delivered: the ON_TASK_CREATED hooks of ``tasks`` see its source and content.
    event: RoomEvent | None = None
    # The ids of ``replies`` and ``blocked`` the read model holds (see _reused_ids).
    stored: frozenset[str] = frozenset()
    # Sent by the worker delivering ``event``, which runs the work of what the room records
    # of it itself, ahead of the room's later turns (``Outcome.jobs``).
    worker_runs_them: bool = False

    @property
    def continues_turn(self) -> bool:
        """Whether it holds what the turn's caller will read (replies, blocked replies, tasks,
        observations); delivery results alone are audit, and nobody waits for them."""
        return bool(self.replies or self.blocked or self.tasks or self.observations)


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Record a changed task (its status, say): the log keeps it, and the read model's task
    is replaced by it. No ON_TASK_CREATED: the task exists already."""

    task: Task


@dataclass(frozen=True, slots=True)
class MarkRead:
    channel_id: str
    event_id: str | None  # None: everything


@dataclass(frozen=True, slots=True)
class GetContext:
    """Reply with the room's current ``RoomContext``."""


@dataclass(frozen=True, slots=True)
class FlushOutcomes:
    """Append the delivery outcomes still waiting for the room's next append, if any."""


@dataclass(slots=True)
class Outcome:
    """The reply to a command: what it committed and how to wait for its effects.

    Attributes:
        value: the command's result (a Room, a binding, a bool, ...).
        position: the log position of the last event committed (0: nothing committed).
        read_position: the log position the read model must reach to show what the reply
            says: ``position``, or, for a command that committed nothing (a duplicate, a
            room that exists already), the room's last commit.
        root: the turn to wait for (``TurnTracker``), if the command started one.
    """

    value: Any = None
    position: int = 0
    read_position: int = 0
    root: str | None = None
    event: RoomEvent | None = None
    blocked: bool = False
    reason: str | None = None
    blocked_by: str | None = None
    # ProcessInbound: hook_error / event_blocked, in order; ``announced`` once a post-commit
    # work took them (else the caller emits them).
    announce: tuple[Any, ...] = ()  # Announcement
    announced: bool = False
    duplicate_of: str | None = None
    # ProcessInbound only: when (``time.perf_counter()``) its budget is spent; None: no bound.
    # A command that spent it before committing commits nothing and says ``timed_out``.
    budget_deadline: float | None = None
    timed_out: bool = False
    # ProcessInbound, timed out: the id of the event its channel made, dropped uncommitted
    # (the process_timeout framework event names it, as 0.3.0's did).
    dropped_event_id: str | None = None
    # ProcessInbound only: the source channel is not attached, so the event was recorded but
    # not broadcast (and, as in 0.3.0, no ``event_processed``).
    unbound: bool = False
    # The room still holds an append in doubt (one that found nothing in the log yet).
    in_doubt: bool = False

    # The turn ``root`` opened by this command, set by the actor before it replies, so that
    # the caller can wait for it even if it ends before the caller looks (a late waiter).
    turn: Any = None
    # A room command (not a message) whose turn only runs lifecycle hooks: that work
    # (RunLifecycle), for its caller to tell whether anything observes it (see
    # HelpersMixin._settle_command); None for any other turn.
    hooks: tuple[Any, ...] | None = None
    # RecordOutcome(worker_runs_them=True): the command it answers, and the post-commit work
    # (DeliveryJob) of what it committed, which that worker runs rather than queues.
    for_worker: Any = None
    jobs: tuple[Any, ...] = ()
    # The context of the command's caller (_caller_context): the turn it opens runs in it.
    caller: Any = None
    # RecordOutcome: what of it does not validate, left out, as (what, id, why): the worker
    # says it to the ON_ERROR hooks (``outcome_not_recorded``).
    left_out: tuple[tuple[str, str, str], ...] = ()
    # The event ids the decision claimed (ReusedIds.taken): the room's actor confirms them
    # once this outcome's append commits.
    claimed: tuple[str, ...] = ()
    # RecordOutcome: the id each of its blocked replies is recorded under, one per reply in
    # order (its own for one left out); None if each kept its own. By position, not keyed by
    # the reply's id: one event object blocked twice is recorded under two.
    blocked_ids: tuple[str, ...] | None = None
