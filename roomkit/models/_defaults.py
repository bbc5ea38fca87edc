"""Default factories shared by the models (ids and timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

__all__ = ["new_id", "utcnow"]


def new_id() -> str:
    """Return a fresh random id: 32 lowercase hex characters."""
    return uuid4().hex


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)
