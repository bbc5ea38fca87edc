"""Reading how long a vendor asks us to wait (``Retry-After``, ``retry-after-ms``)."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["parse_retry_after", "retry_after_from_headers"]


def _timestamp(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    return now.timestamp() if isinstance(now, datetime) else now


def _finite(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_retry_after(value: str | None, *, now: datetime | float | None = None) -> float | None:
    """Seconds to wait from one ``Retry-After`` value: delta-seconds or an HTTP date.

    Args:
        value: The header's value.
        now: The current time (an aware datetime or a POSIX timestamp); the clock when None.

    Returns:
        A non-negative number of seconds (a date in the past gives 0), or None when the value
        is absent, unreadable or not finite. A date without a zone is read as UTC.
    """
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - _timestamp(now)
    return max(0.0, seconds)


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: datetime | float | None = None
) -> float | None:
    """The delay a response asks for: ``retry-after-ms`` (OpenAI's, in milliseconds), else
    ``retry-after`` (see :func:`parse_retry_after`), or None.

    A negative number in either header is ignored rather than read as "retry now": it is not a
    valid delay, and retrying at once would hammer a vendor that is already struggling.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None and (number := _finite(millis)) is not None and number >= 0:
        return number / 1000
    value = headers.get("retry-after")
    if value is None or ((number := _finite(value)) is not None and number < 0):
        return None
    return parse_retry_after(value, now=now)
