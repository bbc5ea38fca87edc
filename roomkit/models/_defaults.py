"""Default factories shared by the models (ids and timestamps)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

__all__ = ["new_id", "utcnow"]


def new_id() -> str:
    """Return a fresh random id: 32 lowercase hex characters (a random UUID, version 4).

    Built from ``os.urandom`` directly: ``uuid4().hex`` makes a ``UUID`` object on the way, a
    few times the cost, and every message takes an id.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)
