"""Circuit breaker states, token buckets (including rates below 1/s) and retry with backoff."""

from __future__ import annotations

import logging
import time
from typing import Any
from unittest import mock

import anyio
import pytest

from roomkit.core import retry
from roomkit.core.circuit_breaker import CircuitBreaker, CircuitState
from roomkit.core.rate_limiter import TokenBucketRateLimiter, rate_of
from roomkit.core.retry import backoff_delay, retry_with_backoff
from roomkit.models import RateLimit, RetryPolicy


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Pure anyio code: every async test runs on both backends."""
    param: str = request.param
    return param


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An async sleep that records its delays and advances a fake clock instead of waiting."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


# -- circuit breaker ------------------------------------------------------------------------


class TestCircuitBreaker:
    def test_closed_allows_until_threshold_of_consecutive_failures(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=10, clock=clock)
        assert breaker.state is CircuitState.CLOSED
        for _ in range(2):
            assert breaker.allow_request()
            breaker.record_failure()
        assert breaker.state is CircuitState.CLOSED
        assert breaker.failure_count == 2
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        assert breaker.is_open
        assert not breaker.allow_request()

    def test_success_resets_the_consecutive_count(self) -> None:
        breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        assert breaker.state is CircuitState.CLOSED
        assert breaker.failure_count == 1

    def test_half_open_lets_exactly_one_probe_through(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=10, clock=clock)
        breaker.record_failure()
        clock.advance(9.999)
        assert not breaker.allow_request()
        clock.advance(0.001)
        assert not breaker.is_open  # a probe is due
        assert breaker.allow_request()
        assert breaker.state is CircuitState.HALF_OPEN
        assert not breaker.allow_request()
        assert not breaker.allow_request()

    def test_is_closed_open_and_half_open_name_the_state_callers_see(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=10, clock=clock)

        def seen() -> tuple[bool, bool, bool]:
            return breaker.is_closed, breaker.is_open, breaker.is_half_open

        assert seen() == (True, False, False)
        breaker.record_failure()
        assert seen() == (False, True, False)
        clock.advance(10)
        assert seen() == (False, False, True)  # a probe is due
        assert breaker.allow_request()
        assert seen() == (False, False, True)  # the probe is under way
        breaker.record_success()
        assert seen() == (True, False, False)

    def test_probe_success_closes(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=clock)
        breaker.record_failure()
        clock.advance(5)
        assert breaker.allow_request()
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED
        assert breaker.failure_count == 0
        assert breaker.allow_request()
        assert breaker.allow_request()

    def test_probe_failure_reopens_with_a_fresh_timer(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=5, clock=clock)
        for _ in range(3):
            breaker.record_failure()
        clock.advance(5)
        assert breaker.allow_request()
        breaker.record_failure()  # one failure in HALF_OPEN is enough
        assert breaker.state is CircuitState.OPEN
        clock.advance(4.9)
        assert not breaker.allow_request()
        clock.advance(0.1)
        assert breaker.allow_request()

    def test_a_probe_that_never_reports_expires(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=50, clock=clock)
        breaker.record_failure()
        clock.advance(50)
        assert breaker.allow_request()  # probe taken, then its task is cancelled
        clock.advance(49)
        assert not breaker.allow_request()
        clock.advance(1)
        assert breaker.allow_request()
        assert not breaker.allow_request()

    def test_abandoning_a_probe_frees_that_probe_only(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=clock)
        assert breaker.allow_request() and breaker.probe is None  # closed: no probe
        breaker.record_failure()
        clock.advance(5)
        assert breaker.allow_request()
        probe = breaker.probe
        assert probe is not None
        breaker.abandon_probe(probe - 1)  # an older call's: the probe under way stays
        assert not breaker.allow_request()
        breaker.abandon_probe(probe)
        assert breaker.allow_request() and not breaker.allow_request()

    def test_a_short_recovery_timeout_still_lets_one_probe_through(self) -> None:
        # 0.3.0's single probe: the probe's expiry was recovery_timeout, and with 0 every
        # caller was let through while a probe ran. It expires after 30 s at least.
        clock = FakeClock()
        breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=0, clock=clock)
        breaker.record_failure()
        breaker.record_failure()
        assert [breaker.allow_request() for _ in range(3)] == [True, False, False]
        breaker.record_failure()  # the probe failed: open again, due at once
        assert [breaker.allow_request() for _ in range(2)] == [True, False]
        clock.advance(30)
        assert breaker.allow_request()  # that probe never reported back

    def test_the_default_clock_follows_a_patched_time_monotonic(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # As 0.3.0's tests drove its breaker; it held its own reference to the function.
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=60)
        breaker.record_failure()
        assert breaker.is_open
        later = time.monotonic() + 61
        monkeypatch.setattr(time, "monotonic", lambda: later)
        assert breaker.is_half_open and breaker.allow_request()

    def test_reset(self) -> None:
        breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        breaker.reset()
        assert breaker.state is CircuitState.CLOSED
        assert breaker.failure_count == 0
        assert breaker.allow_request()
        assert "closed" in repr(breaker)

    def test_defaults(self) -> None:
        breaker = CircuitBreaker()
        assert breaker.failure_threshold == 5
        assert breaker.recovery_timeout == 60.0

    @pytest.mark.parametrize(
        ("threshold", "timeout"), [(0, 1.0), (-1, 1.0), (1, -0.5)], ids=["zero", "neg", "time"]
    )
    def test_invalid_arguments(self, threshold: int, timeout: float) -> None:
        with pytest.raises(ValueError):
            CircuitBreaker(failure_threshold=threshold, recovery_timeout=timeout)


# -- rate limiter ---------------------------------------------------------------------------


class TestRateOf:
    @pytest.mark.parametrize(
        ("limit", "rate"),
        [
            (RateLimit(max_per_second=5), 5.0),
            (RateLimit(max_per_minute=30), 0.5),
            (RateLimit(max_per_hour=36), 0.01),
            (RateLimit(max_per_second=2, max_per_minute=1, max_per_hour=1), 2.0),
            (RateLimit(max_per_minute=120, max_per_hour=1), 2.0),
            (RateLimit(), None),
        ],
    )
    def test_first_limit_set_wins(self, limit: RateLimit, rate: float | None) -> None:
        assert rate_of(limit) == rate


class TestTokenBucket:
    def test_the_default_clock_follows_a_patched_time_monotonic(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # As 0.3.0's tests drove it (and the breaker, which followed already); it held its
        # own reference to the function.
        limiter = TokenBucketRateLimiter()
        limit = RateLimit(max_per_second=1)
        assert [limiter.acquire("ch", limit) for _ in range(2)] == [True, False]
        later = time.monotonic() + 5
        monkeypatch.setattr(time, "monotonic", lambda: later)
        assert limiter.acquire("ch", limit)

    def test_time_is_patchable_through_the_module_as_in_0_3_0(self) -> None:
        # 0.3.0's rate_limiter imported ``time``: ``patch("roomkit.core.rate_limiter.time
        # .monotonic")`` raised AttributeError once the module took the breaker's clock.
        limiter = TokenBucketRateLimiter()
        limit = RateLimit(max_per_second=1)
        assert [limiter.acquire("ch", limit) for _ in range(2)] == [True, False]
        later = time.monotonic() + 5
        with mock.patch("roomkit.core.rate_limiter.time.monotonic", return_value=later):
            assert limiter.acquire("ch", limit)

    def test_unlimited_always_acquires(self) -> None:
        limiter = TokenBucketRateLimiter(clock=FakeClock())
        assert all(limiter.acquire("ch", RateLimit()) for _ in range(1000))

    def test_burst_up_to_rate_then_refill(self) -> None:
        clock = FakeClock()
        limiter = TokenBucketRateLimiter(clock=clock)
        limit = RateLimit(max_per_second=3)
        assert [limiter.acquire("ch", limit) for _ in range(4)] == [True, True, True, False]
        clock.advance(1 / 3)
        assert limiter.acquire("ch", limit)
        assert not limiter.acquire("ch", limit)
        clock.advance(100)  # refill is capped at capacity
        assert [limiter.acquire("ch", limit) for _ in range(4)] == [True, True, True, False]

    def test_keys_are_independent(self) -> None:
        limiter = TokenBucketRateLimiter(clock=FakeClock())
        limit = RateLimit(max_per_second=1)
        assert limiter.acquire("a", limit)
        assert not limiter.acquire("a", limit)
        assert limiter.acquire("b", limit)
        # 0.3.0's parameter names (a keyword call keeps working).
        assert not limiter.acquire(channel_id="b", rate_limit=limit)

    def test_rate_below_one_per_second_gets_tokens(self) -> None:
        """QUIRK 13 fixed: 30/minute used to cap the bucket at 0.5 tokens, forever empty."""
        clock = FakeClock()
        limiter = TokenBucketRateLimiter(clock=clock)
        limit = RateLimit(max_per_minute=30)
        assert limiter.acquire("sms", limit)
        assert not limiter.acquire("sms", limit)
        clock.advance(1.999)
        assert not limiter.acquire("sms", limit)
        clock.advance(0.001)
        assert limiter.acquire("sms", limit)
        clock.advance(3600)  # capacity max(1, 0.5) = 1: no burst after a long idle
        assert limiter.acquire("sms", limit)
        assert not limiter.acquire("sms", limit)

    async def test_wait_sleeps_exactly_until_the_next_token(self) -> None:
        clock = FakeClock()
        sleep = RecordingSleep(clock)
        limiter = TokenBucketRateLimiter(clock=clock, sleep=sleep)
        limit = RateLimit(max_per_minute=30)
        for _ in range(4):
            await limiter.wait("sms", limit)
        assert sleep.delays == [pytest.approx(2.0)] * 3  # one sleep per wait, no polling

    async def test_wait_reserves_so_waiters_queue_in_order(self) -> None:
        clock = FakeClock()
        sleep = RecordingSleep()  # the clock does not move: every waiter queues
        limiter = TokenBucketRateLimiter(clock=clock, sleep=sleep)
        limit = RateLimit(max_per_hour=3600)  # 1/s
        for _ in range(4):
            await limiter.wait("ch", limit)
        assert sleep.delays == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]
        # Reservations also hold off acquire until they are paid back.
        clock.advance(3.0)
        assert not limiter.acquire("ch", limit)
        clock.advance(1.0)
        assert limiter.acquire("ch", limit)

    async def test_unlimited_wait_returns_at_once(self) -> None:
        sleep = RecordingSleep()
        limiter = TokenBucketRateLimiter(clock=FakeClock(), sleep=sleep)
        await limiter.wait("ch", RateLimit())
        assert sleep.delays == []

    async def test_cancelled_waiter_gives_its_token_back(self) -> None:
        clock = FakeClock()
        blocked = anyio.Event()

        async def never(seconds: float) -> None:
            blocked.set()
            await anyio.Event().wait()

        limiter = TokenBucketRateLimiter(clock=clock, sleep=never)
        limit = RateLimit(max_per_second=1)
        assert limiter.acquire("ch", limit)
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.wait, "ch", limit)
            await blocked.wait()
            tg.cancel_scope.cancel()
        clock.advance(1.0)
        assert limiter.acquire("ch", limit)  # the cancelled reservation did not eat it

    def test_changed_limit_is_adopted(self) -> None:
        clock = FakeClock()
        limiter = TokenBucketRateLimiter(clock=clock)
        assert all(limiter.acquire("ch", RateLimit(max_per_second=10)) for _ in range(10))
        slow = RateLimit(max_per_minute=6)  # 0.1/s
        clock.advance(1.0)
        assert limiter.acquire("ch", slow)  # what refilled at the old rate, capped at 1
        assert not limiter.acquire("ch", slow)
        clock.advance(9.9)
        assert not limiter.acquire("ch", slow)
        clock.advance(0.1)
        assert limiter.acquire("ch", slow)

    def test_bindings_of_another_limit_do_not_refill_a_channel_s_bucket(self) -> None:
        # One bucket per channel took each caller's rate: a room binding the channel at
        # 100/s refilled, at once, the bucket another room's 1/min binding sent through.
        clock = FakeClock()
        limiter = TokenBucketRateLimiter(clock=clock)
        slow, fast = RateLimit(max_per_minute=1), RateLimit(max_per_second=100)
        assert limiter.acquire("ch", slow)
        clock.advance(0.05)
        assert limiter.acquire("ch", fast)
        clock.advance(0.5)
        assert not limiter.acquire("ch", slow)
        clock.advance(59.5)
        assert limiter.acquire("ch", slow)
        assert not limiter.acquire("ch", RateLimit(max_per_minute=1))  # the same limit: shared

    def test_a_limit_changed_often_keeps_no_bucket_per_rate_it_had(self) -> None:
        clock = FakeClock()
        limiter = TokenBucketRateLimiter(clock=clock)
        for per_minute in range(1, 1_001):
            assert limiter.acquire("ch", RateLimit(max_per_minute=per_minute))
            clock.advance(60.0)  # each refilled before the next rate comes
        assert len(limiter._buckets["ch"]) == 1

    def test_reset(self) -> None:
        limiter = TokenBucketRateLimiter(clock=FakeClock())
        limit = RateLimit(max_per_second=1)
        assert limiter.acquire("a", limit) and limiter.acquire("b", limit)
        limiter.reset("a")
        assert limiter.acquire("a", limit)
        assert not limiter.acquire("b", limit)
        limiter.reset()
        assert limiter.acquire("b", limit)


# -- retry ----------------------------------------------------------------------------------


class Flaky:
    """Fails ``failures`` times, then returns its arguments."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"boom {self.calls}")
        return args, kwargs


