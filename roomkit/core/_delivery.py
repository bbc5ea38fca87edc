"""The delivery worker of a room: the side effects of its committed events, in order.

The room actor hands it each committed event to broadcast and each lifecycle hook to run. It
calls the channels through the ``EventRouter`` (access, visibility, transcoding, breakers, rate
limits, retries), reports what came back — delivery outcomes, AI replies, tasks, observations —
to the room actor, which commits them, then runs the async hooks. The room actor is never held
while this happens (quirk 7 fixed: async hooks do not hold the room).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import Context
from typing import TYPE_CHECKING

import msgspec

from roomkit.core._caller_context import within
from roomkit.core._commands import RecordOutcome
from roomkit.core._facts import Announcement, Deliver, ReportErrors, RunLifecycle
from roomkit.core._post_commit import PostCommitJob
from roomkit.core._services import KitServices
from roomkit.core._system_events import hook_failure
from roomkit.errors import EventRefusedError, KitClosedError
from roomkit.models.context import RoomContext
from roomkit.models.delivery import DeliveryResult
from roomkit.models.enums import HookTrigger
from roomkit.models.event import RoomEvent

if TYPE_CHECKING:
    pass

__all__ = ["DeliveryJob", "RoomDelivery"]

logger = logging.getLogger("roomkit.delivery")

# Replies kept for messages queued behind them (see RoomDelivery._caught_up): more than a
# room's messages waiting on one AI's answers, in practice.
_REPLIES_KEPT = 16
# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_AFTER_BROADCAST = HookTrigger.AFTER_BROADCAST

Emit = Callable[..., Awaitable[None]]
"""How the worker emits a framework event (``KitServices.emit``, or ``_quiet``)."""


# A failure for the ON_ERROR hooks: its code, its text, its data.
_Failure = tuple[str, str, dict[str, object]]


class DeliveryJob(msgspec.Struct, frozen=True):  # a struct: made per message (see Fact)
    """One unit of post-commit work with the room's context as of its commit; ``order``:
    the order the room committed its work in (see ``_run_last``)."""

    work: Deliver | RunLifecycle | ReportErrors
    context: RoomContext
    order: int = 0
    position: int = 0  # the log position of its commit: the read model holds it first
    caller: Context | None = None  # its turn's caller's context (_caller_context)


class RoomDelivery:
    """Runs the post-commit work of one room, one job at a time."""

    def __init__(self, room_id: str, services: KitServices) -> None:
        self._room_id = room_id
        self._services = services
        # Each container is made when first needed (and the error reports' turn key when
        # errors come): a worker that never saw a failure, a parked job or a reply held
        # ~250 bytes of empty ones for as long as its room lived.
        # The job's failures for the ON_ERROR hooks, run once its turn is delivered, in a
        # turn of their own (``_reports``).
        self._errors: list[_Failure] | None = None
        # Failures of work done, with its context, for the ON_ERROR hooks once the work
        # queued here is done (see _run_reports).
        self._reports_due: deque[tuple[list[_Failure], RoomContext, Context | None]] | None = None
        # ``last`` work waiting for the rest of its turn, by turn, in arrival order.
        self._parked: dict[str, list[DeliveryJob]] | None = None
        # The replies this worker had recorded, as recorded, that a message queued behind
        # them may yet need (see _caught_up); those older than the message run are let go.
        self._replies: list[RoomEvent] | None = None
        self._dropping = False  # it let go of work as the kit closed (see _drop): said once
        # The work of what the room recorded of the job being run (see handle).
        self._now: deque[DeliveryJob] = deque()

    @property
    def parked(self) -> bool:
        """Whether ``last`` work waits for the rest of its turn here."""
        return bool(self._parked)

    @property
    def _reports(self) -> str:
        """The turn key of the error reports."""
        return f"{self._room_id}\x00error reports"

    async def handle(self, job: DeliveryJob) -> None:
        if self._services.abandoned():
            self._drop([job])
            return
        await self._handle(job)
        # The work of what the room recorded of that job's event (its AI replies, their
        # tasks' hooks, and theirs in turn): before the room's later turns, as 0.3.0
        # delivered a message's AI reply before it took the next message up. From this loop,
        # not from the job's own call: a long chain of AIs answering each other went as deep
        # in the stack as its length.
        now = self._now
        while now:
            await self._handle(now.popleft())
        if self._reports_due and not self._parked:
            # Not while a turn's last work waits for the rest of it (its tasks' hooks come
            # through the mailbox): a slow ON_ERROR hook would hold that turn, and its caller.
            await self._run_reports()

    async def _handle(self, job: DeliveryJob) -> None:
        root = job.work.root
        if isinstance(job.work, RunLifecycle) and job.work.last:
            # Waits until the rest of its turn (replies, their replies, all queued here:
            # every job of a room's turns passes through this worker) is delivered.
            if self._parked is None:
                self._parked = {}
            self._parked.setdefault(root, []).append(job)
        else:
            await self._run(job)
        parked = self._parked.get(root) if self._parked else None
        if parked is not None:
            turn = self._services.turns.get(root)
            # Once the rest of the turn is delivered and all of its last work is here: the
            # message's own AFTER_BROADCAST comes from this worker's queue (see handle), its
            # tasks' ON_TASK_CREATED from the room's mailbox, and neither may start alone.
            if turn is None or turn.pending <= turn.last <= len(parked):
                await self._run_last(self._parked.pop(root))  # type: ignore[union-attr]

    async def run_parked(self) -> None:
        """Run the ``last`` work still waiting (the worker stops: it must not be lost)."""
        while self._parked or self._now:
            if self._now:
                await self.handle(self._now.popleft())  # dropped, if the kit gave up
                continue
            assert self._parked is not None
            _, jobs = self._parked.popitem()
            if self._services.abandoned():
                self._drop(jobs)
            else:
                await self._run_last(jobs)
        if self._reports_due:
            await self._run_reports()

    def _drop(self, jobs: list[DeliveryJob]) -> None:
        """Let go of work the kit's closing no longer waits for (its drain was given up:
        its bound, its caller's deadline). Run, it went on for the 10 s the actors get to
        stop, calling channels and AI providers whose replies could no longer be recorded."""
        turns = self._services.turns
        for job in jobs:
            turns.delivered(job.work.root, dropped=True)
        if not self._dropping:
            self._dropping = True
            logger.warning(
                "room %s: the kit closed without waiting for the rest of its deliveries and "
                "async hooks: they are dropped (their messages are recorded)",
                self._room_id,
            )

    async def _run_last(self, jobs: list[DeliveryJob]) -> None:
        turns = self._services.turns
        # In the order the room committed them (its hooks' tasks before those of its
        # broadcast), the message's own AFTER_BROADCAST hooks last (0.3.0's order), however
        # they came here: through the room's mailbox, or this worker's queue (see handle).
        jobs.sort(key=_last_work_order)
        for job in jobs:
            turn = turns.get(job.work.root)
            if turn is not None:
                turn.last -= 1
            await self._run(job)

    async def _run(self, job: DeliveryJob) -> None:
        # In its turn's caller's context, as 0.3.0 ran it in the caller's task.
        await within(self._run_here(job), job.caller)

    async def _run_here(self, job: DeliveryJob) -> None:
        work = job.work
        turns = self._services.turns
        turn = turns.get(work.root)
        if turn is not None and turn.started_at is None:
            turn.start()  # the time it waited for the room's earlier turns ends here
        projection = self._services.projection
        if projection is not None and projection.checkpoint < job.position:
            await self._services.read_model_at(job.position)
        with PostCommitJob(self._room_id, self._services.kit, job.position):
            try:
                for note in work.announce:
                    await note.emit(self._services.emit, self._room_id)
                if isinstance(work, Deliver):
                    context = job.context
                    if work.event.id == work.root and self._replies:
                        context = self._caught_up(work.event, context)
                    await self._deliver(work, context)
                elif isinstance(work, RunLifecycle):
                    await self._lifecycle(work, job.context)
                failures = work.failures if isinstance(work, ReportErrors) else ()
                if work.announce:
                    failures = (*failures, *failed_sync_hooks(work.announce))
                for name, error in failures:
                    self._note_error("hook_error", f"hook {name} failed: {error}", {"hook": name})
            except KitClosedError as exc:
                # The kit closed without waiting for this work (see _drop): not a failure.
                logger.warning("room %s: post-commit work cut short: %s", self._room_id, exc)
            except Exception:
                logger.exception("room %s: post-commit work failed", self._room_id)
            finally:
                if self._errors:
                    # Closing the kit waits for the reports (it waits for every turn); the
                    # caller of this one does not: they run once the work queued here is
                    # done (see handle), the rest of this turn included. Run at once, a
                    # slow ON_ERROR hook held the turn's other replies, and its caller.
                    turns.opened(self._reports)
                    if self._reports_due is None:
                        self._reports_due = deque()
                    self._reports_due.append((self._errors, job.context, job.caller))
                    self._errors = None
                turns.delivered(work.root)

    async def _run_reports(self) -> None:
        """Run the ON_ERROR hooks of the failures noted by the work done (``_reports_due``)."""
        due = self._reports_due
        while due:
            errors, context, caller = due.popleft()
            try:
                # In the context of the caller of the work that failed.
                await within(self._report_here(errors, context), caller)
            finally:
                self._services.turns.delivered(self._reports)

    async def _report_here(self, errors: list[_Failure], context: RoomContext) -> None:
        # Post-commit work, as the work that failed: its commands go on while the kit closes.
        with PostCommitJob(self._room_id, self._services.kit):
            await self._report_errors(errors, context)

    def _caught_up(self, event: RoomEvent, context: RoomContext) -> RoomContext:
        """``context`` (the room as of ``event``'s commit) with the replies this worker had
        recorded since, before ``event``.

        0.3.0 held the room until a message's AI replies were in: a message that came while
        an AI answered the one before was recorded after that reply, and its AI saw it. Here
        it is recorded at once, the reply after it; given the context of its commit, its AI
        did not see its own earlier reply. The replies recorded after it answer earlier
        messages (its own are not made yet); the messages that came after it are not in the
        context of its commit, as they were not in 0.3.0's.
        """
        replies = [r for r in self._replies or () if r.index > event.index]
        self._replies = replies or None
        if not replies:
            return context
        recent = list(context.recent_events)
        current = [e for e in recent if e.id == event.id]
        earlier = [e for e in recent if e.id != event.id]
        return context.model_copy(update={"recent_events": [*earlier, *replies, *current]})

    def _note_replies(self, recorded: object) -> None:
        """Keep the replies a RecordOutcome recorded (its outcome's value), for _caught_up."""
        if isinstance(recorded, tuple) and recorded:
            if self._replies is None:
                self._replies = []
            self._replies.extend(recorded)
            del self._replies[:-_REPLIES_KEPT]

    async def _report_errors(self, errors: list[_Failure], context: RoomContext) -> None:
        """Run the ON_ERROR hooks (async lifecycle hooks) for a job's failures, once its
        turn is delivered: a caller waiting for the turn (process_timeout) does not wait for
        error reports. Quirk 9 fixed: 0.3.0 never fired them. A failed ON_ERROR hook is a
        ``hook_error`` framework event as any failed hook is, but never an ON_ERROR again (a
        failing one would report itself for ever)."""
        services = self._services
        for failure in errors:
            try:
                await services.hooks.run_on_error(
                    self._room_id,
                    failure,
                    context,
                    now=services.now(),
                    emit=services.emit,
                    ceiling=self._hook_ceiling(),
                )
            except Exception:
                logger.exception("room %s: ON_ERROR hooks failed", self._room_id)

    async def _lifecycle(self, work: RunLifecycle, context: RoomContext) -> None:
        errors = await self._services.hooks.run_async_hooks(
            self._room_id, work.trigger, work.event, context, ceiling=self._hook_ceiling()
        )
        if errors:
            # A message's AFTER_BROADCAST hooks run here when its turn has more (an AI's
            # reply): they ran for the message, which is stored (see _report_hook_errors).
            stored = work.trigger is _AFTER_BROADCAST
            await self._report_hook_errors(errors, context, work.event.id if stored else None)

    def _hook_ceiling(self) -> float | None:
        """The longest an async hook run here may take: the kit's ``process_timeout``, as a
        channel's ``on_event`` or ``deliver`` (0.3.0 cut them all at it). A hook with a
        longer timeout, or none, held every later delivery of its room for as long, or for
        good."""
        return self._services.router().call_timeout

    async def _deliver(self, work: Deliver, context: RoomContext) -> None:
        services = self._services
        event = work.event
        router = services.router()
        results: list[DeliveryResult] = []
        if work.targets is not None:
            # Injected events: each target's on_event, and a transport's deliver (quirk 5).
            # Each target once: a target named twice was sent the event twice.
            failed: dict[str, str] = {}
            for target_id in dict.fromkeys(work.targets):
                binding = context.get_binding(target_id)
                if binding is None:
                    continue
                result, error = await router.deliver_injected(event, binding, context)
                if result is not None:
                    results.append(result)
                    if not result.success:
                        failed[target_id] = result.error or "delivery_failed"
                elif error is not None:
                    # A target that sends nothing out (an AI channel) failed: reported as on a
                    # broadcast. Its transcoding refused, or its on_event raising, was only
                    # logged (or not at all), and the app never learned the AI missed it.
                    failed[target_id] = error
            if failed:
                logger.warning(
                    "room %s: injected event %s failed on %s",
                    self._room_id,
                    event.id,
                    sorted(failed),
                )
            await self._report_deliveries(
                event, [r.channel_id for r in results if r.success], failed, _quiet
            )
            if results:
                services.outcomes.add(self._room_id, RecordOutcome(event.id, work.root, results))
            return

        source_binding = context.get_binding(event.source.channel_id)
        if source_binding is None:
            return
        # By the kit's clock: a reply made before the channels were called was made for
        # another message (a canned reply), and may be recorded already (see _reused_ids).
        # Not the event's created_at, which its channel may set to a provider's time.
        asked_at = services.now()
        broadcast = await router.broadcast(event, source_binding, context)
        results = list(broadcast.delivery_results.values())
        notify = services.emit if work.report else _quiet
        failed = broadcast.errors
        if failed:
            logger.warning(
                "room %s: event %s failed on %s", self._room_id, event.id, sorted(failed)
            )
            await notify(
                "broadcast_partial_failure",
                room_id=self._room_id,
                event_id=event.id,
                data={
                    # 0.3.0's count: the targets that delivered and those that failed (an
                    # intelligence channel's on_event included; one that did neither is not
                    # counted).
                    "failed": len(failed),
                    "total": len(broadcast.delivery_outputs) + len(failed),
                    "errors": dict(failed),
                },
            )
        await self._report_deliveries(
            event, list(broadcast.delivery_outputs), failed, notify, broadcast.delivery_results
        )
        # Those the chain limit blocked (not those a cut chain blocks below), said once the
        # room has recorded them: under the id each is recorded under (one event object
        # blocked twice is recorded apart; both were said under the first copy's id).
        over_depth = list(broadcast.blocked_events)
        if broadcast.reentry_events:
            turn = services.turns.get(work.root)
            if turn is not None and turn.overdue():
                # Past its message's process_timeout (or its caller gone), a chain stops
                # re-entering, as 0.3.0's wait_for cut it: recorded blocked, not broadcast.
                # Checked here, in the worker, so the room actor stays the only writer and
                # records what it is told (replayed from the log, the same blocked events).
                router.cut_chain(broadcast)
        outcome = RecordOutcome(
            event.id,
            work.root,
            results=results,
            replies=list(broadcast.reentry_events),
            responders=dict(broadcast.responders),
            blocked=list(broadcast.blocked_events),
            tasks=list(broadcast.tasks),
            observations=list(broadcast.observations),
            event=event if broadcast.tasks else None,
            stored=(
                await services.reused_ids.stored(
                    (*broadcast.reentry_events, *broadcast.blocked_events),
                    asked_at,
                    self._room_id,
                )
                if broadcast.reentry_events or broadcast.blocked_events
                else frozenset()
            ),
            worker_runs_them=True,
        )
        recorded_ids: tuple[str, ...] | None = None
        try:
            if outcome.continues_turn:
                # The turn goes on with what the room commits now: wait for it.
                recorded_ids = await self._record(outcome)
            elif results:
                # Audit only: rides on a later append.
                services.outcomes.add(self._room_id, outcome)
        finally:
            # Said even if the room could not record them, as they were before. By position:
            # the blocked replies of the outcome begin with these (a cut chain's come after).
            for n, blocked in enumerate(over_depth):
                await notify(
                    "chain_depth_exceeded",
                    room_id=self._room_id,
                    channel_id=blocked.source.channel_id,
                    event_id=recorded_ids[n] if recorded_ids is not None else blocked.id,
                    data={
                        "chain_depth": blocked.chain_depth,
                        "max_chain_depth": router.max_chain_depth,
                    },
                )

        turn = services.turns.get(work.root)
        if event.id == work.root and turn is not None and turn.pending > 1:
            # The AFTER_BROADCAST hooks of the event a turn is about (an inbound message, or
            # one send_event sent) run last in it, after its replies and ON_TASK_CREATED
            # (0.3.0's order for inbound; send_event's are handled alike, quirk 6); at once
            # when nothing else is left.
            after = RunLifecycle(HookTrigger.AFTER_BROADCAST, event, work.root, last=True)
            services.turns.opened(work.root).last += 1
            # Run by this worker after the turn's replies (see handle), not queued behind the
            # room's later turns.
            self._now.append(DeliveryJob(after, context, caller=turn.context))
            return
        errors = await services.hooks.run_async_hooks(
            self._room_id,
            _AFTER_BROADCAST,
            event,
            context,
            ceiling=router.call_timeout,  # _hook_ceiling(), from the router already at hand
        )
        if errors:
            await self._report_hook_errors(errors, context, event.id)

    async def _record(self, outcome: RecordOutcome) -> tuple[str, ...] | None:
        """Have the room record ``outcome``; the id each of its blocked replies is recorded
        under (see ``Outcome.blocked_ids``), or None if each kept its own or none was."""
        ask_room = self._services.ask_room
        try:
            reply = await ask_room(self._room_id, outcome, internal=True)
        except EventRefusedError as exc:
            refused = exc
        else:
            self._note_replies(reply.value)
            self._now.extend(reply.jobs)
            self._left_out(outcome, reply.left_out)
            recorded: tuple[str, ...] | None = reply.blocked_ids
            return recorded
        # One append holds the whole outcome, and a log with a size limit (JetStream's max
        # payload) refuses it all for one reply too large: record its parts one by one, so
        # that only what the log refuses is lost.
        parts = _parts(outcome)
        if len(parts) == 1:
            self._not_recorded(outcome, refused)
            return None
        recorded_ids: tuple[str, ...] | None = None
        for part in parts:
            try:
                reply = await ask_room(self._room_id, part, internal=True)
                self._note_replies(reply.value)
                self._now.extend(reply.jobs)
                self._left_out(part, reply.left_out)
                if part.blocked:  # the first part holds them all (see _parts)
                    recorded_ids = reply.blocked_ids
            except EventRefusedError as exc:
                self._not_recorded(part, exc)
        return recorded_ids

    def _not_recorded(self, part: RecordOutcome, refused: EventRefusedError) -> None:
        """Say that the log refused ``part`` of an outcome (an AI's reply over JetStream's
        payload limit, text JSON cannot hold): logged, and an ``outcome_not_recorded`` for the
        ON_ERROR hooks (it was only logged: the room said nothing, and the reply went
        nowhere)."""
        what = f"reply {part.replies[0].id}" if part.replies else "outcome"
        text = f"{what} of {part.event_id} not recorded: {refused}"
        logger.warning("room %s: %s", self._room_id, text)
        data: dict[str, object] = {"event_id": part.event_id, "error": str(refused)}
        if part.replies:
            data["reply_id"] = part.replies[0].id
            data["channel_id"] = part.replies[0].source.channel_id
        self._note_error("outcome_not_recorded", text, data)

    def _left_out(self, part: RecordOutcome, left_out: tuple[tuple[str, str, str], ...]) -> None:
        """Say what of ``part`` the room left out, not validating (a reply, a task, an
        observation, a blocked reply a channel made; the room logged it): an
        ``outcome_not_recorded`` for the ON_ERROR hooks, as for a reply the log refuses."""
        for what, name, why in left_out:
            text = f"{what} {name} of {part.event_id} not recorded: {why}"
            data: dict[str, object] = {"event_id": part.event_id, "error": why, "what": what}
            data[f"{what.split()[-1]}_id"] = name  # reply_id, task_id, observation_id
            for event in (*part.replies, *part.blocked):
                if event.id == name:  # the channel that answered, as for a refused reply
                    data["channel_id"] = event.source.channel_id
            self._note_error("outcome_not_recorded", text, data)

    async def _report_deliveries(
        self,
        event: RoomEvent,
        delivered: Sequence[str],
        errors: Mapping[str, str],
        notify: Emit,
        results: Mapping[str, DeliveryResult] | None = None,
    ) -> None:
        """Framework events through ``notify`` as 0.3.0 emitted them (``delivery_succeeded``
        for each channel that delivered, then ``delivery_failed`` for each failed target, an
        intelligence channel's on_event included), then ON_ERROR for each failure.

        ``delivery_succeeded`` says the provider's id of the message it sent
        (``data["provider_message_id"]``), when the provider gave one: the id its delivery
        statuses name (0.3.0 said none, and a status could not be matched to its event).
        """
        for channel_id in delivered:
            result = results.get(channel_id) if results is not None else None
            sent = result.provider_result if result is not None else None
            sent_id = sent.provider_message_id if sent is not None else None
            await notify(
                "delivery_succeeded",
                room_id=self._room_id,
                channel_id=channel_id,
                event_id=event.id,
                data={"provider_message_id": sent_id} if sent_id is not None else None,
            )
        if not errors:
            return
        for channel_id, error in errors.items():
            await notify(
                "delivery_failed",
                room_id=self._room_id,
                channel_id=channel_id,
                event_id=event.id,
                data={"error": error},
            )
        for channel_id, error in errors.items():
            self._note_error(
                "delivery_failed",
                f"delivery of {event.id} to {channel_id} failed: {error}",
                {"channel_id": channel_id, "event_id": event.id, "error": error},
            )

    async def _report_hook_errors(
        self,
        errors: Sequence[tuple[str, BaseException]],
        context: RoomContext,
        event_id: str | None = None,
    ) -> None:
        """Report failed async hooks; ``event_id``: the stored event they ran for (an
        AFTER_BROADCAST hook's message, named as a failed sync hook's is: without it, a
        handler could not tell which message the hook failed on), None for a lifecycle
        hook's synthetic event, which no store holds."""
        for name, error in errors:
            reported, body, data = hook_failure(name, error)
            await self._services.emit(
                "hook_error", room_id=self._room_id, event_id=event_id, data=reported
            )
            self._note_error("hook_error", body, data)

    def _note_error(self, code: str, body: str, data: dict[str, object]) -> None:
        """A failure for the ON_ERROR hooks, run by ``_report_errors``."""
        if self._errors is None:
            self._errors = []
        self._errors.append((code, body, data))


def failed_sync_hooks(notes: Sequence[Announcement]) -> list[tuple[str, str]]:
    """The (hook name, error) of the failed BEFORE_BROADCAST hooks a turn announces."""
    return [
        (str(note.data["hook"]), str(note.data["error"]))
        for note in notes
        if note.event_type == "hook_error" and note.data is not None
    ]


def _parts(outcome: RecordOutcome) -> list[RecordOutcome]:
    """``outcome`` as commands of their own: its delivery results and blocked replies, each
    reply alone, then its tasks and observations (the order of the single append, so the
    timeline's indices come out the same)."""
    first = msgspec.structs.replace(outcome, replies=[], tasks=[], observations=[], event=None)
    parts = [first] if first.results or first.blocked else []
    parts.extend(
        RecordOutcome(
            outcome.event_id,
            outcome.root,
            replies=[reply],
            responders=outcome.responders,
            stored=outcome.stored,
            worker_runs_them=outcome.worker_runs_them,
        )
        for reply in outcome.replies
    )
    if outcome.tasks or outcome.observations:
        parts.append(
            RecordOutcome(
                outcome.event_id,
                outcome.root,
                tasks=outcome.tasks,
                observations=outcome.observations,
                event=outcome.event,
                worker_runs_them=outcome.worker_runs_them,
            )
        )
    return parts


def _last_work_order(job: DeliveryJob) -> tuple[bool, int]:
    work = job.work
    own_after_broadcast = (
        isinstance(work, RunLifecycle)
        and work.trigger == HookTrigger.AFTER_BROADCAST
        and work.event.id == work.root
    )
    return own_after_broadcast, job.order


async def _quiet(*_: object, **__: object) -> None:
    """Emits nothing: the framework events of deliveries are reported for an inbound message's
    own broadcast only (``Deliver.report``), as in 0.3.0."""
