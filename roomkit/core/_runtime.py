"""The running part of a kit: the actor system (rooms and their delivery workers) and the
store projection, in one task group.

``enter()`` starts it in the caller's structured context (``async with RoomKit()``). 0.3.0 code
never enters the kit, so ``ensure_started()`` starts the same thing on first use in a host task
of the kit's own (an asyncio task or a trio system task), stopped by ``stop()`` (``kit.close()``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from actors import (
    ActorCrash,
    ActorDeadError,
    ActorSystem,
    AfterCommitError,
    AskTimeout,
    ConcurrencyConflict,
    check_settings,
)
from actors._ask import Ask
from eventlog import EventLogError, InvalidAppend, LogUnavailable
from roomkit._host import spawn_host
from roomkit.core._caller_context import Carried, captured
from roomkit.core._cancel import cut_context_cycle
from roomkit.core._commands import Outcome
from roomkit.core._helpers import utcnow
from roomkit.core._in_decision import (
    DecisionWait,
    InDecision,
    deciding,
    deliveries_held_up,
    held_up,
    waits_for,
)
from roomkit.core._outcome_flusher import FLUSH, OutcomeFlusher
from roomkit.core._post_commit import PostCommitJob, in_post_commit_work
from roomkit.core._reused_ids import ReusedIds, lookup_bound
from roomkit.core._room_actor import DeliveryActor, RoomActor
from roomkit.core._room_ids import check_room_id
from roomkit.core._services import KitServices
from roomkit.core._store_projection import StoreProjection
from roomkit.core._taken_up import TakenUp, taken_up_by
from roomkit.core._turns import TurnTracker
from roomkit.errors import (
    EventRefusedError,
    KitClosedError,
    LogUnavailableError,
    RoomConflictError,
    RoomKitError,
    RoomTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

    from roomkit.core.framework import RoomKit
    from roomkit.models.delivery import InboundMessage, InboundResult
    from roomkit.ownership.base import Placement

__all__ = ["KitRuntime", "RuntimeSettings"]

logger = logging.getLogger("roomkit.runtime")

_DELIVERY_MAILBOX = 1_000_000
# The longest a closing kit waits for its read model to catch up with what its rooms recorded
# as they stopped (see KitRuntime._last_catch_up).
_LAST_CATCH_UP = 2.0
# The kit's own asks (see ask_room) stay finite, as every ask does.
_INTERNAL_ASK_TIMEOUT = 24 * 3600.0
# Seconds between two looks, as the kit closes, at commands whose caller gave up (nothing
# wakes the closing task when one of them is answered).
_GIVEN_UP_LOOK = 0.01
_GIVEN_UP_KEPT = 64  # asks given up held before they are looked through (see ask_room)
ROOM = "room"
DELIVERY = "room-delivery"
# What a decision runs, in the refusals of ask_room: a message sent from there is processed
# inside it, up to its commit and delivery.
_DECISION_CODE = (
    "its channel's handle_inbound, a BEFORE_BROADCAST hook, and what they call: a message "
    "they send another room runs that room's handle_inbound, identity resolution, hooks, "
    "deliveries and event handlers inside it"
)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    mailbox_size: int = 256
    idle_timeout: float | None = 300.0
    task_linger: float | None = 1.0
    # Seconds of quiet before a room rests (RoomState.rest, via the actor's on_idle).
    rest_after: float = 10.0
    snapshot_every: int | None = 1000
    ask_timeout: float = 30.0
    # How long delivery outcomes may wait for a room's next append (see _outcome_flusher.py).
    outcome_delay: float = 1.0

    def __post_init__(self) -> None:
        # Checked when the kit is made, not when its first call starts the actor system.
        if not self.rest_after >= 0:
            raise ValueError(f"rest_after must be >= 0, or None, got {self.rest_after!r}")
        check_settings(ask_timeout=self.ask_timeout, **self.actor_system())
        if not self.outcome_delay >= 0:
            raise ValueError(f"outcome_delay must be >= 0, got {self.outcome_delay!r}")

    def actor_system(self) -> dict[str, Any]:
        """The settings the kit's ``ActorSystem`` is made with (its asks set their own
        timeouts)."""
        return {
            "mailbox_size": self.mailbox_size,
            "idle_timeout": self.idle_timeout,
            "task_linger": self.task_linger,
            "snapshot_every": self.snapshot_every,
            "on_idle_after": self.rest_after,
        }


class KitRuntime:
    """Owns the actor system and the store projection of one kit."""

    def __init__(
        self, kit: RoomKit, settings: RuntimeSettings, predecessor: KitRuntime | None = None
    ) -> None:
        self._kit = kit
        self._settings = settings
        self.turns = TurnTracker()
        self.flusher = OutcomeFlusher(
            self._tell_room_nowait, settings.outcome_delay, runs=self._room_runs
        )
        if predecessor is None:
            self.projection = StoreProjection(kit._log, kit._store)
        else:
            # The store already holds what the predecessor applied: go on from there (applying
            # again would count events twice), and record the outcomes it still held.
            self.projection = predecessor.projection
            self.projection.forget_waiters()
            self.flusher.adopt(predecessor.flusher)
        self._system: ActorSystem | None = None
        # The process's part in the rooms' ownership (RoomKit(ownership=...)), once started.
        self.placement: Placement | None = None
        self._host_stop: anyio.Event | None = None
        # Cancelled when the caller of close() gives up waiting for the drain: the host then
        # stops the actors without waiting for their deliveries (each is still given the
        # actor system's shutdown_timeout before it is cancelled).
        self._drain_scope: anyio.CancelScope | None = None
        self._host_done: anyio.Event | None = None
        self._starting: anyio.Event | None = None
        self._start_error: BaseException | None = None
        self._closed = False
        self._ended = False
        # Closing: the rooms finish the commands callers are waiting for (counted here), then
        # their deliveries; a new command from outside the kit's own work is refused.
        self._closing = False
        self._asking = 0
        # Asks whose caller gave up once the room took the command up: the room goes on with
        # it, and they stay counted in _asking until answered (see commands_done).
        self._given_up: list[Ask] = []
        self._given_up_kept = _GIVEN_UP_KEPT  # looked through once it holds as many
        self._asks_done: anyio.Event | None = None
        # Rooms whose command failed on an outage of the log: their append may have landed
        # unconfirmed (see EventSourcedActor), and closing settles it while deliveries run.
        self._in_doubt: set[str] = set()
        # The log position of the last record this process's commands committed: the read
        # model must hold it before a message is routed (see InboundMixin._read_model_routes).
        self.written = 0
        # The waits of post-commit work for the read model (see _read_model_for_work).
        self._work_waits: set[anyio.CancelScope] = set()
        self.projection.went_away = self._end_work_waits
        self._abandoned = False
        self._host_loop: asyncio.AbstractEventLoop | None = None  # on asyncio
        self.services = KitServices(
            hooks=kit._hook_engine,
            router=kit._get_router,
            emit=kit._emit_framework_event,
            turns=self.turns,
            ask_room=self.ask_room,
            tell_delivery=self._tell_delivery,
            now=utcnow,
            outcomes=self.flusher,
            capabilities=kit._capabilities,
            older_duplicate=self._older_duplicate,
            reused_ids=ReusedIds(self._event_stored, lookup_bound(kit._process_timeout)),
            kit=kit,
            abandoned=self._is_abandoned,
            settled=self._in_doubt.discard,
            known_version=self.projection.version_of,
            read_model_at=self._read_model_for_work,
            projection=self.projection,
        )

    # -- start and stop ----------------------------------------------------------------------

    @property
    def ask_timeout(self) -> float:
        """How long a command may wait for its room: also how long an inbound message's
        deliveries may wait for the room's earlier ones (see InboundMixin._past_the_queue)."""
        return self._settings.ask_timeout

    @property
    def closed(self) -> bool:
        """Whether the kit was closed (for good)."""
        return self._closed

    def check_open(self) -> None:
        """Raise ``KitClosedError`` if the kit was closed."""
        if self._closed:
            raise KitClosedError("the kit is closed")

    @property
    def ended(self) -> bool:
        """Whether the runtime stopped without being closed: the event loop that ran it ended
        (``asyncio.run`` returned, a test's loop closed) or it failed. A kit then goes on in a
        ``successor`` on its next use, as a 0.3.0 kit, which held nothing bound to a loop, did.
        """
        # A loop closed without cancelling its tasks never ran the host's ``finally``.
        loop_gone = self._host_loop is not None and self._host_loop.is_closed()
        return (self._ended or loop_gone) and not self._closed

    def successor(self) -> KitRuntime:
        """A runtime to take over from this ended one, in the event loop now running."""
        return KitRuntime(self._kit, self._settings, predecessor=self)

    async def enter(self, task_group: TaskGroup) -> None:
        """Start in a task of ``task_group``, which the kit's ``async with`` enters and leaves.

        The runtime's own task groups are entered and left in that task, never in the caller's:
        ``close()`` may then come from any task and any cancel scope (a bounded close inside
        the ``async with``, a shutdown handler's task), which left them out of order before.

        Raises:
            as ``ensure_started``.
        """
        await self._launch(lambda: task_group.start_soon(self._host, name="roomkit.runtime"))

    async def _start(self, stack: AsyncExitStack) -> None:
        kit = self._kit
        settings = self._settings
        system = ActorSystem(kit._log, **settings.actor_system())
        system.register(ROOM, lambda key: RoomActor(key, self.services))
        # The room actor tells its delivery worker what to do after each commit while the
        # worker may be asking the room to record outcomes: a bounded delivery mailbox could
        # deadlock the two, so it is sized far beyond what callers waiting on turns can fill.
        system.register(
            DELIVERY,
            lambda key: DeliveryActor(key, self.services),
            mailbox_size=_DELIVERY_MAILBOX,
            # As the kit closes, a delivery still running reports its outcome to its room,
            # which appends it as it stops: stopped together, the room was gone first, and
            # the outcome lost (its events fired all the same).
            stops_first=True,
        )
        # The read model first catches up with what the log already holds (a restart), then
        # follows it live.
        await self.projection.catch_up()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        # Once the actors stopped (the stack exits in reverse): what the rooms recorded as
        # they stopped (an AI's reply that came in the actors' time to stop) is applied, which
        # the live follower, cancelled first, no longer did.
        stack.push_async_callback(self._last_catch_up)
        await stack.enter_async_context(system)
        await task_group.start(self.projection.run)
        ownership = kit._ownership
        if ownership is not None:
            # Joined once the actors run: another process may send commands at once. Left
            # before they stop (and before closing refuses commands: see _drain).
            placement = await ownership.start_placement(_RuntimePort(self, system))
            # Left, then disconnected, also when the drain did not get there (cut short).
            stack.push_async_callback(placement.disconnect)
            stack.push_async_callback(placement.leave)
            await task_group.start(placement.run)
            self.placement = placement
        stack.callback(task_group.cancel_scope.cancel)
        self._system = system
        # Once the rooms can be told: the outcomes a successor takes over from its ended
        # predecessor are due at once, and a first tell before that failed as if the kit were
        # closing, which stopped the flusher for the runtime's life.
        await task_group.start(self.flusher.run)

    async def _last_catch_up(self) -> None:
        """Apply what the log holds past the read model's checkpoint, once the actors
        stopped: a closed kit's reads answer from its read model as it was left (bounded: a
        log away would hold the close)."""
        if not self._closed:
            return  # not closed: its event loop is ending (or it failed), nothing is awaited
        with anyio.CancelScope(shield=True), anyio.move_on_after(_LAST_CATCH_UP):
            try:
                # In turn: a rebuild_store() still running applies the same records.
                await self.projection.catch_up_in_turn()
            except Exception as exc:  # the log away, the store refusing: left as it was
                logger.warning("closing: the read model did not catch up with the log: %r", exc)

    def _is_abandoned(self) -> bool:
        return self._abandoned

    async def ensure_started(self) -> None:
        """Start on first use when the kit was not entered (0.3.0 style).

        A start that fails (the log unreachable) ends this runtime: the kit's next call starts
        a successor, so a kit outlives a passing outage.

        Raises:
            KitClosedError: the kit was closed; it does not start again.
            LogUnavailableError: the log could not be reached to start.
            RoomKitError: the log failed otherwise (not connected, a stream conflict).
        """
        # In a context of its own, as on trio: a copy of the first caller's would be the
        # context every room's actor runs in, its values (a request id, a tenant) seen by every
        # later message and kept for the kit's life.
        await self._launch(lambda: spawn_host(self._host, "roomkit.runtime", fresh_context=True))

    async def _launch(self, spawn: Callable[[], object]) -> None:
        """Start the runtime's host task with ``spawn`` unless it runs or is starting; wait
        until it started."""
        if self._system is not None:
            return
        self.check_open()
        if self._starting is None:
            self._starting = anyio.Event()
            self._host_stop = anyio.Event()
            self._host_done = anyio.Event()
            self._host_loop = _running_asyncio_loop()
            self._drain_scope = anyio.CancelScope()
            spawn()
        await self._starting.wait()
        error = self._start_error
        if isinstance(error, EventLogError):
            # Each caller gets an exception of its own (one raised again and again would
            # grow its traceback, and keep every caller's frames alive).
            raise _start_failed(error) from error
        if error is not None:
            raise error

    async def _host(self) -> None:
        assert self._starting is not None and self._host_stop is not None
        try:
            async with AsyncExitStack() as stack:
                try:
                    await self._start(stack)
                except BaseException as exc:
                    self._start_error = exc
                    if isinstance(exc, anyio.get_cancelled_exc_class()):
                        raise
                    # Raised to the callers waiting for the start (_launch), as it is: raised
                    # here too, it would come out of the kit's task group wrapped in an
                    # exception group (a KeyboardInterrupt no longer one).
                    return
                finally:
                    self._starting.set()
                try:
                    await self._host_stop.wait()
                    assert self._drain_scope is not None
                    with self._drain_scope:
                        await self._drain()
                finally:
                    # Drained, given up (close()'s caller's deadline) or cancelled (the kit's
                    # scope): what the rooms' mailboxes still hold is refused as the actors
                    # stop (RoomActor.receive), where it was recorded and never delivered.
                    self._abandoned = True
        except Exception:
            if self._start_error is None:
                logger.exception("the kit's runtime stopped on an error")
        except BaseException as exc:  # its cancellation (the kit's scope), as it leaves
            cut_context_cycle(exc)
            raise
        finally:
            self._system = None
            # Nothing more is applied to the read model, nor delivered: their waiters must not
            # wait for ever.
            self.projection.stop()
            self.turns.stop()
            # Not asked to stop: its event loop is ending (it cancels every task), it failed,
            # or it could not start. The kit's next call starts a successor.
            self._ended = not self._closed
            assert self._host_done is not None
            self._host_done.set()

    def refuse_commands(self) -> None:
        """From now on, refuse new commands (see ``admitted``): the first step of ``stop``,
        taken at once by a close that stops in a task of its own (``RoomKit.close``)."""
        self._closed = True

    def admitted(self, here: bool) -> TakenUp:
        """Take a command up (``with``): one made in this process, or sent here by another
        one (``here``).

        Refused (``KitClosedError``) once closing began, but a command of the kit's own work
        (a hook, a channel, code a room's decision runs: closing waits for them) or of one
        taken up already (a message's identity steps). Until the rooms drained, one sent
        just after a close() was taken, or not, as the closing task happened to run. Counted
        as asks are until it returns or waits for the read model only (``settling``):
        closing lets it finish (a message still resolving its sender's identity as closing
        began failed with "the kit is closed").
        """
        command = taken_up_by(self)
        if command is not None:
            return TakenUp(self, command.command or command)
        if not here:
            self.check_takes_commands()
        self._asking += 1
        return TakenUp(self, None)

    def check_takes_commands(self) -> None:
        """Raise ``KitClosedError`` once closing began, but for the kit's own work (a hook, a
        channel, code a room's decision runs: closing waits for them)."""
        if self._closed and not in_post_commit_work() and deciding() is None:
            raise KitClosedError("the kit is closing and takes no more commands")

    async def commands_done(self) -> None:
        """Return once no command is taken up or asked of a room (callers bound the wait),
        those whose caller gave up included: closing stopped the room under such a message's
        decision, and its delivery was lost without a word."""
        while self._asking:
            self._settle_given_up()
            if not self._asking:
                return
            done = self._asks_done = anyio.Event()
            if not self._given_up:
                await done.wait()
                continue
            # Nothing wakes this for a command nobody waits for: looked at again shortly.
            with anyio.move_on_after(_GIVEN_UP_LOOK):
                await done.wait()

    def _settle_given_up(self) -> None:
        """Count the asks given up that have been answered since as done."""
        given_up = self._given_up
        if given_up:
            self._given_up = [ask for ask in given_up if not ask.done]
            for _ in range(len(given_up) - len(self._given_up)):
                self._asked()

    async def _work_done(self, settled: set[str]) -> None:
        """Return once no command is taken up or asked of a room, no turn is being delivered
        (its async hooks run) and no append is in doubt (callers bound the wait)."""
        while True:
            # Again at every round: a command in flight as closing began may have had its
            # append left in doubt since (each room once: its log may still be away).
            await self._settle_doubts(settled)
            await self.commands_done()
            await self.turns.wait_idle()
            # A turn's own work asked nothing more meanwhile, and no append is in doubt.
            if not self._asking and not (self._in_doubt - settled):
                return

    def _asked(self) -> None:
        """One ask, or command taken up, fewer (see ``_drain``)."""
        self._asking -= 1
        if not self._asking and self._asks_done is not None:
            self._asks_done.set()
            self._asks_done = None

    async def stop(self) -> None:
        """Finish pending deliveries, then stop every actor and the projection."""
        self.refuse_commands()
        if self._host_stop is None or self._host_done is None:
            return
        self._host_stop.set()
        try:
            await self._host_done.wait()
        except BaseException:
            # The caller gave up waiting (its deadline, its cancellation): the host stops
            # draining and goes on to stop the actors.
            if self._drain_scope is not None:
                self._drain_scope.cancel()
            raise
        self._host_stop = self._host_done = self._starting = None

    def cut_work(self) -> None:
        """Cancel the delivery workers as the actors stop, instead of giving them the actor
        system's shutdown timeout (10 s): the caller of ``stop`` gave up, and it waits for
        the actors to stop (the kit's ``async with``: its task group holds the host's task).

        What the workers do (a delivery waiting for a rate-limit token or a retry's backoff, a
        channel's call, an async hook) is cut short and records no outcome; the rooms still
        stop as usual, recording what they hold.
        """
        if self._system is not None:
            self._system.cancel_first_kinds()

    async def _drain(self) -> None:
        # The commands callers wait for are decided and committed, and their turns (deliveries,
        # async hooks) finish, before any actor stops: a room that committed a message after
        # its delivery worker stopped could not deliver it.
        settled: set[str] = set()  # the rooms whose append in doubt it settled, each once
        if self.placement is not None:
            # Other processes' commands are answered first, and what comes later runs there
            # (the turns' own commands below included: see Placement.disconnect).
            await self.placement.leave()
        self._closing = True
        self._end_work_waits()  # closing waits for the work; the work must not wait for it
        with anyio.move_on_after(self._settings.ask_timeout) as waited:
            await self._work_done(settled)
        if self.placement is not None:
            await self.placement.disconnect()
        if waited.cancelled_caught:
            # Both counts: a message still taken up (its sender's identity being resolved)
            # is no turn yet, and was said as "0 turn(s) still running".
            logger.warning(
                "closing: %d command(s) not yet answered and %d turn(s) (deliveries, async "
                "hooks) still running after %g s are cut short: what is queued is dropped, "
                "what runs gets the actors' time to stop (a delivery cut short records no "
                "outcome)",
                self._asking,
                len(self.turns),
                self._settings.ask_timeout,
            )
        # A room actor appends the outcomes it holds as it stops, but one that is not running
        # (passivated while its delivery ran) would not stop: tell it now. Also when the wait
        # above gave up: the outcomes of the turns that did finish are kept (they were lost).
        system = self._system
        if system is not None:
            for room_id in self.flusher.rooms():
                if not system.is_active(ROOM, room_id):
                    await system.ref(ROOM, room_id).tell(FLUSH)

    # -- messages ----------------------------------------------------------------------------

    def _end_work_waits(self) -> None:
        """End the waits of post-commit work for the read model (the store went away, or the
        kit closes)."""
        for wait in tuple(self._work_waits):
            wait.cancel()

    async def _read_model_for_work(self, position: int) -> None:
        """Return once the read model holds ``position``: post-commit work (async hooks,
        channels) reads what it runs for, as in 0.3.0, which stored a message before it
        broadcast it. On JetStream an ON_ROOM_CREATED hook's ``get_room`` raised
        RoomNotFoundError one time in four. Not while the store is away (the work goes on:
        messages still go out), nor past the hooks' bound (``process_timeout``)."""
        projection = self.projection
        if projection.checkpoint >= position or projection.store_away or self._closing:
            return
        with anyio.move_on_after(self._kit._get_router().call_timeout or math.inf) as wait:
            # A store that hangs (no StoreUnavailableError) holds the work until its bound,
            # or until the kit closes: closing waits for the work (see close).
            self._work_waits.add(wait)
            try:
                await projection.wait(position)
            except KitClosedError:
                return  # the runtime stopped: the work is dropped or cut short anyway
            finally:
                self._work_waits.discard(wait)

    async def ask_room(self, room_id: str, command: object, *, internal: bool = False) -> Outcome:
        """Send ``command`` to the room's actor; translate runtime and log errors.

        The ask timeout bounds the wait for the room to take the command up: a command that
        times out is dropped, never applied later; one taken up is waited for (the room bounds
        its own work: hooks have timeouts, an inbound message its ``process_timeout``).
        ``internal``: the kit's own command (a delivery outcome with its AI replies), which must
        not be dropped behind a backlog: it waits for as long as the room takes.

        Raises:
            RoomTimeoutError, RoomConflictError, LogUnavailableError, EventRefusedError,
            KitClosedError (also for a command sent while the kit closes), and the
            RoomKitError the command itself raised (or one saying that the room's actor gave
            up: its state could not be loaded or it kept failing).
        """
        system = self._system
        if system is None:
            raise KitClosedError("the kit is closed")
        decision = deciding()  # a command from a room's decision to that very room waits on it
        if (
            self._closing
            and not internal
            and decision is None
            and not in_post_commit_work()
            and taken_up_by(self) is None
        ):
            raise KitClosedError("the kit is closing and takes no more commands")
        if decision is not None:
            if decision.room_id == room_id and decision.kit is self._kit:
                raise RoomKitError(
                    f"room {room_id} cannot take a command from code its own decision runs "
                    f"({_DECISION_CODE}): the command would wait for that decision, which "
                    "waits for it. Return the change in the HookResult (modify, inject, tasks, "
                    "observations), or make it from an AFTER_BROADCAST hook"
                )
            if decision.waiting and held_up(decision.waiting, room_id, self._kit):
                raise RoomKitError(
                    f"room {room_id} cannot take a command from room {decision.room_id}'s "
                    f"decision ({_DECISION_CODE}): room "
                    f"{room_id}'s decision waits for room {decision.room_id}'s (a hook of it "
                    "sent the message decided, or one that led to it), so each would wait for "
                    f"the other. Make the call from room {room_id}'s AFTER_BROADCAST hook, "
                    "which runs once its decision is over"
                )
            track = self._asked_from(decision, room_id)
        else:
            track = None
        if track is None:
            track = []  # to tell, should the caller give up, whether the room took it up
        self._asking += 1
        try:
            reply = await system.ref(ROOM, room_id).ask(
                Carried(command, captured()),  # its caller's context: see _caller_context
                timeout=_INTERNAL_ASK_TIMEOUT if internal else self._settings.ask_timeout,
                wait_once_taken=True,
                track=track,
            )
        except AskTimeout as exc:
            raise RoomTimeoutError(f"room {room_id} did not answer in time") from exc
        except ConcurrencyConflict as exc:
            raise RoomConflictError(
                f"room {room_id} kept changing under another writer; nothing was applied"
            ) from exc
        except ActorCrash as exc:
            # Something the room ran (a channel's handle_inbound, a hook) raised what is not
            # an Exception; the room restarted from its log and goes on with its other work.
            raise RoomKitError(f"room {room_id} failed on the command: {exc}") from exc
        except AfterCommitError as exc:
            # Recorded, but its delivery could not be queued (the kit is stopping): say so,
            # in the kit's terms; a retry would record it again.
            raise RoomKitError(
                f"room {room_id} recorded the command but could not deliver it: {exc.__cause__}"
            ) from exc
        except ActorDeadError as exc:
            outage = _log_outage(exc)
            if outage is not None:
                # The room's actor could not load it (the log is down): an outage like any
                # other, which callers (the ingress) wait out, not the room's failure.
                raise LogUnavailableError(
                    f"the event log failed for room {room_id}: {outage}"
                ) from exc
            if system.running:  # this room's actor stopped (gave up), not the kit
                raise RoomKitError(f"room {room_id} is unavailable: {exc}") from exc
            raise KitClosedError("the kit is closing and takes no more commands") from exc
        except InvalidAppend as exc:  # a refusal, not an outage: retrying cannot help
            raise EventRefusedError(
                f"the event log refused room {room_id}'s events: {exc}"
            ) from exc
        except LogUnavailable as exc:
            self._in_doubt.add(room_id)
            raise LogUnavailableError(f"the event log failed for room {room_id}: {exc}") from exc
        except EventLogError as exc:
            # Not an outage to wait out (a closed log, a stream set up for something else):
            # the callers that retry outages for ever (the ingress) must not retry this.
            raise RoomKitError(f"the event log failed for room {room_id}: {exc}") from exc
        finally:
            ask = track[0] if track else None
            if ask is not None and ask.taken and not ask.done:
                # The caller gave up (cancelled) on a command the room took up, which goes on
                # to its end: closing waits for it (commands_done) as it waits for any.
                self._given_up.append(ask)
                if len(self._given_up) >= self._given_up_kept:
                    # Looked through as it doubles, not at each one: a burst of callers giving
                    # up (a log outage, a wave of client timeouts) cost O(n^2) on the loop.
                    self._settle_given_up()
                    self._given_up_kept = max(_GIVEN_UP_KEPT, 2 * len(self._given_up))
                if self._asks_done is not None:
                    # A close waiting for the asks to end (see commands_done) looks at this one
                    # again and again: it no longer ends with an ask.
                    self._asks_done.set()
                    self._asks_done = None
            else:
                self._asked()
            if decision is not None and decision.asking:
                decision.asking = [a for a in decision.asking if a[1] is not track]
        assert isinstance(reply, Outcome)
        if reply.position > self.written:
            self.written = reply.position
        if self._in_doubt and not reply.in_doubt:
            # Settled: committed, or the stream went on without it. A room whose append is
            # not in the log yet stays, for closing to settle.
            self._in_doubt.discard(room_id)
        return reply

    def _asked_from(self, decision: InDecision, room_id: str) -> list[Ask] | None:
        """Note that ``decision`` (of this kit, or another) waits for a command to room
        ``room_id``: return the list the ask goes in (``ActorRef.ask``'s ``track``), noted
        with the room in the decision's ``asking`` until the caller takes it out.

        Raises:
            RoomKitError: ``room_id``'s decision waits, through the commands the decisions of
                this process sent, for ``decision``'s room: each would wait for the other.
        """
        if decision.kit is not self._kit:
            # Another kit's rooms are other rooms. (A task the decision's code started counts
            # as the decision's, as the message chain has it: nothing tells one it awaits,
            # through asyncio.wait_for or a task group, from one it left running.)
            return None
        if waits_for(self.services.deciding, room_id, decision.room_id):
            raise RoomKitError(
                f"room {room_id} cannot take a command from room {decision.room_id}'s "
                f"decision ({_DECISION_CODE}): room {room_id}'s decision waits for a command "
                f"to room {decision.room_id} (its hook sent one, or a room it waits for did), "
                "so each would wait for the other. Make the call from an AFTER_BROADCAST "
                "hook, which runs once the decision is over"
            )
        track: list[Ask] = []
        if decision.asking is None:
            decision.asking = []
        decision.asking.append((room_id, track))
        return track

    async def _older_duplicate(self, room_id: str, key: str, position: int) -> str | None:
        """The id of the event the read model holds with idempotency ``key`` in the room, ""
        when it holds one but cannot say which (a store with only ``check_idempotency``), or
        None; once the read model holds the log up to ``position`` (where the room's keys out
        of its window are all recorded)."""
        if self.projection.rebuilding is not None:
            await self.projection.rebuilt()  # it holds every key again only once rebuilt
        await self.projection.wait(position)
        store = self._kit._store
        # A store shaped like ConversationStore without deriving from it may lack it.
        find = getattr(store, "idempotent_event_id", None)
        if find is None:
            return "" if await store.check_idempotency(room_id, key) else None
        found: str | None = await find(room_id, key)
        return found

    async def _event_stored(self, event_id: str) -> bool:
        """Whether the read model holds an event of id ``event_id`` (in any room); False when
        it cannot say (the event is then recorded under its id, as before)."""
        # During a rebuild the store is empty, then filling up: asked then, it did not hold
        # the first copy yet (the lookup's bound still applies, see _reused_ids).
        await self._kit._rebuilt(self)
        try:
            return await self._kit._store.get_event(event_id) is not None
        except Exception as exc:
            logger.warning(
                "the read model could not say whether it holds event %s: %s", event_id, exc
            )
            return False

    async def _settle_doubts(self, settled: set[str]) -> None:
        """Have each room whose command failed on an outage settle its append in doubt now:
        it does so before its next command (here, one that commits nothing of its own), and
        the delivery of what landed then runs with the turns closing waits for. Settled as the
        actor stops instead, the delivery worker may be stopping too."""
        rooms = self._in_doubt - settled
        settled |= rooms

        async def settle(room_id: str) -> None:
            try:
                await self.ask_room(room_id, FLUSH, internal=True)
            except RoomKitError as exc:
                logger.warning("room %s: not settled before closing: %s", room_id, exc)

        # All at once: with the log away, each waits out the log's retry bound, and one after
        # the other a close took that long per room (two minutes for a dozen rooms).
        async with anyio.create_task_group() as settling:
            for room_id in sorted(rooms):
                settling.start_soon(settle, room_id)

    def _tell_room_nowait(self, room_id: str, command: object) -> None:
        self._running().ref(ROOM, room_id).tell_nowait(command)

    def _room_runs(self, room_id: str) -> bool:
        system = self._system
        return system is not None and system.is_active(ROOM, room_id)

    async def _tell_delivery(self, room_id: str, job: object) -> None:
        await self._running().ref(DELIVERY, room_id).tell(job)

    def _running(self) -> ActorSystem:
        system = self._system
        if system is None:
            raise ActorDeadError("the kit's actor system is stopped")
        return system

    async def rebuild_store(self) -> None:
        await self.projection.rebuild()


