"""The room actor (single writer of a room's stream) and the room's delivery worker."""

from __future__ import annotations

import itertools
import logging
import time
from contextvars import Context
from typing import Any

import msgspec
import pydantic

from actors import Actor, ConcurrencyConflict, Effect, EventSourcedActor
from eventlog import LogUnavailable, NewEvent, Record
from roomkit.core._bounded import TimedOut, started_here
from roomkit.core._caller_context import Carried, within
from roomkit.core._commands import (
    FlushOutcomes,
    ImportEvent,
    MarkRead,
    Outcome,
    ProcessInbound,
    RecordOutcome,
)
from roomkit.core._delivery import DeliveryJob, RoomDelivery, failed_sync_hooks
from roomkit.core._domain import (
    ChannelAttached,
    ChannelUpdated,
    DomainEvent,
    MessageRecorded,
    dump,
    errors_text,
    load,
)
from roomkit.core._facts import Deliver, Fact, ReportErrors, RunLifecycle, fact_from_record
from roomkit.core._in_decision import InDecision, deciding
from roomkit.core._recent import RecentEvents, readable
from roomkit.core._room_decider import RoomDecider, validated_event
from roomkit.core._room_ids import room_stream
from roomkit.core._room_state import IDEMPOTENCY_WINDOW, RoomState, evolve
from roomkit.core._services import KitServices
from roomkit.errors import (
    ChannelNotFoundError,
    KitClosedError,
    ParticipantNotFoundError,
    RoomConflictError,
    RoomNotFoundError,
)
from roomkit.models.channel import ChannelBinding
from roomkit.models.context import RoomContext
from roomkit.models.enums import HookTrigger
from roomkit.models.event import RoomEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room

__all__ = ["DeliveryActor", "RoomActor"]

logger = logging.getLogger("roomkit.room")

_UNKNOWN = DomainEvent()
_BINDING_EVENTS = (ChannelAttached, ChannelUpdated)
# The kit's own commands, taken up to the end: what was delivered is recorded.
_KIT_OWN = (RecordOutcome, FlushOutcomes)
# Numbers the post-commit work in the order the rooms commit it (DeliveryJob.order).
_commit_order = itertools.count(1)
_NULL = msgspec.Raw(b"null")
_CONFLICT_RETRIES = 8
# A delivery's outcome (its AI replies, its channels' tasks) is the kit's own to record: its
# message is committed and its caller waits for it, and nobody would send it again.
_OUTCOME_CONFLICT_RETRIES = 200
# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_BEFORE_BROADCAST = HookTrigger.BEFORE_BROADCAST


class _Snapshot(msgspec.Struct, frozen=True):
    """A room's state as stored in a snapshot (public models as their own JSON)."""

    room: msgspec.Raw  # JSON ``null`` before the room is created (Raw cannot be optional)
    bindings: list[msgspec.Raw]
    participants: list[msgspec.Raw]
    idempotency: dict[str, str]
    event_count: int
    recent: list[msgspec.Raw]


_snapshot_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(_Snapshot)


