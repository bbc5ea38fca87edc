"""Hook registrations and the engine that runs them.

A hook is ``async fn(event, context)``. For the SYNC triggers (`SYNC_TRIGGERS`) it returns a
`HookResult` (``None`` means allow) and may block or modify the event; for every other trigger it
runs ASYNC, returns nothing and only observes. The engine knows nothing of rooms as actors or of
the log: the room actor calls `HookEngine.run_sync_hooks` while deciding, and the async-hook
projection calls `HookEngine.run_async_hooks` after commit.

Behaviour of RoomKit 0.3.0 kept: global hooks before room hooks, stable sort by priority,
filters on ``event.source``, sync hooks sequential and fail-open, async hooks concurrent with
their errors logged and never raised. Fixed: QUIRK 8 (a registration whose execution mode its
trigger never runs is reported by `HookEngine.execution_mismatch`), and async-hook errors are
returned so the caller can fire ON_ERROR (QUIRK 9).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import CoroutineType, GenericAlias
from typing import Any, NamedTuple

from pydantic import BaseModel

from actors import check_seconds, error_text
from roomkit.core._bounded import TimedOut, started_bounded
from roomkit.core._cancel import raised_uncancelled
from roomkit.core._concurrently import concurrently
from roomkit.core._system_events import hook_failure, lifecycle_event
from roomkit.models.context import RoomContext
from roomkit.models.enums import (
    ChannelDirection,
    ChannelType,
    EventType,
    HookExecution,
    HookTrigger,
)
from roomkit.models.event import EventSource, RoomEvent
from roomkit.models.hook import HookResult, InjectedEvent
from roomkit.models.identity import IdentityHookResult, IdentityResult
from roomkit.models.task import Observation, Task

__all__ = [
    "SYNC_TRIGGERS",
    "AsyncHookFn",
    "HookEngine",
    "HookError",
    "HookFn",
    "HookRegistration",
    "HookTimeoutError",
    "IdentityHookFn",
    "IdentityHookRegistration",
    "SyncHookFn",
    "SyncPipelineResult",
    "expected_execution",
]

logger = logging.getLogger("roomkit.hooks")

HookFn = Callable[[Any, Any], Awaitable[HookResult | None]]
"""``async (event, context) -> HookResult | None`` (async triggers return ``None``)."""

SyncHookFn = Callable[[RoomEvent, RoomContext], Awaitable[HookResult]]
"""A sync-mode hook (0.3.0's name): ``async (event, context) -> HookResult``."""

AsyncHookFn = Callable[[RoomEvent, RoomContext], Awaitable[None]]
"""An async-mode hook (0.3.0's name): ``async (event, context) -> None``."""

IdentityHookFn = Callable[[Any, Any, IdentityResult], Awaitable[IdentityHookResult | None]]
"""``async (event, context, identity_result) -> IdentityHookResult | None``."""

SYNC_TRIGGERS: frozenset[HookTrigger] = frozenset(
    {
        HookTrigger.BEFORE_BROADCAST,
        HookTrigger.ON_TRANSCRIPTION,
        HookTrigger.BEFORE_TTS,
        HookTrigger.ON_REALTIME_TOOL_CALL,
    }
)
"""Triggers whose hooks run through `HookEngine.run_sync_hooks`; all others run ASYNC."""

# Triggers whose events all come from the "system" source (synthetic lifecycle events, as in
# 0.3.0), and that source.
_SYSTEM_SOURCED: frozenset[HookTrigger] = frozenset(
    {
        HookTrigger.ON_CHANNEL_ATTACHED,
        HookTrigger.ON_CHANNEL_DETACHED,
        HookTrigger.ON_CHANNEL_MUTED,
        HookTrigger.ON_CHANNEL_UNMUTED,
        HookTrigger.ON_ROOM_CREATED,
        HookTrigger.ON_ROOM_PAUSED,
        HookTrigger.ON_ROOM_CLOSED,
        HookTrigger.ON_PARTICIPANT_IDENTIFIED,
        HookTrigger.ON_ERROR,
    }
)
_SYSTEM_SOURCE = EventSource(channel_id="system", channel_type=ChannelType.SYSTEM)


def expected_execution(trigger: HookTrigger) -> HookExecution:
    """The execution mode in which hooks of ``trigger`` are run."""
    return HookExecution.SYNC if trigger in SYNC_TRIGGERS else HookExecution.ASYNC


def _checked_place(name: str, value: Any) -> Any:
    """A registration's ``trigger``, ``execution`` or ``priority`` as it is kept.

    Raises:
        ValueError: a trigger or execution that is no value of its enum (the enums' string
            values are taken too: an unknown one fails here, not at run time).
        TypeError: a priority that is not a number.
    """
    if name == "trigger":
        return HookTrigger(value)
    if name == "execution":
        return HookExecution(value)
    # Sorted with the others at every message: one that does not compare would fail them.
    try:
        value < 0  # noqa: B015 - only whether it compares
        # A float NaN compares false with everything: the hooks' order would be anyone's.
        if value != value:
            raise TypeError
    except (TypeError, ArithmeticError):  # Decimal("NaN") raises InvalidOperation
        raise TypeError(f"hook priority must be a number, got {value!r}") from None
    return value


# How many times a registration's place among the hooks changed (its trigger, execution or
# priority set again): an engine sorts its hooks again once this moved (HookEngine._sorted).
_reordered = [0]
_ORDERING = frozenset({"trigger", "execution", "priority"})


@dataclass(eq=False, slots=True)
class HookRegistration:
    """One hook: when it runs, how, in which order, and for which event sources.

    Args:
        trigger: the point where it runs.
        execution: SYNC (may block or modify) or ASYNC (observes).
        fn: ``async (event, context) -> HookResult | None``.
        priority: lower runs first; equal priorities keep registration order.
        name: used in ``blocked_by``, error reports and ``remove_room_hook``; kept as given
            (``kit.hook`` gives ``fn.__name__`` when it has none, as 0.3.0 did; a room hook
            added without one is unnamed, removed with ``remove_room_hook(room_id, "")``).
        timeout: seconds one call may take before it is abandoned (fail-open).
        channel_types: run only for events from these channel types (``None``: all).
        channel_ids: run only for events from these channel ids (``None``: all).
        directions: run only for events with these source directions (``None``: all).

    Raises:
        TypeError: if ``fn`` is not callable, or ``priority`` or ``timeout`` is not a number.
        ValueError: if ``timeout`` is not positive, or ``trigger`` / ``execution`` is not a
            value of its enum.
    """

    trigger: HookTrigger
    execution: HookExecution
    fn: HookFn
    priority: int = 0
    name: str = ""
    timeout: float | None = 30.0  # None: no bound (math.inf once registered)
    channel_types: Collection[ChannelType] | None = None
    channel_ids: Collection[str] | None = None
    directions: Collection[ChannelDirection] | None = None
    # The timeout as given, for the error text of a timed-out sync hook ("timeout (5s)", as
    # 0.3.0 wrote it from the value it kept).
    _timeout_text: str = field(default="", init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ORDERING:
            # Checked when made and when set again: one set to what does not sort failed
            # every message of every room at the engine's next sort.
            value = _checked_place(name, value)
        object.__setattr__(self, name, value)
        if name in _ORDERING:
            # 0.3.0 sorted the hooks at every run: a priority an app changed on a registration
            # it kept took effect. Engines keep them sorted, and sort again after this.
            _reordered[0] += 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            # Logged as the hooks that modified or blocked a message: one of another type made
            # a record no replay of the room could read.
            raise TypeError(f"hook name must be a string, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(
                f"hook {self.name or '<unnamed>'!r} for {self.trigger}: fn must be an async "
                f"callable (event, context), got {type(self.fn).__name__}"
            )
        check_filters("hook", self.channel_types, self.channel_ids, self.directions)
        # 0.3.0 handed the timeout to asyncio.wait_for, where None means no bound.
        given = self.timeout
        timeout = check_seconds("hook timeout", given, none=True)
        self.timeout = math.inf if timeout is None else timeout
        if not self.timeout > 0:
            raise ValueError(f"hook timeout must be positive, got {self.timeout!r}")
        self._timeout_text = str(given)

    def matches(self, event: Any) -> bool:
        """Whether the channel filters accept ``event``'s source.

        Objects without a ``source`` (voice hooks get strings and sessions) cannot be filtered
        and always match, as with ``skip_event_filter``.
        """
        if self.channel_types is None and self.channel_ids is None and self.directions is None:
            return True
        source = getattr(event, "source", None)
        if source is None:
            return True
        return (
            (self.channel_types is None or source.channel_type in self.channel_types)
            and (self.channel_ids is None or source.channel_id in self.channel_ids)
            and (self.directions is None or source.direction in self.directions)
        )


def check_filters(
    what: str, channel_types: object, channel_ids: object, directions: object
) -> None:
    """Refuse a channel filter that ``in`` cannot ask, or a string (None: no filter).

    Raises:
        TypeError: one is a str or bytes: ``"sms" in "sms-vip"`` would match by substring
            (a hook meant for channel "sms-vip" ran for "sms"); an iterator, which ``in``
            consumes (the hook ran for the first message only); or something ``in`` cannot
            ask at all (``channel_ids=5`` was taken, then every message of every room failed
            on it).
    """
    for name, value in (
        ("channel_types", channel_types),
        ("channel_ids", channel_ids),
        ("directions", directions),
    ):
        if value is not None and not _answers_in(value):
            raise TypeError(f"{what} {name} must be a collection, got {value!r}")


def _answers_in(value: object) -> bool:
    """Whether ``in`` can ask ``value`` again and again, as it asks a hook's filter at every
    event. Filters are matched with ``in`` only, so anything that answers it will do: a
    prefix matcher, or a class with only ``__iter__`` or ``__getitem__`` (which ``in`` falls
    back to). Not a model (``in`` iterates its fields: it never matches) or a class (``list``,
    ``list[str]``); and ``in`` is asked once here: one that raises (a ``__getitem__`` over a
    mapping, asked for index 0) failed every message of every room."""
    if isinstance(value, str | bytes | bytearray | Iterator | BaseModel | type | GenericAlias):
        return False
    if not (isinstance(value, Container | Iterable) or hasattr(type(value), "__getitem__")):
        return False
    try:
        _ = "\x00a channel id no room has" in value  # type: ignore[operator]
    except Exception:
        return False
    return True


@dataclass(frozen=True, slots=True)
class IdentityHookRegistration:
    """One identity hook (``kit.identity_hook``): runs at ``trigger`` for the inbound events
    whose source the channel filters accept (``None``: any)."""

    trigger: HookTrigger
    fn: Callable[..., Any]  # an IdentityHookFn, or the same function not async
    channel_types: Collection[ChannelType] | None = None
    channel_ids: Collection[str] | None = None
    directions: Collection[ChannelDirection] | None = None

    def __post_init__(self) -> None:
        check_filters("identity hook", self.channel_types, self.channel_ids, self.directions)

    def matches(self, event: Any) -> bool:
        """Whether the channel filters accept ``event``'s source."""
        source = event.source
        return (
            (self.channel_types is None or source.channel_type in self.channel_types)
            and (self.channel_ids is None or source.channel_id in self.channel_ids)
            and (self.directions is None or source.direction in self.directions)
        )


class _Sourced(NamedTuple):
    """An object with a ``source``, for the channel filters: a lifecycle event's (see
    ``HookEngine.filter_mismatch``), or one given to ``run_async_hooks``."""

    source: Any = _SYSTEM_SOURCE  # an EventSource, or what has its filtered fields


@dataclass(slots=True)
class SyncPipelineResult:
    """Outcome of running the sync hooks of one trigger over one event.

    ``event`` is the (possibly modified) event; ``blocked_by`` is the blocking hook's name;
    ``injected_events``, ``tasks`` and ``observations`` come from every hook that ran,
    including the blocking one; ``modified_by`` names the hooks that replaced the event, in
    order; ``hook_errors`` holds ``{"hook": name, "error": text}`` for each hook that raised or
    timed out (the pipeline went on without it); a timeout's text is 0.3.0's,
    ``"timeout (<its timeout as given>s)"``.
    """

    allowed: bool = True
    event: Any = None
    reason: str | None = None
    blocked_by: str | None = None
    injected_events: list[InjectedEvent] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    hook_errors: list[dict[str, str]] = field(default_factory=list)
    modified_by: list[str] = field(default_factory=list)


class HookTimeoutError(TimeoutError):
    """A hook did not finish within its registration's ``timeout`` (or the kit's
    ``process_timeout``, when shorter). ``reported`` is what a ``hook_error`` says of it:
    0.3.0's ``"timeout (<its timeout as given>s)"``, as for a sync hook."""

    def __init__(self, hook: str, timeout: float, given: str = "") -> None:
        super().__init__(f"hook {hook!r} timed out after {timeout:g}s")
        self.hook = hook
        self.timeout = timeout
        self.reported = f"timeout ({given or format(timeout, 'g')}s)"


class HookError(NamedTuple):
    """An async hook that failed: its name and what it raised (`HookTimeoutError` on timeout)."""

    hook: str
    error: Exception


_Key = tuple[HookTrigger, HookExecution]
_ACTIONS = frozenset(("allow", "block", "modify"))
_LISTS = ("injected_events", "tasks", "observations")
# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_SYNC, _ASYNC = HookExecution.SYNC, HookExecution.ASYNC


def _malformed(result: HookResult) -> str | None:
    """What is wrong with a ``HookResult`` no validation made (``model_construct``, a field
    set in place), or None. The pipeline reads its action, reason and lists, and logs the
    reason: one of another type would make a record no replay could read. (The items of its
    lists are checked as each is recorded.)"""
    # Each field read once: a model's attribute read goes through pydantic's __getattr__
    # slot hook (~400 instructions), and every sync hook's result is checked here.
    action = result.action
    if not isinstance(action, str) or action not in _ACTIONS:
        return f"returned a HookResult with action {action!r}"
    reason = result.reason
    if reason is not None and not isinstance(reason, str):
        return f"returned a HookResult whose reason is a {type(reason).__name__}"
    for name in _LISTS:
        value = getattr(result, name)
        if not isinstance(value, list):
            return f"returned a HookResult whose {name} is a {type(value).__name__}"
    return None


def _by_priority(reg: HookRegistration) -> int:
    return reg.priority


class HookEngine:
    """Holds global and per-room hook registrations and runs them.

    Lookups are cached per (room, trigger, execution) as priority-sorted tuples, so the hot
    path only filters; any registration change drops the affected cache.
    """

    def __init__(self) -> None:
        self._global: list[HookRegistration] = []
        self._room: dict[str, list[HookRegistration]] = {}
        # Priority-sorted registrations per key; rooms without hooks use _global_index.
        self._global_index: dict[_Key, tuple[HookRegistration, ...]] = {}
        self._reordered_seen = _reordered[0]
        self._room_index: dict[str, dict[_Key, tuple[HookRegistration, ...]]] = {}

    # -- registration ---------------------------------------------------------------------

    def register(self, hook: HookRegistration) -> None:
        """Add a global hook (runs for every room)."""
        self._global.append(hook)
        self._global_index.clear()
        self._room_index.clear()

    def add_room_hook(self, room_id: str, hook: HookRegistration) -> None:
        """Add a hook that runs for ``room_id`` only, after the global ones of equal priority."""
        self._room.setdefault(room_id, []).append(hook)
        self._room_index.pop(room_id, None)

    def remove_room_hook(self, room_id: str, name: str) -> bool:
        """Remove the first hook of ``room_id`` named ``name``; False if there is none."""
        hooks = self._room.get(room_id)
        if not hooks:
            return False
        for i, reg in enumerate(hooks):
            if reg.name == name:
                del hooks[i]
                if not hooks:
                    del self._room[room_id]
                self._room_index.pop(room_id, None)
                return True
        return False

    def clear_room(self, room_id: str) -> None:
        """Drop every hook of ``room_id`` (e.g. when the room is deleted)."""
        self._room.pop(room_id, None)
        self._room_index.pop(room_id, None)

    @property
    def global_hooks(self) -> list[HookRegistration]:
        """A copy of the global registrations, in registration order."""
        return list(self._global)

    def room_hooks(self, room_id: str) -> list[HookRegistration]:
        """A copy of ``room_id``'s registrations, in registration order."""
        return list(self._room.get(room_id, ()))

    @staticmethod
    def execution_mismatch(registration: HookRegistration) -> str | None:
        """Explain why ``registration`` would never run, or return ``None`` if it will.

        RoomKit 0.3.0 silently ignored a hook registered with the other execution mode than its
        trigger uses (QUIRK 8); the kit logs this message as a warning at registration.
        """
        expected = expected_execution(registration.trigger)
        if registration.execution == expected:
            return None
        return (
            f"hook {registration.name!r} is registered as {registration.execution.value.upper()}"
            f" for {registration.trigger.value}, which only runs {expected.value.upper()} hooks:"
            f" it will never run (register it with execution=HookExecution.{expected.name})"
        )

    @staticmethod
    def filter_mismatch(registration: HookRegistration) -> str | None:
        """Explain why ``registration``'s channel filters would never let it run, or return
        ``None``: the events of lifecycle triggers (ON_ERROR, ON_CHANNEL_ATTACHED, ...) come
        from the ``"system"`` source, so a filter on another channel never matches them. The
        kit logs this as a warning at registration (a hook for SMS errors stayed silent)."""
        if registration.trigger not in _SYSTEM_SOURCED or registration.matches(_Sourced()):
            return None
        return (
            f"hook {registration.name!r} for {registration.trigger.value} is filtered by "
            "channel, but that trigger's events come from the 'system' source "
            "(ChannelType.SYSTEM): it will never run (the channel an event is about, if any, "
            "is in event.content.data['channel_id'])"
        )

    @staticmethod
    def room_mismatch(registration: HookRegistration) -> str | None:
        """Explain why ``registration``, registered as a room's hook, would never run, or
        return ``None``: a delivery status names no room (the kit logs this as a warning)."""
        if registration.trigger != HookTrigger.ON_DELIVERY_STATUS:
            return None
        return (
            f"room hook {registration.name!r} for {registration.trigger.value} will never run: "
            "a delivery status names no room (register it with kit.hook(); its channel "
            "filters match the channel process_webhook is given)"
        )

    # -- lookup ---------------------------------------------------------------------------

    def _sorted(self, room_id: str, key: _Key) -> tuple[HookRegistration, ...]:
        if self._reordered_seen != _reordered[0]:  # a registration changed its place
            self._reordered_seen = _reordered[0]
            self._global_index.clear()
            self._room_index.clear()
        hooks = self._global_index.get(key)
        if hooks is None:
            hooks = tuple(
                sorted(
                    (r for r in self._global if (r.trigger, r.execution) == key), key=_by_priority
                )
            )
            self._global_index[key] = hooks
        room_hooks = self._room.get(room_id)
        if not room_hooks:
            return hooks
        index = self._room_index.setdefault(room_id, {})
        merged = index.get(key)
        if merged is None:
            # Global first, then room: the stable sort keeps that order within a priority.
            own = [r for r in room_hooks if (r.trigger, r.execution) == key]
            merged = tuple(sorted([*hooks, *own], key=_by_priority)) if own else hooks
            index[key] = merged
        return merged

    def has_async_hooks(self, room_id: str, trigger: HookTrigger) -> bool:
        """Whether an ASYNC hook of ``trigger`` is registered for ``room_id`` (its own, or a
        global one), whatever its channel filters."""
        return bool(self._sorted(room_id, (trigger, _ASYNC)))

    def get_hooks(
        self,
        room_id: str,
        trigger: HookTrigger,
        execution: HookExecution,
        event: Any = None,
        *,
        skip_event_filter: bool = False,
    ) -> list[HookRegistration]:
        """The hooks to run, in order: global then room, stably sorted by priority ascending.

        Args:
            room_id: room whose own hooks are added to the global ones.
            trigger: the trigger.
            execution: only registrations with this execution mode.
            event: filtered against its ``source`` (``None``: no filtering).
            skip_event_filter: ignore the channel filters (voice hooks).
        """
        hooks = self._sorted(room_id, (trigger, execution))
        if event is None or skip_event_filter:
            return list(hooks)
        return [h for h in hooks if h.matches(event)]

    def _matching(
        self,
        room_id: str,
        trigger: HookTrigger,
        execution: HookExecution,
        event: Any,
        skip_event_filter: bool,
    ) -> tuple[HookRegistration, ...] | list[HookRegistration]:
        hooks = self._sorted(room_id, (trigger, execution))
        if not hooks or skip_event_filter:
            return hooks
        return [h for h in hooks if h.matches(event)]

    # -- execution ------------------------------------------------------------------------

    async def run_sync_hooks(
        self,
        room_id: str,
        trigger: HookTrigger,
        event: Any,
        context: Any,
        *,
        skip_event_filter: bool = False,
        check: Callable[[Any], Any] | None = None,
    ) -> SyncPipelineResult:
        """Run the SYNC hooks of ``trigger`` one after the other over ``event``.

        Each hook gets the current event (as modified by earlier hooks) and ``context``.
        ``None`` or ``allow`` goes on; ``modify`` replaces the event from then on; ``block``
        stops at once. A hook that raises, times out or returns something other than a
        `HookResult` is skipped and reported in ``hook_errors`` (fail-open); so is one whose
        replacement event ``check`` refuses (it returns the event to go on with, or raises).
        Cancellation of the caller is never swallowed.

        Returns:
            The pipeline's outcome; ``allowed`` is True when no hook blocked.
        """
        result = SyncPipelineResult(event=event)
        for reg in self._matching(room_id, trigger, _SYNC, event, skip_event_filter):
            try:
                done, outcome = _hook_started(reg, result.event, context)
                if not done:
                    outcome = await outcome
            except Exception as exc:
                # A timeout is reported in 0.3.0's words, which apps may match.
                timed_out = isinstance(exc, HookTimeoutError)
                text = exc.reported if isinstance(exc, HookTimeoutError) else error_text(exc)
                # 0.3.0's levels, which apps alert on: a timeout warns, an exception is an error.
                logger.log(
                    logging.WARNING if timed_out else logging.ERROR,
                    "sync hook %r (%s) failed, skipped (fail-open): %s",
                    reg.name,
                    trigger,
                    text,
                    exc_info=not timed_out,
                )
                result.hook_errors.append({"hook": reg.name, "error": text})
                continue
            if outcome is None:
                continue
            wrong = (
                f"returned {type(outcome).__name__}, expected HookResult or None"
                if not isinstance(outcome, HookResult)
                else _malformed(outcome)
            )
            if wrong is not None:
                logger.warning("sync hook %r (%s) %s, ignored", reg.name, trigger, wrong)
                result.hook_errors.append({"hook": reg.name, "error": wrong})
                continue
            action = outcome.action  # read once (see _malformed)
            replacement = outcome.event if action == "modify" else None
            if replacement is not None and check is not None:
                try:
                    replacement = check(replacement)
                except Exception as exc:
                    text = f"modified the event into one that does not validate: {exc}"
                    text = text.splitlines()[0]
                    logger.warning("sync hook %r (%s) %s, skipped", reg.name, trigger, text)
                    result.hook_errors.append({"hook": reg.name, "error": text})
                    continue
            result.injected_events.extend(outcome.injected_events)
            result.tasks.extend(outcome.tasks)
            result.observations.extend(outcome.observations)
            if action == "block":
                result.allowed = False
                result.reason = outcome.reason
                result.blocked_by = reg.name
                break
            if replacement is not None:
                result.event = replacement
                result.modified_by.append(reg.name)
        return result

    async def run_on_error(
        self,
        room_id: str,
        failure: tuple[str, str, dict[str, Any]],
        context: Any,
        *,
        now: datetime,
        emit: Callable[..., Awaitable[None]],
        ceiling: float | None = None,
    ) -> None:
        """Run the ON_ERROR hooks for one ``failure`` (its code, body and data, the event
        they get). A failed ON_ERROR hook is a ``hook_error`` framework event (through
        ``emit``), as any failed hook is, but never an ON_ERROR again: a failing one would
        report itself for ever."""
        code, body, data = failure
        event = lifecycle_event(room_id, EventType.SYSTEM, code, body, now, data)
        failed = await self.run_async_hooks(
            room_id, HookTrigger.ON_ERROR, event, context, ceiling=ceiling
        )
        for name, error in failed:
            reported, _, _ = hook_failure(name, error)
            await emit("hook_error", room_id=room_id, data=reported)

    async def run_async_hooks(
        self,
        room_id: str,
        trigger: HookTrigger,
        event: Any,
        context: Any,
        *,
        skip_event_filter: bool = False,
        source: Any = None,
        ceiling: float | None = None,
    ) -> list[HookError]:
        """Run every ASYNC hook of ``trigger`` concurrently, each under its own timeout.

        Errors and timeouts are logged (logger ``roomkit.hooks``) and never raised; they are
        returned so the caller can fire ON_ERROR. Returns when every hook has finished.
        ``source``: what the channel filters match, when not ``event.source``
        (a delivery status has none of its own). ``ceiling``: the longest any of them may
        take, whatever its own timeout (None: its own).

        Returns:
            One `HookError` per failed hook, in registration order (empty if all succeeded).
        """
        filtered = event if source is None else _Sourced(source)
        hooks = self._matching(room_id, trigger, _ASYNC, filtered, skip_event_filter)
        if not hooks:
            return []
        errors: list[HookError | None] = [None] * len(hooks)
        if len(hooks) == 1 and asyncio._get_running_loop() is not None:
            # One hook (the usual case): what concurrently does for a single call on
            # asyncio, run in place (its first step here, the rest in this task), without
            # its frames (_run_async_one sets no context variable; the hook runs in a copy).
            await _run_async_one(hooks[0], event, context, errors, 0, ceiling)
            return [e for e in errors if e is not None]
        await concurrently(
            [
                functools.partial(_run_async_one, reg, event, context, errors, slot, ceiling)
                for slot, reg in enumerate(hooks)
            ]
        )
        return [e for e in errors if e is not None]


def _hook_started(
    reg: HookRegistration, event: Any, context: Any, ceiling: float | None = None
) -> tuple[bool, Any]:
    """Call the hook and take its first step: ``(True, its result)`` if it finished there
    (most hooks do: no coroutine of the kit's own for them, twice per message), otherwise
    ``(False, what to await for its result)``, under its timeout (or ``ceiling``, if
    shorter; counted from before its first step): `HookTimeoutError` if it did not finish
    in time."""
    # called_apart, inlined (twice per message): a plain function's work is done by the call.
    own = contextvars.copy_context()
    awaitable = own.run(reg.fn, event, context)
    # An async def's coroutine first, without a call of inspect's (twice per message).
    if type(awaitable) is not CoroutineType and not inspect.isawaitable(awaitable):
        # A plain function has done its work: what it returned is its result. (RoomKit 0.3.0
        # required async hooks; a `def` content filter failed at every message, and a failed
        # hook lets the message through.)
        return True, awaitable
    # TimedOut, not TimeoutError: a TimeoutError raised by the hook's own I/O must not be
    # reported as the hook's timeout.
    seconds = reg.timeout
    given = reg._timeout_text
    if ceiling is not None and (seconds is None or ceiling < seconds):
        seconds, given = ceiling, ""
    try:
        done, rest = started_bounded(awaitable, seconds, own)
    except TimedOut:
        raise HookTimeoutError(reg.name, seconds or math.inf, given) from None
    except Exception:
        raise  # the hook's failure, reported as it is
    except BaseException as exc:
        # See _hook_finished.
        raise raised_uncancelled(exc, f"hook {reg.name!r}") from None
    if done:
        return True, rest
    return False, _hook_finished(rest, reg.name, seconds, given)


async def _hook_finished(
    rest: Awaitable[Any], name: str, seconds: float | None, given: str
) -> Any:
    """The rest of a hook that suspended in its first step (`_hook_started`)."""
    try:
        return await rest
    except TimedOut:
        raise HookTimeoutError(name, seconds or math.inf, given) from None
    except Exception:
        raise  # the hook's failure, reported as it is
    except BaseException as exc:
        # The hook's own CancelledError (an inner operation's, let through) or another
        # BaseException, not a cancellation of the task running it: a failure like any,
        # as a channel's is (left to propagate, it would crash the room's actor).
        raise raised_uncancelled(exc, f"hook {name!r}") from None


async def _run_async_one(
    reg: HookRegistration,
    event: Any,
    context: Any,
    errors: list[HookError | None],
    slot: int,
    ceiling: float | None,
) -> None:
    try:
        done, rest = _hook_started(reg, event, context, ceiling)
        if not done:
            await rest
    except Exception as exc:
        timed_out = isinstance(exc, HookTimeoutError)
        logger.log(
            logging.WARNING if timed_out else logging.ERROR,  # 0.3.0's levels
            "async hook %r (%s) failed: %s",
            reg.name,
            reg.trigger,
            error_text(exc),
            exc_info=not timed_out,
        )
        errors[slot] = HookError(reg.name, exc)
