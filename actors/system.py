"""``ActorSystem``: the registry of actor kinds, and the task group every actor runs in."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, overload

import anyio
from anyio.abc import TaskGroup

from actors._cell import Cell, Counters, Host
from actors._clock import loop_clock
from actors._deadlines import Deadlines
from actors._sweeper import Sweeper
from actors.actor import Actor
from actors.errors import ActorDeadError, ActorError, UnknownActorKind
from actors.ref import ActorRef
from actors.stats import SystemStats
from actors.supervision import SupervisionPolicy
from eventlog import EventLog, _numbers

__all__ = ["ActorSystem"]

logger = logging.getLogger("roomkit.actors")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Kind:
    factory: Callable[[str], Actor]
    capacity: int
    policy: SupervisionPolicy
    stops_first: bool = False


def check_settings(
    *,
    mailbox_size: int = 1024,
    ask_timeout: float = 5.0,
    idle_timeout: float | None = None,
    task_linger: float | None = 1.0,
    snapshot_every: int | None = 100,
    shutdown_timeout: float = 10.0,
    on_idle_after: float | None = None,
) -> None:
    """Raise ``ValueError`` for a setting ``ActorSystem`` would refuse (see its arguments),
    ``TypeError`` for one that is not a number (counts: not an integer).

    For owners of a system that check their settings before they start it.
    """
    _checked_settings(
        mailbox_size=mailbox_size,
        ask_timeout=ask_timeout,
        idle_timeout=idle_timeout,
        task_linger=task_linger,
        snapshot_every=snapshot_every,
        shutdown_timeout=shutdown_timeout,
        on_idle_after=on_idle_after,
    )


@dataclass(frozen=True, slots=True)
class _Settings:
    """A system's settings, checked, with every duration a float."""

    mailbox_size: int
    ask_timeout: float
    idle_timeout: float | None
    task_linger: float | None
    snapshot_every: int | None
    shutdown_timeout: float
    on_idle_after: float | None


def _checked_settings(
    *,
    mailbox_size: int,
    ask_timeout: float,
    idle_timeout: float | None,
    task_linger: float | None,
    snapshot_every: int | None,
    shutdown_timeout: float,
    on_idle_after: float | None,
) -> _Settings:
    mailbox_size = check_count("mailbox_size", mailbox_size)
    ask_timeout = check_seconds("ask_timeout", ask_timeout)
    idle_timeout = check_seconds("idle_timeout", idle_timeout, none=True)
    task_linger = check_seconds("task_linger", task_linger, none=True)
    snapshot_every = check_count("snapshot_every", snapshot_every, none=True)
    shutdown_timeout = check_seconds("shutdown_timeout", shutdown_timeout)
    on_idle_after = check_seconds("on_idle_after", on_idle_after, none=True)
    if mailbox_size < 1:
        raise ValueError("mailbox_size must be >= 1")
    if not (ask_timeout > 0 and math.isfinite(ask_timeout)):
        raise ValueError("ask_timeout must be a positive, finite number of seconds")
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError("idle_timeout must be a positive number of seconds, or None")
    if task_linger is not None and not task_linger >= 0:
        raise ValueError("task_linger must be >= 0, or None")
    if snapshot_every is not None and snapshot_every < 1:
        raise ValueError("snapshot_every must be >= 1, or None")
    if not shutdown_timeout >= 0:
        raise ValueError("shutdown_timeout must be >= 0")
    if on_idle_after is not None and not on_idle_after >= 0:
        raise ValueError("on_idle_after must be >= 0 (inf: never), or None")
    return _Settings(
        mailbox_size=mailbox_size,
        ask_timeout=ask_timeout,
        # An infinite wait is no wait: the sweeper then keeps no queue for it.
        idle_timeout=None if idle_timeout == math.inf else idle_timeout,
        task_linger=None if task_linger == math.inf else task_linger,
        snapshot_every=snapshot_every,
        shutdown_timeout=shutdown_timeout,
        on_idle_after=on_idle_after,
    )


