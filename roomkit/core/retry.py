"""Retry an async call with exponential backoff, as a binding's `RetryPolicy` describes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from roomkit.models.channel import RetryPolicy  # also importable from here, as in 0.3.0

__all__ = ["RetryPolicy", "backoff_delay", "retry_with_backoff"]

logger = logging.getLogger("roomkit.retry")

T = TypeVar("T")


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based).

    ``min(base_delay_seconds * exponential_base ** attempt, max_delay_seconds)``.
    """
    try:
        delay = policy.base_delay_seconds * policy.exponential_base**attempt
    except OverflowError:
        # A long retry series with a large base overflows floats; the cap applies anyway.
        return float(policy.max_delay_seconds)
    return float(min(delay, policy.max_delay_seconds))


sleep: Callable[[float], Awaitable[object]] = anyio.sleep
"""The wait between two attempts of ``retry_with_backoff``."""


async def retry_with_backoff(
    fn: Callable[..., Awaitable[T]],
    policy: RetryPolicy,
    *args: Any,
    **kwargs: Any,
) -> T:
    """Await ``fn(*args, **kwargs)`` up to ``1 + policy.max_retries`` times.

    Only ``Exception`` subclasses are retried: cancellation and other ``BaseException`` pass
    straight through.

    Args:
        fn: the async callable to try.
        policy: retries and backoff (see `backoff_delay`).
        *args: positional arguments for ``fn``.
        **kwargs: keyword arguments for ``fn`` (every one, ``sleep=`` included, as in 0.3.0:
            an injected sleep of this function's took an app's ``sleep=`` for its own). The
            wait between attempts is the module's ``sleep``, which a test may replace.

    Returns:
        The first successful result.

    Raises:
        Exception: the exception of the last attempt once every attempt failed.
    """
    attempts = policy.max_retries + 1
    for attempt in range(attempts):
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if attempt + 1 >= attempts:
                logger.warning(
                    "%s failed after %d attempt(s): %s", _name(fn), attempts, exc or repr(exc)
                )
                raise
            delay = backoff_delay(policy, attempt)
            logger.info(
                "%s failed (attempt %d/%d), retrying in %.3fs: %s",
                _name(fn),
                attempt + 1,
                attempts,
                delay,
                exc or repr(exc),
            )
        # Sleep outside the except block so the traceback of a failure is not kept alive
        # (and not chained) across the wait.
        await sleep(delay)  # looked up now: a test may replace it
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