class TestRetry:
    @pytest.fixture
    def sleep(self, monkeypatch: pytest.MonkeyPatch) -> RecordingSleep:
        """The waits between attempts, recorded instead of slept."""
        recording = RecordingSleep()
        monkeypatch.setattr(retry, "sleep", recording)
        return recording

    @pytest.mark.parametrize(
        ("attempt", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (10_000, 60.0)]
    )
    def test_backoff_delay(self, attempt: int, delay: float) -> None:
        assert backoff_delay(RetryPolicy(), attempt) == delay

    async def test_succeeds_after_failures(self, sleep: RecordingSleep) -> None:
        fn = Flaky(2)
        result = await retry_with_backoff(fn, RetryPolicy(), "a", 1, key="v")
        assert result == (("a", 1), {"key": "v"})
        assert fn.calls == 3
        assert sleep.delays == [1.0, 2.0]

    async def test_gives_up_after_one_plus_max_retries_and_reraises_the_last(
        self, caplog: pytest.LogCaptureFixture, sleep: RecordingSleep
    ) -> None:
        fn = Flaky(100)
        policy = RetryPolicy(max_retries=3, base_delay_seconds=0.5, exponential_base=3)
        with (
            caplog.at_level(logging.INFO, logger="roomkit.retry"),
            pytest.raises(ConnectionError, match="boom 4"),
        ):
            await retry_with_backoff(fn, policy)
        assert fn.calls == 4
        assert sleep.delays == [0.5, 1.5, 4.5]
        assert [r.name for r in caplog.records] == ["roomkit.retry"] * 4

    async def test_delay_is_capped(self, sleep: RecordingSleep) -> None:
        policy = RetryPolicy(max_retries=4, base_delay_seconds=10, max_delay_seconds=25)
        with pytest.raises(ConnectionError):
            await retry_with_backoff(Flaky(100), policy)
        assert sleep.delays == [10, 20, 25, 25]

    async def test_zero_retries_is_a_single_attempt(self, sleep: RecordingSleep) -> None:
        fn = Flaky(1)
        with pytest.raises(ConnectionError):
            await retry_with_backoff(fn, RetryPolicy(max_retries=0))
        assert fn.calls == 1
        assert sleep.delays == []

    async def test_an_app_s_sleep_keyword_goes_to_its_function(
        self, sleep: RecordingSleep
    ) -> None:
        # Taken by the injectable sleep retry_with_backoff had: fn got no sleep=, and a retry
        # called 2.5(delay).
        fn = Flaky(1)
        assert await retry_with_backoff(fn, RetryPolicy(), "hi", sleep=2.5) == (
            ("hi",),
            {"sleep": 2.5},
        )
        assert sleep.delays == [1.0]

    async def test_base_exceptions_are_not_retried(self, sleep: RecordingSleep) -> None:
        class Stop(BaseException):
            pass

        calls = 0

        async def fn() -> None:
            nonlocal calls
            calls += 1
            raise Stop

        with pytest.raises(Stop):
            await retry_with_backoff(fn, RetryPolicy())
        assert calls == 1

    async def test_real_sleep_is_the_default(self) -> None:
        # base delay 1 ms: the only test that lets the default sleep run, and asserts no timing.
        fn = Flaky(1)
        await retry_with_backoff(fn, RetryPolicy(base_delay_seconds=0.001))
        assert fn.calls == 2
