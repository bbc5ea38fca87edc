"""The inbound pipeline (reference §5) as commands to the room actor.

In the caller's task: routing, the channel's ``handle_inbound`` and identity resolution, which
may wait on I/O and must not hold the room. In the room actor: idempotency, BEFORE_BROADCAST
hooks and the commit. After commit, in the room's delivery worker: broadcast, AI re-entry and
async hooks. ``process_inbound`` returns once all of that has settled (the 0.3.0 contract),
unless the kit was built with ``wait_for_delivery=False``.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar
from uuid import uuid4

import anyio

from eventlog import EventLogError
from roomkit.channels.base import Channel
from roomkit.core._bounded import TimedOut, bounded, called_apart
from roomkit.core._channel_ops import ChannelOpsMixin
from roomkit.core._commands import (
    EnsureParticipant,
    Outcome,
    ProcessInbound,
    RecordInjected,
    SendEvent,
)
from roomkit.core._helpers import HelpersMixin, check_str, utcnow
from roomkit.core._in_decision import DecisionWait, message_waits
from roomkit.core._room_decider import parsed_inbound
from roomkit.core._room_lifecycle import RoomLifecycleMixin
from roomkit.core._runtime import KitRuntime
from roomkit.core._system_events import hook_failure
from roomkit.core._taken_up import TakenUp
from roomkit.core._turns import Turn
from roomkit.core.hooks import (
    HookError,
    HookTimeoutError,
    IdentityHookRegistration,
    check_filters,
)
from roomkit.errors import (
    ChannelNotRegisteredError,
    InvalidRoomIdError,
    RoomKitError,
    RoomTimeoutError,
    StoreUnavailableError,
)
from roomkit.identity.base import IdentityResolver
from roomkit.models.context import RoomContext
from roomkit.models.delivery import DeliveryStatus, InboundMessage, InboundResult
from roomkit.models.enums import (
    ChannelDirection,
    ChannelType,
    EventType,
    HookTrigger,
    IdentificationStatus,
)
from roomkit.models.event import EventContent, RoomEvent
from roomkit.models.hook import InjectedEvent
from roomkit.models.identity import Identity, IdentityHookResult, IdentityResult
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.ownership.base import ReadModelBehind

__all__ = ["InboundMixin"]

logger = logging.getLogger("roomkit.framework")


class _StatusSource(NamedTuple):
    """What a delivery status's channel filters match (``HookRegistration.matches``)."""

    channel_id: str | None
    channel_type: str | None
    direction: ChannelDirection = ChannelDirection.OUTBOUND


# What process_webhook uses of a webhook meta (WebhookMeta, or an object shaped like it).
_WEBHOOK_META = ("is_inbound", "is_status", "to_inbound", "to_status")

F = TypeVar("F", bound=Callable[..., Any])

_AMBIGUOUS = (IdentificationStatus.AMBIGUOUS, IdentificationStatus.PENDING)
_UNKNOWN = (IdentificationStatus.UNKNOWN, IdentificationStatus.REJECTED)
_IDENTITY_TRIGGERS = frozenset(
    {HookTrigger.ON_IDENTITY_AMBIGUOUS, HookTrigger.ON_IDENTITY_UNKNOWN}
)


