"""The record envelope: what goes into the log and what comes out of it.

Every type here is a frozen msgspec Struct. Field order and names are part of the stored format:
new fields get defaults, existing fields never change type (so old logs stay readable).

They are declared ``gc=False``: they hold only strings, numbers, bytes and string-to-string
dicts, so they can never be part of a reference cycle, and a log of millions of records then
gives the cyclic garbage collector nothing to scan.
"""

from __future__ import annotations

import msgspec

__all__ = ["NO_HEADERS", "Headers", "NewEvent", "Record", "Snapshot", "StreamInfo"]


class Headers(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Metadata that travels with an event.

    Attributes:
        message_id: identifies the message that produced the event; the log de-duplicates
            appends by the first event's message id (see ``EventLog.append``).
        causation_id: the id of the command or event that caused this one.
        correlation_id: groups every event of one conversation turn or workflow.
        extra: free-form string pairs.
    """

    message_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    extra: dict[str, str] | None = None


NO_HEADERS = Headers()
"""Shared empty headers: most events carry none, and sharing keeps stored records small."""


class NewEvent(msgspec.Struct, frozen=True, gc=False):
    """An event to append: a stable type tag and an opaque payload.

    Attributes:
        type: the event's stable tag (e.g. ``"room.created"``); never a class name.
        data: the encoded payload (the caller chooses the codec; msgspec in RoomKit).
        headers: message, causation and correlation ids.
        timestamp: seconds since the epoch; ``None`` lets the log stamp the append time.
            Domain code passes its own clock so that ``decide`` stays pure.
    """

    type: str
    data: bytes = b""
    headers: Headers = NO_HEADERS
    timestamp: float | None = None


class Record(msgspec.Struct, frozen=True, gc=False):
    """A committed event.

    Attributes:
        stream: the stream it belongs to.
        version: its place in that stream, from 1, without gaps.
        position: its place in the whole log; strictly increasing, not necessarily contiguous.
        type: the stable type tag.
        timestamp: seconds since the epoch.
        data: the encoded payload.
        headers: message, causation and correlation ids.
    """

    stream: str
    version: int
    position: int
    type: str
    timestamp: float
    data: bytes
    headers: Headers = NO_HEADERS


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """A stream's state saved at ``version``, so recovery can replay only the tail."""

    stream: str
    version: int
    data: bytes
    timestamp: float = 0.0


class StreamInfo(msgspec.Struct, frozen=True, gc=False):
    """What the log knows of one stream without reading it whole."""

    stream: str
    version: int
    last_position: int
    last_timestamp: float
