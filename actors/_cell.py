"""``Cell``: one incarnation of a virtual actor: its mailbox, its task, its supervision.

An incarnation lives from the first message for ``(kind, key)`` until it passivates, gives up,
or the system stops. It holds a task only while it has work: once idle for the system's
``task_linger`` it returns its task (a parked anyio task costs ~4 KB) and keeps just its actor
instance and this object; the next message starts a new task (~40 µs). Everything that changes a
cell's state runs on the event loop without awaiting in between, which is what makes the
hand-offs (park, retire, passivate) race-free without locks.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from actors._ask import Ask
from actors._mailbox import Mailbox
from actors._signal import Signal, signal
from actors.actor import Actor
from actors.errors import ActorCrash, ActorDeadError, ConcurrencyConflict
from actors.failures import described, is_cancellation
from actors.supervision import SupervisionPolicy
from eventlog import EventLogError

if TYPE_CHECKING:
    from actors._sweeper import Sweeper
    from actors.system import ActorSystem

__all__ = ["Cell", "Counters", "Host"]

logger = logging.getLogger("roomkit.actors")

#: Messages handled back to back before yielding to other tasks, when handlers never await.
_BATCH = 64


class Counters:
    """Totals for ``ActorSystem.stats``, shared by every cell of a system."""

    __slots__ = (
        "activations",
        "asks_dropped",
        "failures",
        "handled",
        "passivations",
        "restarts",
    )

    def __init__(self) -> None:
        self.activations = 0
        self.passivations = 0
        self.restarts = 0
        self.failures = 0
        self.handled = 0
        self.asks_dropped = 0


class Host:
    """What a cell needs from its system (kept apart so cells never import the system)."""

    __slots__ = (
        "counters",
        "cut_kinds",
        "detach",
        "finished",
        "spawn",
        "sweeper",
        "system",
        "task_exited",
    )

    def __init__(
        self,
        system: ActorSystem,
        counters: Counters,
        sweeper: Sweeper,
        *,
        spawn: Callable[[Cell], None],
        task_exited: Callable[[Cell], None],
        detach: Callable[[Cell], None],
        finished: Callable[[Cell], None],
    ) -> None:
        self.system = system
        self.counters = counters
        self.sweeper = sweeper
        #: start ``cell.run`` in the system's task group.
        self.spawn = spawn
        #: the cell's task ended (it may start another later).
        self.task_exited = task_exited
        #: stop routing new messages to the cell (they will activate a new incarnation).
        self.detach = detach
        #: the cell's incarnation is over.
        self.finished = finished
        #: the kinds whose cells are cancelled as their task starts (see
        #: ``ActorSystem.cancel_first_kinds``).
        self.cut_kinds: frozenset[str] = frozenset()


class _Outcome(enum.Enum):
    RETIRE = "retire"  # idle: return the task, stay active
    STOP = "stop"  # closing and drained: end the incarnation


class _Crash(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _crash_of(error: BaseException) -> ActorCrash:
    """A handler's ``BaseException`` that is not an ``Exception`` (a ``CancelledError`` of its
    own that nothing cancelled, a ``GeneratorExit``, a subclass of ``BaseException``), as the
    crash it is: the message fails, the actor restarts with its state recovered, and the rest
    of its mailbox is handled. Let through, it ended the actor's task and failed its whole
    mailbox.

    Raises:
        BaseException: ``error`` itself when it is not the handler's to answer for: this task
            being cancelled (off asyncio, any cancellation), or the process asked to exit.
    """
    if isinstance(error, KeyboardInterrupt | SystemExit) or is_cancellation(error):
        raise error
    crash = ActorCrash(f"the handler raised {described(error)}")
    crash.__cause__ = error
    return crash


class _GiveUp(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class _LogFailed(_GiveUp):
    """Activation failed on the log itself (away, or closed)."""


class Cell(Mailbox):
    """One incarnation of the actor ``(kind, key)``.

    Attributes:
        kind: the actor's kind.
        key: the actor's key.
        actor: the live instance (``None`` before activation and between restarts).
        running: a task is running (or about to run) ``run``.
        closing: the incarnation takes no new work; it drains its mailbox then stops.
        finished: the incarnation is over.
        idle_since: when the mailbox last ran empty (``anyio.current_time``).
    """

    __slots__ = (
        "_crashes",
        "_current",
        "_factory",
        "_host",
        "_scope",
        "_stopped",
        "_wakeup",
        "actor",
        "closing",
        "finished",
        "idle_since",
        "key",
        "kind",
        "linger",
        "policy",
        "predecessor",
        "retire",
        "running",
    )

    def __init__(
        self,
        host: Host,
        kind: str,
        key: str,
        factory: Callable[[str], Actor],
        *,
        capacity: int,
        policy: SupervisionPolicy,
        linger: float | None,
        predecessor: Cell | None,
    ) -> None:
        super().__init__(capacity)
        self._host = host
        self.kind = kind
        self.key = key
        self._factory = factory
        self.policy = policy
        self.linger = linger
        #: the previous incarnation, still stopping: this one waits for it before activating.
        self.predecessor = predecessor
        self.actor: Actor | None = None
        self.running = False
        self.closing = False
        self.finished = False
        self.retire = False
        self.idle_since = 0.0
        self._wakeup: Signal | None = None

        self._stopped: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._current: Ask | None = None
        self._crashes: list[float] | None = None

    def __repr__(self) -> str:
        return f"<Cell {self.kind}/{self.key} depth={self.depth}>"

    # -- scheduling ------------------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        """The cell's task waits for a message."""
        return self._wakeup is not None

    @property
    def idle(self) -> bool:
        """Nothing to do: empty mailbox, not handling a message, not closing."""
        return (
            not self.closing
            and not self._queue
            and not self._senders
            # A task the sweeper just retired has not ended yet, but it is as idle as a parked
            # one: a sweep due in the same pass (on_idle, passivation) must not skip the cell,
            # which will not report being idle again before its next message.
            and (self._wakeup is not None or not self.running or self.retire)
        )

    def _on_message(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()
        elif not self.running and not self.finished:
            self.running = True
            self._host.spawn(self)

    def retire_task(self) -> None:
        """Ask a parked task to end; the actor stays active without a task."""
        if self._wakeup is not None and not self._queue:
            self.retire = True
            self._on_message()

    def begin_stop(self) -> None:
        """Take no new work: drain the mailbox, run ``on_stop``, end the incarnation."""
        if self.closing:
            return
        self.closing = True
        if self._stopped is None:
            self._stopped = anyio.Event()
        if not self.finished:
            self._on_message()

    def cancel(self) -> None:
        """Stop the cell's task by force (the system's shutdown timeout expired)."""
        if self._scope is not None:
            self._scope.cancel()

    async def wait_stopped(self) -> None:
        """Wait until the incarnation is over."""
        if self.finished:
            return
        if self._stopped is None:
            self._stopped = anyio.Event()
        await self._stopped.wait()

    # -- the task --------------------------------------------------------------------------------

    async def run(self) -> None:
        """The cell's task: activate if needed, handle messages, then retire or stop."""
        ended = True
        try:
            # Shielded so that cancelling the scope around the system does not cut a handler
            # in half: the system drains, then cancels this scope itself if it must.
            with anyio.CancelScope(shield=True) as scope:
                self._scope = scope
                if self.kind in self._host.cut_kinds:
                    # Cancelled while its task was starting (Cell.cancel found no scope).
                    scope.cancel()
                ended = await self._main()
        finally:
            self._scope = None
            self.running = False
            self._host.task_exited(self)
            if ended:
                self._finish()

    async def _main(self) -> bool:
        if self.predecessor is not None:
            await self.predecessor.wait_stopped()
            self.predecessor = None
        while True:
            if self.actor is None:
                if self.closing and not self.depth:
                    return True
                try:
                    await self._activate()
                except _LogFailed as failed:
                    self._fail_on_log(failed.error)
                    return True
                except _GiveUp as give_up:
                    self._give_up(give_up.error)
                    return True
            actor = self.actor
            assert actor is not None
            try:
                outcome = await self._serve(actor)
            except _Crash as crash:
                logger.error(
                    "actor %s/%s crashed; restarting it", self.kind, self.key, exc_info=crash.error
                )
                self.actor = None
                await self._call_on_stop(actor)
                try:
                    await self._backoff(crash.error)
                except _GiveUp as give_up:
                    self._give_up(give_up.error)
                    return True
                continue
            if outcome is _Outcome.RETIRE:
                if self._host.sweeper.cells_call_on_idle:
                    self._call_on_idle(actor)
                return False
            self.actor = None
            await self._call_on_stop(actor)
            return True

    async def _activate(self) -> None:
        while True:
            started: Actor | None = None  # the instance, once its on_start was called
            try:
                try:
                    actor = self._factory(self.key)
                    if not isinstance(actor, Actor):
                        raise TypeError(
                            f"the factory of kind {self.kind!r} returned {actor!r}, not an Actor"
                        )
                    actor._bind(self._host.system, self.kind, self)
                    await actor._recover()
                    started = actor
                    await actor.on_start()
                except Exception:
                    raise
                except BaseException as exc:
                    # A crash like any (see _crash_of): let through, it ended the cell's task,
                    # failed its mailbox unsupervised, and on trio tore the system down.
                    raise _crash_of(exc) from exc
            except EventLogError as exc:
                if started is not None:
                    await self._call_on_stop(started)  # what its on_start acquired
                # The log could not serve the recovery: away (after waiting for it as long as
                # the log itself waits), or closed. Attempts again and again made its callers
                # wait four times as long as a running actor's, for the same outage, and logged
                # a traceback each: its messages fail with the error now, and the next message
                # tries again.
                raise _LogFailed(exc) from exc
            except Exception as exc:
                logger.warning(
                    "activation of actor %s/%s failed", self.kind, self.key, exc_info=exc
                )
                if started is not None:
                    # A crash like any (SupervisionPolicy): an instance whose on_start raised
                    # gets on_stop, to let go of what it had acquired. (One whose recovery
                    # failed has not started: its on_stop would act on a state never loaded.)
                    await self._call_on_stop(started)
                await self._backoff(exc)
                continue
            self.actor = actor
            self._host.counters.activations += 1
            return

    async def _serve(self, actor: Actor) -> _Outcome:
        counters = self._host.counters
        policy = self.policy
        receive: Callable[[object], Awaitable[object]] = actor.receive
        budget = _BATCH
        item: object = None
        reply: object = None
        while True:
            if self._queue:
                item = self.take()
                if type(item) is Ask:
                    if item.done:
                        # Its asker timed out before the actor took it up: handling it now
                        # would act on a request whose sender was told it timed out.
                        counters.asks_dropped += 1
                        continue
                    item.taken = True
                    self._current = item
                    try:
                        reply = await receive(item.message)
                    except Exception as exc:
                        item.fail(exc)
                        if policy.escalates(exc):
                            counters.handled += 1  # handled, if not successfully
                            raise _Crash(exc) from exc
                    except BaseException as exc:
                        crash = _crash_of(exc)
                        item.fail(crash)
                        counters.handled += 1  # handled, if not successfully
                        raise _Crash(crash) from exc
                    else:
                        item.resolve(reply)
                    self._current = None
                else:
                    try:
                        await receive(item)
                    except Exception as exc:
                        if policy.escalates(exc):
                            counters.handled += 1  # handled, if not successfully
                            raise _Crash(exc) from exc
                        if isinstance(exc, EventLogError | ConcurrencyConflict):
                            # An outage, or other writers that kept moving the stream: no bug
                            # to trace back (a traceback at ERROR for a flush a busy room
                            # retries later read as a failure).
                            logger.warning(
                                "actor %s/%s could not handle a told message: %s",
                                self.kind,
                                self.key,
                                exc,
                            )
                        else:
                            logger.error(
                                "actor %s/%s failed to handle a told message",
                                self.kind,
                                self.key,
                                exc_info=exc,
                            )
                    except BaseException as exc:
                        crash = _crash_of(exc)
                        counters.handled += 1  # handled, if not successfully
                        raise _Crash(crash) from exc
                counters.handled += 1
                budget -= 1
                if not budget:
                    budget = _BATCH
                    await anyio.lowlevel.checkpoint()
                continue
            if self.closing:
                return _Outcome.STOP
            if self.retire:
                # Retired by the sweeper: idle since it parked, so idle_since stays as it is.
                self.retire = False
                self.release()
                return _Outcome.RETIRE
            self._host.sweeper.note_idle(self)
            # Whether it parks or retires, an idle actor keeps neither its last message (nor
            # reply) alive through this frame, nor an empty queue's memory.
            item = reply = None
            self.release()
            if self.linger == 0:
                return _Outcome.RETIRE
            wakeup = self._wakeup = signal()
            await wakeup.wait()
            if self._queue:
                self.retire = False

    # -- supervision -----------------------------------------------------------------------------

    async def _backoff(self, error: Exception) -> None:
        now = anyio.current_time()
        window = self.policy.within
        crashes = [t for t in self._crashes or () if now - t < window]
        crashes.append(now)
        self._crashes = crashes
        if len(crashes) > self.policy.max_restarts:
            raise _GiveUp(error)
        self._host.counters.restarts += 1
        delay = self.policy.backoff(len(crashes))
        if delay > 0:
            await anyio.sleep(delay)

    def _give_up(self, error: Exception) -> None:
        self._host.counters.failures += 1
        logger.error(
            "actor %s/%s gave up after %d crash(es) within %.0f s; failing its mailbox",
            self.kind,
            self.key,
            len(self._crashes or ()),
            self.policy.within,
            exc_info=error,
        )
        # The last crash said: what the caller can act on (a record the actor cannot read).
        self._fail_mailbox(error, f"gave up after repeated crashes, the last: {error}")

    def _fail_on_log(self, error: Exception) -> None:
        logger.warning(
            "actor %s/%s could not load its state: %s; its queued messages fail with it",
            self.kind,
            self.key,
            error,
        )
        self._fail_mailbox(error, f"could not load its state: {error}")

    def _fail_mailbox(self, error: Exception, why: str) -> None:
        """End the incarnation: its queued asks fail with an ``ActorDeadError`` saying ``why``
        (``error`` chained), its tells are dropped; the next message activates a new one."""
        self._host.detach(self)
        self.closing = True
        dead = ActorDeadError(f"actor {self.kind}/{self.key} {why}")
        dead.__cause__ = error
        dropped = self.fail_all(dead)
        if dropped:
            logger.warning("actor %s/%s: %d told message(s) dropped", self.kind, self.key, dropped)

    def quieten(self) -> None:
        """Run the actor's ``on_idle`` (the sweeper, once the cell was idle long enough)."""
        if self.actor is not None:
            self._call_on_idle(self.actor)

    def _call_on_idle(self, actor: Actor) -> None:
        # Any failure of its own, not only an Exception (see _crash_of): called by the sweeper,
        # one let through ended the sweeper's task, and with it the whole system.
        try:
            actor.on_idle()
        except BaseException as exc:
            _crash_of(exc)  # raises what is not on_idle's to answer for
            logger.error("on_idle of actor %s/%s failed", self.kind, self.key, exc_info=exc)

    async def _call_on_stop(self, actor: Actor) -> None:
        try:
            await actor.on_stop()
        except BaseException as exc:
            _crash_of(exc)  # raises what is not on_stop's to answer for
            logger.error("on_stop of actor %s/%s failed", self.kind, self.key, exc_info=exc)

    def _finish(self) -> None:
        self.finished = True
        self.closing = True
        dead = ActorDeadError(f"actor {self.kind}/{self.key} stopped before replying")
        if self._current is not None:
            self._current.fail(dead)
            self._current = None
        dropped = self.fail_all(dead)
        if dropped:
            logger.warning(
                "actor %s/%s stopped by force: %d told message(s) dropped",
                self.kind,
                self.key,
                dropped,
            )
        self._host.finished(self)
        if self._stopped is not None:
            self._stopped.set()
