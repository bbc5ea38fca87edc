"""Errors raised by the actor runtime.

Exception tree::

    ActorError
    ├── AskTimeout             no reply within the ask's timeout (also a TimeoutError)
    ├── MailboxFull            tell_nowait on a full mailbox
    ├── ActorDeadError         the actor or its system stopped, or gave up after its restart limit
    ├── UnknownActorKind       a ref to a kind nobody registered (also a LookupError)
    ├── ConcurrencyConflict    the stream moved under an event-sourced actor twice in a row
    ├── ActorCrash             raised by a handler to make the runtime restart the actor
    └── AfterCommitError       events were committed, but the after-commit side effects failed

Exceptions raised by a handler reach the asker unchanged; event log errors (``EventLogError``)
pass through the same way, since ``eventlog`` is this package's own layer, not a foreign one.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventlog import Record

__all__ = [
    "ActorCrash",
    "ActorDeadError",
    "ActorError",
    "AfterCommitError",
    "AskTimeout",
    "ConcurrencyConflict",
    "MailboxFull",
    "UnknownActorKind",
]


class ActorError(Exception):
    """Root of every error the actor runtime raises."""


class AskTimeout(ActorError, TimeoutError):
    """An ``ask`` got no reply in time.

    If the actor had not taken the message up yet, it never will: an ask that expires while
    queued is dropped (``SystemStats.asks_dropped``), so the asker may send it again. If the
    actor was already handling it, the handler runs to its end; only the reply is lost (an
    ``ask(wait_once_taken=True)`` waits for it instead).
    """


class MailboxFull(ActorError):
    """``tell_nowait`` found the actor's mailbox full (``tell`` would have waited)."""


class ActorDeadError(ActorError):
    """The actor cannot take or finish the message.

    Raised when the system is not running (not started, closing or closed), when an actor gives
    up after its restart limit (the cause is chained), and to askers whose message was still
    queued when the system stopped by force.
    """


class UnknownActorKind(ActorError, LookupError):
    """A ref names a kind that was never registered with the system."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"no actor kind {kind!r} is registered")


class ConcurrencyConflict(ActorError):
    """Another writer moved the stream, and the command still conflicted after one reload.

    Nothing was appended for the command; the actor's state was reloaded from the log.

    Attributes:
        stream: the stream the actor writes.
        expected: the version the actor expected at its last attempt.
        actual: the stream's version the log reported (``None`` if unknown).
    """

    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} kept moving under the actor (expected version {expected}, "
            f"log at {actual}); the command was not applied"
        )


class ActorCrash(ActorError):
    """Raised (or raised from) in a handler to crash the actor's loop on purpose.

    The message fails with this error, then the actor restarts under its supervision policy with
    its state recovered. The runtime raises it itself when an event-sourced actor's ``evolve``
    fails after its events were committed, because the state in memory can no longer be trusted.
    """


class AfterCommitError(ActorError):
    """The command's events were committed, but ``after_commit`` raised (the cause is chained).

    The command did take effect: do not blindly retry it.

    Attributes:
        reply: the reply the command would have had.
        records: the records the command committed.
    """

    def __init__(self, reply: object, records: Sequence[Record]) -> None:
        self.reply = reply
        self.records = list(records)
        super().__init__(
            f"{len(self.records)} event(s) committed, but the after-commit side effects failed"
        )
