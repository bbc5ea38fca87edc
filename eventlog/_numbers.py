"""Checks of numeric settings, for the constructors of every layer (the log, the actor
system, the kit): a setting of the wrong type fails where it is given, by name, not at the
first comparison or clock reading deep inside a running task.

``actors`` exports them, documented (``actors.check_number`` and the others); the log, the
lowest layer, cannot import them from there.
"""

from __future__ import annotations

import math
import numbers
from typing import SupportsFloat, cast, overload

__all__ = ["check_count", "check_finite_seconds", "check_number", "check_seconds"]


def check_number(name: str, value: object, *, none: bool = False, what: str = "a number") -> None:
    """See ``actors.check_number``."""
    _check_type(name, value, numbers.Real, what, none)


@overload
def check_seconds(name: str, value: object) -> float: ...


@overload
def check_seconds(name: str, value: object, *, none: bool) -> float | None: ...


def check_seconds(name: str, value: object, *, none: bool = False) -> float | None:
    """See ``actors.check_seconds``."""
    check_number(name, value, none=none, what="a number of seconds")
    if value is None:
        return None
    number = cast(SupportsFloat, value)
    try:
        return float(number)
    except OverflowError:  # an int past a float's range
        return math.inf if cast(float, value) > 0 else -math.inf


def check_finite_seconds(name: str, value: object, *, zero: bool = False) -> float:
    """See ``actors.check_finite_seconds``."""
    seconds = check_seconds(name, value)
    if not ((seconds > 0 or (zero and seconds == 0)) and math.isfinite(seconds)):
        allowed = ">= 0" if zero else "positive"
        raise ValueError(f"{name} must be a {allowed}, finite number of seconds, got {value!r}")
    return seconds


@overload
def check_count(name: str, value: object) -> int: ...


@overload
def check_count(name: str, value: object, *, none: bool) -> int | None: ...


def check_count(name: str, value: object, *, none: bool = False) -> int | None:
    """See ``actors.check_count``."""
    _check_type(name, value, numbers.Integral, "an integer", none)
    return None if value is None else int(cast(int, value))


def _check_type(name: str, value: object, kind: type, expected: str, none: bool) -> None:
    if (value is None and none) or (isinstance(value, kind) and not isinstance(value, bool)):
        return
    raise TypeError(f"{name} must be {expected}{' or None' if none else ''}, got {value!r}")