# The checks every layer's constructors use, defined in the lowest one (the log's own
# settings are checked with them too); exported here with the actor settings they check.


def check_number(name: str, value: object, *, none: bool = False, what: str = "a number") -> None:
    """Raise ``TypeError`` unless ``value`` is a real number (``numbers.Real``: ints, floats,
    fractions, numpy's numbers; not ``bool``), or None when ``none``; its range is the
    caller's to check. ``what`` names the kind of number in the message."""
    _numbers.check_number(name, value, none=none, what=what)


@overload
def check_seconds(name: str, value: object) -> float: ...


@overload
def check_seconds(name: str, value: object, *, none: bool) -> float | None: ...


def check_seconds(name: str, value: object, *, none: bool = False) -> float | None:
    """``check_number`` for a duration; returns it as a ``float`` (``None`` stays ``None``).

    An int past a float's range (some 1.8e308) becomes infinity: so many seconds never end,
    and the clock arithmetic a duration meets (``now + seconds``) would fail on the int.
    """
    return _numbers.check_seconds(name, value, none=none)


def check_finite_seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``check_seconds`` for a duration a server or a timer is given as a number: it must be
    positive (or zero, with ``zero``) and finite, else ``ValueError``."""
    return _numbers.check_finite_seconds(name, value, zero=zero)


@overload
def check_count(name: str, value: object) -> int: ...


@overload
def check_count(name: str, value: object, *, none: bool) -> int | None: ...


def check_count(name: str, value: object, *, none: bool = False) -> int | None:
    """Raise ``TypeError`` unless ``value`` is an integer (``numbers.Integral``, not ``bool``),
    or None when ``none``; return it as an ``int`` (numpy's integers become ints: what is sent
    on is then JSON). Its range is the caller's to check."""
    return _numbers.check_count(name, value, none=none)


def _check_policy(supervision: object) -> None:
    if supervision is not None and not isinstance(supervision, SupervisionPolicy):
        raise TypeError(f"supervision is a SupervisionPolicy or None, got {supervision!r}")


