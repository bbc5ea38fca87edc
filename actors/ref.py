"""``ActorRef``: the address of a virtual actor, and the only way to talk to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from actors._ask import TIMED_OUT, Ask
from actors.errors import ActorDeadError, AskTimeout, MailboxFull

if TYPE_CHECKING:
    from actors._cell import Cell
    from actors.system import ActorSystem

__all__ = ["ActorRef"]


class ActorRef:
    """The address of the actor ``(kind, key)``; valid whether or not the actor is running.

    Sending to a ref activates the actor if needed (its state is recovered before it handles the
    message), so callers never create actors. Refs are cheap, hashable and compare by address.
    Messages from one sender to one actor are handled in the order they were sent.

    Attributes:
        kind: the actor's kind.
        key: the actor's key.
    """

    __slots__ = ("_id", "_system", "key", "kind")

    def __init__(self, system: ActorSystem, kind: str, key: str) -> None:
        self._system = system
        self.kind = kind
        self.key = key
        self._id = (kind, key)

    def __repr__(self) -> str:
        return f"ActorRef({self.kind!r}, {self.key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self._id == other._id and self._system is other._system

    def __hash__(self) -> int:
        return hash(self._id)

    async def tell(self, message: object) -> None:
        """Send ``message`` without waiting for it to be handled.

        Returns as soon as the message is in the mailbox, without yielding if there is room
        (and then without checking for cancellation either: asking the loop whether the task
        was cancelled costs more than the whole hand-over); waits for room while the mailbox
        is full (back-pressure).

        Raises:
            ActorDeadError: the system is not running, or the actor gave up before taking it.
        """
        system = self._system

        cell = system._cells.get(self._id) or system._activate(self._id)
        if not cell.offer(message) and not await cell.put(message):
            raise ActorDeadError(f"actor {self.kind}/{self.key} stopped before taking the message")

    def tell_nowait(self, message: object) -> None:
        """Send ``message`` if the mailbox has room, without waiting.

        Usable from synchronous code running in the event loop's thread (callbacks).

        Raises:
            MailboxFull: the mailbox is full.
            ActorDeadError: the system is not running.
        """
        system = self._system
        cell = system._cells.get(self._id) or system._activate(self._id)
        if not cell.offer(message):
            raise MailboxFull(
                f"mailbox of actor {self.kind}/{self.key} is full ({cell.capacity} messages)"
            )

    async def ask(
        self,
        message: object,
        *,
        timeout: float | None = None,
        wait_once_taken: bool = False,
        track: list[Ask] | None = None,
    ) -> object:
        """Send ``message`` and wait for the actor's reply.

        Args:
            message: the message; the actor's ``receive`` returns the reply.
            timeout: seconds to wait, waiting for mailbox room included (default: the system's
                ``ask_timeout``). Always finite: an ask never waits for ever.
            wait_once_taken: the timeout bounds only the wait for the actor to take the message
                up; from then on the ask waits for the handler to finish (the handler bounds
                its own time). An ``AskTimeout`` then always means the message was not handled.
            track: the ask is appended to it: its ``done`` says whether it was answered, as
                soon as it is (the asker may resume later).

        Returns:
            What the actor's handler returned.

        Raises:
            AskTimeout: no reply in time. A message still queued then is dropped unhandled;
                one the actor had taken up is handled to the end (see ``AskTimeout``). So is
                it when the asker is cancelled.
            ActorDeadError: the system is not running, or the actor stopped or gave up first.
            TypeError: ``timeout`` is not a number.
            ValueError: ``timeout`` is not a positive, finite number.
            Exception: whatever the handler raised, unchanged.

        An actor that asks itself waits for its own handler, so the ask can only time out: tell
        yourself instead.
        """
        system = self._system
        if timeout is None:
            timeout = system.ask_timeout
        # The timeout is checked before anything is activated or queued, and the deadline kept
        # only once the actor can take the message: an ask refused here leaves nothing pending.
        system._deadlines.checked(timeout)
        cell = system._cells.get(self._id) or system._activate(self._id)
        ask = Ask(message, wait_once_taken)
        if track is not None:
            track.append(ask)
        system._deadlines.add(ask, timeout)
        try:
            if not cell.offer(ask):
                await self._put_within(cell, ask, timeout)
            reply = await ask.wait()
        except BaseException:
            # The asker was cancelled (or its wait failed): a message still queued is dropped,
            # as one whose ask timed out is. Handled later, it would act for a sender that
            # gave up on it and may send it again (recorded twice). One the actor took up is
            # handled to the end, its reply unread.
            ask.expire()
            raise
        if reply is TIMED_OUT:
            raise AskTimeout(f"no reply from actor {self.kind}/{self.key} within {timeout} s")
        return reply

    async def _put_within(self, cell: Cell, ask: Ask, timeout: float) -> None:
        # The slow path only (a full mailbox): a cancel scope is affordable here.
        with anyio.move_on_after(timeout) as scope:
            delivered = await cell.put(ask)
        if scope.cancelled_caught:
            ask.expire()
            raise AskTimeout(
                f"mailbox of actor {self.kind}/{self.key} stayed full for {timeout} s"
            )
        if not delivered:
            raise ActorDeadError(f"actor {self.kind}/{self.key} stopped before taking the message")
