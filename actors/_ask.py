"""The reply slot of one ``ask``: the envelope in the mailbox and the asker's wait, in one object.

An ask costs one small object and one signal (``_signal.py``): no memory stream, no cancel
scope (its timeout is kept by ``Deadlines``). Telling asks from tells in the mailbox is a type
check, so a told message travels bare, without an envelope.
"""

from __future__ import annotations

from actors._signal import Signal, signal

__all__ = ["TIMED_OUT", "Ask"]

TIMED_OUT: object = object()
"""The value of a slot that expired; the asker turns it into an ``AskTimeout`` with context."""


class Ask:
    """A message waiting for its reply. Settled once: the first outcome wins.

    Once settled and read, a slot holds neither the message nor the reply nor its event: it may
    linger a while in ``Deadlines``, and must cost next to nothing there.

    Attributes:
        message: the message the actor handles.
        done: whether the reply, an error, or the timeout has been set.
        taken: whether the actor took the message up (its handler runs or ran).
        patient: once taken, the timeout no longer applies (``ask(wait_once_taken=True)``).
    """

    __slots__ = ("_error", "_event", "_value", "done", "message", "patient", "taken")

    def __init__(self, message: object, patient: bool = False) -> None:
        self.message = message
        self.done = False
        self.taken = False
        self.patient = patient
        self._value: object = None
        self._error: BaseException | None = None
        self._event: Signal | None = signal()

    def resolve(self, value: object) -> None:
        """Set the reply, unless the slot is already settled (e.g. the asker timed out)."""
        if not self.done:
            self.done = True
            self.message = None
            self._value = value
            self._wake()

    def fail(self, error: BaseException) -> None:
        """Set an error for the asker, unless the slot is already settled."""
        if not self.done:
            self.done = True
            self.message = None
            self._error = error
            self._wake()

    def expire(self) -> None:
        """Settle the slot as timed out (``wait`` returns ``TIMED_OUT``).

        If the message is still queued, the actor drops it when it comes to it. A patient slot
        whose message was taken up does not expire: it waits for the handler.
        """
        if not self.done and not (self.patient and self.taken):
            self.done = True
            self.message = None
            self._value = TIMED_OUT
            self._wake()

    async def wait(self) -> object:
        """Wait until settled; return the reply (``TIMED_OUT`` on expiry) or raise the error."""
        if self._event is not None:
            await self._event.wait()
        # Settled: nobody sets the event again.
        self._event = None
        error = self._error
        if error is not None:
            # Drop the reference: a raised exception holds this frame, which holds the slot.
            self._error = None
            raise error
        value = self._value
        self._value = None
        return value

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
