"""Reading a vendor's token usage object, the common first step of every usage mapping."""

from __future__ import annotations

from typing import Any

__all__ = ["int_fields"]


def int_fields(raw: Any) -> dict[str, int]:
    """The integer fields of a usage object (nested details and booleans are left out; a
    value that is not an object gives ``{}``)."""
    if not isinstance(raw, dict):
        return {}
    return {
        key: value
        for key, value in raw.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
