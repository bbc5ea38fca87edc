"""A per-channel circuit breaker: stop calling a failing channel, then probe it once in a while.

States::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    OPEN --(recovery_timeout elapsed, next allow_request)--> HALF_OPEN (exactly one probe)
    HALF_OPEN --probe succeeds--> CLOSED        HALF_OPEN --probe fails--> OPEN (timer restarts)

The breaker never sleeps and reads time only through its ``clock``, so tests drive it with a
fake clock (or, as 0.3.0's tests did, by patching ``time.monotonic``, which the default clock
looks up at every call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["CircuitBreaker", "CircuitState"]

# A probe that never reports back (its task was cancelled) is given up after this long at
# least, or ``recovery_timeout`` if longer: with a timeout of 0, it expired at once and every
# caller was let through while it ran.
_PROBE_EXPIRY = 30.0


def _monotonic() -> float:
    return time.monotonic()  # looked up now: a test may patch it


class CircuitState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The states as module globals: a class attribute of an enum goes through EnumType.__getattr__'s
# slot hook (Python 3.11: ~500 instructions a read), three reads per delivery.
_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class CircuitBreaker:
    """Counts consecutive failures of one channel and refuses calls while it is open.

    Args:
        failure_threshold: consecutive failures that open the circuit (at least 1).
        recovery_timeout: seconds the circuit stays open before one probe is let through.
        clock: monotonic time source in seconds (``time.monotonic`` by default, looked up at
            every call).

    Raises:
        ValueError: on a threshold below 1 or a negative timeout.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probe_started_at",
        "_state",
        "failure_threshold",
        "recovery_timeout",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        clock: Callable[[], float] = _monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if recovery_timeout < 0:
            raise ValueError("recovery_timeout must not be negative")
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self._clock = clock
        self._state = _CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started_at: float | None = None

    @property
    def state(self) -> CircuitState:
        """The current state (OPEN stays OPEN until a caller asks for a probe)."""
        return self._state

    @property
    def failure_count(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def is_open(self) -> bool:
        """True while calls are refused without a probe being due."""
        return self._state is _OPEN and self._clock() - self._opened_at < self.recovery_timeout

    @property
    def is_closed(self) -> bool:
        """True while calls go through (no failure streak reached the threshold)."""
        return self._state is _CLOSED

    @property
    def is_half_open(self) -> bool:
        """True while a probe is due or under way: neither closed nor open."""
        return not (self.is_closed or self.is_open)

    def allow_request(self) -> bool:
        """Whether the caller may call the channel now.

        In HALF_OPEN exactly one caller gets ``True`` (the probe) until it reports back with
        `record_success` or `record_failure`. A probe that never reports (its task was
        cancelled without `abandon_probe`) expires after ``recovery_timeout`` (30 s at least)
        so the breaker cannot stay stuck.
        """
        state = self._state
        if state is _CLOSED:
            return True
        now = self._clock()
        if state is _OPEN:
            if now - self._opened_at < self.recovery_timeout:
                return False
            self._state = _HALF_OPEN
            self._probe_started_at = now
            return True
        # HALF_OPEN: one probe in flight.
        if self._probe_started_at is not None and (
            now - self._probe_started_at < max(self.recovery_timeout, _PROBE_EXPIRY)
        ):
            return False
        self._probe_started_at = now
        return True

    @property
    def probe(self) -> float | None:
        """The probe under way (when it started, by the clock), if any: right after an
        ``allow_request`` that said True, whether that caller is the probe."""
        return self._probe_started_at if self._state is _HALF_OPEN else None

    def abandon_probe(self, probe: float) -> None:
        """The probe ``probe`` (see `probe`) was cut short (cancelled) and will not report:
        the next caller may probe at once. Nothing changes if another probe has started
        since, or the breaker left HALF_OPEN."""
        if self._state is _HALF_OPEN and self._probe_started_at == probe:
            self._probe_started_at = None

    def record_success(self) -> None:
        """A call succeeded: close the circuit and forget past failures."""
        self._state = _CLOSED
        self._failures = 0
        self._probe_started_at = None

    def record_failure(self) -> None:
        """A call failed: count it; open the circuit at the threshold or when a probe fails."""
        self._failures += 1
        if self._state is _HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = _OPEN
            self._opened_at = self._clock()
            self._probe_started_at = None

    def reset(self) -> None:
        """Back to CLOSED with no failures, as if just created."""
        self.record_success()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state.value}, failures={self._failures}/"
            f"{self.failure_threshold}, recovery_timeout={self.recovery_timeout})"
        )