class RoomActor(EventSourcedActor[RoomState, Fact]):
    """Decides a room's commands, appends their facts, and hands the side effects of what it
    committed to the room's delivery worker."""

    def __init__(self, key: str, services: KitServices) -> None:
        super().__init__(key)
        self._services = services
        self._stream = room_stream(key)
        # Made for the first command and let go when the room rests (see _decider): it and
        # the two bound methods it holds cost an idle room ~240 bytes.
        self._decider_made: RoomDecider | None = None
        # Delivery outcomes taken from the OutcomeFlusher but not appended yet: the next append
        # carries them (see _outcome_flusher.py); they leave once an append that carried them
        # is committed (which may be an append in doubt, committed later). A tuple: most of
        # the time none wait, and the empty tuple is shared where a list costs 56 bytes.
        self._unrecorded: tuple[Fact, ...] = ()
        # The last inbound message whose hooks committed writes through kit.store (see
        # _decide_inbound: it is not decided again after a conflict).
        self._wrote_for: object | None = None
        # The last inbound message decided, and when it was first (its budget's start).
        self._first_decided: tuple[ProcessInbound, float] | None = None
        # The command being handled (see conflict_retries).
        self._taken: object = None
        # The event ids its latest decision claimed (ReusedIds.taken), until its append
        # commits: released otherwise (see _drop_claims).
        self._claimed: tuple[str, ...] = ()
        # Those of decisions whose appends are in doubt: kept claimed until settling finds
        # whether they landed (confirmed by after_commit if so, released if not).
        self._doubted: tuple[str, ...] = ()
        # Its caller's context (_caller_context): the command is decided in a copy of it.
        self._caller: Context | None = None
        # The log position of this incarnation's last commit. A command that commits nothing
        # (a duplicate, a room that exists already, a query) answers from state the read
        # model may not show yet: its caller waits for the read model to reach this.
        self._last_position = 0
        # The stream version ``_last_position`` is the position of: the actor's state may have
        # moved on without a commit of its own (recovery, a reload after another writer's).
        self._position_version = 0

    def _floor(self) -> float:
        """The stamp no new fact of the room goes below (see ``_in_time``): its last
        record's, unless that is not a time this kit's clock could have read (NaN, infinite,
        or more than ``FLOOR_AHEAD`` seconds ahead of it: a record another writer stamped by
        another clock). Taken as the floor, such a stamp was given to every later fact: the
        log refused them all (a room no longer took any command), or the room's activity
        froze at a future time (its timers never fired)."""
        last = self.last_timestamp
        if last <= self._services.now().timestamp() + FLOOR_AHEAD:  # False for NaN
            return last
        if self.key not in _FAR_FLOORS_SAID:
            if len(_FAR_FLOORS_SAID) >= _FAR_FLOORS_KEPT:
                _FAR_FLOORS_SAID.clear()
            _FAR_FLOORS_SAID.add(self.key)
            logger.warning(
                "room %s: its last record is stamped %r, ahead of this kit's clock: the "
                "room's new records are stamped by the clock, before it",
                self.key,
                last,
            )
        return 0.0

    @property
    def _decider(self) -> RoomDecider:
        decider = self._decider_made
        if decider is None:
            services = self._services
            decider = self._decider_made = RoomDecider(
                self.key,
                self._before_broadcast,
                services.now,
                self._older_duplicate,
                services.reused_ids,
            )
        return decider

    # -- event sourcing ----------------------------------------------------------------------

    def stream_id(self) -> str:
        # The key is the room id, which names the stream only if it is a valid stream id.
        return self._stream

    def initial_state(self) -> RoomState:
        return RoomState()

    def conflict_retries(self) -> int:
        # Processes writing one room at once (several serving it): decided again on the room
        # as it is now, up to this many times. Once only, a few messages in a hundred failed
        # with RoomConflictError while two processes kept writing.
        if type(self._taken) is RecordOutcome:
            # 8 lost an AI reply while another process kept sending to the room for a
            # second: its message was reported delivered, the reply logged nowhere.
            return _OUTCOME_CONFLICT_RETRIES
        return _CONFLICT_RETRIES

    def known_version(self) -> int:
        # The read model follows the log, other processes' appends included.
        return self._services.known_version(self._stream)

    async def receive(self, message: object) -> object:
        caller: Context | None = None
        if type(message) is Carried:
            caller, message = message.context, message.command
        self._caller = caller
        if self._services.abandoned() and not isinstance(message, _KIT_OWN):
            # close() gave up waiting for the rooms (its caller's deadline, the kit's scope
            # cancelled): deliveries are over, and the actors stop with what their mailboxes
            # hold. Taken up, a message would be recorded and never delivered, and its
            # caller's retry answered as a duplicate.
            raise KitClosedError(
                f"the kit closed before room {self.key} took the command up: nothing of it "
                "was applied"
            )
        self._taken = message
        if self.state.resting and self.known_version() > self.version:
            # Another process's records are applied before the command (known_version):
            # woken first, as deciding would, so that one that no longer validates reloads
            # from the log rather than failing every catch-up half-applied.
            await self._woken(self.state)
        try:
            return await super().receive(message)
        finally:
            # Its append failed or conflicted for good (or there was none): its claims
            # named events recorded nowhere. Unless it is in doubt (see _drop_claims).
            self._drop_claims()
            # Decided (and retried) for good: an idle room must not keep the message.
            self._first_decided = None
            self._taken = None
            self._caller = None

    def on_idle(self) -> None:
        # An idle room keeps its models as JSON only: its room, bindings and participants
        # (some 4 KB with two bindings), and the recent events of a room whose history was read
        # (an AI channel, a hook), ~3 KB each.
        self.state.rest()
        self._decider_made = None

    def evolve(self, state: RoomState, event: Fact) -> RoomState:
        model = event.model
        if type(event.domain) in _BINDING_EVENTS:
            if model is None:
                model = self._binding(event.domain.binding)  # type: ignore[attr-defined]
            else:  # decided here: its capabilities may be read back from JSON (stored_form)
                shared = self._services.capabilities.capabilities(model.capabilities)  # type: ignore[attr-defined]
                model.__dict__["capabilities"] = shared
        return evolve(state, event.domain, model, at=event.timestamp)

    def _binding(self, raw: msgspec.Raw) -> ChannelBinding:
        """A binding read back (from the log or a snapshot) with the capabilities instance the
        kit shares for their value: a room that comes back after a passivation would hold a
        copy per binding otherwise, 1.4 KB each."""
        binding = load(ChannelBinding, raw)
        shared = self._services.capabilities.capabilities(binding.capabilities)
        binding.__dict__["capabilities"] = shared  # a new model, nobody else's yet
        return binding

    def encode_event(self, event: Fact) -> NewEvent:
        return event.to_new_event()

    def decode_event(self, record: Record) -> Fact:
        fact = fact_from_record(record)
        # An event type from a newer version is skipped, not fatal (forward compatibility).
        return fact if fact is not None else Fact(domain=_UNKNOWN, timestamp=record.timestamp)

    def encode_state(self, state: RoomState) -> bytes:
        snapshot = _Snapshot(
            room=dump(state.room) if state.room is not None else _NULL,
            bindings=[dump(b) for b in state.bindings.values()],
            participants=[dump(p) for p in state.participants.values()],
            idempotency=state.idempotency,
            event_count=state.event_count,
            recent=state.recent.raw(),
        )
        data = _snapshot_encoder.encode(snapshot)
        # Read back once (a snapshot is taken every `snapshot_every` events): a model changed
        # in place through a context may no longer validate, and a snapshot that cannot be
        # read back would make every recovery replay the whole stream. None is taken then.
        self.decode_state(data)
        return data

    def decode_state(self, data: bytes) -> RoomState:
        snapshot = _snapshot_decoder.decode(data)
        state = RoomState(
            room=load(Room, snapshot.room) if bytes(snapshot.room) != b"null" else None,
            # A snapshot written before the window may hold more keys: keep the latest.
            idempotency=dict(list(snapshot.idempotency.items())[-IDEMPOTENCY_WINDOW:]),
            event_count=snapshot.event_count,
            recent=RecentEvents(readable(snapshot.recent, self._stream)),
        )
        for raw in snapshot.bindings:
            binding = self._binding(raw)
            state.bindings[binding.channel_id] = binding
        for raw in snapshot.participants:
            participant = load(Participant, raw)
            state.participants[participant.id] = participant
        return state

    # -- commands ----------------------------------------------------------------------------

    def refused_for_what_it_lacks(self, error: Exception) -> bool:
        # A room, channel or participant another process added after this actor read its
        # stream (a room made by an admin service while this one serves the ingress):
        # refused, the message would be dead-lettered until the actor passivated.
        return isinstance(
            error, RoomNotFoundError | ChannelNotFoundError | ParticipantNotFoundError
        )

    async def decide(self, state: RoomState, command: object) -> Effect[Fact]:
        if state.resting:
            state = await self._woken(state)
        caller = self._caller
        if type(command) is FlushOutcomes:
            facts: list[Fact] = []
            outcome = Outcome()
        else:
            # Decided again (a conflict): the claims of the decision before are not its.
            self._drop_claims()
            deciding = (
                self._decide_inbound(state, command)
                if type(command) is ProcessInbound
                else self._decider.decide(state, command)
            )
            facts, outcome = await within(deciding, caller)
            outcome.caller = caller
            claimed = self._services.reused_ids.provisional(self.key)
            if claimed:
                # Confirmed by after_commit, with the outcome: also an append in doubt's
                # that lands after they were released.
                outcome.claimed = self._claimed = claimed
        # Only commands that write carry the waiting delivery outcomes (a query never
        # appends). A re-run after a concurrency conflict carries them again: they leave
        # ``_unrecorded`` only once committed.
        if facts or type(command) is FlushOutcomes:
            taken = self._services.outcomes.take(self.key)
            if taken:
                self._unrecorded = (*self._unrecorded, *self._decider.delivery_facts(taken))
            carried = self._unrecorded
            if carried:
                facts = _in_time([*carried, *facts], self._floor())
                # Restamped, they are still the ones after_commit knows as carried (by
                # identity).
                self._unrecorded = tuple(facts[: len(carried)])
            else:
                facts = _in_time(facts, self._floor())
        else:
            if self.version != self._position_version:
                await self._find_last_position()
            outcome.read_position = self._last_position
        # The kit keeps the rooms whose appends are in doubt, to settle them as it closes.
        outcome.in_doubt = self.in_doubt
        return Effect(events=facts, reply=outcome)

    def _drop_claims(self) -> None:
        """Let go of the event ids claimed by decisions of this room that did not commit (an
        append failed or conflicted, or a decision raised): released, as they recorded none
        of them, unless an append of this room is in doubt. That one may have landed (the
        log timed out after writing it): released at once, its ids were free for another
        room, whose copy the read model then refused as already stored. Kept until settling
        says (after_commit confirms those that landed); released once nothing is in doubt.
        """
        reused = self._services.reused_ids
        left = reused.provisional(self.key)  # of a decision that raised
        if self._claimed:
            if self.in_doubt:
                self._doubted = (*self._doubted, *self._claimed)
            else:
                left = (*self._claimed, *left)
            self._claimed = ()
        if self._doubted and not self.in_doubt:
            left = (*self._doubted, *left)
            self._doubted = ()
        if left:
            # Not those the room holds: a later decision recorded one of them again (its own
            # claims do not count, see ReusedIds.taken) after the append in doubt claimed it.
            held = self.state.recent.may_hold
            reused.release(self.key, tuple(i for i in left if not held(i)))

    def _confirm_claims(self, claimed: tuple[str, ...]) -> None:
        """The append of the decision that claimed ``claimed`` committed (the one in hand, or
        one in doubt that landed): claimed for good."""
        self._services.reused_ids.confirm(self.key, claimed)
        if claimed is self._claimed:
            self._claimed = ()
        elif self._doubted:
            confirmed = set(claimed)
            self._doubted = tuple(i for i in self._doubted if i not in confirmed)

    async def _decide_inbound(
        self, state: RoomState, command: ProcessInbound
    ) -> tuple[list[Fact], Outcome]:
        """Decide an inbound message, its user code (the channel's handle_inbound, the hooks)
        marked as the room's decision: see _in_decision."""
        if command is self._wrote_for:
            # Decided again after a conflict, but its hooks' writes are committed: run again,
            # they would write twice.
            raise RoomConflictError(
                f"room {self.key} changed under another writer after this message's hooks "
                "wrote to it through kit.store; their writes are kept, the message is not"
            )
        if self.version != self._position_version:
            await self._find_last_position()
        mark = InDecision(
            self._services.kit,
            self.key,
            self._last_position,
            self._commit_write,
            command.waiting,
        )
        deciding = self._services.deciding
        deciding[self.key] = mark
        with mark as decision:
            try:
                if command.budget is not None:
                    first = self._first_decided
                    if first is None or first[0] is not command:
                        # Decided again after another writer's append, the message keeps the
                        # time it was first taken up at: its retries count in its
                        # process_timeout.
                        first = self._first_decided = (command, time.perf_counter())
                    facts, outcome = await self._decide_within(
                        state, command, command.budget, first[1]
                    )
                else:
                    facts, outcome = await self._decider.decide(state, command)
            finally:
                if deciding.get(self.key) is mark:
                    del deciding[self.key]
        if decision.wrote:
            self._wrote_for = command
        if decision.failed is not None:
            raise LogUnavailable(
                f"a write made through kit.store while deciding: {decision.failed}"
            ) from decision.failed
        for write in decision.after:  # about the message itself: once it is recorded
            written, _ = await self._decider.decide(state, write)
            facts = [*facts, *written]
        return facts, outcome

    async def _commit_write(self, command: object) -> Any:
        """Commit a store write made from this room's decision now (see _in_decision), and
        return what it recorded; the decision's reads then wait for it.

        Raises:
            ValueError: it imports the very message decided (recorded with the decision).
            RoomConflictError: another process wrote the room since the decision began:
                nothing was applied, and the message is decided again on the room as it is
                (the hook was told the actor runtime's ConcurrencyConflict, no RoomKitError).
        """
        decision = deciding()
        assert decision is not None  # called through the decision's mark only
        decided = decision.event_id
        if decided is not None:
            if type(command) is ImportEvent and command.event.id == decided:
                raise ValueError(f"event {decided!r} is the message being decided")
            if type(command) is MarkRead and command.event_id == decided:
                decision.after.append(command)
                return True
        facts, outcome = await self._decider.decide(self.state, command)
        facts = _in_time(facts, self._floor())
        version = self.version
        try:
            await self.commit_now(Effect(events=facts, reply=outcome))
        except LogUnavailable as exc:
            decision.failed = exc
            raise
        except ConcurrencyConflict as exc:
            raise RoomConflictError(
                f"room {self.key} changed under another writer; nothing was applied"
            ) from exc
        finally:
            if self.version != version:
                # Committed (also when the caller was cancelled): the decision's reads wait
                # for it, and the message is not decided again (see _decide_inbound).
                decision.wrote = True
                decision.position = self._last_position
        return outcome.value

    async def _older_duplicate(self, state: RoomState, key: str) -> str | None:
        """The read model's answer for an idempotency key older than the room's window, once
        it holds every key the window let go: it follows the log on its own, and a burst
        could have moved a key out of the window before the read model had it."""
        position = state.evicted_keys_position()
        if position is None:
            # No mark since the state was built (a recovery): the record it is at holds all.
            if self.version != self._position_version:
                await self._find_last_position()
            position = self._last_position
            # A change to the state inside decide, but not one the log rebuilds: a mark only
            # says where keys are, and a state without it finds this again.
            state.mark_keys(position, now=True)
        return await self._services.older_duplicate(self.key, key, position)

    async def _find_last_position(self) -> None:
        """Read the log position of the record the state is at (once per recovery or reload,
        and only for a command that commits nothing)."""
        version = self.version
        records = await self.log.read(self._stream, after_version=version - 1, limit=1)
        self._last_position = records[0].position if records else 0
        self._position_version = version

    async def _woken(self, state: RoomState) -> RoomState:
        """The state, its models validated again after a rest; if one no longer validates
        (changed in place through a context: nothing logged it), the state the log holds."""
        try:
            state.wake()
        except pydantic.ValidationError as exc:
            # Its text, not its traceback: pydantic's quotes the input (a participant's
            # name, the room's metadata), which the kit does not log.
            logger.warning(
                "room %s: its models, kept as JSON while it was idle, no longer validate "
                "(one changed in place?); the room reloads from the log: %s",
                self.key,
                errors_text(exc),
            )
            await self.reload()
            state = self.state
        return state

    async def _decide_within(
        self, state: RoomState, command: ProcessInbound, budget: float, started: float
    ) -> tuple[list[Fact], Outcome]:
        # The decision (the channel's handle_inbound, the BEFORE_BROADCAST hooks) is cut off
        # at the budget, counted from ``started``, as 0.3.0's wait_for cut its locked
        # section: a hook with a longer timeout of its own held the caller past
        # process_timeout. Deciding changes nothing until the commit, so a decision cut short
        # leaves the room as it was. One that ran over without ever suspending (nothing could
        # interrupt it) is not committed either.
        try:
            left = budget - (time.perf_counter() - started)
            if left <= 0:
                raise TimedOut  # its earlier decisions, undone by other writers, used it up
            done, decided = started_here(self._decider.decide(state, command), left)
            facts, outcome = decided if done else await decided
        except TimedOut:
            logger.warning(
                "room %s: deciding an inbound message took longer than its process_timeout "
                "of %s s: it is not recorded",
                self.key,
                budget,
            )
            return [], _timed_out()
        left = budget - (time.perf_counter() - started)
        if left < 0:
            logger.warning(
                "room %s spent %.1f s (over its process_timeout of %s s) deciding an inbound "
                "message: it is not recorded",
                self.key,
                budget - left,
                budget,
            )
            return [], _timed_out()
        # The caller measures what is left when it needs to: the append counts too.
        outcome.budget_deadline = started + budget
        return facts, outcome

    async def after_commit(
        self, state: RoomState, events: list[Fact], records: list[Record]
    ) -> None:
        unrecorded = self._unrecorded
        if unrecorded:
            carried = len(unrecorded)
            if len(events) >= carried and events[carried - 1] is unrecorded[-1]:
                self._unrecorded = ()  # all of them, ahead of the command's own facts
            else:  # an append in doubt's, committed after more outcomes came
                kept = {id(fact) for fact in events}
                self._unrecorded = tuple(fact for fact in unrecorded if id(fact) not in kept)
        position = self._last_position = records[-1].position
        self._position_version = records[-1].version
        self._wrote_for = None
        if state.keys_recorded:
            state.mark_keys(position)
        turns = self._services.turns
        # The reply of the command committed: the one in hand, or an append in doubt's (its
        # caller is gone; its turns run all the same).
        effect = self.committing
        outcome: Outcome | None = effect.reply if effect is not None else None  # type: ignore[assignment]
        if outcome is not None and outcome.claimed:
            self._confirm_claims(outcome.claimed)
        if outcome is not None:
            outcome.in_doubt = False  # committed after the version any doubt expected
            outcome.position = outcome.read_position = position
            if outcome.root is not None:
                turns.reached(outcome.root, position)
        works: list[Deliver | RunLifecycle | ReportErrors] = [
            fact.then for fact in events if fact.then is not None
        ]
        if not works:
            if outcome is None or outcome.root is None or not outcome.announce:
                return
            failures = failed_sync_hooks(outcome.announce)
            if not failures:
                return
            # Nothing goes out, but hooks failed: the delivery worker reports them, in a turn
            # of their own (the caller announces and returns; it would wait behind the room's
            # deliveries otherwise).
            works = [ReportErrors(f"{outcome.root}:errors", tuple(failures))]
        if len(works) > 1:
            # Injected events go out before the message that brought them is broadcast (0.3.0).
            works.sort(key=_injected_first)
        if outcome is not None and outcome.announce and works[0].root == outcome.root:
            # The turn's first work reports its hook errors (and blocking) before anything of
            # the turn goes out, as 0.3.0 did; the caller need not.
            works[0] = msgspec.structs.replace(works[0], announce=outcome.announce)
            outcome.announced = True
        later = _recorded_after(events) if len(works) > 1 else None
        earlier: dict[int, RoomContext] = {}
        if later:
            # Replies recorded together (two AIs answering one message): each is broadcast
            # with the history up to itself, as 0.3.0 stored each just before broadcasting it;
            # a reader must not see a reply that comes after its own. (A turn's own message is
            # broadcast with all its facts: 0.3.0 stored the events its hooks injected before
            # it broadcast it.) Made before the room's own context, which lets go of the
            # events the room's window keeps for them.
            for work in works:
                if isinstance(work, Deliver) and work.event.id != work.root:
                    leave_out = later.get(id(work), 0)
                    if leave_out:
                        earlier[id(work)] = state.context(leave_out=leave_out)
        context = state.context()
        # What the delivery worker sent back of the event it delivers (its AI replies): that
        # worker runs their work at once, ahead of the room's later turns, whose deliveries
        # (a later message's AI answering) held the reply back meanwhile. Not the outcome of
        # an append in doubt committed now: its worker is no longer waiting.
        for_worker = outcome is not None and outcome.for_worker is self._taken is not None
        caller = outcome.caller if outcome is not None else None
        jobs: list[DeliveryJob] = []
        for work in works:
            turn = turns.opened(work.root)
            # A turn this command opens (not one of the delivery outcomes it carries).
            if (
                caller is not None
                and turn.context is None
                and (turn.pending == 1 or work.root == outcome.root)  # type: ignore[union-attr]
            ):
                turn.context = caller
            if isinstance(work, RunLifecycle) and work.last:
                turn.last += 1
            turns.reached(work.root, position)
            if outcome is not None and work.root == outcome.root:
                outcome.turn = turn  # the caller waits on it, even if it ends first
                if outcome.budget_deadline is not None:
                    # Its chain of replies stops re-entering once the budget is spent.
                    turn.deadline = outcome.budget_deadline
            job_context = earlier.get(id(work), context) if earlier else context
            job = DeliveryJob(work, job_context, next(_commit_order), position, turn.context)
            if for_worker:
                jobs.append(job)
            else:
                await self._services.tell_delivery(self.key, job)
        if jobs:
            assert outcome is not None
            outcome.jobs = tuple(jobs)

    async def on_stop(self) -> None:
        await super().on_stop()  # an append in doubt: its deliveries before those outcomes
        if not self.in_doubt:
            self._services.settled(self.key)
            self._drop_claims()  # of an append in doubt that did not land
        # Passivation or shutdown: append what is still waiting rather than lose it.
        if self._unrecorded or self._services.outcomes.holds(self.key):
            try:
                await self.receive(FlushOutcomes())
            except Exception:
                logger.warning(
                    "room %s stopped with %d delivery outcomes it could not append",
                    self.key,
                    len(self._unrecorded),
                    exc_info=True,
                )

    async def _before_broadcast(self, room_id: str, event: RoomEvent, context: RoomContext) -> Any:
        return await self._services.hooks.run_sync_hooks(
            room_id, _BEFORE_BROADCAST, event, context, check=validated_event
        )


