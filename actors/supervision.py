"""``SupervisionPolicy``: what the runtime does when an actor fails."""

from __future__ import annotations

import math
import random
import types
from dataclasses import dataclass
from typing import Any

from actors.errors import ActorCrash
from eventlog import _numbers

__all__ = ["SupervisionPolicy"]


@dataclass(frozen=True, slots=True)
class SupervisionPolicy:
    """How an actor's failures are handled.

    An exception raised while handling a message fails **that message only**: the asker gets it
    (a told message's failure is logged) and the actor keeps its state and goes on, unless the
    exception is an ``ActorCrash`` or an instance of one of ``restart_on``.

    Those, and any exception while activating (factory, recovery from the log, ``on_start``)
    but the log's own (``EventLogError``), **crash** the actor: the failed instance gets
    ``on_stop`` (best effort; at activation, one whose ``on_start`` raised, not one whose
    recovery failed), then after a backoff delay a new instance is made by the factory
    and recovers its state (an event-sourced actor from the log). Queued messages wait for it;
    none is lost.

    More than ``max_restarts`` crashes within ``within`` seconds and the actor **gives up**: every
    queued ask fails with ``ActorDeadError`` (the last crash chained), queued tells are dropped
    (and logged), and the actor is deactivated. The next message activates a fresh incarnation
    with a fresh restart budget, so a transient outage (a log that was unreachable) does not
    poison a key for ever. An activation the log fails (unreachable after its own retries, or
    closed) is not attempted again: the queued asks fail with it at once (chained to an
    ``ActorDeadError``), and the next message tries again.

    Attributes:
        max_restarts: crashes tolerated within ``within`` seconds (0: give up at the first).
        within: the sliding window, in seconds, over which crashes are counted.
        min_backoff: delay before the first restart, in seconds.
        max_backoff: cap of the delay, which doubles with every crash in the window.
        jitter: random extra delay, as a fraction of the delay (0.2: up to +20 %).
        restart_on: handler exception types that crash the actor instead of failing only the
            message (for errors that leave the actor's state unusable).
    """

    max_restarts: int = 3
    within: float = 60.0
    min_backoff: float = 0.1
    max_backoff: float = 5.0
    jitter: float = 0.2
    restart_on: tuple[type[Exception], ...] = ()

    def __post_init__(self) -> None:
        # Checked here, not at the first crash, which is where a bad value used to fail (or,
        # for an infinite backoff or jitter, hang the actor for ever).
        _set = object.__setattr__  # frozen: the checked values are stored as floats
        _numbers.check_number("max_restarts", self.max_restarts)  # inf: never give up
        for name in ("within", "min_backoff", "max_backoff", "jitter"):
            _set(self, name, _numbers.check_seconds(name, getattr(self, name)))
        if not self.max_restarts >= 0:  # NaN too
            raise ValueError("max_restarts must be >= 0")
        if not (self.within > 0 and math.isfinite(self.within)):
            raise ValueError("within must be a positive, finite number of seconds")
        if not (0 <= self.min_backoff <= self.max_backoff and math.isfinite(self.max_backoff)):
            raise ValueError("need 0 <= min_backoff <= max_backoff, finite")
        if not (self.jitter >= 0 and math.isfinite(self.jitter)):
            raise ValueError("jitter must be a finite number >= 0")
        # Any iterable of exception types, or unions of them (as isinstance takes).
        restart_on: Any = self.restart_on  # checked here, whatever was given
        kinds: tuple[Any, ...]
        try:
            kinds = tuple(restart_on)
        except TypeError:
            kinds = (restart_on,)  # one type (as isinstance takes it), or refused just below
        if not all(_is_exception_type(kind) for kind in kinds):
            raise TypeError(f"restart_on is a tuple of exception types, got {restart_on!r}")
        _set(self, "restart_on", kinds)

    def backoff(self, crashes: int) -> float:
        """Return the delay before restarting after the ``crashes``-th crash in the window.

        Args:
            crashes: how many crashes the window holds, this one included (from 1).

        Returns:
            ``min(max_backoff, min_backoff * 2 ** (crashes - 1))``, plus up to ``jitter`` of it.
        """
        exponent = min(max(crashes - 1, 0), 62)
        delay = min(self.max_backoff, math.ldexp(self.min_backoff, exponent))
        if self.jitter:
            delay += delay * self.jitter * random.random()
        return delay

    def escalates(self, exc: BaseException) -> bool:
        """Return whether a handler's exception crashes the actor (rather than one message).

        Args:
            exc: the exception the handler raised.
        """
        return isinstance(exc, (ActorCrash, *self.restart_on))


def _is_exception_type(kind: object) -> bool:
    if isinstance(kind, types.UnionType):
        return all(_is_exception_type(member) for member in kind.__args__)
    return isinstance(kind, type) and issubclass(kind, BaseException)
