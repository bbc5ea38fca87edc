"""How a room decides: from its state and a command to the facts to append and the reply.

Nothing here writes anywhere. The only awaits are the user's BEFORE_BROADCAST hooks, which may
block or modify a message before it is recorded. Facts that need work after commit (delivery,
lifecycle hooks) say so in ``Fact.then``; the actor does it once the append is acknowledged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import uuid4

import msgspec
import pydantic
import pydantic_core
from pydantic import BaseModel

from roomkit.channels.base import Channel
from roomkit.core._bounded import called_apart
from roomkit.core._commands import (
    AttachChannel,
    CheckTimers,
    CloseRoom,
    CreateRoom,
    DetachChannel,
    EnsureParticipant,
    GetContext,
    ImportEvent,
    MarkRead,
    Outcome,
    ProcessInbound,
    PutBinding,
    PutParticipant,
    RecordInjected,
    RecordObservation,
    RecordOutcome,
    RemoveBinding,
    ReplaceRoom,
    ResolveParticipant,
    SendEvent,
    UpdateBinding,
    UpdateRoomMetadata,
    UpdateTask,
)
from roomkit.core._domain import (
    ChannelAttached,
    ChannelDetached,
    ChannelUpdated,
    DeliveryRecorded,
    MessageRecorded,
    ObservationRecorded,
    ParticipantJoined,
    ParticipantUpdated,
    ReadMarked,
    RoomCreated,
    RoomUpdated,
    TaskRecorded,
    checked_dump,
    dump,
    encode_payload,
    message_dump,
    read_back,
    stored_form,
)
from roomkit.core._facts import Announcement, Deliver, Fact, RunLifecycle
from roomkit.core._first_step import first_step
from roomkit.core._in_decision import deciding
from roomkit.core._reused_ids import ReusedIds
from roomkit.core._room_ids import room_stream
from roomkit.core._room_state import IDEMPOTENCY_WINDOW, RoomState
from roomkit.core._system_events import audit_event, lifecycle_event, task_created_event
from roomkit.core._timers import timer_change
from roomkit.errors import (
    ChannelNotFoundError,
    EventRefusedError,
    ParticipantNotFoundError,
    RoomNotFoundError,
)
from roomkit.models._copy import updated
from roomkit.models._json import event_json_view
from roomkit.models.channel import ChannelBinding
from roomkit.models.context import RoomContext
from roomkit.models.delivery import DeliveryResult, InboundMessage
from roomkit.models.enums import (
    EventStatus,
    EventType,
    HookTrigger,
    IdentificationStatus,
    RoomStatus,
)
from roomkit.models.event import EventSource, RoomEvent
from roomkit.models.hook import InjectedEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task

__all__ = ["Decision", "RoomDecider", "validated", "validated_event"]

logger = logging.getLogger("roomkit.room")

M = TypeVar("M", bound=BaseModel)

Decision = tuple[list[Fact], Outcome]

# system code of a participant joined through identity resolution -> (how, its status), as
# 0.3.0 wrote them in the stored event's body and data
_JOINED: dict[str, tuple[str, str]] = {
    "participant_joined_pending": ("joined with pending identification", "pending"),
    "participant_joined_identified": ("joined as identified", "identified"),
}

# change -> (stored event type, its code, lifecycle trigger or None)
_BINDING_CHANGES: dict[str, tuple[EventType, str, HookTrigger | None]] = {
    "muted": (EventType.CHANNEL_MUTED, "channel_muted", HookTrigger.ON_CHANNEL_MUTED),
    "unmuted": (EventType.CHANNEL_UNMUTED, "channel_unmuted", HookTrigger.ON_CHANNEL_UNMUTED),
    "visibility": (EventType.CHANNEL_UPDATED, "channel_visibility_changed", None),
    "access": (EventType.CHANNEL_UPDATED, "channel_access_changed", None),
    "metadata": (EventType.CHANNEL_UPDATED, "channel_metadata_updated", None),
}


class _Draft:
    """The facts of one decision, with the timeline indices they take."""

    def __init__(
        self,
        state: RoomState,
        now: datetime,
        room_id: str | None = None,
        reused: ReusedIds | None = None,
    ) -> None:
        # The room the facts belong to: the state's, or the one being created.
        self.room_id = room_id or (state.room.id if state.room is not None else "")
        self.now = now
        self.stamp = now.timestamp()
        self.facts: list[Fact] = []
        self._next_index = state.event_count
        # The ids of given events the kit's rooms recorded (see own): None where this
        # decision records none.
        self._reused = reused
        self._held_keys = state.idempotency
        self._recent = state.recent
        self._given: set[str] | None = None  # ids given by own in this decision
        self._given_keys: set[str] | None = None  # and idempotency keys
        # The ids the read model holds out of the recent events (see _reused_ids).
        self.stored: frozenset[str] = frozenset()
        # What user code gave that does not validate, left out (see _storable).
        self.left_out: list[tuple[str, str, str]] = []

    def next_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def own(
        self, event: RoomEvent, stems_from: tuple[str, ...], message_key: str | None = None
    ) -> dict[str, Any]:
        """The id and idempotency key ``event`` (an injected event, a reply) is recorded
        under, as ``model_copy`` updates: its own, but for a copy of what it stems from.

        A copy made with ``event.model_copy(update=...)`` (an auto-reply's natural shape)
        keeps the message's key and, given no id, its id; one event object given again (a
        notice injected twice, a channel's canned reply every turn) keeps its id. Recorded
        under the key, the provider's retry of the message was answered with the copy; under
        the id, over the earlier event, which left the read model (the room's count and
        timeline disagreed). So: no key for the message's (``message_key``), one the room
        holds or one of this decision (a notice injected twice); a new id for one of
        ``stems_from``, of this decision, of the room's recent events, of one a room of this
        kit recorded lately (checked and claimed here, with no await since: two rooms given
        one object at once), or of ``stored`` (one the read model holds: see
        ``roomkit.core._reused_ids``).
        """
        key = event.idempotency_key
        if key is not None:
            given_keys = self._given_keys
            if given_keys is None:
                given_keys = self._given_keys = set()
            if key == message_key or key in self._held_keys or key in given_keys:
                key = None
            else:
                given_keys.add(key)
        event_id = event.id
        holder = self._holder(event_id, stems_from)
        if holder is not None:
            event_id = self._renamed(event_id, uuid4().hex, holder)
        self._give(event_id)
        return {"id": event_id, "idempotency_key": key}

    def own_replacement(self, replacement_id: str, message_id: str) -> str:
        """The id a hook's replacement for message ``message_id`` is recorded under: its
        own, checked as ``own`` checks an event's, or else the message's (a modify of a copy
        keeps it). One replacement object given for every message (a redaction made once)
        kept its id: the room's second message went over its first in the read model, and
        another room's was refused by it."""
        if replacement_id != message_id:
            holder = self._holder(replacement_id, ())
            if holder is not None:
                replacement_id = self._renamed(replacement_id, message_id, holder)
        self._give(replacement_id)
        return replacement_id

    def _holder(self, event_id: str, stems_from: tuple[str, ...]) -> str | None:
        """What holds the id ``event_id`` already (said in a warning), or None: it is free,
        and claimed for this room if a room of this kit may record it (see ``own``)."""
        if event_id in stems_from:
            return "the event it stems from"
        given = self._given
        if given is not None and event_id in given:
            return "another event of this decision"
        if self._recent.may_hold(event_id):
            return "an event the room holds"
        if event_id in self.stored:
            return "an event the read model holds"
        if self._reused is not None and self._reused.taken(event_id, self.room_id):
            return "an event another room of this kit recorded"
        return None

    def _give(self, event_id: str) -> None:
        given = self._given
        if given is None:
            given = self._given = set()
        given.add(event_id)

    def _renamed(self, event_id: str, new_id: str, holder: str) -> str:
        logger.warning(
            "room %s: an event with the id %s of %s is recorded as %s (a copy given no id "
            "of its own, or one event object given again)",
            self.room_id,
            event_id,
            holder,
            new_id,
        )
        return new_id

    def add(self, domain: Any, model: Any = None, then: Any = None) -> None:
        self.facts.append(Fact(domain=domain, timestamp=self.stamp, model=model, then=then))

    def message(
        self,
        event: RoomEvent,
        *,
        deliver: Deliver | None = None,
        then: Any = None,
        modified_by: list[str] | None = None,
        reason: str | None = None,
        activity: bool | None = None,
        check_whole: bool = False,
    ) -> None:
        """Record ``event``; ``check_whole``: read it back whole first (``checked_dump``), as
        what an app hands the kit directly (content, metadata) is worth its cost."""
        recorded = MessageRecorded(
            # A message the log took that does not read back would fail every replay of the
            # room: see message_dump for what is checked.
            event=checked_dump(event, RoomEvent) if check_whole else message_dump(event),
            deliver=deliver is not None,
            targets=deliver.targets if deliver else None,
            modified_by=modified_by or [],
            reason=reason,
            activity=activity,
        )
        # The room's recent events keep the event's JSON as a view of the payload the log
        # appends (and the in-memory log and store keep): one copy of a message, not two.
        data = encode_payload(recorded)
        recorded = msgspec.structs.replace(recorded, event=event_json_view(data))
        self.facts.append(
            Fact(
                domain=recorded,
                timestamp=self.stamp,
                model=event,
                then=deliver or then,
                data=data,
            )
        )

    def audit(
        self, type: EventType, code: str, body: str, data: dict[str, Any] | None = None
    ) -> RoomEvent:
        """Store a system event (source ``"system"``, as in 0.3.0) in the timeline; the
        event."""
        event = audit_event(self.room_id, type, code, body, self.now, self.next_index(), data)
        self.message(event)
        return event

    def lifecycle(
        self,
        trigger: HookTrigger,
        type: EventType,
        code: str,
        body: str,
        data: dict[str, Any] | None = None,
        root: str | None = None,
    ) -> str:
        """Attach a lifecycle hook run to the last fact; return the turn it belongs to (a
        new one, unless ``root`` names one)."""
        event = lifecycle_event(self.room_id, type, code, body, self.now, data)
        root = root or event.id
        then = RunLifecycle(trigger, event, root)
        self.facts[-1] = msgspec.structs.replace(self.facts[-1], then=then)
        return root

    def tasks_and_observations(
        self,
        room_id: str,
        tasks: list[Task],
        observations: list[Observation],
        root: str,
        trigger: RoomEvent | None,
    ) -> None:
        """Record ``tasks`` and ``observations``; each task runs the ON_TASK_CREATED hooks
        after commit with a synthetic event built from ``trigger``, the event whose
        processing produced them (the synthetic event is never recorded).

        Tasks of the turn's own message (its hooks', its broadcast's) run their hooks last in
        the turn, as 0.3.0 did; a reply's tasks (which 0.3.0 dropped) run in turn order."""
        last = trigger is None or trigger.id == root
        for task in _storable(tasks, Task, "task", self.left_out):
            if task.room_id != room_id:
                _kept_here(room_id, "task", task.id, task.room_id)
                task = task.model_copy(update={"room_id": room_id})
            synthetic = task_created_event(room_id, task, trigger, self.now)
            self.add(
                TaskRecorded(task=dump(task)),
                task,
                RunLifecycle(HookTrigger.ON_TASK_CREATED, synthetic, root, last=last),
            )
        for observation in _storable(observations, Observation, "observation", self.left_out):
            if observation.room_id != room_id:
                _kept_here(room_id, "observation", observation.id, observation.room_id)
                observation = observation.model_copy(update={"room_id": room_id})
            self.add(ObservationRecorded(observation=dump(observation)), observation)

    def injected(
        self,
        room_id: str,
        injected: list[InjectedEvent],
        root: str,
        message_key: str | None = None,
    ) -> None:
        """Record injected events; those with targets are delivered to them. ``message_key``:
        the idempotency key of the message they stem from (see ``own``)."""
        for item in injected:
            # The item whole: its targets are logged too (model_construct validates nothing).
            checked = _storable_or_none(item, InjectedEvent, "injected event")
            if checked is None:
                continue
            item = checked
            injected_event = item.event
            if injected_event.room_id != room_id:
                _kept_here(room_id, "injected event", injected_event.id, injected_event.room_id)
            # Recorded as delivered, like AI replies: the room sends it once it is committed.
            event = injected_event.model_copy(
                update={
                    "room_id": room_id,
                    "index": self.next_index(),
                    "status": EventStatus.DELIVERED,
                    **self.own(injected_event, (root,), message_key),
                }
            )
            targets = item.target_channel_ids
            deliver = Deliver(event, root, targets) if targets else None
            self.message(event, deliver=deliver, activity=False)


def _kept_here(room_id: str, what: str, item_id: str, named: str) -> None:
    """Say that a hook's or a channel's item naming another room is recorded in this one. 0.3.0
    stored it in the room it named; a room records only its own (kit.store.add_task and
    add_observation, and send_event, write to another room)."""
    logger.warning(
        "room %s: %s %s names room %r: recorded in room %s (a room records only its own)",
        room_id,
        what,
        item_id,
        named,
        room_id,
    )


class RoomDecider:
    """Turns commands into facts. ``run_before_broadcast`` runs the sync hooks of a room."""

    def __init__(
        self,
        room_id: str,
        run_before_broadcast: Callable[[str, RoomEvent, Any], Awaitable[Any]],
        now: Callable[[], datetime],
        older_duplicate: Callable[[RoomState, str], Awaitable[str | None]] | None = None,
        reused: ReusedIds | None = None,
    ) -> None:
        self._room_id = room_id
        self._run_before_broadcast = run_before_broadcast
        self._now = now
        self._older_duplicate = older_duplicate
        self._reused = reused
        # Events that name no model of the room say which room only when the stream does not.
        self._named_room = None if room_stream(room_id) == room_id else room_id

    async def decide(self, state: RoomState, command: object) -> Decision:
        """Return the facts ``command`` produces in ``state`` and the reply to give."""
        if isinstance(command, ProcessInbound):
            return await self._process_inbound(state, command)
        room = state.room
        if room is not None:
            # The turns of messages (a delivery's outcome, a sent event), ahead of the rest.
            if type(command) is RecordOutcome:
                return self._record_outcome(state, command)
            if type(command) is SendEvent:
                return await self._send_event(state, command)
        facts, outcome = await self._decide_command(state, command)
        if outcome.root is not None:
            outcome.hooks = _hooks_only(facts, outcome.root)
        return facts, outcome

    async def _decide_command(self, state: RoomState, command: object) -> Decision:
        """Decide a command other than a message's (see ``decide``)."""
        if isinstance(command, CreateRoom):
            return self._create_room(state, command)
        if isinstance(command, ReplaceRoom):
            return self._replace(state, command)
        room = state.room
        if room is None:
            raise RoomNotFoundError(f"Room {self._room_id} not found")
        match command:
            case GetContext():
                return [], Outcome(value=state.context())
            case AttachChannel():
                return self._attach(state, command)
            case DetachChannel():
                return self._detach(state, command)
            case UpdateBinding():
                return self._update_binding(state, command)
            case UpdateRoomMetadata():
                return self._update_metadata(state, room, command)
            case PutBinding() | RemoveBinding() | PutParticipant() | RecordObservation():
                return self._store_write(state, command)
            case ImportEvent():
                return await self._import_event(state, room, command)
            case CloseRoom():
                return self._close(state, room, command)
            case CheckTimers():
                return self._check_timers(state, room, command)
            case EnsureParticipant():
                return self._ensure_participant(state, command)
            case ResolveParticipant():
                return self._resolve_participant(state, command)
            case RecordInjected():
                draft = _Draft(state, self._now(), reused=self._reused)
                # Looked up by process_inbound, out of the decision (see _reused_ids).
                draft.stored = frozenset(command.stored)
                draft.injected(room.id, command.injected, command.root, command.message_key)
                return draft.facts, Outcome(root=command.root)
            case UpdateTask():
                draft = _Draft(state, self._now())
                task = command.task
                if task.room_id != room.id:
                    task = task.model_copy(update={"room_id": room.id})
                draft.add(TaskRecorded(task=dump(task)), task)
                return draft.facts, Outcome(value=task)
            case MarkRead():
                draft = _Draft(state, self._now())
                draft.add(
                    ReadMarked(
                        channel_id=command.channel_id,
                        event_id=command.event_id,
                        room_id=self._named_room,
                    )
                )
                return draft.facts, Outcome(value=True)
        raise TypeError(f"a room does not handle {type(command).__name__}")

    # -- rooms -------------------------------------------------------------------------------

    def _create_room(self, state: RoomState, command: CreateRoom) -> Decision:
        if state.room is not None:
            return [], Outcome(value=state.room)  # creating an existing room changes nothing
        raw, room = stored_form(command.room, Room)
        draft = _Draft(state, room.created_at, room.id)
        draft.add(RoomCreated(room=raw), room)
        root = draft.lifecycle(
            HookTrigger.ON_ROOM_CREATED,
            EventType.SYSTEM,
            "room_created",
            f"Room {room.id} created",
            {"room_id": room.id},
        )
        for binding in command.bindings:
            self._attach_to(draft, binding, root)
        return draft.facts, Outcome(value=room, root=root)

    def _update_metadata(self, state: RoomState, room: Room, cmd: UpdateRoomMetadata) -> Decision:
        raw, updated = stored_form(
            room.model_copy(
                update={"metadata": {**room.metadata, **cmd.metadata}, "updated_at": cmd.now}
            ),
            Room,
        )
        draft = _Draft(state, cmd.now)
        draft.add(RoomUpdated(room=raw, reason="metadata_updated"), updated)
        return draft.facts, Outcome(value=updated)

    def _replace(self, state: RoomState, cmd: ReplaceRoom) -> Decision:
        room = state.room
        draft = _Draft(state, self._now(), cmd.room.id)
        if room is None:  # written as given, as 0.3.0's store wrote it: no hook, no event
            raw, new = stored_form(
                cmd.room.model_copy(update={"event_count": 0, "latest_index": 0}), Room
            )
            draft.add(RoomCreated(room=raw), new)
            return draft.facts, Outcome(value=new)
        # The counters (events, latest index) are the timeline's, as is the creation time:
        # a room read a while ago and written back must not take them back.
        kept = {"created_at": room.created_at, "event_count": room.event_count}
        raw, new = stored_form(
            cmd.room.model_copy(update={**kept, "latest_index": room.latest_index}), Room
        )
        if new == room:
            return [], Outcome(value=room)
        draft.add(RoomUpdated(room=raw, reason="updated"), new)
        return draft.facts, Outcome(value=new)

    # -- a 0.3.0 app's writes on kit.store (see _store_view.py): as they are, no audit ------

    def _store_write(
        self,
        state: RoomState,
        cmd: PutBinding | RemoveBinding | PutParticipant | RecordObservation,
    ) -> Decision:
        draft = _Draft(state, self._now())
        match cmd:
            case PutBinding(binding=given):
                raw, binding = stored_form(given, ChannelBinding)
                known = binding.channel_id in state.bindings
                fact = ChannelUpdated(binding=raw) if known else None
                draft.add(fact or ChannelAttached(binding=raw), binding)
                return draft.facts, Outcome(value=binding)
            case RemoveBinding(channel_id=channel_id):
                if channel_id not in state.bindings:
                    return [], Outcome(value=False)
                draft.add(ChannelDetached(channel_id=channel_id, room_id=self._named_room))
                return draft.facts, Outcome(value=True)
            case PutParticipant(participant=given):
                raw, participant = stored_form(given, Participant)
                known = participant.id in state.participants
                joined = ParticipantUpdated(participant=raw) if known else None
                draft.add(joined or ParticipantJoined(participant=raw), participant)
                return draft.facts, Outcome(value=participant)
            case RecordObservation(observation=observation):
                draft.add(ObservationRecorded(observation=dump(observation)), observation)
                return draft.facts, Outcome(value=observation)
        raise AssertionError(f"not a store write: {cmd!r}")  # pragma: no cover

    async def _import_event(self, state: RoomState, room: Room, cmd: ImportEvent) -> Decision:
        key = cmd.event.idempotency_key
        if key and (original := await self._original(state, key)) is not None:
            # Appended, the room held two events with one key, and a retry of the message
            # was answered with the later one, not the one first recorded.
            raise ValueError(
                f"room {room.id} holds an event with idempotency key {key!r} already"
                + (f" ({original})" if original else "")
                + ": an idempotency key is recorded once"
            )
        # The kit routes the write by the model's room_id: each model here names this room.
        draft = _Draft(state, self._now())
        draft.message(cmd.event, activity=False)
        return draft.facts, Outcome(value=cmd.event)

    def _close(self, state: RoomState, room: Room, cmd: CloseRoom) -> Decision:
        if room.status == RoomStatus.CLOSED:
            # Closed already: nothing changes, and nothing fires again. 0.3.0 fired
            # ON_ROOM_CLOSED at every call: two rooms whose hooks close each other (twins)
            # closed each other for ever, and the kit's close() waited on them for good.
            return [], Outcome(value=room)
        closed = room.model_copy(
            update={"status": RoomStatus.CLOSED, "closed_at": cmd.now, "updated_at": cmd.now}
        )
        draft = _Draft(state, cmd.now)
        draft.add(RoomUpdated(room=checked_dump(closed, Room), reason="closed"), closed)
        root = draft.lifecycle(
            HookTrigger.ON_ROOM_CLOSED,
            EventType.SYSTEM,
            "room_closed",
            f"Room {room.id} closed",
            {"room_id": room.id},
        )
        return draft.facts, Outcome(value=closed, root=root)

    def _check_timers(self, state: RoomState, room: Room, cmd: CheckTimers) -> Decision:
        change = timer_change(room, cmd.now)
        if change is None:
            return [], Outcome(value=(room, None))
        status, code, trigger = change.status, change.code, change.trigger
        threshold, elapsed = change.threshold, change.elapsed
        update: dict[str, Any] = {"status": status, "updated_at": cmd.now}
        if status == RoomStatus.CLOSED:
            update["closed_at"] = cmd.now
        changed = room.model_copy(update=update)
        draft = _Draft(state, cmd.now)
        draft.add(RoomUpdated(room=checked_dump(changed, Room), reason=code), changed)
        # 0.3.0's texts and data: the stored event has the threshold, the hook's does not.
        stored = draft.audit(
            EventType.SYSTEM,
            code,
            f"Room {room.id} {status.value} after {elapsed:.0f}s inactivity",
            {"elapsed_seconds": elapsed, "threshold": threshold},
        )
        root = draft.lifecycle(
            trigger,
            EventType.SYSTEM,
            code,
            f"Room {room.id} {status.value} by timer",
            {"elapsed_seconds": elapsed},
        )
        # Returned as the room is once this decision is applied: counting the event just
        # stored (the caller's room said one event fewer than get_room right after).
        counted = {
            "event_count": room.event_count + 1,
            "latest_index": max(room.latest_index, stored.index),
        }
        return draft.facts, Outcome(value=(changed.model_copy(update=counted), status), root=root)

    # -- bindings ----------------------------------------------------------------------------

    def _attach(self, state: RoomState, cmd: AttachChannel) -> Decision:
        draft = _Draft(state, cmd.now)
        binding, root = self._attach_to(draft, cmd.binding)
        return draft.facts, Outcome(value=binding, root=root)

    @staticmethod
    def _attach_to(
        draft: _Draft, given: ChannelBinding, root: str | None = None
    ) -> tuple[ChannelBinding, str]:
        """Attach ``given``; the binding as stored, and the root of its lifecycle turn."""
        raw, binding = stored_form(given, ChannelBinding)
        draft.add(ChannelAttached(binding=raw), binding)
        channel_id, access, visibility = binding.channel_id, binding.access, binding.visibility
        data = {"channel_id": channel_id, "access": str(access), "visibility": visibility}
        draft.audit(
            EventType.CHANNEL_ATTACHED,
            "channel_attached",
            f"Channel {channel_id} attached ({access}, {visibility})",
            data,
        )
        return binding, draft.lifecycle(
            HookTrigger.ON_CHANNEL_ATTACHED,
            EventType.CHANNEL_ATTACHED,
            "channel_attached",
            f"Channel {channel_id} attached",
            dict(data),
            root=root,
        )

    def _detach(self, state: RoomState, cmd: DetachChannel) -> Decision:
        if cmd.channel_id not in state.bindings:
            return [], Outcome(value=False)
        draft = _Draft(state, cmd.now)
        draft.add(ChannelDetached(channel_id=cmd.channel_id, room_id=self._named_room))
        body = f"Channel {cmd.channel_id} detached"
        data = {"channel_id": cmd.channel_id}
        draft.audit(EventType.CHANNEL_DETACHED, "channel_detached", body, data)
        root = draft.lifecycle(
            HookTrigger.ON_CHANNEL_DETACHED,
            EventType.CHANNEL_DETACHED,
            "channel_detached",
            body,
            dict(data),
        )
        return draft.facts, Outcome(value=True, root=root)

    def _update_binding(self, state: RoomState, cmd: UpdateBinding) -> Decision:
        binding = state.bindings.get(cmd.channel_id)
        if binding is None:
            raise ChannelNotFoundError(f"Channel {cmd.channel_id} not in room {self._room_id}")
        updates = dict(cmd.updates)
        if cmd.change == "metadata":
            updates["metadata"] = {**binding.metadata, **cmd.updates["metadata"]}
        # Validated, unlike model_copy: a value the model refuses (a visibility of 5) would be
        # logged for good and fail every replay of the room. The caller gets the error instead.
        raw, updated = stored_form(
            ChannelBinding.model_validate({**binding.__dict__, **updates}), ChannelBinding
        )
        event_type, code, trigger = _BINDING_CHANGES[cmd.change]
        draft = _Draft(state, cmd.now)
        draft.add(ChannelUpdated(binding=raw, change=cmd.change), updated)
        body, data = _binding_change_text(cmd, binding)
        draft.audit(event_type, code, body, data)
        root = None
        if trigger is not None:  # mute and unmute: the hook's event says what the stored one does
            root = draft.lifecycle(trigger, event_type, code, body, dict(data))
        return draft.facts, Outcome(value=updated, root=root)

    # -- participants ------------------------------------------------------------------------

    def _ensure_participant(self, state: RoomState, cmd: EnsureParticipant) -> Decision:
        wanted = cmd.participant
        existing = state.participants.get(wanted.id)
        draft = _Draft(state, cmd.now or wanted.joined_at)
        if existing is not None:
            if cmd.upgrade and existing.identification != IdentificationStatus.IDENTIFIED:
                upgraded = existing.model_copy(update=cmd.upgrade)
                draft.add(
                    ParticipantUpdated(participant=checked_dump(upgraded, Participant)), upgraded
                )
                return draft.facts, Outcome(value=upgraded)
            return [], Outcome(value=existing)
        raw, wanted = stored_form(wanted, Participant)
        draft.add(ParticipantJoined(participant=raw), wanted)
        if cmd.system_code:
            how, status = _JOINED.get(cmd.system_code, ("joined", ""))
            data = {"participant_id": wanted.id}
            if status:
                data["status"] = status
            draft.audit(
                EventType.PARTICIPANT_JOINED,
                cmd.system_code,
                f"Participant {wanted.id} {how}",
                data,
            )
        return draft.facts, Outcome(value=wanted)

    def _resolve_participant(self, state: RoomState, cmd: ResolveParticipant) -> Decision:
        participant = state.participants.get(cmd.participant_id)
        if participant is None:
            raise ParticipantNotFoundError(
                f"Participant {cmd.participant_id} not found in room {self._room_id}"
            )
        identity = cmd.identity
        resolved = participant.model_copy(
            update={
                "identification": IdentificationStatus.IDENTIFIED,
                "identity_id": identity.id,
                "resolved_at": cmd.now,
                "resolved_by": cmd.resolved_by,
                "candidates": None,
                "display_name": identity.display_name or participant.display_name,
            }
        )
        draft = _Draft(state, cmd.now)
        draft.add(ParticipantUpdated(participant=checked_dump(resolved, Participant)), resolved)
        binding = state.bindings.get(participant.channel_id) if participant.channel_id else None
        if binding is not None:
            rebound = binding.model_copy(update={"participant_id": identity.id})
            draft.add(
                ChannelUpdated(
                    binding=checked_dump(rebound, ChannelBinding), change="participant"
                ),
                rebound,
            )
        # 0.3.0's texts: the stored event names the identity by its display name (None if it
        # has none) and says who resolved it; the hook's event says neither.
        data = {"participant_id": participant.id, "identity_id": identity.id}
        draft.audit(
            EventType.PARTICIPANT_IDENTIFIED,
            "participant_identified",
            f"Participant {participant.id} identified as {identity.display_name}",
            {**data, "resolved_by": cmd.resolved_by},
        )
        root = draft.lifecycle(
            HookTrigger.ON_PARTICIPANT_IDENTIFIED,
            EventType.PARTICIPANT_IDENTIFIED,
            "participant_identified",
            "Participant identified",
            data,
        )
        return draft.facts, Outcome(value=resolved, root=root)

    # -- messages ----------------------------------------------------------------------------

    async def _process_inbound(self, state: RoomState, cmd: ProcessInbound) -> Decision:
        room = state.room
        if room is None:
            raise RoomNotFoundError(f"Room {self._room_id} not found")
        context = state.context()  # the room before this message, for the channel and hooks
        event = cmd.event
        if event is None:
            event = await parsed_inbound(cmd.channel, cmd.message, context)
        decision = deciding()
        if decision is not None:  # store writes about this very message wait for it
            decision.event_id = event.id
        key = event.idempotency_key
        if key:
            original = await self._original(state, key)
            if original is not None:
                return [], Outcome(blocked=True, reason="duplicate", duplicate_of=original)
        # The room's id and the message's index, read once before the hooks and once after
        # them (which may change the models in place): each attribute read of a pydantic
        # model goes through its class's __getattr__ slot hook (~400 instructions).
        room_id = room.id
        # Stamped now, not with the event's created_at: its channel may set that to a
        # provider's time, and the room's activity is when the message was recorded.
        draft = _Draft(state, self._now(), room_id, self._reused)
        event = updated(event, {"room_id": room_id, "index": draft.next_index()})
        result = await self._run_before_broadcast(room_id, event, context)
        room_id, index = room.id, event.index
        # A replacement of the hooks' under an id of its own (not a modified copy).
        replaced = result.event is not None and result.event.id != event.id
        # Of those, one the hooks may give again (a canned object made before), which the read
        # model is asked about: not a copy of the message, which keeps its created_at (a
        # modify hook's ``event.model_copy(update={"id": ...})``, fresh for every message).
        given_again = (
            replaced and result.event is not None and result.event.created_at != event.created_at
        )
        if (result.injected_events or given_again) and self._reused is not None:
            given = [getattr(item, "event", None) for item in result.injected_events]
            if given_again:
                given.append(result.event)
            # What another process (or this kit before a restart) recorded: events made
            # before the hooks ran, by the kit's clock (the message's created_at may be its
            # provider's time, hours old), looked up in the read model (see _reused_ids).
            draft.stored = await self._reused.stored(
                given, draft.now, self._room_id, state.recent.may_hold
            )
        # As 0.3.0: hook_error names the message whose hook failed; neither it nor
        # event_blocked names a channel.
        announce = [
            Announcement("hook_error", event_id=event.id, data=dict(e)) for e in result.hook_errors
        ]
        if not result.allowed:
            blocked = event.model_copy(
                update={
                    "status": EventStatus.BLOCKED,
                    "blocked_by": result.blocked_by or result.reason,
                }
            )
            draft.message(blocked, modified_by=result.modified_by, reason=result.reason)
            draft.injected(room.id, list(result.injected_events), blocked.id, key)
            draft.tasks_and_observations(
                room.id, list(result.tasks), list(result.observations), blocked.id, blocked
            )
            announce.append(
                Announcement(
                    "event_blocked",
                    event_id=blocked.id,
                    data={"reason": result.reason, "blocked_by": result.blocked_by},
                )
            )
            return draft.facts, Outcome(
                event=blocked,
                blocked=True,
                reason=result.reason,
                blocked_by=result.blocked_by,
                announce=tuple(announce),
                root=blocked.id,
            )
        final = result.event if result.event is not None else event
        if final.room_id != room_id or final.index not in (index, 0):
            # 0.3.0 stored a modified event wherever it said (another room, an index of its
            # own); a room records only its own messages, at its next index. (Index 0: a
            # replacement made anew, which says nothing of its index.)
            logger.warning(
                "room %s: hooks %s moved message %s to room %r, index %d: kept in this room at "
                "index %d (a room records only its own messages)",
                room_id,
                result.modified_by,
                final.id,
                final.room_id,
                final.index,
                index,
            )
        changes = {"status": _DELIVERED, "index": index, "room_id": room_id}
        if key and final.idempotency_key != key:
            # A replacement (a redaction hook's ``RoomEvent(...)``, or one given another key)
            # is still this message: under another key, or none, the provider's retry was
            # recorded and sent again.
            changes["idempotency_key"] = key
        if replaced:
            # Before the injected events own theirs: one given the replacement's id too is
            # recorded under another.
            own_id = draft.own_replacement(final.id, event.id)
            if own_id != final.id:
                changes["id"] = own_id
        final = updated(final, changes)
        final_id = final.id
        bound = final.source.channel_id in state.bindings
        # Unbound source: recorded, not broadcast, no room activity (0.3.0 returned early).
        draft.message(
            final,
            deliver=Deliver(final, final_id, report=True) if bound else None,
            modified_by=result.modified_by,
            activity=bound,
        )
        draft.injected(room_id, list(result.injected_events), final_id, key)
        if bound:
            # As in 0.3.0, the hooks' tasks belong to the message as recorded: a modify hook's
            # replacement, if one ran. A message whose channel is not bound in the room (routed
            # to a participant's room) keeps none: 0.3.0 returned before storing them (§5.2
            # step 7).
            draft.tasks_and_observations(
                room_id, list(result.tasks), list(result.observations), final_id, final
            )
        return draft.facts, Outcome(
            event=final, root=final_id, announce=tuple(announce), unbound=not bound
        )

    async def _original(self, state: RoomState, key: str) -> str | None:
        """The id of the event recorded in the room with idempotency ``key`` ("" when the
        read model knows the key but not the event), or None."""
        original = state.idempotency.get(key)
        if (
            original is None
            and len(state.idempotency) >= IDEMPOTENCY_WINDOW
            and self._older_duplicate is not None
        ):
            # Past the window the room keeps: the read model knows the older keys.
            original = await self._older_duplicate(state, key)
        return original

    async def _send_event(self, state: RoomState, cmd: SendEvent) -> Decision:
        binding = state.bindings.get(cmd.channel_id)
        if binding is None:
            raise ChannelNotFoundError(f"Channel {cmd.channel_id} not in room {self._room_id}")
        if cmd.idempotency_key:
            original = await self._original(state, cmd.idempotency_key)
            if original is not None:
                return [], Outcome(blocked=True, reason="duplicate", duplicate_of=original)
        draft = _Draft(state, cmd.now)
        event = RoomEvent(
            room_id=self._room_id,
            type=cmd.event_type,
            source=EventSource(
                channel_id=cmd.channel_id,
                channel_type=binding.channel_type,
                participant_id=cmd.participant_id,
            ),
            content=cmd.content,
            status=EventStatus.DELIVERED,
            visibility=cmd.visibility,
            index=draft.next_index(),
            chain_depth=cmd.chain_depth,
            metadata=cmd.metadata,
            created_at=cmd.now,
            idempotency_key=cmd.idempotency_key,
        )
        # 0.3.0: a sent event is not room activity and reports no framework events.
        draft.message(event, deliver=Deliver(event, event.id), activity=False, check_whole=True)
        return draft.facts, Outcome(event=event, root=event.id)

    def delivery_facts(self, outcomes: list[RecordOutcome]) -> list[Fact]:
        """The ``delivery.recorded`` facts of audit-only outcomes (delivery results only)."""
        stamp = self._now().timestamp()
        return [
            Fact(domain=_delivery_recorded(outcome), timestamp=stamp)
            for outcome in outcomes
            if outcome.results
        ]

    def _record_outcome(self, state: RoomState, cmd: RecordOutcome) -> Decision:
        room = state.room
        assert room is not None
        draft = _Draft(state, self._now(), reused=self._reused)
        draft.stored = cmd.stored  # looked up by the delivery worker (see _reused_ids)
        if cmd.results:
            draft.add(_delivery_recorded(cmd))
        # The id each blocked reply is recorded under, in order (see Outcome.blocked_ids).
        blocked_ids: list[str] = []
        renamed = False
        for given in cmd.blocked:
            blocked = _storable_or_none(given, RoomEvent, "blocked reply", draft.left_out)
            if blocked is None:
                blocked_ids.append(getattr(given, "id", ""))
                continue
            if blocked.room_id != room.id:
                # As a reply that went through: named after another room (a canned reply made
                # for one), it went to that room's timeline in the read model, at this room's
                # indexes, and was missing from this one's.
                _kept_here(room.id, "blocked reply", blocked.id, blocked.room_id)
            update = {
                "room_id": room.id,
                "index": draft.next_index(),
                **draft.own(blocked, (cmd.event_id, cmd.root)),
            }
            blocked_ids.append(update["id"])
            renamed = renamed or update["id"] != blocked.id
            draft.message(blocked.model_copy(update=update))
        recorded: list[RoomEvent] = []
        # A reply that does not validate (an AI's text with a lone surrogate) is left out, as
        # a task is; the delivery worker says so to the ON_ERROR hooks (see Outcome.left_out).
        for reply in _storable(cmd.replies, RoomEvent, "reply", draft.left_out):
            responder = cmd.responders.get(reply.id)
            answered = state.bindings.get(responder) if responder is not None else None
            if responder is not None and (answered is None or answered.muted):
                # The channel that answered was muted or detached while it did: its replies
                # go nowhere, as they would had it been muted before. Recorded, it was a
                # DELIVERED reply nobody got, and a muted AI read it back as its own.
                logger.info(
                    "room %s: reply %s of channel %r dropped: the channel was %s meanwhile",
                    room.id,
                    reply.id,
                    responder,
                    "detached" if answered is None else "muted",
                )
                continue
            # Quirk 3 fixed: a re-entered reply gets its real index and DELIVERED status.
            reply = reply.model_copy(
                update={
                    "room_id": room.id,
                    "index": draft.next_index(),
                    "status": EventStatus.DELIVERED,
                    **draft.own(reply, (cmd.event_id, cmd.root)),
                }
            )
            # A reply naming a channel not in the room as its source is recorded as it is, as
            # 0.3.0 stored it, and goes to nobody.
            bound = reply.source.channel_id in state.bindings
            deliver = Deliver(reply, cmd.root) if bound else None
            draft.message(reply, deliver=deliver, activity=False)
            recorded.append(reply)
        # The tasks came from broadcasting ``cmd.event`` (an inbound message, a sent event or
        # a reply re-entering the room): its source and content go to ON_TASK_CREATED.
        observations = cmd.observations
        if renamed:
            # The router names a blocked reply's Observation after the reply: one event object
            # blocked twice (a channel's canned reply) made one Observation of two.
            observations = _named_after(observations, cmd.blocked, blocked_ids)
        draft.tasks_and_observations(room.id, cmd.tasks, observations, cmd.root, cmd.event)
        # The replies as recorded: the delivery worker gives them to messages queued behind.
        return draft.facts, Outcome(
            value=tuple(recorded),
            root=cmd.root if cmd.continues_turn else None,
            for_worker=cmd if cmd.worker_runs_them else None,
            left_out=tuple(draft.left_out),
            blocked_ids=tuple(blocked_ids) if renamed else None,
        )


def _hooks_only(facts: list[Fact], root: str) -> tuple[RunLifecycle, ...] | None:
    """The work of turn ``root`` if all the facts' work is lifecycle hooks of that turn (a
    room command's: attach, detach, mute, close, ...); None if anything else is to be done
    after the commit (a delivery), which its caller waits for as it always did."""
    hooks: list[RunLifecycle] = []
    for fact in facts:
        work = fact.then
        if work is None:
            continue
        if type(work) is not RunLifecycle or work.root != root:
            return None
        hooks.append(work)
    return tuple(hooks) if hooks else None


def _named_after(
    observations: Sequence[Any], blocked: Sequence[RoomEvent], recorded: Sequence[str]
) -> list[Any]:
    """``observations``, each named after the id its blocked reply is recorded under (see
    ``EventRouter``'s ``obs_<reply id>``; ``recorded``: the id of each of ``blocked``, in
    order). The router adds a blocked reply and its Observation in the same order, so the
    n-th Observation named after an id is the n-th blocked reply of that id's: keyed by the
    id alone, two copies of one object blocked twice made one Observation of two."""
    pending: dict[str, deque[str]] = {}
    for reply, recorded_id in zip(blocked, recorded, strict=True):
        pending.setdefault(getattr(reply, "id", ""), deque()).append(recorded_id)
    named: list[Any] = []
    for observation in observations:
        name = getattr(observation, "id", None)
        if isinstance(name, str) and name.startswith("obs_"):
            ids = pending.get(name[4:])
            if ids:
                recorded_id = ids.popleft()
                if recorded_id != name[4:]:
                    observation = observation.model_copy(update={"id": f"obs_{recorded_id}"})
        named.append(observation)
    return named


def validated(model: M, stored: type[BaseModel] | None = None) -> M:
    """``model`` (a hook's replacement for the message, an injected event, a task from user
    code) if what the log will hold of it reads back as ``stored`` (default: its own type).

    ``model_copy(update=...)`` and assigning a field validate nothing, and a model that does
    not read back would be logged and then fail every read of it (the room's timeline, its
    tasks). The model itself is returned, private attributes and the app's own classes (of
    it and the models in it) and all; with every other value that reads back otherwise as it
    reads back: a model given as a dict (``{"type": "text", ...}`` for a content) was logged
    as its model but sent on as the dict, which every channel failed on (a time given as
    text, a tuple: the channels got what the log does not hold).

    Raises:
        EventRefusedError: it is not JSON, or does not read back (see ``read_back``).
    """
    copy = read_back(stored or type(model), dump(model, warnings=False))
    checked: M = _as_models(model, copy)
    return checked


def _as_models(given: Any, read: Any) -> Any:
    """``given`` as ``read`` (its read-back) has it, but for the models of the app's own
    classes in it (subclasses of what was read back), kept with what in them reads back
    otherwise as it reads back; ``given`` itself when nothing differs."""
    if isinstance(read, BaseModel):
        if not isinstance(given, type(read)):
            return read  # a dict, or another model
        # An app's own subclass may type a field anew (``metadata: Ticket``) that the class
        # the log is read as holds as plain JSON: such a field is compared as its own class
        # types it. The fields the log does not hold are the app's, kept as given.
        own = type(given) if type(given) is not type(read) else None
        fields = given.__dict__
        changed = {}
        for name, value in read.__dict__.items():
            if name in fields:
                if own is not None and _typed_anew(own, type(read), name):
                    mine = _as_typed(own, name, fields[name], value)
                else:
                    mine = _as_models(fields[name], value)
                if mine is not fields[name]:
                    changed[name] = mine
        return given.model_copy(update=changed) if changed else given
    if type(read) is list and isinstance(given, list | tuple) and len(given) == len(read):
        items = [_as_models(g, r) for g, r in zip(given, read, strict=True)]
        same = type(given) is list and all(i is g for i, g in zip(items, given, strict=True))
        return given if same else items
    if type(read) is dict and isinstance(given, dict) and given.keys() == read.keys():
        values = {key: _as_models(given[key], value) for key, value in read.items()}
        same = type(given) is dict and all(values[key] is given[key] for key in given)
        return given if same else values
    if type(given) is type(read) and given == read:
        return given
    # Anything else goes on as it reads back: an app's model in a field its class does not
    # type so (``metadata: dict[str, Any]``) is the dict the log reads back.
    return read


def _typed_anew(own: type[BaseModel], stored: type[BaseModel], name: str) -> bool:
    """Whether the app's class ``own`` types field ``name`` otherwise than ``stored`` does."""
    mine, theirs = own.model_fields.get(name), stored.model_fields.get(name)
    return mine is not None and theirs is not None and mine.annotation != theirs.annotation


# A field's validator, by (class, field): made once (a TypeAdapter takes ~100 µs to build).
_field_adapters: dict[tuple[type[BaseModel], str], pydantic.TypeAdapter[Any]] = {}


def _as_typed(own: type[BaseModel], name: str, given: Any, read: Any) -> Any:
    """``given`` (the value of a field the app's class ``own`` types anew) if what the log
    holds of it (``read``, as the stored class reads it) reads back as ``given`` with the
    field's own type; ``read`` otherwise."""
    try:
        adapter = _field_adapter(own, name)
        # As JSON, which the log holds: a strict model takes a time as text only there. By
        # name: the log writes a field by its name, not by its alias. The field alone: the
        # class may have fields the log does not hold (``exclude=True``) that it requires.
        again = adapter.validate_json(pydantic_core.to_json(read), by_name=True)
    except Exception:  # not the field's type: what was read back stands
        return read
    # Equal, ``given`` is what the log holds: kept as it is, not validated again (a
    # validator that is not idempotent, "#" + v, changed it at every pass).
    return given if again == given else read


def _field_adapter(own: type[BaseModel], name: str) -> pydantic.TypeAdapter[Any]:
    """The validator of field ``name`` as class ``own`` validates it: with the field's own
    constraints (strict, bounds) and the class's config (bytes as base64 in JSON, ...)."""
    key = (own, name)
    adapter = _field_adapters.get(key)
    if adapter is None:
        if len(_field_adapters) >= 256:  # bounded: classes made at run time
            _field_adapters.clear()
        field = own.model_fields[name]
        typed: Any = Annotated[field.annotation or Any, field]
        try:
            adapter = pydantic.TypeAdapter(typed, config=own.model_config)
        except pydantic.PydanticUserError:  # a model's type has a config of its own
            adapter = pydantic.TypeAdapter(typed)
        _field_adapters[key] = adapter
    return adapter


def validated_event(event: RoomEvent) -> RoomEvent:
    """``validated(event, RoomEvent)``: the check of BEFORE_BROADCAST replacements."""
    return validated(event, RoomEvent)


def _storable(
    models: Sequence[M],
    stored: type[BaseModel],
    what: str,
    left_out: list[tuple[str, str, str]] | None = None,
) -> list[M]:
    """``models`` that read back as ``stored`` (``validated``), with a warning for the rest,
    noted in ``left_out`` as (what, id, why)."""
    if not models:  # nearly always, on every message
        return []
    kept = (_storable_or_none(m, stored, what, left_out) for m in models)
    return [m for m in kept if m is not None]


def _storable_or_none(
    model: M,
    stored: type[BaseModel],
    what: str,
    left_out: list[tuple[str, str, str]] | None = None,
) -> M | None:
    """``model`` if it reads back as ``stored`` (``validated``), or None, with a warning (and
    a note in ``left_out``)."""
    try:
        return validated(model, stored)
    except Exception as exc:  # a ValidationError, or not JSON at all
        text = str(exc).splitlines()[0]
        # Its id, not its repr: the repr holds the message's text (a reply may be megabytes,
        # and the kit does not log what people write).
        name = getattr(model, "id", None) or type(model).__name__
        logger.warning("%s %s does not validate, not recorded: %s", what, name, text)
        if left_out is not None:
            left_out.append((what, str(name), text))
        return None


def _delivery_recorded(outcome: RecordOutcome) -> DeliveryRecorded:
    return DeliveryRecorded(
        event_id=outcome.event_id, results=[_result_json(r) for r in outcome.results]
    )


# A delivery's result is nearly always ``{"channel_id": ..., "success": true}``: its JSON is
# made once per channel, not per message and target (a tenth of what recording a message's
# outcome cost with ten targets). Bounded: forgotten when it holds this many.
_PLAIN_RESULTS_KEPT = 1024
# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_DELIVERED = EventStatus.DELIVERED
_plain_results: dict[tuple[str, bool], msgspec.Raw] = {}


def _result_json(result: DeliveryResult) -> msgspec.Raw:
    """``dump(result)``, from the JSON kept for a result with nothing but its channel and its
    success."""
    if (
        type(result) is not DeliveryResult
        or result.provider_result is not None
        or result.error is not None
    ):
        return _storable_result(result)
    key = (result.channel_id, result.success)
    raw = _plain_results.get(key)
    if raw is None:
        if len(_plain_results) >= _PLAIN_RESULTS_KEPT:
            _plain_results.clear()
        raw = _plain_results[key] = dump(result)
    return raw


def _storable_result(result: DeliveryResult) -> msgspec.Raw:
    """``dump(result)``; when that could not be read back (a provider's metadata holding
    something that is not JSON, or a number too long to read), the result without that
    metadata, or else without its provider result: the room's next append carries it, and
    must not fail for it."""
    raw, why = _dumped(result)
    if raw is not None:
        return raw
    if result.error:
        error = _storable_text(result.error)
        if error != result.error:  # a provider's text with bytes JSON cannot hold
            result = updated(result, {"error": error})
            raw, why = _dumped(result)
            if raw is not None:
                return raw
    provider = result.provider_result
    kept = f"{result.error}; " if result.error else ""
    if provider is not None and provider.metadata:
        trimmed = updated(
            result,
            {
                "provider_result": updated(provider, {"metadata": {}}),
                "error": f"{kept}provider metadata not storable",
            },
        )
        raw, _ = _dumped(trimmed)
        if raw is not None:
            logger.warning(
                "delivery result for %r: provider metadata not storable (%s), left out",
                result.channel_id,
                why,
            )
            return raw
    logger.warning(
        "delivery result for %r cannot be stored (%s): recorded without its provider result",
        result.channel_id,
        why,
    )
    return dump(
        DeliveryResult(
            channel_id=result.channel_id,
            success=result.success,
            error=f"{kept}provider result not storable",
        )
    )


def _storable_text(text: str) -> str:
    """``text`` with what JSON cannot hold (lone surrogates: bytes a provider's text was
    decoded from with ``surrogateescape``) written as escapes (``\\udcff``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _dumped(model: DeliveryResult) -> tuple[msgspec.Raw | None, str | None]:
    """``(checked_dump(model), None)``, or ``(None, why)`` if it could not be stored."""
    try:
        return checked_dump(model, DeliveryResult), None
    except EventRefusedError as exc:
        return None, str(exc).splitlines()[0]


def _binding_change_text(cmd: UpdateBinding, old: ChannelBinding) -> tuple[str, dict[str, Any]]:
    """The body and data of the system event of a binding change (``old``: the binding before
    it), as 0.3.0 wrote them."""
    channel_id = cmd.channel_id
    if cmd.change == "visibility":
        visibility = cmd.updates["visibility"]
        body = f"Channel {channel_id} visibility: {old.visibility} -> {visibility}"
        data = {
            "channel_id": channel_id,
            "old_visibility": old.visibility,
            "visibility": visibility,
        }
        return body, data
    if cmd.change == "access":
        access = cmd.updates["access"]
        body = f"Channel {channel_id} access: {old.access} -> {access}"
        return body, {
            "channel_id": channel_id,
            "old_access": str(old.access),
            "access": str(access),
        }
    if cmd.change == "metadata":
        keys = list(cmd.updates["metadata"])  # the keys given, not the merged metadata's
        return f"Channel {channel_id} metadata updated", {"channel_id": channel_id, "keys": keys}
    # muted / unmuted
    return f"Channel {channel_id} {cmd.change}", {"channel_id": channel_id}


async def parsed_inbound(
    channel: Channel, message: InboundMessage, context: RoomContext
) -> RoomEvent:
    """``channel.handle_inbound(message, context)``, run in a copy of the running code's
    context variables as every call of user code is (a variable it sets reaches neither the
    hooks nor the caller; where it ran depended on an identity resolver being set).

    Raises:
        TypeError: it did not return a ``RoomEvent``.
    """
    answer, own = called_apart(channel.handle_inbound, message, context)
    # Not bounded here: in a room's decision process_timeout bounds it; run before identity
    # resolution, nothing does, as in 0.3.0.
    done, rest = first_step(answer, own)
    return inbound_event(channel, rest if done else await rest)


def inbound_event(channel: Channel, event: object) -> RoomEvent:
    """What ``channel.handle_inbound`` returned, if it is the ``RoomEvent`` it must return.

    Raises:
        TypeError: it is not (named, not an ``AttributeError`` further on).
    """
    if not isinstance(event, RoomEvent):
        raise TypeError(
            f"channel {channel.channel_id!r}: handle_inbound returned "
            f"{type(event).__name__}, expected RoomEvent"
        )
    return event