class DeliveryActor(Actor):
    """Runs the post-commit work of one room, in commit order."""

    def __init__(self, key: str, services: KitServices) -> None:
        super().__init__(key)
        self._delivery = RoomDelivery(key, services)

    async def receive(self, message: object) -> object:
        assert isinstance(message, DeliveryJob)
        await self._delivery.handle(message)
        return None

    def on_idle(self) -> None:
        # Quiet as long as its room before that room rests: it stops, and the room's next
        # commit activates another (a few µs: nothing to recover). An idle room then holds no
        # worker (its cell, this instance and its RoomDelivery: ~0.8 KB). The replies it kept
        # go: they serve messages queued behind them, and nothing is queued. Parked work
        # waits for the rest of its turn: stopping would run it now (see on_stop).
        if not self._delivery.parked:
            self.passivate()

    async def on_stop(self) -> None:
        await self._delivery.run_parked()


def _timed_out() -> Outcome:
    """The outcome of an inbound message whose decision ran out of its process_timeout,
    naming the event its channel had made, if it got that far."""
    decision = deciding()
    return Outcome(timed_out=True, dropped_event_id=decision.event_id if decision else None)


FLOOR_AHEAD = 5.0
"""Seconds a room's last record may be stamped ahead of this kit's clock and still be the
floor of its next facts' stamps (another process's clock a little ahead)."""

