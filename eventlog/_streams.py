"""Validation of stream ids and appends, shared by every backend."""

from __future__ import annotations

import re
from collections.abc import Sized

from eventlog.errors import InvalidAppend, InvalidStreamId

# One NATS subject token: no '.', '*', '>' or white space, so that a stream id can be the last
# token of a subject and wildcards never match more than one stream.
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_stream_id(stream: object) -> str:
    """Return ``stream`` if it is a valid stream id.

    Raises:
        InvalidStreamId: if it is not a str of 1 to 64 characters from ``[A-Za-z0-9_-]``.
    """
    if isinstance(stream, str) and _STREAM_ID.fullmatch(stream):
        return stream
    raise InvalidStreamId(stream)


def check_append(stream: object, events: Sized, limit: int) -> str:
    """Return ``stream`` if an append of ``events`` to it is acceptable.

    Raises:
        InvalidStreamId: ``stream`` is not a valid stream id.
        InvalidAppend: ``events`` is empty or holds more than ``limit`` events.
    """
    name = check_stream_id(stream)
    if not len(events):
        raise InvalidAppend(f"append to {name!r} with no events")
    if len(events) > limit:
        raise InvalidAppend(
            f"append to {name!r} with {len(events)} events; at most {limit} per call"
        )
    return name
