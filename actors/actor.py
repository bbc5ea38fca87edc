"""``Actor``: the base class of every actor, plain or event-sourced."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from actors.errors import ActorError

if TYPE_CHECKING:
    from actors._cell import Cell
    from actors.ref import ActorRef
    from actors.system import ActorSystem

__all__ = ["Actor"]


class Actor(abc.ABC):
    """An actor: private state changed only by the messages it handles, one at a time.

    One instance serves one ``(kind, key)`` incarnation: the system makes it with the factory
    given to ``ActorSystem.register`` when the first message arrives, and drops it when the actor
    passivates, when the system stops, or when a crash restarts it (a new instance then takes
    over). Keep no state elsewhere than in the instance (or in the event log).

    Lifecycle: ``on_start`` once the instance is bound to its system (and, for an event-sourced
    actor, its state recovered); ``receive`` for each message; ``on_idle`` once per quiet spell,
    still active (after the system's ``on_idle_after``, by default when it returns its task,
    idle for ``task_linger``); ``on_stop`` when it is retired.

    Attributes:
        key: the actor's key, unique within its kind.
    """

    def __init__(self, key: str) -> None:
        """Make an instance; the system binds it (``system``, ``kind``) before ``on_start``.

        Args:
            key: the key the system activates this instance for.
        """
        self.key = key
        self._system: ActorSystem | None = None
        self._kind = ""
        self._self_ref: ActorRef | None = None
        self._cell: Cell | None = None  # the incarnation it is

    @property
    def system(self) -> ActorSystem:
        """The system running the actor.

        Raises:
            ActorError: the instance was not activated by a system (yet).
        """
        if self._system is None:
            raise ActorError(f"{type(self).__name__}({self.key!r}) is not bound to a system yet")
        return self._system

    @property
    def kind(self) -> str:
        """The kind the actor was registered under."""
        return self._kind

    @property
    def self_ref(self) -> ActorRef:
        """A ref to this actor (tell it something to handle after the current message)."""
        if self._self_ref is None:
            self._self_ref = self.system.ref(self._kind, self.key)
        return self._self_ref

    def passivate(self) -> None:
        """Stop this incarnation once the messages already in its mailbox are handled.

        Safe from a handler (e.g. on a "close" command): the current message completes, the
        queued ones too, then ``on_stop`` runs; later messages go to a new incarnation.
        """
        if self._cell is None:  # not activated by a system's cell
            self.system.request_passivation(self._kind, self.key)
        else:
            # Only if it is still the one that takes the key's messages: one that passivates
            # already, asking again, stopped the next incarnation after its first message.
            self.system._passivate_incarnation(self._cell)

    async def on_start(self) -> None:  # noqa: B027 - a hook, empty on purpose
        """Run after activation (state recovered), before the first message is handled.

        An exception here crashes the activation: the runtime retries under its supervision
        policy.
        """

    @abc.abstractmethod
    async def receive(self, message: object) -> object:
        """Handle one message. Never called concurrently for one actor.

        Args:
            message: what a caller told or asked.

        Returns:
            The reply to an ``ask`` (ignored for a ``tell``).

        Raises:
            Exception: fails this message only: the asker gets it, a told message's failure is
                logged, and the actor goes on (unless the supervision policy escalates it).
        """

    def on_idle(self) -> None:  # noqa: B027 - a hook, empty on purpose
        """Run once the actor has been idle for the system's ``on_idle_after`` (by default:
        when it returns its task, idle for ``task_linger``); it stays active.

        A chance to let go of what it can rebuild (caches), so that an idle actor costs little
        memory. Synchronous, and it must not send messages. Exceptions are logged and ignored.
        """

    async def on_stop(self) -> None:  # noqa: B027 - a hook, empty on purpose
        """Run when the incarnation ends (passivation, shutdown, or a crash before restart).

        Not run when the system cancels the actor by force (its shutdown timeout expired).
        Exceptions are logged and otherwise ignored.
        """

    async def _recover(self) -> None:  # noqa: B027 - a hook, empty on purpose
        """Restore the state before ``on_start`` (event-sourced actors replay their stream)."""

    def _bind(self, system: ActorSystem, kind: str, cell: Cell | None = None) -> None:
        self._system = system
        self._kind = kind
        self._cell = cell