# The rooms whose far stamp was said (once each; forgotten past a bound).
_FAR_FLOORS_SAID: set[str] = set()
_FAR_FLOORS_KEPT = 1024


def _in_time(facts: list[Fact], floor: float) -> list[Fact]:
    """``facts`` (changed in place), each stamped no earlier than the facts before it and
    ``floor`` (the stream's last record's stamp).

    A room's records must be stamped in version order: ``until=<a time>`` (audit replay,
    timeline) keeps the records up to the first one stamped after it. Facts are stamped where
    they are decided, from different clocks: a message when its decision starts, the delivery
    outcomes its append carries ahead of it when they are taken (after the decision), a
    command at the time its caller gave (``cmd.now``, read before it waited in the mailbox),
    another process's records by its clock. So one stamped before its predecessor is stamped
    as that one (a few hundred microseconds later, for a carried outcome's message); the
    models keep their own times (a message's ``created_at``).
    """
    for index, fact in enumerate(facts):
        stamp = fact.timestamp
        if stamp < floor:
            facts[index] = fact.at(floor)
        else:
            floor = stamp
    return facts


def _recorded_after(facts: list[Fact]) -> dict[int, int]:
    """For each fact's work (by ``id``), how many timeline events the facts after it record."""
    recorded = sum(1 for fact in facts if isinstance(fact.domain, MessageRecorded))
    after: dict[int, int] = {}
    for fact in facts:
        if isinstance(fact.domain, MessageRecorded):
            recorded -= 1
        if fact.then is not None:
            after[id(fact.then)] = recorded
    return after


def _injected_first(work: Deliver | RunLifecycle | ReportErrors) -> int:
    return 0 if isinstance(work, Deliver) and work.targets is not None else 1