class ActorSystem:
    """Runs virtual actors: activated by their first message, passivated when idle.

    Use it as an async context manager; it owns one task group and every actor task lives in
    it::

        system = ActorSystem(MemoryEventLog(), idle_timeout=300)
        system.register("counter", Counter)
        async with system:
            await system.ref("counter", "c1").ask(Increment(2))

    **Memory.** An actor holds a task only while it has work: idle for ``task_linger`` seconds,
    it gives the task back (a parked task costs ~3 KB on asyncio) and keeps only its instance
    and a small cell (~0.4 KB for a bare actor); the next message starts a task again (~6 µs
    on asyncio). After ``idle_timeout`` it passivates and costs nothing.

    **Shutdown policy.** Leaving the ``async with`` (normally, by an exception, or by
    cancellation) first closes the door: every new ``tell``/``ask`` (from outside or between
    actors) raises ``ActorDeadError``. Then every actor **drains** what its mailbox already holds
    (senders waiting for room included), replies to its askers, runs ``on_stop``, and ends. The
    drain runs shielded from the cancellation of the surrounding scope and is bounded by
    ``shutdown_timeout`` (a plain asyncio ``Task.cancel()`` of the exiting task, which no anyio
    shield holds off, ends it at once as the timeout would); actors still running after it are
    cancelled: their queued asks fail with ``ActorDeadError``, queued tells are dropped (and
    logged), ``on_stop`` is skipped. Then the system's own tasks stop; no task is left behind,
    and the exception or cancellation that ended the block propagates unchanged.

    Args:
        log: the event log event-sourced actors use (plain actors need none).
        mailbox_size: default capacity of a mailbox, in messages.
        ask_timeout: default ``ask`` timeout, in seconds.
        idle_timeout: seconds without messages after which an actor passivates (``None``: never).
        task_linger: seconds an idle actor keeps its task before returning it (it stays active,
            its state in memory); ``None`` keeps tasks until passivation, 0 returns them at once.
        snapshot_every: default snapshot interval of event-sourced actors, in events
            (``None``: no snapshots).
        supervision: the default supervision policy.
        shutdown_timeout: seconds the shutdown drain may take before actors are cancelled.
        on_idle_after: seconds an active actor stays idle before its ``on_idle`` runs
            (``math.inf``: never); ``None`` runs it when the actor returns its task.
    """

    def __init__(
        self,
        log: EventLog | None = None,
        *,
        mailbox_size: int = 1024,
        ask_timeout: float = 5.0,
        idle_timeout: float | None = None,
        task_linger: float | None = 1.0,
        snapshot_every: int | None = 100,
        supervision: SupervisionPolicy | None = None,
        shutdown_timeout: float = 10.0,
        on_idle_after: float | None = None,
    ) -> None:
        settings = _checked_settings(
            mailbox_size=mailbox_size,
            ask_timeout=ask_timeout,
            idle_timeout=idle_timeout,
            task_linger=task_linger,
            snapshot_every=snapshot_every,
            shutdown_timeout=shutdown_timeout,
            on_idle_after=on_idle_after,
        )
        self._log = log
        self._mailbox_size = settings.mailbox_size
        self._ask_timeout = settings.ask_timeout
        self._idle_timeout = settings.idle_timeout
        self._task_linger = settings.task_linger
        self._snapshot_every = settings.snapshot_every
        _check_policy(supervision)
        self._supervision = supervision or SupervisionPolicy()
        self._shutdown_timeout = settings.shutdown_timeout
        self._kinds: dict[str, _Kind] = {}
        # The incarnations taking messages, by (kind, key). Only these are reachable by refs.
        self._cells: dict[tuple[str, str], Cell] = {}
        # The latest incarnation of a key that is stopping: a new one waits for it to end.
        self._stopping: dict[tuple[str, str], Cell] = {}
        # Cells holding a task, to cancel them if the shutdown drain times out.
        self._running: set[Cell] = set()
        # cancel_first_kinds was called: the kinds that stop first are cancelled as they stop.
        self._first_cut = False
        self._live = 0
        self._drained: anyio.Event | None = None
        self._state = _State.NEW
        self._tg: TaskGroup | None = None
        # On asyncio, cells run in plain tasks (see _spawn), kept here until they end.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # What cells' tasks run in, a copy each: the context the system was entered in, not
        # the one of whichever sender woke the actor (its values stayed set for every later
        # message, and were kept alive as long as the task).
        self._context = contextvars.Context()
        self._counters = Counters()
        self._deadlines = Deadlines()
        self._sweeper = Sweeper(
            settings.task_linger,
            settings.idle_timeout,
            self._passivate_cell,
            on_idle_after=settings.on_idle_after,
        )
        self._host = Host(
            self,
            self._counters,
            self._sweeper,
            spawn=self._spawn,
            task_exited=self._running.discard,
            detach=self._detach,
            finished=self._cell_finished,
        )

    # -- configuration ---------------------------------------------------------------------------

    @property
    def log(self) -> EventLog:
        """The event log of event-sourced actors.

        Raises:
            ActorError: the system was made without a log.
        """
        if self._log is None:
            raise ActorError("this ActorSystem has no event log; pass one to use event sourcing")
        return self._log

    @property
    def snapshot_every(self) -> int | None:
        """Default snapshot interval of event-sourced actors, in events (``None``: never)."""
        return self._snapshot_every

    @property
    def ask_timeout(self) -> float:
        """Default ``ask`` timeout, in seconds."""
        return self._ask_timeout

    @property
    def running(self) -> bool:
        """Whether the system takes messages (entered and not closing)."""
        return self._state is _State.RUNNING

    def register(
        self,
        kind: str,
        factory: Callable[[str], Actor],
        *,
        mailbox_size: int | None = None,
        supervision: SupervisionPolicy | None = None,
        stops_first: bool = False,
    ) -> None:
        """Declare a kind of actor. Allowed before or while the system runs.

        Args:
            kind: the name refs use.
            factory: ``factory(key)`` returns a new instance (an ``Actor`` subclass works).
            mailbox_size: this kind's mailbox capacity (default: the system's).
            supervision: this kind's supervision policy (default: the system's).
            stops_first: as the system shuts down, this kind's actors are stopped, and waited
                for, before the other kinds' (actors whose last work the others take: workers
                reporting to their owners). Within the same ``shutdown_timeout``: they get
                all of it but its last tenth (one second at most), which the others get to
                stop in whatever the first ones do.

        Raises:
            ValueError: ``kind`` is already registered, or ``mailbox_size`` is below 1.
            TypeError: ``factory`` is not callable, ``mailbox_size`` not an integer, or
                ``supervision`` not a ``SupervisionPolicy``.
        """
        if kind in self._kinds:
            raise ValueError(f"actor kind {kind!r} is already registered")
        if not callable(factory):
            raise TypeError(f"the factory of actor kind {kind!r} is not callable: {factory!r}")
        size = self._mailbox_size if mailbox_size is None else mailbox_size
        capacity = check_count("mailbox_size", size)
        if capacity < 1:
            raise ValueError("mailbox_size must be >= 1")
        _check_policy(supervision)
        self._kinds[kind] = _Kind(
            factory, capacity, supervision or self._supervision, stops_first=stops_first
        )

    # -- addressing ------------------------------------------------------------------------------

    def ref(self, kind: str, key: str) -> ActorRef:
        """Return a ref to the actor ``(kind, key)``, running or not (nothing is started).

        Raises:
            UnknownActorKind: ``kind`` is not registered.
            TypeError: ``key`` is not a string.
        """
        if kind not in self._kinds:
            raise UnknownActorKind(kind)
        if not isinstance(key, str):
            raise TypeError(f"an actor key is a str, not {type(key).__name__}")
        return ActorRef(self, kind, key)

    def is_active(self, kind: str, key: str) -> bool:
        """Return whether ``(kind, key)`` has an incarnation taking messages."""
        return (kind, key) in self._cells

    def active_keys(self, kind: str) -> list[str]:
        """Return the keys of the actors of ``kind`` that have an incarnation."""
        return [key for (of_kind, key) in self._cells if of_kind == kind]

    async def passivate(self, kind: str, key: str) -> bool:
        """Stop the actor gracefully and wait until it is stopped.

        Messages already in its mailbox are handled first; messages sent from now on go to the
        next incarnation, which starts only once this one has run ``on_stop``. An actor must
        not await this for itself (it would wait for its own handler): it calls
        ``Actor.passivate`` instead.

        Returns:
            Whether the actor was active.
        """
        ident = (kind, key)
        cell = self._cells.get(ident)
        if cell is None:
            stopping = self._stopping.get(ident)
            if stopping is not None:
                await stopping.wait_stopped()
            return False
        self._passivate_cell(cell)
        await cell.wait_stopped()
        return True

    def request_passivation(self, kind: str, key: str) -> bool:
        """Start passivating the actor without waiting (see ``passivate``).

        Returns:
            Whether the actor was active.
        """
        cell = self._cells.get((kind, key))
        if cell is None:
            return False
        self._passivate_cell(cell)
        return True

    def _passivate_incarnation(self, cell: Cell) -> None:
        """Passivate ``cell`` if it still takes its key's messages (``Actor.passivate``)."""
        if self._cells.get((cell.kind, cell.key)) is cell:
            self._passivate_cell(cell)

    def stats(self) -> SystemStats:
        """Return the current counters and the depth of every active actor's mailbox."""
        counters = self._counters
        return SystemStats(
            active_actors=len(self._cells),
            running_actors=len(self._running),
            stopping_actors=self._live - len(self._cells),
            activations=counters.activations,
            passivations=counters.passivations,
            restarts=counters.restarts,
            failures=counters.failures,
            messages_handled=counters.handled,
            pending_asks=self._deadlines.pending(),
            asks_dropped=counters.asks_dropped,
            mailbox_depths={ident: cell.depth for ident, cell in self._cells.items()},
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise RuntimeError("an ActorSystem runs once; make a new one")
        clock = loop_clock()
        self._deadlines.clock = self._sweeper.clock = clock
        self._context = contextvars.copy_context()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._loop = asyncio._get_running_loop()  # None on trio

        self._state = _State.RUNNING
        tg.start_soon(self._deadlines.run, name="actors: ask deadlines")
        tg.start_soon(self._sweeper.run, name="actors: idle sweeper")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg = self._tg
        assert tg is not None, "__aexit__ without __aenter__"
        self._state = _State.CLOSING
        # The shield holds off anyio's cancellation, not a plain asyncio Task.cancel() (an
        # asyncio.wait_for or TaskGroup around the exit). That one ends the drain at once, as
        # an expired shutdown_timeout does; the shutdown goes on to its end, so that no actor
        # task outlives the system, and then it propagates.
        interrupted: BaseException | None = None
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await self._drain()
                except BaseException as exc:
                    interrupted = exc
                for cell in list(self._running):
                    cell.cancel()
                tg.cancel_scope.cancel()
                while self._tasks:  # the cells' plain tasks, which the group does not wait for
                    try:
                        await asyncio.wait(set(self._tasks))
                    except BaseException as exc:
                        interrupted = _graver(interrupted, exc)
            # The body's own exception (if any) propagates from the caller's frame unchanged;
            # passing it to the task group would wrap it in an ExceptionGroup.
            await tg.__aexit__(None, None, None)
        finally:
            self._state = _State.CLOSED
            self._deadlines.fail_all(ActorDeadError("the actor system stopped"))
        if interrupted is not None:
            raise interrupted

    def cancel_first_kinds(self) -> None:
        """Cancel the actors of the kinds that stop first (see ``register``) as the system
        stops, now if it is stopping, instead of giving them ``shutdown_timeout``: their work's
        caller gave up waiting for it. The others stop as the shutdown policy says.

        The drain is shielded: a caller that gave up (its deadline) leaving the system's
        ``async with`` otherwise waited for that work to end, or for ``shutdown_timeout``.
        """
        self._first_cut = True
        if self._state is _State.CLOSING:
            self._cut_first_kinds()

    def _cut_first_kinds(self) -> None:
        cut = frozenset(name for name, kind in self._kinds.items() if kind.stops_first)
        self._host.cut_kinds = cut
        for cell in list(self._running):
            if cell.kind in cut:
                cell.cancel()

    async def _drain(self) -> None:
        """Stop every actor and wait for them, at most ``shutdown_timeout``: those of the
        kinds that stop first (see ``register``), then the others."""
        deadline = anyio.current_time() + self._shutdown_timeout
        kept = min(1.0, self._shutdown_timeout / 10)  # for the others, whatever the first do
        first = [
            cell
            for cell in (*self._cells.values(), *self._stopping.values())
            if self._kinds[cell.kind].stops_first
        ]
        # A worker may finish its last job (a provider's late answer) and report it nearly to
        # the end; the others must still be stopped (their on_stop run) in what is kept for
        # them, whatever the first ones do (a worker whose call hangs). Half the time for the
        # first ones lost the outcomes of workers that ended in the second half.
        with anyio.move_on_after(self._shutdown_timeout - kept):
            for cell in first:
                if self._cells.get((cell.kind, cell.key)) is cell:
                    self._stop_cell(cell)
            if self._first_cut:
                self._cut_first_kinds()
            for cell in first:
                await cell.wait_stopped()
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as drain:
            for cell in list(self._cells.values()):
                self._stop_cell(cell)
            if self._live:
                self._drained = anyio.Event()
                await self._drained.wait()
        if drain.cancelled_caught and self._live:
            logger.warning(
                "actor system: %d actor(s) still running after the %.1f s shutdown "
                "timeout; cancelling them",
                self._live,
                self._shutdown_timeout,
            )

    # -- internals, called by refs and cells -----------------------------------------------------

    def _activate(self, ident: tuple[str, str]) -> Cell:
        """Return the cell for ``ident``, making a new incarnation if none takes messages."""
        cell = self._cells.get(ident)
        if cell is not None:
            return cell
        if self._state is not _State.RUNNING:
            state = {
                _State.NEW: "has not started",
                _State.CLOSING: "is shutting down",
                _State.CLOSED: "has stopped",
            }[self._state]
            raise ActorDeadError(f"actor {ident[0]}/{ident[1]}: the actor system {state}")
        kind = self._kinds.get(ident[0])
        if kind is None:
            raise UnknownActorKind(ident[0])
        cell = Cell(
            self._host,
            ident[0],
            ident[1],
            kind.factory,
            capacity=kind.capacity,
            policy=kind.policy,
            linger=self._task_linger,
            predecessor=self._stopping.get(ident),
        )
        self._cells[ident] = cell
        self._live += 1
        return cell

    def _spawn(self, cell: Cell) -> None:
        assert self._tg is not None
        self._running.add(cell)
        loop = self._loop
        if loop is None:  # trio's start_soon copies the context it is called in
            tg, name = self._tg, f"actor {cell.kind}/{cell.key}"
            self._context.run(lambda: tg.start_soon(cell.run, name=name))
            return
        # An actor whose task lingered out gets a new one with its next message. In an anyio
        # task group that cost ~15 µs (a handle, a cancel scope, an event per task); a plain
        # task costs ~4. The group's guarantees are kept here: the system waits for these
        # tasks when it stops, and a cell's task is never cancelled from outside (it runs
        # shielded in the group too); the system stops it with Cell.cancel.
        # asyncio.Task itself, not loop.create_task: an eager task factory (Python 3.12+)
        # would start the cell inside the sender's offer().
        task = asyncio.Task(
            cell.run(),
            loop=loop,
            name=f"actor {cell.kind}/{cell.key}",
            context=self._context.copy(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Cell.run contains every failure of an actor: this is a fault of the runtime.
            logger.critical("actor system: %s failed", task.get_name(), exc_info=error)

    def _detach(self, cell: Cell) -> None:
        ident = (cell.kind, cell.key)
        if self._cells.get(ident) is cell:
            del self._cells[ident]
            self._stopping[ident] = cell

    def _stop_cell(self, cell: Cell) -> None:
        self._detach(cell)
        cell.begin_stop()

    def _passivate_cell(self, cell: Cell) -> None:
        if self._state is not _State.RUNNING:
            # Shutting down: the drain stops every actor in its order (see _drain). Passivated
            # meanwhile, an owner was gone before the worker that stops first reported to it.
            return
        self._counters.passivations += 1
        self._stop_cell(cell)

    def _cell_finished(self, cell: Cell) -> None:
        ident = (cell.kind, cell.key)
        if self._cells.get(ident) is cell:
            del self._cells[ident]
        if self._stopping.get(ident) is cell:
            del self._stopping[ident]
        self._sweeper.forget(cell)
        self._live -= 1
        if self._live == 0 and self._drained is not None:
            self._drained.set()


def _graver(noted: BaseException | None, new: BaseException) -> BaseException:
    """What the exit re-raises: a KeyboardInterrupt or SystemExit over a cancellation."""
    if noted is None or (
        isinstance(noted, asyncio.CancelledError) and not isinstance(new, asyncio.CancelledError)
    ):
        return new
    return noted