class InboundMixin(HelpersMixin):
    """``process_inbound``, ``send_event``, identity hooks, webhooks and delivery statuses."""

    _identity_resolver: IdentityResolver | None
    _identity_channel_types: set[ChannelType] | None
    _identity_timeout: float
    _identity_hooks: list[IdentityHookRegistration]
    _delivery_status_handlers: list[Callable[[DeliveryStatus], Any]]
    _inbound_router: Any
    _creating: dict[str, anyio.Lock]  # per channel: see _route_or_create
    _auto_created: dict[str, int]  # per channel, the rooms made for it: see _route_or_create

    # -- process_inbound ---------------------------------------------------------------------

    async def process_inbound(
        self, message: InboundMessage, *, room_id: str | None = None
    ) -> InboundResult:
        """Run an inbound message through the room: identity, hooks, commit, delivery.

        Args:
            message: what a channel received.
            room_id: the room to use; by default the inbound router picks one, creating a room
                (with the channel attached) when none fits.

        Returns:
            The recorded event, or ``blocked=True`` with a reason (a hook blocked it, a
            duplicate of a committed message, an identity rejection or challenge, a timeout).

        Raises:
            TypeError: ``message`` is not an ``InboundMessage``.
            ChannelNotRegisteredError: the message's channel is not registered.
            RoomNotFoundError: ``room_id`` names no room.
        """
        # Sent from a room's decision (its hook), the message holds that decision up until
        # this call ends: its own decision must not call back into that room (_in_decision).
        wait, waiting = message_waits()
        if wait is None:
            return await self._process_inbound(message, room_id, waiting)
        try:
            return await self._process_inbound(message, room_id, waiting)
        finally:
            wait.active = False

    async def _process_inbound(
        self,
        message: InboundMessage,
        room_id: str | None,
        waiting: tuple[DecisionWait, ...],
        *,
        here: bool = False,
    ) -> InboundResult:
        """``process_inbound``; ``here``: in this process even if another one owns the room
        (a message that process sent here); ``waiting``: see ``message_waits``."""
        if not isinstance(message, InboundMessage):
            raise TypeError(
                f"process_inbound takes an InboundMessage, not {type(message).__name__}"
            )
        channel = self._channels.get(message.channel_id)
        if channel is None:
            raise ChannelNotRegisteredError(f"Channel {message.channel_id} not registered")
        runtime = await self._started_runtime()
        with runtime.admitted(here) as taken:  # before a rebuild's wait: see _command
            await self._rebuilt(runtime)
            return await self._process_taken_up(
                message, channel, room_id, waiting, here, runtime, taken
            )

    async def _process_taken_up(
        self,
        message: InboundMessage,
        channel: Channel,
        room_id: str | None,
        waiting: tuple[DecisionWait, ...],
        here: bool,
        runtime: KitRuntime,
        taken: TakenUp,
    ) -> InboundResult:
        """``_process_inbound`` once the kit took the message up (``KitRuntime.admitted``)."""
        if room_id is not None:
            self._check_room_id(room_id)
        else:
            # The router reads the store, caught up with the log (the runtime started).
            await self._read_model_routes(runtime, message.channel_id)
            created = self._auto_created.get(message.channel_id, 0)
            seen = runtime.projection.checkpoint
            room_id = await self._route(message, channel)
            if room_id is None:
                room_id = await self._route_or_create(message, channel, created, seen)
            # The runtime may have ended while the router ran (its event loop did).
            runtime = await self._ensure_runtime()
        placement = runtime.placement
        if placement is not None and not here:  # another process may own the room
            try:
                forwarded = await placement.forward_inbound(message, room_id, waiting)
            except RoomTimeoutError:
                return await self._process_timed_out(
                    room_id, None, timeout=placement.forward_timeout
                )
            except ReadModelBehind as behind:  # recorded, not shown here (its store away)
                return await self._process_timed_out(
                    room_id, recorded=behind.result.event, timeout=behind.waited
                )
            if forwarded is not None:
                return forwarded
        budget = self._process_timeout
        command = ProcessInbound(message=message, channel=channel, budget=budget, waiting=waiting)
        if self._identity_resolver is not None and (
            self._identity_channel_types is None
            or channel.channel_type in self._identity_channel_types
        ):
            # Identity resolution may wait on I/O: it runs here, not in the room actor, so it
            # needs the context and the event before the room sees the message.
            context = await self._context(room_id)
            event = await parsed_inbound(channel, message, context)
            stop = await self._resolve_identity(
                room_id, message, event, context, channel.channel_type
            )
            if isinstance(stop, InboundResult):
                return stop
            command = ProcessInbound(event=stop, budget=budget, waiting=waiting)
            # The runtime may have ended while the resolver ran (its event loop did).
            runtime = await self._ensure_runtime()

        # process_timeout bounds the room's work on the message, from when the room takes it
        # up (0.3.0: from when its lock was taken); the room commits nothing once it is spent.
        # Waiting for the room is bounded by the ask's own timeout, after which the message is
        # dropped unprocessed. Either way a timeout means the message was not recorded, unless
        # the room committed it and its delivery or async hooks overran (as in 0.3.0).
        # process_timeout names the message's event, as in 0.3.0, when it is known: built for
        # identity resolution, committed, or built by the room's channel and then dropped
        # for the timeout (not one whose ask timed out before the room took it up).
        known = command.event.id if command.event is not None else None
        try:
            outcome = await runtime.ask_room(room_id, command)
        except RoomTimeoutError:
            return await self._process_timed_out(room_id, known)
        if outcome.timed_out:
            return await self._process_timed_out(room_id, known or outcome.dropped_event_id)
        taken.settling()  # its room's turn (which closing waits for) and the read model
        if not self._settled(runtime, outcome, room_id):
            # A timer only when the turn still runs once the room answered.
            deadline = outcome.budget_deadline
            try:
                if deadline is not None:
                    deadline = await self._past_the_queue(runtime, outcome, room_id, deadline)
                left = math.inf if deadline is None else deadline - time.perf_counter()
                await bounded(self._settle(runtime, outcome, room_id), left)
            except TimedOut:
                # Its replies stop re-entering the room, as 0.3.0's wait_for cut the chain.
                _stop_chain(self._awaited_turn(outcome, room_id))
                if outcome.event is None:
                    return await self._process_timed_out(room_id, known)
                # Recorded; only its delivery or async hooks overran, or the read model (its
                # store away): the result names it (0.3.0 gave no event), so that a caller
                # does not take it for lost and retry.
                return await self._process_timed_out(room_id, recorded=outcome.event)
            except BaseException:
                # Its caller is gone (cancelled; or the kit closed): nobody waits for the rest
                # of the chain, which 0.3.0 cancelled with its caller's task.
                _stop_chain(self._awaited_turn(outcome, room_id))
                raise
        return await self._inbound_result(room_id, outcome)

    async def _past_the_queue(
        self, runtime: KitRuntime, outcome: Outcome, room_id: str, deadline: float
    ) -> float:
        """The deadline of the message's ``process_timeout`` once its deliveries started.

        The room delivers its messages one turn after the other: the time this one's waited
        behind the earlier ones' is not counted, as 0.3.0 did not count the time a message
        waited for its room's lock (counted, three messages at once to a channel taking 0.6 s
        of a 1 s budget timed out two). It is bounded as the wait for the room is (the ask's
        timeout, four times ``process_timeout``), from the commit.

        Raises:
            TimedOut: the deliveries waited longer than that.
        """
        turn = self._awaited_turn(outcome, room_id)
        if turn is None:
            return deadline
        if turn.started_at is None and turn.pending > 0:
            await bounded(turn.wait_started(), runtime.ask_timeout - turn.queued)
        return deadline + turn.queued

    async def _read_model_routes(self, runtime: KitRuntime, channel_id: str) -> None:
        """Return once the read model holds what this process's commands committed (at
        once, but for a store outage: a command then raised StoreUnavailableError, recorded).

        Routed on a read model without them, a message found no room for its channel: it was
        given a new room, left for good beside the one the app had made (the same message
        was sent to the right one once the read model caught up).

        Raises:
            StoreUnavailableError: the read model did not get there within the ask timeout
                (the store is still away); nothing was recorded.
        """
        written = runtime.written
        if not await runtime.projection.holds(written, runtime.ask_timeout):
            raise StoreUnavailableError(
                f"a message of channel {channel_id} cannot be routed: the read model does "
                f"not hold what this process recorded (log position {written}) after "
                f"{runtime.ask_timeout:g} s; the store is unavailable. Nothing was recorded"
            )

    async def _route(self, message: InboundMessage, channel: Channel) -> str | None:
        # By keyword, as 0.3.0 called it: a router may take them keyword-only.
        room_id: str | None = await self._inbound_router.route(
            channel_id=message.channel_id,
            channel_type=channel.channel_type,
            participant_id=message.sender_id,
        )
        if room_id is not None:
            # Checked as a room_id given to process_inbound is: an id the kit refuses went
            # to the room's actor, which failed to start four times ("room ... is
            # unavailable", 0.75 s later), or raised a bare TypeError (an int).
            try:
                self._check_room_id(room_id)
            except InvalidRoomIdError as exc:
                router = type(self._inbound_router).__name__
                raise InvalidRoomIdError(f"the inbound router {router} answered: {exc}") from exc
        return room_id

    async def _route_or_create(
        self, message: InboundMessage, channel: Channel, created: int, seen: int
    ) -> str:
        """The room of a message the router found none for, created one message of the
        channel at a time. Concurrent first messages of a conversation each found none and
        each made a room of its own; now the first makes it, and a message that finds that
        rooms were made for its channel since it was routed (``created``: the count then) is
        routed again, to one of them. Otherwise the router is not asked twice, as in 0.3.0
        (a router may count or log its calls), but for the case of ``_first_room_made``
        (``seen``: the read model's checkpoint when the message was routed)."""
        channel_id = message.channel_id
        lock = self._creating.get(channel_id)
        if lock is None:
            lock = self._creating[channel_id] = anyio.Lock()
        try:
            async with lock:
                if self._auto_created.get(channel_id, 0) != created:
                    room_id = await self._route(message, channel)
                    if room_id is not None:
                        return room_id
                store = await self._read_model()
                known = None  # the channel's first room the router saw, if that is known
                if (await self._ensure_runtime()).projection.checkpoint == seen:
                    known = await store.find_room_id_by_channel(channel_id, status="active")
                try:
                    room_id = await self._room_made_for(channel)
                finally:
                    # Also if this caller is cut short once the room is made (cancelled while
                    # a room_created handler ran): a message waiting here must look again.
                    # One that failed before costs a message waiting here one more routing.
                    self._auto_created[channel_id] = self._auto_created.get(channel_id, 0) + 1
                return await self._first_room_made(message, channel, room_id, known)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._creating.pop(channel_id, None)

    async def _room_made_for(self, channel: Channel) -> str:
        """A new room with ``channel`` attached, its id.

        One command, one append: a crash cannot leave a room without its channel (a
        redelivered message would then route to a second room). But a subclass of the kit
        that has ``create_room`` or ``attach_channel`` of its own gets them called, as 0.3.0
        did (one that attaches more channels, or sets the room's metadata).
        """
        kit = type(self)
        if (
            kit.create_room is RoomLifecycleMixin.create_room  # type: ignore[attr-defined]
            and kit.attach_channel is ChannelOpsMixin.attach_channel  # type: ignore[attr-defined]
        ):
            room_id = uuid4().hex
            binding = self._new_binding(room_id, channel)  # type: ignore[attr-defined]
            now = utcnow()
            room = Room(id=room_id, created_at=now, updated_at=now)
            await self._create(room, (binding,))  # type: ignore[attr-defined]
            return room_id
        made: Room = await self.create_room()  # type: ignore[attr-defined]
        await self.attach_channel(made.id, channel.channel_id)  # type: ignore[attr-defined]
        return made.id

    async def _first_room_made(
        self, message: InboundMessage, channel: Channel, made: str, known: str | None
    ) -> str:
        """The room of a message this process just made room ``made`` for; ``known``: the
        channel's first active room when the router was asked, if known (not a new one).

        Processes sharing the log each take the lock above for themselves: their first
        messages of a channel each found no room and made one, splitting the conversation for
        good. Of such rooms, the one appended first is the one each process finds first once
        its read model holds the log up to its own (the later one sees the earlier one, at
        least): a message whose room was not that one is routed again, and goes where the
        router sends it then (the default router: to that room). Its room is left as made
        (active, the channel attached, empty)."""
        runtime = await self._ensure_runtime()
        try:
            end = await self._log.last_position()
        except EventLogError as exc:  # the room is made: the message goes on in it
            logger.warning("room %s: no look for a room made elsewhere: %s", made, exc)
            return made
        await runtime.projection.wait(end)
        store = await self._read_model()
        first = await store.find_room_id_by_channel(message.channel_id, status="active")
        if first is None or first in (made, known):
            return made
        room_id = await self._route(message, channel)
        if room_id is None or room_id == made:
            return made
        logger.info(
            "room %s was made for channel %s as room %s was, elsewhere: its message goes to %s",
            made,
            message.channel_id,
            first,
            room_id,
        )
        return room_id

    async def _process_timed_out(
        self,
        room_id: str,
        event_id: str | None = None,
        *,
        recorded: RoomEvent | None = None,
        timeout: float | None = None,
    ) -> InboundResult:
        """The result of a message whose ``process_timeout`` ran out; ``recorded``: its event,
        when the room had committed it (``event_id`` is then that event's); ``timeout``: the
        bound that ran out when it is not ``process_timeout`` (the room's owner's answer)."""
        if recorded is not None:
            event_id = recorded.id
        bound = self._process_timeout if timeout is None else timeout
        logger.warning("process_inbound timed out after %ss in room %s", bound, room_id)
        await self._emit_framework_event(
            "process_timeout",
            room_id=room_id,
            event_id=event_id,
            data={"timeout": bound},
        )
        return InboundResult(event=recorded, blocked=True, reason="process_timeout")

    async def _inbound_result(self, room_id: str, outcome: Outcome) -> InboundResult:
        if not outcome.announced:
            # No post-commit work of the turn reported them (see Announcement): do it here.
            for note in outcome.announce:
                await note.emit(self._emit_framework_event, room_id)
        if outcome.duplicate_of is not None:
            # "" when a store answered only that the key was seen (its check_idempotency):
            # then, as in 0.3.0, without the original event.
            duplicate_of = outcome.duplicate_of
            original = await self._store.get_event(duplicate_of) if duplicate_of else None
            return InboundResult(event=original, blocked=True, reason="duplicate")
        event = outcome.event
        assert event is not None
        if outcome.blocked:  # event_blocked was announced with the turn
            return InboundResult(event=event, blocked=True, reason=outcome.reason)
        if outcome.unbound:
            return InboundResult(event=event)  # 0.3.0 returned before event_processed
        # As 0.3.0: no channel_id (event_blocked has none either).
        await self._emit_framework_event("event_processed", room_id=room_id, event_id=event.id)
        return InboundResult(event=event)

    # -- identity ----------------------------------------------------------------------------

    def identity_hook(
        self,
        trigger: HookTrigger,
        channel_types: Collection[ChannelType] | None = None,
        channel_ids: Collection[str] | None = None,
        directions: Collection[ChannelDirection] | None = None,
    ) -> Callable[[F], F]:
        """Decorator: ``async fn(event, context, id_result) -> IdentityHookResult | None`` for
        ON_IDENTITY_AMBIGUOUS or ON_IDENTITY_UNKNOWN; hooks run in registration order and the
        first non-None result wins. Each is bounded by the kit's ``identity_timeout``, as the
        resolver is: one that raises, answers something else or runs out of time is reported
        (``hook_error``, ON_ERROR) and the next one is tried.

        Raises:
            ValueError: ``trigger`` is neither of those two (such a hook would never run).
            TypeError: a channel filter is a string (it would match by substring), or what is
                decorated is not callable.
        """
        check_filters("identity hook", channel_types, channel_ids, directions)
        trigger = HookTrigger(trigger)
        if trigger not in _IDENTITY_TRIGGERS:
            raise ValueError(
                "identity hooks run on ON_IDENTITY_AMBIGUOUS or ON_IDENTITY_UNKNOWN, "
                f"not {trigger}"
            )

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"an identity hook must be an async callable, got {fn!r}")
            self._identity_hooks.append(
                IdentityHookRegistration(trigger, fn, channel_types, channel_ids, directions)
            )
            return fn

        return register

    async def _resolve_identity(
        self,
        room_id: str,
        message: InboundMessage,
        event: RoomEvent,
        context: RoomContext,
        channel_type: ChannelType,
    ) -> RoomEvent | InboundResult:
        """Resolve the sender; return the (stamped) event, or the result that ends the turn."""
        resolver = self._identity_resolver
        assert resolver is not None
        result: IdentityResult
        try:
            result = await bounded(resolver.resolve(message, context), self._identity_timeout)
        except TimedOut:
            logger.warning(
                "Identity resolution timed out after %.1fs (room %s, channel %s)",
                self._identity_timeout,
                room_id,
                message.channel_id,
            )
            await self._emit_framework_event(
                "identity_timeout",
                room_id=room_id,
                channel_id=message.channel_id,
                data={"timeout": self._identity_timeout},
            )
            result = IdentityResult(status=IdentificationStatus.UNKNOWN)
        if not isinstance(result, IdentityResult):
            raise TypeError(
                f"{type(resolver).__name__}.resolve returned {type(result).__name__}, "
                "expected IdentityResult"
            )
        backfill: dict[str, Any] = {}
        if not result.address:
            backfill["address"] = message.sender_id
        if not result.channel_type:
            backfill["channel_type"] = str(channel_type)
        if backfill:
            result = result.model_copy(update=backfill)

        if result.status == IdentificationStatus.IDENTIFIED and result.identity is not None:
            return await self._identified(room_id, event, result.identity)
        if result.status in _AMBIGUOUS:
            asked_at = utcnow()  # a challenge made before: another message's (see _challenge)
            hook = await self._run_identity_hooks(
                HookTrigger.ON_IDENTITY_AMBIGUOUS, room_id, event, context, result
            )
            status = hook.status if hook is not None else None
            if status == IdentificationStatus.IDENTIFIED and hook and hook.identity is not None:
                return await self._identified(room_id, event, hook.identity)
            if status == IdentificationStatus.CHALLENGE_SENT:
                if hook is not None and hook.inject is not None:
                    await self._challenge(room_id, event, hook.inject, asked_at)
                return InboundResult(blocked=True, reason="identity_challenge_sent")
            if status == IdentificationStatus.REJECTED:
                reason = (hook.reason if hook else None) or "identity_rejected"
                return InboundResult(blocked=True, reason=reason)
            candidates = hook.candidates if hook and hook.candidates else result.candidates
            display_name = hook.display_name if hook else None
            return await self._pending(room_id, event, candidates, display_name)
        if result.status in _UNKNOWN:
            hook = await self._run_identity_hooks(
                HookTrigger.ON_IDENTITY_UNKNOWN, room_id, event, context, result
            )
            status = hook.status if hook is not None else None
            if status == IdentificationStatus.REJECTED:
                reason = (hook.reason if hook else None) or "unknown_sender"
                return InboundResult(blocked=True, reason=reason)
            if status == IdentificationStatus.IDENTIFIED and hook and hook.identity is not None:
                return await self._identified(room_id, event, hook.identity)
        return event

    async def _challenge(
        self, room_id: str, event: RoomEvent, inject: InjectedEvent, asked_at: datetime
    ) -> None:
        """Record and send the identity challenge ``inject`` (an InjectedEvent) for ``event``.

        A challenge made once and given for every ambiguous sender, recorded by another
        process (or before a restart), is in the read model only: looked up here, out of the
        room's decision, if made before the hooks ran (see _reused_ids)."""
        # The lookup waits for a rebuild of the read model itself, within its bound.
        runtime = await self._started_runtime()
        stored = await runtime.services.reused_ids.stored(
            [getattr(inject, "event", None)], asked_at, room_id
        )
        injected = RecordInjected([inject], event.id, event.idempotency_key, tuple(stored))
        await self._command(room_id, injected)

    async def _run_identity_hooks(
        self,
        trigger: HookTrigger,
        room_id: str,
        event: RoomEvent,
        context: RoomContext,
        result: IdentityResult,
    ) -> IdentityHookResult | None:
        outcome: IdentityHookResult | None = None
        # A failed identity hook is reported as a failed async hook is (hook_error, ON_ERROR):
        # one meant to reject unknown senders that crashed let them in without a word.
        failed: list[HookError] = []
        for registration in self._identity_hooks:
            if registration.trigger != trigger or not registration.matches(event):
                continue
            name = getattr(registration.fn, "__name__", "?")
            try:
                value = await self._identity_hook_called(
                    registration, name, event, context, result
                )
            except HookTimeoutError as error:
                # Logged as a timed-out sync hook is (0.3.0: a warning; an exception, an error).
                logger.warning("identity hook %r failed, skipped: %s", name, error.reported)
                failed.append(HookError(name, error))
                continue
            except Exception as error:
                logger.exception("identity hook %r failed", name)
                failed.append(HookError(name, error))
                continue
            if value is None:
                continue
            if not isinstance(value, IdentityHookResult):
                logger.warning(
                    "identity hook %r returned %s, expected IdentityHookResult or None; ignored",
                    name,
                    type(value).__name__,
                )
                failed.append(
                    HookError(
                        name,
                        TypeError(
                            f"returned {type(value).__name__}, expected IdentityHookResult or None"
                        ),
                    )
                )
                continue
            outcome = value
            break
        errors = await self._hook_engine.run_async_hooks(room_id, trigger, event, context)
        await self._report_async_hook_errors(room_id, [*failed, *errors], context)
        return outcome

    async def _identity_hook_called(
        self,
        registration: IdentityHookRegistration,
        name: str,
        event: RoomEvent,
        context: RoomContext,
        result: IdentityResult,
    ) -> object:
        """What the identity hook answered, within the kit's ``identity_timeout``.

        Unbounded, a hook that hung (a CRM call without a timeout of its own) held its
        message's ``process_inbound`` for good, out of reach of ``process_timeout`` (the
        room had not taken the message up yet), and its caller past ``close()``.

        Raises:
            HookTimeoutError: it did not answer in time (it is cancelled).
            Exception: what the hook raised.
        """
        value, own = called_apart(registration.fn, event, context, result)
        if not inspect.isawaitable(value):
            return value
        try:
            return await bounded(value, self._identity_timeout, own)
        except TimedOut:
            # TimedOut, not TimeoutError: one the hook's own I/O raised is its failure.
            raise HookTimeoutError(name, self._identity_timeout) from None

    async def _identified(self, room_id: str, event: RoomEvent, identity: Identity) -> RoomEvent:
        now = utcnow()
        participant = Participant(
            id=identity.id,
            room_id=room_id,
            channel_id=event.source.channel_id,
            display_name=identity.display_name,
            identification=IdentificationStatus.IDENTIFIED,
            identity_id=identity.id,
            joined_at=now,
        )
        upgrade: dict[str, object] = {
            "identification": IdentificationStatus.IDENTIFIED,
            "identity_id": identity.id,
        }
        if identity.display_name:
            # An identity without a name keeps the one the participant had (the app's, from
            # ensure_participant), as in 0.3.0: the upgrade set it to None.
            upgrade["display_name"] = identity.display_name
        await self._command(
            room_id,
            EnsureParticipant(participant, upgrade, "participant_joined_identified", now),
        )
        source = event.source.model_copy(update={"participant_id": identity.id})
        return event.model_copy(update={"source": source})

    async def _pending(
        self,
        room_id: str,
        event: RoomEvent,
        candidates: list[Identity],
        display_name: str | None,
    ) -> RoomEvent:
        now = utcnow()
        participant = Participant(
            id=event.source.participant_id or f"pending-{uuid4().hex[:8]}",
            room_id=room_id,
            channel_id=event.source.channel_id,
            display_name=display_name,
            identification=IdentificationStatus.PENDING,
            candidates=[c.id for c in candidates] or None,
            joined_at=now,
        )
        await self._command(
            room_id, EnsureParticipant(participant, None, "participant_joined_pending", now)
        )
        return event

    # -- send_event --------------------------------------------------------------------------

    async def send_event(
        self,
        room_id: str,
        channel_id: str,
        content: EventContent,
        event_type: EventType = EventType.MESSAGE,
        chain_depth: int = 0,
        participant_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        visibility: str = "all",
        *,
        idempotency_key: str | None = None,
    ) -> RoomEvent:
        """Record an event as sent by ``channel_id`` and deliver it to the room's other channels.

        Unlike 0.3.0 (quirk 6 fixed), replies it causes (an AI answering) re-enter the room, and
        tasks and observations are recorded. BEFORE_BROADCAST hooks do not run.

        ``idempotency_key`` (not in 0.3.0): an event the room recorded with that key already
        (by ``send_event`` or an inbound message) is returned as recorded, and nothing is
        recorded or delivered again: a caller told ``LogUnavailableError`` or
        ``RoomTimeoutError`` cannot know whether the event was recorded, and retries with the
        same key safely. Without a key, such a retry may record and deliver it twice.

        Raises:
            RoomNotFoundError: no such room.
            ChannelNotFoundError: the channel is not attached to the room.
        """
        check_str("channel_id", channel_id)
        if idempotency_key is not None:
            check_str("idempotency_key", idempotency_key)
        # The room builds the event from its own binding of the channel: no read of the
        # store (which may lag another process's attach) and one check, in the room.
        command = SendEvent(
            channel_id,
            content,
            event_type,
            chain_depth,
            participant_id,
            metadata or {},
            visibility,
            utcnow(),
            idempotency_key,
        )
        outcome = await self._command(room_id, command)
        if outcome.duplicate_of is not None:  # an earlier call's, whose caller may not know
            found = outcome.duplicate_of
            original = await self._store.get_event(found) if found else None
            if original is None:  # a store that says only that it saw the key
                raise RoomKitError(
                    f"room {room_id} recorded an event with idempotency key "
                    f"{idempotency_key!r} already, which its store cannot return"
                )
            return original
        sent = outcome.event
        assert sent is not None
        return sent

    # -- webhooks and delivery statuses ------------------------------------------------------

    def on_delivery_status(self, fn: F) -> F:
        """Decorator: call ``fn(DeliveryStatus)`` (sync or async) for every delivery status."""
        if not callable(fn):
            raise TypeError(f"a delivery status handler must be callable, got {fn!r}")
        self._delivery_status_handlers.append(fn)
        return fn

    async def process_delivery_status(
        self, status: DeliveryStatus, channel_id: str | None = None
    ) -> None:
        """Hand a provider's delivery status to every handler and to ON_DELIVERY_STATUS hooks
        (quirk 9 fixed: the hooks fire); handler errors are logged.

        Args:
            status: the status.
            channel_id: the channel it came through (``process_webhook`` gives its own), which
                the hooks' channel filters match: a hook filtered by channel runs only for a
                status of a channel it names (of a type it names, for a registered channel),
                so none runs for a status of no known channel. A status is about an outbound
                message: its direction is ``OUTBOUND``.

        Raises:
            TypeError: ``status`` is not a ``DeliveryStatus``, or ``channel_id`` not a str.
        """
        if not isinstance(status, DeliveryStatus):
            raise TypeError(
                f"process_delivery_status takes a DeliveryStatus, not {type(status).__name__}"
            )
        if channel_id is not None:
            check_str("channel_id", channel_id)
        for handler in self._delivery_status_handlers:
            try:
                # In a context of its own, as every other callback the kit runs.
                value, own = called_apart(handler, status)
                if inspect.isawaitable(value):
                    await bounded(value, None, own)
            except Exception:
                logger.exception("delivery status handler failed")
        channel = self._channels.get(channel_id) if channel_id is not None else None
        source = _StatusSource(channel_id, channel.channel_type if channel is not None else None)
        # Each hook was given every status, whatever channel its filters named.
        errors = await self._hook_engine.run_async_hooks(
            "", HookTrigger.ON_DELIVERY_STATUS, status, None, source=source
        )
        await self._report_async_hook_errors("", errors, None)

    async def _report_async_hook_errors(
        self, room_id: str, errors: Sequence[HookError], context: RoomContext | None
    ) -> None:
        """Report async hooks that failed outside a room's delivery worker (identity hooks,
        delivery statuses, which no room runs) as its failed hooks are: a ``hook_error``
        framework event, and the ON_ERROR hooks (whose own failures are a ``hook_error``, never
        an ON_ERROR again)."""
        emit = self._emit_framework_event
        for name, error in errors:
            reported, body, data = hook_failure(name, error)
            await emit("hook_error", room_id=room_id, data=reported)
            await self._hook_engine.run_on_error(
                room_id, ("hook_error", body, data), context, now=utcnow(), emit=emit
            )

    async def process_webhook(self, meta: Any, channel_id: str) -> InboundResult | None:
        """Route a parsed webhook: inbound messages to ``process_inbound``, statuses to
        ``process_delivery_status``; a meta that is neither is ignored.

        Raises:
            TypeError: ``meta`` is not a webhook meta (``extract_sms_meta``'s answer, or an
                object with its ``is_inbound`` / ``is_status`` / ``to_inbound`` /
                ``to_status``): a raw payload or a parsed ``InboundMessage`` was lost without a
                word before.
        """
        if not all(hasattr(meta, name) for name in _WEBHOOK_META):
            hint = (
                "; pass an InboundMessage to process_inbound"
                if isinstance(meta, InboundMessage)
                else ""
            )
            raise TypeError(
                "process_webhook takes a WebhookMeta (from extract_sms_meta), "
                f"not {type(meta).__name__}{hint}"
            )
        if meta.is_inbound:
            result: InboundResult = await self.process_inbound(meta.to_inbound(channel_id))
            return result
        if meta.is_status:
            await self.process_delivery_status(meta.to_status(), channel_id)
        else:
            # Neither: an inbound message needs a sender, a status the id of the message it
            # is about. Dropped without a word, a provider's change of payload went unseen.
            # (A payload the extractor says is of no kind it knows, "unknown", is routine.)
            say = logger.debug if meta.direction == "unknown" else logger.warning
            say(
                "process_webhook: %s payload for channel %r is neither an inbound message (a "
                "sender: %r) nor a delivery status (a message id: %r, a status: %r); ignored",
                meta.provider,
                channel_id,
                meta.sender,
                meta.message_id,
                meta.status or meta.event_type,
            )
        return None


def _stop_chain(turn: Turn | None) -> None:
    """Stop ``turn``'s chain of replies from re-entering the room (see ``Turn.overdue``): its
    caller no longer waits for it. A turn that already ended is left as it is."""
    if turn is not None:
        turn.cut = True
