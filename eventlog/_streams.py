"""Validation of stream ids, shared by every backend."""

from __future__ import annotations

import re

from eventlog.errors import InvalidStreamId

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