def _log_outage(error: BaseException) -> LogUnavailable | None:
    """The ``LogUnavailable`` an actor gave up on, if that is why (its cause chain)."""
    seen: BaseException | None = error.__cause__
    while seen is not None:
        if isinstance(seen, LogUnavailable):
            return seen
        seen = seen.__cause__
    return None


def _start_failed(error: EventLogError) -> RoomKitError:
    """The kit's own error for a start that failed on the log (not the event log's): an
    outage (``LogUnavailableError``, which callers wait out) or anything else (a log not
    connected, a stream set up for something else)."""
    text = f"the kit could not start: the event log failed: {error}"
    return LogUnavailableError(text) if isinstance(error, LogUnavailable) else RoomKitError(text)


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _RuntimePort:
    """What the rooms' ownership (``roomkit.ownership``) may do with a running kit."""

    __slots__ = ("_runtime", "_system")

    def __init__(self, runtime: KitRuntime, system: ActorSystem) -> None:
        self._runtime = runtime
        self._system = system

    @property
    def kit(self) -> RoomKit:
        return self._runtime._kit

    async def run_command(
        self,
        room_id: str,
        command: object,
        settle: bool,
        commit_only: bool,
        waiting: tuple[DecisionWait, ...],
    ) -> Outcome:
        kit = self._runtime._kit
        room_id = check_room_id(room_id)
        if not self._commit_only(room_id, commit_only, waiting):
            return await kit._command(room_id, command, settle=settle, here=True)
        with PostCommitJob():  # settles on the commit, as the caller's own job would
            return await kit._command(room_id, command, settle=settle, here=True)

    async def run_inbound(
        self,
        message: InboundMessage,
        room_id: str,
        commit_only: bool,
        waiting: tuple[DecisionWait, ...],
    ) -> InboundResult:
        kit = self._runtime._kit
        room_id = check_room_id(room_id)
        if not self._commit_only(room_id, commit_only, waiting):
            return await kit._process_inbound(message, room_id, waiting, here=True)
        with PostCommitJob():
            return await kit._process_inbound(message, room_id, waiting, here=True)

    def _commit_only(
        self, room_id: str, commit_only: bool, waiting: tuple[DecisionWait, ...]
    ) -> bool:
        """Whether a command another process sent for ``room_id`` settles on its commit
        only: as its caller asked, or because a job of the room's delivery worker waits for
        the caller (the room's later deliveries are queued behind it: see _awaited_turn).

        Raises:
            RoomKitError: the room's decision here waits, through the chain the caller sent,
                for this very command (as ``ask_room`` refuses one within a process).
        """
        if not waiting:
            return commit_only
        kit = self._runtime._kit
        if held_up(waiting, room_id, kit):
            raise RoomKitError(
                f"room {room_id} cannot take a command from another room's decision "
                f"({_DECISION_CODE}): room {room_id}'s decision waits for it (a hook of it "
                "sent the message decided there, or one that led to it), so each would wait "
                f"for the other. Make the call from room {room_id}'s AFTER_BROADCAST hook, "
                "which runs once its decision is over"
            )
        return commit_only or deliveries_held_up(waiting, room_id, kit)

    def commit_only(self) -> bool:
        return self._runtime._kit._settles_on_commit()

    @property
    def process_timeout(self) -> float | None:
        return self._runtime._kit._process_timeout

    @property
    def drain_timeout(self) -> float:
        return self._runtime.ask_timeout

    async def commands_done(self) -> None:
        await self._runtime.commands_done()

    def checkpoint(self) -> int:
        return self._runtime.projection.checkpoint

    async def wait_checkpoint(self, position: int, timeout: float) -> None:
        await self._runtime.projection.holds(position, timeout)

    def live_rooms(self) -> list[str]:
        return self._system.active_keys(ROOM)

    def request_passivation(self, room_id: str) -> None:
        self._system.request_passivation(ROOM, room_id)
        self._system.request_passivation(DELIVERY, room_id)
