"""What every part of ``RoomKit`` shares: the runtime, commands to rooms, framework events."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from eventlog import EventLog
from roomkit.core._bounded import TimedOut, bounded, called_apart
from roomkit.core._cancel import raised_uncancelled
from roomkit.core._commands import GetContext, Outcome
from roomkit.core._in_decision import deciding, deliveries_held_up
from roomkit.core._post_commit import in_post_commit_work
from roomkit.core._room_ids import check_read_room_id, check_room_id
from roomkit.errors import KitClosedError, RoomNotFoundError, StoreUnavailableError
from roomkit.models.context import RoomContext
from roomkit.models.framework import FrameworkEvent

if TYPE_CHECKING:
    from roomkit.channels.base import Channel
    from roomkit.core._facts import RunLifecycle
    from roomkit.core._runtime import KitRuntime
    from roomkit.core._turns import Turn
    from roomkit.core.hooks import HookEngine
    from roomkit.models.channel import ChannelBinding
    from roomkit.store.base import ConversationStore

__all__ = [
    "FrameworkHandler",
    "HelpersMixin",
    "attached_data",
    "check_part",
    "check_metadata",
    "check_str",
    "utcnow",
]

logger = logging.getLogger("roomkit.framework")

#: The framework event types 0.3.0 documents (``kit.on``): the kit and its channels, voice
#: and sources emit these and no other.
FRAMEWORK_EVENT_TYPES = frozenset(
    {
        *("room_created", "room_closed", "room_paused", "room_channel_attached"),
        *("room_channel_detached", "channel_connected", "channel_disconnected"),
        *("event_processed", "event_blocked", "hook_error", "delivery_succeeded"),
        *("delivery_failed", "broadcast_partial_failure", "chain_depth_exceeded"),
        *("identity_timeout", "process_timeout", "source_attached", "source_detached"),
        *("source_error", "source_exhausted", "voice_connected", "voice_disconnected"),
    }
)

FrameworkHandler = Callable[[FrameworkEvent], Awaitable[None]]
F = TypeVar("F", bound=FrameworkHandler)


def check_str(name: str, value: object) -> None:
    """Refuse a value the log would store but its reader refuses (an id must be a string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")


def containers_copied(value: Any, _seen: dict[int, Any] | None = None) -> Any:
    """``value`` with its mappings (as dicts), lists and tuples copied all the way down, and
    every other value as it is: what a caller changes later no longer changes the copy, and a
    value ``copy.deepcopy`` refuses (a lock, a read-only mapping, a handle an in-process
    subscriber wants) is handed on, as it was before copies were made."""
    if isinstance(value, Mapping | list) or type(value) is tuple:
        seen = {} if _seen is None else _seen
        known = seen.get(id(value))
        if known is not None:  # a container holding itself: copied once, as deepcopy does
            return known
        if isinstance(value, Mapping):
            mapping: dict[Any, Any] = {}
            seen[id(value)] = mapping
            for key, item in value.items():
                mapping[key] = containers_copied(item, seen)
            return mapping
        if isinstance(value, list):
            items: list[Any] = []
            seen[id(value)] = items
            items.extend(containers_copied(item, seen) for item in value)
            return items
        return tuple(containers_copied(item, seen) for item in value)
    return value


def check_metadata(value: object, name: str = "metadata") -> None:
    """Refuse metadata to merge (or data to publish) that is not a dict with string keys.
    JSON writes a key ``1`` as ``"1"``: the room would hold both ``1`` and ``"1"`` until it
    is read back from its log, and then one of them (``create_room`` refuses such keys, as
    its model does)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be strings, got {key!r}")


def check_part(name: str, value: object, contract: type) -> None:
    """Refuse, by name, a part of the kit (its log, store, resolver...) that is not a
    ``contract``, when the kit is made rather than at its first use inside a room.

    An object of another class that has every abstract method of ``contract`` is taken: a
    duck-typed part worked with 0.3.0. A class where an instance is due is not.
    """
    if value is None or isinstance(value, contract):
        return
    required: frozenset[str] = getattr(contract, "__abstractmethods__", frozenset())
    missing = sorted(m for m in required if not callable(getattr(value, m, None)))
    if required and not missing and not isinstance(value, type):
        return
    got = f"the class {value.__name__}" if isinstance(value, type) else type(value).__name__
    raise TypeError(f"{name} must be an instance of {contract.__name__}, got {got}")


def _settled_position(outcome: Outcome, turn: Turn | None) -> int:
    """The log position the read model must reach: the command's own, or the last one of its
    awaited ``turn`` (replies are committed after the command) once the turn ended."""
    position = outcome.read_position
    return position if turn is None else max(position, turn.position)


async def _started_within(turn: Turn, seconds: float, room_id: str) -> bool:
    """Whether ``turn`` started (or ended) within ``seconds`` of its commit; said in a
    warning if not."""
    if turn.started_at is not None or turn.pending <= 0:
        return True
    left = seconds - turn.queued
    try:
        if left <= 0:
            raise TimedOut
        await bounded(turn.wait_started(), left)
    except TimedOut:
        logger.warning(
            "room %s: the command is recorded, but its post-commit work (its hooks, its "
            "deliveries) waits behind the room's earlier deliveries for over %g s: it returns "
            "without waiting for it (it runs in turn)",
            room_id,
            seconds,
        )
        return False
    return True


def utcnow() -> datetime:
    return datetime.now(UTC)


def attached_data(binding: ChannelBinding) -> dict[str, Any]:
    """The data of the ``room_channel_attached`` framework event, as in 0.3.0."""
    return {"access": str(binding.access), "visibility": binding.visibility}


class HelpersMixin:
    """Runtime access, room commands and framework events, for the other mixins."""

    _store: ConversationStore
    _store_view: ConversationStore  # RoomKit.store: the read model, its writes logged
    _log: EventLog
    _hook_engine: HookEngine
    _channels: dict[str, Channel]
    _framework_handlers: dict[str, list[FrameworkHandler]]
    _process_timeout: float | None
    _wait_for_delivery: bool

    async def _ensure_runtime(self) -> KitRuntime:
        raise NotImplementedError  # provided by RoomKit

    async def _started_runtime(self) -> KitRuntime:
        raise NotImplementedError  # provided by RoomKit

    async def _rebuilt(self, runtime: KitRuntime) -> None:
        raise NotImplementedError  # provided by RoomKit

    # -- framework events --------------------------------------------------------------------

    def on(self, event_type: str) -> Callable[[F], F]:
        """Decorator: call ``fn(FrameworkEvent)`` (async, or a plain function) for framework
        events of ``event_type``.

        Exact type match only (no wildcard); exceptions of handlers are logged. A handler
        that takes longer than the kit's ``process_timeout`` is cut there (logged), as a
        hook is: the room's deliveries wait for the events they emit.

        Raises:
            TypeError: ``event_type`` is not a string, or what is decorated is not callable.
        """
        check_str("event_type", event_type)
        if event_type not in FRAMEWORK_EVENT_TYPES:
            # Registered as 0.3.0 did; but a misspelled type ("room_create") is never called,
            # and nothing said so (a hook that can never run is reported, see quirk 8).
            logger.warning(
                "kit.on(%r): the kit emits no framework event of that type (it emits %s); "
                "the handler is never called",
                event_type,
                ", ".join(sorted(FRAMEWORK_EVENT_TYPES)),
            )

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"a framework event handler must be callable, got {fn!r}")
            self._framework_handlers.setdefault(event_type, []).append(fn)
            return fn

        return register

    async def _emit_framework_event(
        self,
        event_type: str,
        *,
        room_id: str | None = None,
        channel_id: str | None = None,
        event_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        handlers = self._framework_handlers.get(event_type)
        if not handlers:
            return
        event = FrameworkEvent(
            type=event_type,
            room_id=room_id,
            channel_id=channel_id,
            event_id=event_id,
            data=data or {},
        )
        # On each failure's log record, as 0.3.0 put them there (a log filter may read them).
        extra = {"event_type": event_type, "room_id": room_id}
        for handler in handlers:
            try:
                answer, own = called_apart(handler, event)
                if inspect.isawaitable(answer):  # a plain function works too (list.append)
                    # Bounded: one that never returned (a metrics push whose server stopped
                    # answering) held its room's later deliveries, and its commands, for good.
                    await bounded(answer, self._process_timeout, own)
            except TimedOut:
                logger.warning(
                    "framework event handler for %r did not return within %g s "
                    "(process_timeout): cut",
                    event_type,
                    self._process_timeout,
                )
            except Exception:
                # Worded as 0.3.0 began it, which apps may match.
                logger.exception("Framework event handler failed for %r", event_type, extra=extra)
            except BaseException as exc:
                # The handler's own CancelledError (it awaited something cancelled), nothing
                # cancelling its caller: a failure of that handler, logged as any. Raised on,
                # it crashed the room's delivery worker (the rest of the message's delivery
                # lost) or came out of connect_websocket in a task nobody cancelled.
                failure = raised_uncancelled(exc, "the handler")  # re-raises a real one
                logger.error(
                    "Framework event handler failed for %r: %s", event_type, failure, extra=extra
                )

    # -- rooms -------------------------------------------------------------------------------

    @staticmethod
    def _check_room_id(room_id: str) -> str:
        return check_room_id(room_id)

    async def _command(
        self, room_id: str, command: object, *, settle: bool = True, here: bool = False
    ) -> Outcome:
        """Send ``command`` to the room's actor; by default wait until its effects settled:
        its turn delivered (hooks run) and the read model caught up with what it committed.
        ``here``: this process's actor, even if another process owns the room (a command that
        process sent here)."""
        # Taken up before it waits for a rebuild of the read model: a close() called meanwhile
        # lets it finish (it refused it once the rebuild ended).
        runtime = await self._started_runtime()
        with runtime.admitted(here) as taken:
            await self._rebuilt(runtime)
            room_id = self._check_room_id(room_id)
            placement = runtime.placement
            if placement is not None and not here:  # another process may own the room
                forwarded = await placement.forward_command(room_id, command, settle)
                if forwarded is not None:
                    return forwarded  # settled: this process's read model shows it
            outcome = await runtime.ask_room(room_id, command)
            if settle:
                taken.settling()
                await self._settle_command(runtime, outcome, room_id)
            return outcome

    async def _read_model_at(self, position: int) -> None:
        """Return once the read model holds the log up to ``position``."""
        runtime = await self._ensure_runtime()
        await runtime.projection.wait(position)

    def _settled(self, runtime: KitRuntime, outcome: Outcome, room_id: str) -> bool:
        """Whether ``_settle`` would return at once (often so by the time the room replied:
        the delivery worker and the projection ran before the caller woke up)."""
        turn = self._awaited_turn(outcome, room_id)
        if turn is not None and turn.pending > 0:
            return False
        return runtime.projection.checkpoint >= _settled_position(outcome, turn)

    async def _settle(
        self,
        runtime: KitRuntime,
        outcome: Outcome,
        room_id: str,
        read_model_within: float = math.inf,
    ) -> None:
        """Return once ``outcome``'s turn is delivered and the read model holds what it
        recorded.

        Raises:
            KitClosedError: the kit closed first.
            StoreUnavailableError: the read model did not hold it within
                ``read_model_within`` seconds (its store away): it is in the log, and there
                once the store is back. Waited for as long, a command (``attach_channel``,
                ``send_event``, ...) waited out the store's whole outage.
        """
        turn = self._awaited_turn(outcome, room_id)
        await self._settle_turn(runtime, outcome, room_id, turn, read_model_within)

    async def _settle_command(self, runtime: KitRuntime, outcome: Outcome, room_id: str) -> None:
        """``_settle`` for a room command (``attach_channel``, ``mute``, ``close_room``...).

        Its turn runs its lifecycle hooks in the room's delivery worker, queued behind the
        room's earlier turns: a message whose delivery retries a failing channel held a
        ``detach_channel`` (the operator's fix) for the whole retry schedule, two minutes
        with the defaults. It is waited for only when something observes it (a hook, a
        framework event handler: the call returns after its hooks ran, as in 0.3.0), and
        then only once it started, or within the ask's bound (then the command, committed,
        returns with a warning)."""
        turn = self._awaited_turn(outcome, room_id)
        if turn is not None and (
            not self._observed(room_id, outcome.hooks)
            or not await _started_within(turn, runtime.ask_timeout, room_id)
        ):
            turn = None  # settled on the read model alone
        await self._settle_turn(runtime, outcome, room_id, turn, runtime.ask_timeout)

    def _observed(self, room_id: str, hooks: tuple[RunLifecycle, ...] | None) -> bool:
        """Whether anything runs for a turn of lifecycle ``hooks`` (None: a turn that does
        more, always): an async hook of their trigger (global or the room's), or a framework
        event handler for what they announce. With neither, the turn does nothing its
        caller could see."""
        if hooks is None:
            return True
        engine = self._hook_engine
        handlers = self._framework_handlers
        for work in hooks:
            if engine.has_async_hooks(room_id, work.trigger):
                return True
            if any(handlers.get(note.event_type) for note in work.announce):
                return True
        return False

    async def _settle_turn(
        self,
        runtime: KitRuntime,
        outcome: Outcome,
        room_id: str,
        turn: Turn | None,
        read_model_within: float,
    ) -> None:
        """``_settle`` once the turn to wait for (None: none) is known."""
        if turn is not None:
            await runtime.turns.wait(turn)
            if turn.abandoned:
                raise KitClosedError(
                    f"room {room_id}: the kit closed before what the command recorded was "
                    "delivered (it is in the log; its deliveries were dropped)"
                )
        position = _settled_position(outcome, turn)
        if not await runtime.projection.holds(position, read_model_within):
            did = (
                "the command is recorded (it is in the log), but the read model did not hold it"
                if outcome.position
                else "the command recorded nothing, but the read model did not hold the room "
                "as it answered from"
            )
            raise StoreUnavailableError(
                f"room {room_id}: {did} within {read_model_within:g} s: the store is "
                "unavailable, and reads show it once it is back"
            )

    def _settles_on_commit(self) -> bool:
        """Whether a command made here now returns once committed, without its delivery:
        ``wait_for_delivery=False``, or a delivery worker's job (see PostCommitJob), whose
        deliveries may be queued behind it. A room's owner in another process settles the
        commands it runs for this one alike (roomkit.ownership)."""
        return not self._wait_for_delivery or in_post_commit_work()

    def _awaited_turn(self, outcome: Outcome, room_id: str) -> Turn | None:
        if self._settles_on_commit():
            return None  # see PostCommitJob: settle on the commit only
        decision = deciding()
        if decision is not None and deliveries_held_up(decision.waiting, room_id, self):
            # A job of that room's delivery worker (its AFTER_BROADCAST hook, a channel) sent
            # the message this decision decides and waits for it: the room's deliveries are
            # queued behind that job, so waiting for them would hold both until a timeout.
            return None
        turn: Turn | None = outcome.turn
        return turn

    async def _context(self, room_id: str) -> RoomContext:
        outcome = await self._command(room_id, GetContext(), settle=False)
        context: RoomContext = outcome.value
        return context

    async def _read_model(self) -> ConversationStore:
        """The store, caught up with the log: a kit used without ``async with`` starts at its
        first call, a read included, and a kit on an existing log rebuilds its read model
        from it then. (Before, a read ahead of any command saw an empty store, and routing
        made a new room for a conversation the log already held.) A closed kit's reads
        answer from its read model as it was left."""
        with contextlib.suppress(KitClosedError):
            await self._ensure_runtime()
        return self._store

    async def _require_room(self, room_id: str) -> None:
        check_read_room_id(room_id)
        if await (await self._read_model()).get_room(room_id) is None:
            raise RoomNotFoundError(f"Room {room_id} not found")
