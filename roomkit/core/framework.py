"""``RoomKit``: the composition root and public entry point.

Compatible with the RoomKit 0.3.0 API; underneath, each room is an actor that appends domain
events to an event log (``MemoryEventLog`` by default) and the store, the deliveries and the
async hooks follow that log. Use it as an async context manager (``async with RoomKit() as
kit``) to own its tasks in your task group; for 0.3.0 code that never enters it, the runtime
starts on first use and stops in ``close()``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from actors import check_count, check_number, check_seconds
from eventlog import EventLog, MemoryEventLog
from eventlog._nats_needed import nats_needed
from roomkit._host import spawn_host
from roomkit.channels.base import Channel
from roomkit.channels.websocket import WebSocketChannel
from roomkit.core._bounded import TimedOut, bounded
from roomkit.core._cancel import interrupt_in, raised_uncancelled
from roomkit.core._channel_ops import ChannelOpsMixin
from roomkit.core._helpers import (
    FrameworkHandler,
    check_metadata,
    check_part,
    check_str,
    containers_copied,
)
from roomkit.core._in_decision import deciding
from roomkit.core._inbound import InboundMixin
from roomkit.core._post_commit import PostCommitJob, job_position
from roomkit.core._room_ids import check_read_room_id, check_room_id
from roomkit.core._room_lifecycle import RoomLifecycleMixin
from roomkit.core._runtime import KitRuntime, RuntimeSettings
from roomkit.core._store_view import KitStore
from roomkit.core._taken_up import taken_up_by
from roomkit.core.circuit_breaker import CircuitBreaker
from roomkit.core.event_router import EventRouter
from roomkit.core.hooks import (
    HookEngine,
    HookRegistration,
    IdentityHookFn,
    IdentityHookRegistration,
)
from roomkit.core.inbound_router import DefaultInboundRoomRouter, InboundRoomRouter
from roomkit.core.locks import InMemoryLockManager, RoomLockManager
from roomkit.core.rate_limiter import TokenBucketRateLimiter
from roomkit.core.router import ContentTranscoder, DefaultContentTranscoder, check_transcoder
from roomkit.errors import (
    ChannelNotFoundError,
    ChannelNotRegisteredError,
    IdentityNotFoundError,
    InvalidRoomIdError,
    KitClosedError,
    ParticipantNotFoundError,
    RoomKitError,
    RoomNotFoundError,
    SourceAlreadyAttachedError,
    SourceNotFoundError,
    VoiceBackendNotConfiguredError,
    VoiceNotConfiguredError,
)
from roomkit.identity.base import IdentityResolver
from roomkit.models._capabilities import CapabilitiesInterner
from roomkit.models.channel import ChannelBinding
from roomkit.models.delivery import DeliveryStatus
from roomkit.models.enums import (
    ChannelDirection,
    ChannelType,
    HookExecution,
    HookTrigger,
)
from roomkit.models.event import RoomEvent
from roomkit.models.task import Observation, Task
from roomkit.ownership.base import RoomOwnership
from roomkit.realtime._shaped import as_realtime_backend
from roomkit.realtime.base import (
    EphemeralCallback,
    EphemeralEvent,
    EphemeralEventType,
    RealtimeBackend,
    subscription_id_of,
)
from roomkit.realtime.memory import InMemoryRealtime
from roomkit.store.base import ConversationStore
from roomkit.store.memory import InMemoryStore

__all__ = [
    "ChannelNotFoundError",
    "ChannelNotRegisteredError",
    "DeliveryStatusHandler",
    "FrameworkEventHandler",
    "IdentityHookFn",
    "IdentityNotFoundError",
    "InvalidRoomIdError",
    "ParticipantNotFoundError",
    "RoomKit",
    "RoomKitError",
    "RoomNotFoundError",
    "SourceAlreadyAttachedError",
    "SourceNotFoundError",
    "VoiceBackendNotConfiguredError",
    "VoiceNotConfiguredError",
]

logger = logging.getLogger("roomkit.framework")

F = TypeVar("F", bound=Callable[..., Any])

DeliveryStatusHandler = Callable[[DeliveryStatus], Any]
"""A handler ``kit.on_delivery_status`` registers (0.3.0's name): called with each
``DeliveryStatus``, awaited if it returns an awaitable."""

FrameworkEventHandler = FrameworkHandler
"""``async (FrameworkEvent) -> None``: a handler of ``kit.on(type)`` (0.3.0's name)."""

_BOUND_READ_WITHIN = 1.0
"""Seconds a delivery about to try again waits for the read model to say whether its channel
is still bound (one row of a local store): a hanging store must not hold the room's
deliveries, on top of the retry's own backoff (past it, the delivery goes on)."""

_PRESENCE = {
    "online": EphemeralEventType.PRESENCE_ONLINE,
    "away": EphemeralEventType.PRESENCE_AWAY,
    "offline": EphemeralEventType.PRESENCE_OFFLINE,
}


class RoomKit(InboundMixin, ChannelOpsMixin, RoomLifecycleMixin):
    """Rooms that join channels, with hooks, over an event log.

    Args:
        store: the read model behind queries (default ``InMemoryStore``); rebuilt from the log.
        identity_resolver: resolves inbound senders to identities (default: none).
        identity_channel_types: resolve only for these channel types (default: all).
        inbound_router: picks the room of an inbound message (default: 0.3.0's routing).
        lock_manager: accepted for compatibility and unused: each room's actor is its only
            writer, so no lock exists.
        realtime: ephemeral events backend (default ``InMemoryRealtime``).
        max_chain_depth: the chain depth at which replies are blocked: a reply to a message
            is at depth 1, a reply to that reply at 2, ...; a reply at ``max_chain_depth`` or
            deeper is recorded as blocked. So ``max_chain_depth - 1`` AI replies may follow
            each other (as in 0.3.0).
        identity_timeout: seconds the identity resolver may take, and each identity hook
            (``identity_hook``) that awaits: one past it fails as if it raised (``hook_error``
            ``"timeout (<identity_timeout>s)"``, ON_ERROR) and the next one is tried.
            ``None``: no bound.
        process_timeout: seconds a room may spend on one inbound message, from when it takes
            the message up (``None``: no bound). A message spends at most four times as long
            waiting for its room (a backlog) before it is dropped unprocessed; either way
            ``process_inbound`` then returns ``blocked=True, reason="process_timeout"`` and the
            message is not recorded, unless it was and its delivery or async hooks overran.
            It also bounds each channel's ``on_event`` (an AI's generation included) and each
            ``deliver`` attempt: one that overruns fails its target with ``"timeout"``; and
            each async hook run after a commit, whatever its own ``timeout``.
        stt, tts, voice: voice providers and backend (voice is a separate package).
        log: the event log (default ``MemoryEventLog``; ``NatsEventLog`` in production).
        transcoder: adapts content to what target channels support.
        wait_for_delivery: when False, ``process_inbound`` and ``send_event`` return right
            after the commit instead of after delivery and async hooks.
        mailbox_size: bound of each room actor's mailbox (backpressure to callers).
        idle_timeout: seconds after which an idle room actor passivates (``None``: never).
        task_linger: seconds a room's actors keep their tasks once idle (``None``: always);
            then they stay active without a task.
        rest_after: seconds a room stays quiet before it rests: it keeps its room, bindings,
            participants and recent events as JSON only, and validates them again for its
            next command (some 20 µs, or ~0.5 ms for 50 recent events that something reads).
            ``None`` or ``math.inf``: never (until it passivates).
        snapshot_every: snapshot a room's state every N events (``None``: never). A snapshot
            re-encodes the room with its 50 recent events (~0.3 ms); recovering replays at most
            N events past it (~0.3 ms per 1,000 from memory, ~2 ms from JetStream).

        outcome_delay: delivery outcomes are audit records that ride on the room's next
            append; outcomes that waited this many seconds for one are appended on their own
            (a shorter delay: the log shows them sooner, at an append of their own for every
            message of a room whose messages come further apart; a crash loses what waits).
        ownership: how the processes sharing the log split the rooms, so that each room's
            commands run in one process at a time (``roomkit.ownership.nats.NatsOwnership``);
            default: none, each process runs the commands it is given.
    """

    def __init__(
        self,
        store: ConversationStore | None = None,
        identity_resolver: IdentityResolver | None = None,
        identity_channel_types: set[ChannelType] | None = None,
        inbound_router: InboundRoomRouter | None = None,
        lock_manager: RoomLockManager | None = None,
        realtime: RealtimeBackend | None = None,
        max_chain_depth: int = 5,
        identity_timeout: float = 10.0,
        process_timeout: float | None = 30.0,
        stt: Any = None,
        tts: Any = None,
        voice: Any = None,
        *,
        log: EventLog | None = None,
        transcoder: ContentTranscoder | None = None,
        wait_for_delivery: bool = True,
        mailbox_size: int = 256,
        idle_timeout: float | None = 300.0,
        snapshot_every: int | None = 1000,
        outcome_delay: float = 1.0,
        task_linger: float | None = 1.0,
        rest_after: float | None = 10.0,
        ownership: RoomOwnership | None = None,
    ) -> None:
        # Numbers of the wrong type fail here, by name, not at the first comparison deep inside
        # (the actor settings are checked with the actor system's own checks, below). Durations
        # become floats: an int too large for one is infinite (see check_seconds).
        check_number("max_chain_depth", max_chain_depth)  # only compared: inf is no limit
        if not max_chain_depth >= 0:  # NaN compares false; below 0 blocks all as 0 does
            raise ValueError(f"max_chain_depth must be >= 0, got {max_chain_depth!r}")
        identity_bound = check_seconds("identity_timeout", identity_timeout, none=True)
        if identity_bound is not None and not identity_bound >= 0:
            raise ValueError(f"identity_timeout must be >= 0 or None, got {identity_timeout!r}")
        process_timeout = check_seconds("process_timeout", process_timeout, none=True)
        rest_after = check_seconds("rest_after", rest_after, none=True)
        outcome_delay = check_seconds("outcome_delay", outcome_delay)
        for name, part, contract in [
            ("store", store, ConversationStore),
            ("identity_resolver", identity_resolver, IdentityResolver),
            ("inbound_router", inbound_router, InboundRoomRouter),
            ("lock_manager", lock_manager, RoomLockManager),
            ("realtime", realtime, RealtimeBackend),
            ("log", log, EventLog),
            ("transcoder", transcoder, ContentTranscoder),
            ("ownership", ownership, RoomOwnership),
        ]:
            check_part(name, part, contract)
        check_transcoder("transcoder", transcoder)
        if identity_channel_types is not None and (
            # ``"sms" in "sms,email"`` would match by substring: a collection is due, of
            # channel types (which are strings); anything else failed every message.
            isinstance(identity_channel_types, str | bytes)
            or not isinstance(identity_channel_types, Collection)
            or not all(isinstance(kind, str) for kind in identity_channel_types)
        ):
            raise TypeError(
                "identity_channel_types must be a collection of channel types, got "
                f"{identity_channel_types!r}"
            )
        unknown = sorted(set(identity_channel_types or ()) - set(ChannelType))
        if unknown:
            # Accepted as 0.3.0 did; but no channel has such a type ("SMS" for "sms"): said,
            # or the resolver never ran for those channels and nothing told why.
            logger.warning(
                "identity_channel_types holds %s, which no channel type is (they are %s): "
                "the identity resolver runs for no channel of those",
                ", ".join(map(repr, unknown)),
                ", ".join(kind.value for kind in ChannelType),
            )
        self._store = store if store is not None else InMemoryStore()
        self._store_view = KitStore(self, self._store)  # type: ignore[abstract]  # see its module
        self._log = log if log is not None else MemoryEventLog()
        self._identity_resolver = identity_resolver
        self._identity_channel_types = identity_channel_types
        self._inbound_router = inbound_router or DefaultInboundRoomRouter(self._store)
        self._lock_manager = lock_manager or InMemoryLockManager()
        self._realtime = realtime if realtime is not None else InMemoryRealtime()
        self._realtime_backend = as_realtime_backend(self._realtime)  # it may be duck-typed
        self._max_chain_depth = max_chain_depth
        # None: no bound, as in 0.3.0.
        self._identity_timeout = math.inf if identity_bound is None else identity_bound
        if process_timeout is not None and not process_timeout > 0:
            raise ValueError(f"process_timeout must be positive or None, got {process_timeout!r}")
        if process_timeout == math.inf:
            process_timeout = None  # no bound, as None says
        self._process_timeout = process_timeout
        if ownership is not None and log is None:
            # Each kit's own memory log: no other process sees what this one writes.
            raise ValueError(
                "ownership splits rooms between processes sharing one event log: give the kit "
                "that log (log=NatsEventLog(...))"
            )
        self._ownership = ownership
        self._stt = stt
        self._tts = tts
        self._voice = voice
        self._wait_for_delivery = wait_for_delivery
        self._transcoder = transcoder or DefaultContentTranscoder()
        self._hook_engine = HookEngine()
        self._channels: dict[str, Channel] = {}
        self._framework_handlers: dict[str, list[FrameworkHandler]] = {}
        self._identity_hooks: list[IdentityHookRegistration] = []
        self._creating: dict[str, anyio.Lock] = {}
        self._auto_created: dict[str, int] = {}
        self._delivery_status_handlers: list[DeliveryStatusHandler] = []
        # Owned by the kit for its whole life, so that re-registering a channel keeps its
        # breaker and rate-limit state (quirk 14 fixed).
        self._breakers: dict[str, CircuitBreaker] = {}
        self._rate_limiter = TokenBucketRateLimiter()
        self._router: EventRouter | None = None
        self._capabilities = CapabilitiesInterner()
        # The task groups of the kit's `async with` blocks (see __aenter__), by the task that
        # entered them (several tasks may enter one kit), innermost last.
        self._task_groups: dict[int, list[TaskGroup]] = {}
        self._closer: anyio.Event | None = None  # set once a close its own work began ended
        # What a close took up, by id (channels, voice, realtime): see _close.
        self._closed_parts: dict[int, object] = {}
        self._runtime = KitRuntime(
            self,
            RuntimeSettings(
                mailbox_size=mailbox_size,
                idle_timeout=idle_timeout,
                task_linger=task_linger,
                rest_after=math.inf if rest_after is None else rest_after,
                snapshot_every=snapshot_every,
                ask_timeout=_ask_timeout(process_timeout),
                outcome_delay=outcome_delay,
            ),
        )

    # -- properties --------------------------------------------------------------------------

    @property
    def store(self) -> ConversationStore:
        """The read model, whose room, task and read-marker writes the kit logs (see
        ``roomkit.core._store_view``); ``store.read_model`` is the store given."""
        return self._store_view

    @property
    def log(self) -> EventLog:
        return self._log

    @property
    def hook_engine(self) -> HookEngine:
        return self._hook_engine

    @property
    def realtime(self) -> RealtimeBackend:
        return self._realtime

    @property
    def stt(self) -> Any:
        return self._stt

    @property
    def tts(self) -> Any:
        return self._tts

    @property
    def voice(self) -> Any:
        return self._voice

    # -- runtime -----------------------------------------------------------------------------

    async def _ensure_runtime(self) -> KitRuntime:
        runtime = await self._started_runtime()
        await self._rebuilt(runtime)
        return runtime

    async def _started_runtime(self) -> KitRuntime:
        runtime = self._current_runtime()
        await runtime.ensure_started()
        return runtime

    async def _rebuilt(self, runtime: KitRuntime) -> None:
        if runtime.projection.rebuilding is not None:
            await runtime.projection.rebuilt()  # reads and routing need the whole read model

    def _current_runtime(self) -> KitRuntime:
        if self._runtime.ended:
            self._runtime = self._runtime.successor()
        return self._runtime

    def _get_router(self) -> EventRouter:
        # One router for the kit's life: it reads the channel registry live, and owns no
        # state of its own beyond the breakers and limiter the kit hands it.
        if self._router is None:
            self._router = EventRouter(
                self._channels,
                transcoder=self._transcoder,
                max_chain_depth=self._max_chain_depth,
                rate_limiter=self._rate_limiter,
                breakers=self._breakers,
                # A hung channel fails its target, not its room's deliveries for ever.
                call_timeout=self._process_timeout,
                still_bound=self._still_bound,
            )
        return self._router

    async def _still_bound(self, room_id: str, binding: ChannelBinding) -> ChannelBinding | None:
        """The binding the read model holds for ``binding``'s channel in ``room_id`` (for a
        delivery about to try again: see EventRouter), None if it holds none (detached).
        Changed in place or attached again, the router takes it as it is (and stops if it
        may no longer read the room): told apart by their times of
        attach, a re-attach at the same time (or an earlier one, by another clock) was not
        seen, and a store keeping rounded times cut deliveries of channels never detached.
        ``binding`` itself when it cannot say: a rebuild under way, its store away, behind
        the delivery's own commit (it may not hold the attach yet), a read that fails or
        hangs. The delivery goes on then, as it did before anything was asked.

        The read model, not the room's actor: asking the actor waits behind its mailbox (the
        room's inbound messages), and the actor may itself wait on this delivery worker's
        mailbox (it hands it each commit's work) -- a deadlock until the ask's bound."""
        projection = self._runtime.projection
        if projection.rebuilding is not None or projection.store_away:
            return binding
        position = job_position(room_id)
        if position is not None and projection.checkpoint < position:
            return binding  # its lag (a store that hung): the attach may not be in it yet
        channel_id = binding.channel_id
        try:
            stored = await bounded(
                self._store.get_binding(room_id, channel_id),
                min(self._runtime.ask_timeout, _BOUND_READ_WITHIN),
            )
        except Exception as exc:
            logger.warning(
                "room %s: the read model could not say whether channel %r is still bound "
                "(%s): its delivery goes on",
                room_id,
                channel_id,
                "no answer in time" if isinstance(exc, TimedOut) else exc,
            )
            return binding
        return stored

    async def __aenter__(self) -> Self:
        # The kit's runtime runs in a task of this group, entered here and left by __aexit__,
        # in this task and cancel scope whatever close() did in between.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await self._current_runtime().enter(task_group)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        self._task_groups.setdefault(anyio.get_current_task().id, []).append(task_group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = anyio.get_current_task().id
        entered = self._task_groups[task]
        task_group = entered.pop()
        if not entered:
            del self._task_groups[task]
        try:
            await self.close()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # Its caller gave up (its deadline, its cancellation): the task group below
                # waits for the runtime's task, which waits for the actors, which give the
                # work in progress 10 s. Cut, the cancellation comes out at once, as from a
                # close() under the same deadline.
                self._runtime.cut_work()
            raise
        finally:
            # The body's own exception propagates unchanged: handed to the task group, it
            # would come out wrapped in an ExceptionGroup.
            try:
                await task_group.__aexit__(None, None, None)
            except BaseExceptionGroup as group:
                interrupt = interrupt_in(group)
                if interrupt is None:
                    raise
                raise interrupt from None  # bare, as on asyncio (see interrupt_in)

    async def close(self) -> None:
        """Stop the rooms, close channels, voice and realtime.

        The rooms first finish the commands their callers wait for, and those messages'
        deliveries and async hooks: each channel call is bounded by ``process_timeout``, and
        the whole wait by four times ``process_timeout`` (two minutes by default). With
        ``process_timeout=None``, a channel that never returns holds ``close`` for up to a
        day: bound it yourself, e.g. ``with anyio.move_on_after(10): await kit.close()``.
        Past that bound, or once its caller gives up, a close no longer waits for deliveries:
        those still queued are dropped (their messages stay recorded), and the rooms' actors
        are stopped, each given 10 s to finish what it is doing (a delivery or hook in
        progress) before it is cancelled. Leaving the kit's ``async with`` when its caller
        gives up (its deadline, its cancellation) waits for the actors to stop, but cuts short
        at once the deliveries and async hooks in progress (a delivery waiting for a rate-limit
        token or a retry, a channel's call: it records no outcome), so that the cancellation
        comes out at once, not 10 s late; what the rooms hold is still recorded. A close whose
        caller gave up leaves the channels and realtime backend open (a later ``close()``
        closes them). It may be called from any task, also inside the kit's ``async with``.

        Called from the kit's own work that closing waits for (a hook, a channel, a framework
        event handler a room's delivery runs, code a room's decision runs), it begins closing
        and returns at once: new commands are refused from then on, and the rest, this call's
        own message included, goes on in a task of its own, which a later ``close()`` (the
        kit's ``async with`` exit) waits for. Waiting
        there, it waited for itself until the bound above, then for the 10 s its actor got.
        """
        if self._inside_own_work():
            if self._closer is None and not self._runtime.closed:
                self._closer = anyio.Event()
                # Now, not when that task starts: the caller's next command was taken, or
                # not, as the tasks happened to run.
                self._runtime.refuse_commands()
                # Not in this work's context: closing would take itself for its own work.
                spawn_host(self._close_aside, "roomkit.close", fresh_context=True)
            return
        if self._closer is not None:
            await self._closer.wait()  # begun by the kit's own work: see above
            return
        await self._close()

    def _inside_own_work(self) -> bool:
        """Whether the running code is work of this kit that closing waits for (a command
        taken up: an identity resolver or a router its message runs)."""
        job = PostCommitJob._var.get()
        if job is not None and job.active and job.kit is self:
            return True
        decision = deciding()
        if decision is not None and decision.kit is self:
            return True
        return taken_up_by(self._runtime) is not None

    async def _close_aside(self) -> None:
        assert self._closer is not None
        try:
            await self._close()
        except Exception:
            logger.exception("closing the kit failed")
        finally:
            self._closer.set()

    async def _close(self) -> None:
        await self._runtime.stop()
        # Each once: by the first close that takes it up (a close running alongside skips
        # it), again by a later one only if that close was cut short (its caller gave up).
        for channel in list(self._channels.values()):
            await self._close_part(channel, f"channel {channel.channel_id}")
        voice = self._voice
        if voice is not None and hasattr(voice, "close"):
            await self._close_part(voice, "the voice backend", log_failure=False)
        await self._close_part(self._realtime_backend, "the realtime backend", log_failure=False)

    async def _close_part(self, part: Any, what: str, *, log_failure: bool = True) -> None:
        """``part.close()`` unless a close took it up already (see ``_close``); a failure is
        logged (``log_failure``) or raised, and either way the part counts as closed."""
        taken = self._closed_parts
        key = id(part)  # by identity: a channel may be unhashable, or equal to another
        if key in taken:
            return
        taken[key] = part  # held, so that its id names it for as long as the kit lives
        try:
            try:
                await part.close()
            except Exception:
                raise
            except BaseException as exc:
                try:
                    # The part's own failure, whatever it raised (a BaseException subclass of
                    # its own): it failed the whole close, and on trio, from a close called by
                    # a hook or channel (run aside in a system task), ended the run with
                    # TrioInternalError.
                    failure = raised_uncancelled(exc, f"closing {what}")
                except BaseException:
                    del taken[key]  # cut short: the next close() closes it
                    raise
                raise failure from exc
        except Exception:
            if not log_failure:
                raise
            logger.exception("closing %s failed", what)

    async def serve_ingress(
        self,
        nats_url: str | Sequence[str] | Any = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "roomkit",
        stream_name: str = "ROOMKIT_IN",
        durable: str = "roomkit-ingress",
        max_in_flight: int = 64,
        task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
        **options: Any,
    ) -> None:
        """Consume inbound messages published on ``<subject_prefix>.in.<channel_id>`` until
        cancelled (see ``roomkit.ingress``); acknowledges each one after it is committed.

        Args:
            nats_url: the NATS server(s), or a connected nats-py client.
            subject_prefix, stream_name, durable, max_in_flight, options: see
                ``roomkit.ingress.Ingress``. Among the options, ``dlq_stream`` (default
                ``"ROOMKIT_DLQ"``) keeps the dead letters: with another ``subject_prefix``,
                give it another name too (a stream keeps the subjects it was made with).
        """
        try:
            from roomkit.ingress.ingress import serve_ingress
        except ModuleNotFoundError as missing:  # nats-py, an optional dependency
            raise nats_needed(missing, "serve_ingress") from None

        await serve_ingress(
            self,
            nats_url,
            subject_prefix=subject_prefix,
            stream_name=stream_name,
            durable=durable,
            max_in_flight=max_in_flight,
            task_status=task_status,
            **options,
        )

    async def rebuild_store(self) -> None:
        """Rebuild the read model from the log (the store must support ``clear()``).

        Meanwhile the kit's reads, those made through ``kit.store``, and its routing of
        inbound messages wait for the rebuild to end; reads made on the store object itself
        (the one given as ``store=``) see it empty, then filling up.
        """
        runtime = await self._ensure_runtime()
        await runtime.rebuild_store()

    # -- hooks -------------------------------------------------------------------------------

    def hook(
        self,
        trigger: HookTrigger,
        execution: HookExecution = HookExecution.SYNC,
        priority: int = 0,
        name: str = "",
        timeout: float | None = 30.0,
        channel_types: Collection[ChannelType] | None = None,
        channel_ids: Collection[str] | None = None,
        directions: Collection[ChannelDirection] | None = None,
    ) -> Callable[[F], F]:
        """Decorator registering a global hook; returns the function unchanged.

        Raises:
            TypeError: used bare (``@kit.hook`` without its trigger), which registered
                nothing and left the function's name bound to the decorator.
        """
        if callable(trigger) and not isinstance(trigger, HookTrigger):
            raise TypeError(
                f"kit.hook needs its trigger: @kit.hook(HookTrigger.BEFORE_BROADCAST), not a "
                f"bare @kit.hook over {getattr(trigger, '__name__', trigger)!r}"
            )

        def register(fn: F) -> F:
            registration = HookRegistration(
                trigger=trigger,
                execution=execution,
                fn=fn,
                priority=priority,
                # 0.3.0's rule: the decorator names a hook after its function, while
                # add_room_hook keeps the name given (a room hook may be unnamed).
                name=name or getattr(fn, "__name__", "") or type(fn).__name__,
                timeout=timeout,
                channel_types=channel_types,
                channel_ids=channel_ids,
                directions=directions,
            )
            self._register_hook(registration)
            return fn

        return register

    def add_room_hook(
        self,
        room_id: str,
        trigger: HookTrigger,
        execution: HookExecution,
        fn: Callable[..., Awaitable[Any]],
        priority: int = 0,
        name: str = "",
    ) -> None:
        """Register a hook for one room only.

        Raises:
            InvalidRoomIdError: ``room_id`` is not a room id (``None`` would make the hook a
                global one that ``remove_room_hook`` cannot remove).
        """
        check_room_id(room_id)
        registration = HookRegistration(
            trigger=trigger, execution=execution, fn=fn, priority=priority, name=name
        )
        self._register_hook(registration, room_id)

    def remove_room_hook(self, room_id: str, name: str) -> bool:
        """Remove the first room hook called ``name``; ``False`` if there is none.

        Raises:
            TypeError: ``room_id`` or ``name`` is not a string.
        """
        check_str("room_id", room_id)
        check_str("name", name)
        return self._hook_engine.remove_room_hook(room_id, name)

    def _register_hook(self, registration: HookRegistration, room_id: str | None = None) -> None:
        mismatch = self._hook_engine.execution_mismatch(registration)
        if mismatch:
            # Quirk 8 fixed: a hook that can never run is reported at registration.
            logger.warning("%s", mismatch)
        unreachable = self._hook_engine.filter_mismatch(registration)
        if unreachable:
            logger.warning("%s", unreachable)
        roomless = self._hook_engine.room_mismatch(registration) if room_id is not None else None
        if roomless:
            logger.warning("%s", roomless)
        if room_id is None:
            self._hook_engine.register(registration)
        else:
            self._hook_engine.add_room_hook(room_id, registration)

    # -- timeline and read model -------------------------------------------------------------

    async def get_timeline(
        self,
        room_id: str,
        offset: int = 0,
        limit: int = 50,
        visibility_filter: str | None = None,
    ) -> list[RoomEvent]:
        """Return the room's events in order (offset/limit), optionally of one visibility.

        Raises:
            RoomNotFoundError: no such room.
            TypeError: ``offset`` or ``limit`` is not an int.
            ValueError: it is negative (0.3.0's in-memory store sliced with it: ``offset=-2``
                gave the last two events).
            TypeError: ``visibility_filter`` is not a str or None.
            InvalidRoomIdError: ``room_id`` is not a str.
        """
        counts = []
        for name, value in (("offset", offset), ("limit", limit)):
            count = check_count(name, value)
            if count < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
            counts.append(count)
        if visibility_filter is not None:
            check_str("visibility_filter", visibility_filter)
        await self._require_room(room_id)
        return await (await self._read_model()).list_events(
            room_id, offset=counts[0], limit=counts[1], visibility_filter=visibility_filter
        )

    async def list_tasks(self, room_id: str, status: str | None = None) -> list[Task]:
        if status is not None:
            check_str("status", status)
        return await (await self._read_model()).list_tasks(
            check_read_room_id(room_id), status=status
        )

    async def update_task(self, task: Task) -> Task:
        """Record a changed task (a status set to completed, say) in its room's log.

        Not in 0.3.0, whose apps changed tasks through ``kit.store.update_task``, which comes
        here now: the store is the log's projection, and a change made to it alone would be
        lost when it is rebuilt (a new process on the same log, ``rebuild_store``).

        Raises:
            TypeError: ``task`` is not a ``Task``.
            RoomNotFoundError: its room does not exist.
            pydantic.ValidationError: it does not validate (a field assigned in place).
        """
        # The store view's work: also from a hook of the room, which the room commits at once.
        updated_task: Task = await self._store_view.update_task(task)
        return updated_task

    async def list_observations(self, room_id: str) -> list[Observation]:
        return await (await self._read_model()).list_observations(check_read_room_id(room_id))

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """Record that ``channel_id`` read the room up to ``event_id`` (nothing for a room
        that does not exist, as 0.3.0's store passthrough did); ``mark_all_read`` marks
        everything.

        Raises:
            TypeError: ``channel_id`` or ``event_id`` is not a string (0.3.0 stored a None
                marker, after which every event counted as unread).
        """
        await self._store_view.mark_read(room_id, channel_id, event_id)  # the view does it

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """Record that ``channel_id`` read everything in the room so far (nothing for a room
        that does not exist).

        Raises:
            TypeError: ``channel_id`` is not a string.
        """
        await self._store_view.mark_all_read(room_id, channel_id)  # the view does it

    # -- websockets --------------------------------------------------------------------------

    async def connect_websocket(
        self, channel_id: str, connection_id: str, send_fn: Callable[..., Awaitable[Any]]
    ) -> None:
        """Register a WebSocket connection on a registered ``WebSocketChannel``.

        Raises:
            ChannelNotRegisteredError: no ``WebSocketChannel`` of that id is registered.
            TypeError: ``connection_id`` is not a string or ``send_fn`` is not callable (such a
                connection was dropped at its first delivery, the event unsent).
            KitClosedError: the kit is closed (the connection would get nothing, and its
                ``channel_connected`` said otherwise).
        """
        self._runtime.check_open()
        check_str("channel_id", channel_id)
        check_str("connection_id", connection_id)
        if not callable(send_fn):
            raise TypeError(f"send_fn must be an async callable, got {send_fn!r}")
        channel = self._channels.get(channel_id)
        if not isinstance(channel, WebSocketChannel):
            raise ChannelNotRegisteredError(
                f"Channel {channel_id} is not a registered WebSocket channel"  # 0.3.0's text
            )
        channel.register_connection(connection_id, send_fn)
        await self._emit_framework_event(
            "channel_connected", channel_id=channel_id, data={"connection_id": connection_id}
        )

    async def disconnect_websocket(self, channel_id: str, connection_id: str) -> None:
        """Unregister a WebSocket connection and fire ``channel_disconnected``, as 0.3.0 did
        whatever the channel: also when it already dropped the connection after a failed send,
        or is not (or no longer) a registered WebSocket channel.

        Raises:
            TypeError: ``channel_id`` or ``connection_id`` is not a string.
        """
        check_str("channel_id", channel_id)
        check_str("connection_id", connection_id)
        channel = self._channels.get(channel_id)
        if isinstance(channel, WebSocketChannel):
            channel.unregister_connection(connection_id)
        await self._emit_framework_event(
            "channel_disconnected",
            channel_id=channel_id,
            data={"connection_id": connection_id},
        )

    # -- realtime (ephemeral, never logged) --------------------------------------------------

    async def publish_typing(
        self,
        room_id: str,
        user_id: str,
        is_typing: bool = True,
        data: dict[str, Any] | None = None,
    ) -> None:
        kind = EphemeralEventType.TYPING_START if is_typing else EphemeralEventType.TYPING_STOP
        if data is not None:  # subscribers got a list as their event's data, NATS none at all
            check_metadata(data, "data")
        # A copy (a dict, whatever mapping was given): the caller's dict, reused or changed
        # later, changed the events published with it, and another process got them as they
        # were published (NatsRealtime encodes them). Its containers only: a value deepcopy
        # refuses (a lock, a read-only mapping) made publish_typing raise, where it published.
        await self._publish(room_id, kind, user_id, containers_copied(data) if data else {})

    async def publish_presence(self, room_id: str, user_id: str, status: str) -> None:
        check_str("status", status)
        kind = _PRESENCE.get(status)
        if kind is None:
            await self._publish(room_id, EphemeralEventType.CUSTOM, user_id, {"status": status})
        else:
            await self._publish(room_id, kind, user_id, {})

    async def publish_read_receipt(self, room_id: str, user_id: str, event_id: str) -> None:
        check_str("event_id", event_id)
        await self._publish(
            room_id, EphemeralEventType.READ_RECEIPT, user_id, {"event_id": event_id}
        )

    async def publish_reaction(
        self,
        room_id: str,
        user_id: str,
        target_event_id: str,
        emoji: str,
        action: str = "add",
    ) -> None:
        data = {"target_event_id": target_event_id, "emoji": emoji, "action": action}
        for name, value in data.items():
            check_str(name, value)
        await self._publish(room_id, EphemeralEventType.REACTION, user_id, data)

    async def _publish(
        self, room_id: str, kind: EphemeralEventType, user_id: str, data: dict[str, Any]
    ) -> None:
        # Also once the kit is closed: its realtime backend is closed, and ignores the event,
        # as 0.3.0's did. Refused, a WebSocket handler still typing as the app
        # stopped failed where it did not in 0.3.0 (subscribe_room refuses: it would get
        # nothing).
        # Sent as given, another process's NatsRealtime dropped them with a warning, and this
        # process's subscribers got them with the wrong types.
        check_str("room_id", room_id)
        check_str("user_id", user_id)
        event = EphemeralEvent(room_id=room_id, type=kind, user_id=user_id, data=data)
        await self._realtime_backend.publish_to_room(room_id, event)

    async def subscribe_room(self, room_id: str, callback: EphemeralCallback) -> str:
        """Call ``callback`` with the room's ephemeral events; the subscription's id.

        Raises:
            KitClosedError: the kit is closed.
        """
        self._runtime.check_open()
        check_str("room_id", room_id)  # it would never hear a thing: publishing refuses it
        if not callable(callback):  # it failed at the room's next ephemeral event
            raise TypeError(f"callback must be callable, got {callback!r}")
        try:
            return await self._realtime_backend.subscribe_to_room(room_id, callback)
        except Exception as exc:
            if self._runtime.closed:  # and its backend with it, as this subscribed
                raise KitClosedError("the kit closed while subscribing") from exc
            raise

    async def unsubscribe_room(
        self, subscription_id: str | None = None, *, sub_id: str | None = None
    ) -> bool:
        """Stop a subscription ``subscribe_room`` made: its id as ``subscription_id`` (0.3.0's
        name) or ``sub_id`` (its reference's).

        Raises:
            TypeError: neither or both were given.
        """
        return await self._realtime_backend.unsubscribe(
            subscription_id_of(subscription_id, sub_id)
        )


_UNBOUNDED_ASK = 24 * 3600.0
"""How long a command waits for its room when ``process_timeout`` is None: asks stay finite."""


def _ask_timeout(process_timeout: float | None) -> float:
    """How long a command may wait for its room and be handled there before it is dropped:
    room for a backlog of a few messages next to the time one may take."""
    ask = math.inf if process_timeout is None else 4 * process_timeout
    return ask if math.isfinite(ask) else _UNBOUNDED_ASK  # 1e308 s is no bound either
