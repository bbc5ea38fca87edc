"""Token-bucket rate limiting per key (one bucket per channel id and rate).

The rate of a `RateLimit` is ``max_per_second``, else ``max_per_minute / 60``, else
``max_per_hour / 3600``; a limit with none of them set is unlimited. A bucket holds at most
``max(1, rate)`` tokens (about one second of burst, and always room for one whole message) and
starts full.

Fixes RoomKit 0.3.0 QUIRK 13: its bucket capacity was ``rate``, so a rate below 1/s (say
``max_per_minute=30``) never held a whole token and ``wait`` polled forever. Here ``wait`` also
computes how long until its token exists and sleeps exactly that long instead of polling.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from roomkit.models import RateLimit

__all__ = ["TokenBucketRateLimiter", "rate_of"]


def rate_of(limit: RateLimit) -> float | None:
    """Messages per second allowed by ``limit``; ``None`` when it sets no bound."""
    if limit.max_per_second is not None:
        return float(limit.max_per_second)
    if limit.max_per_minute is not None:
        return limit.max_per_minute / 60.0
    if limit.max_per_hour is not None:
        return limit.max_per_hour / 3600.0
    return None


class _Bucket:
    """Tokens of one key. ``tokens`` goes negative while waiters hold reservations."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens += elapsed * self.rate
            self.updated = now
        if self.tokens > self.capacity:
            self.tokens = self.capacity


def _monotonic() -> float:
    return time.monotonic()  # looked up now: a test may patch it, as 0.3.0's tests did


class TokenBucketRateLimiter:
    """Per-key token buckets; `wait` queues callers instead of dropping them.

    One limiter is meant to live as long as the kit, so limits survive router re-creation
    (QUIRK 14). State is plain arithmetic, safe under cooperative scheduling (one event loop).

    Args:
        clock: monotonic time source in seconds (``time.monotonic`` by default, looked up at
            each call, so that a test patching it drives the limiter, as in 0.3.0).
        sleep: async sleep used by `wait` (inject a fake one in tests).
    """

    __slots__ = ("_buckets", "_clock", "_sleep")

    def __init__(
        self,
        clock: Callable[[], float] = _monotonic,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        # A bucket per key and rate: the bindings of a channel that share a limit share its
        # bucket (a vendor number's throughput); one of another limit has its own. One bucket
        # per key took each caller's rate as the binding's limit changed, so a room's
        # 100/s refilled at once the bucket of another room's 1/min for the same channel.
        # A limit changed makes a bucket (full) for the new rate.
        self._buckets: dict[str, dict[float, _Bucket]] = {}

    def _bucket(self, key: str, rate: float) -> _Bucket:
        now = self._clock()
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = {}
        bucket = buckets.get(rate)
        if bucket is not None:
            bucket.refill(now)
            return bucket
        # A new rate for the key: its buckets refilled to capacity hold nothing a new one
        # would not, and go (a limit changed often kept a bucket for each rate it had).
        for held_rate, held in list(buckets.items()):
            held.refill(now)
            if held.tokens >= held.capacity:
                del buckets[held_rate]
        bucket = buckets[rate] = _Bucket(rate, now)
        return bucket

    def acquire(self, channel_id: str, rate_limit: RateLimit) -> bool:
        """Take one token for ``channel_id`` if one is available now.

        Returns:
            True if the caller may send (always for an unlimited limit), False otherwise.
            Callers queued in `wait` hold their tokens already, so they are served first.
        """
        rate = rate_of(rate_limit)
        if rate is None:
            return True
        bucket = self._bucket(channel_id, rate)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    async def wait(self, channel_id: str, rate_limit: RateLimit) -> None:
        """Wait until ``channel_id`` may send one message, then consume its token.

        The token is reserved at once (the balance may go negative) and the caller sleeps
        exactly until the balance covers it, so concurrent callers are served in arrival order
        with one sleep each. If the caller is cancelled while waiting, the reservation is given
        back.
        """
        rate = rate_of(rate_limit)
        if rate is None:
            return
        bucket = self._bucket(channel_id, rate)
        bucket.tokens -= 1.0
        if bucket.tokens >= 0.0:
            return
        delay = -bucket.tokens / rate
        try:
            await self._sleep(delay)
        except BaseException:
            # Give the reserved token back; waiters queued behind us only waited longer
            # than needed, which never breaks the limit.
            bucket.tokens += 1.0
            raise

    def reset(self, key: str | None = None) -> None:
        """Forget the bucket of ``key`` (or of every key): it starts full again."""
        if key is None:
            self._buckets.clear()
        else:
            self._buckets.pop(key, None)
