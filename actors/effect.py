"""``Effect``: what an event-sourced actor decides to do about one command."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Effect"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Effect(Generic[E]):
    """The outcome of ``EventSourcedActor.decide``: events to commit, and the reply.

    The runtime appends ``events`` (if any), evolves the state only once the log acknowledged
    them, runs ``after_commit``, then replies. With no events nothing is appended: the command is
    a query, or was rejected (reply with the reason, or raise from ``decide``).

    Attributes:
        events: the domain events to commit, in order (past tense: ``Incremented``).
        reply: the reply to the asker.
        reply_with: if set, computes the reply from the state after the events were applied
            (replaces ``reply``).
    """

    events: Sequence[E] = ()
    reply: object = None
    reply_with: Callable[[Any], object] | None = None

    @classmethod
    def persist(
        cls,
        *events: E,
        reply: object = None,
        reply_with: Callable[[Any], object] | None = None,
    ) -> Effect[E]:
        """Commit ``events``, then reply with ``reply`` (or ``reply_with(new_state)``)."""
        return cls(events=events, reply=reply, reply_with=reply_with)

    @classmethod
    def reply_only(cls, reply: object) -> Effect[E]:
        """Commit nothing; reply with ``reply``."""
        return cls(reply=reply)

    def reply_for(self, state: object) -> object:
        """Return the reply, given the state after the events were applied."""
        if self.reply_with is not None:
            return self.reply_with(state)
        return self.reply
