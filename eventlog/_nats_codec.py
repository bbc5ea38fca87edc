"""What ``NatsEventLog`` stores in JetStream, and how sequences map to versions and positions.

One ``append`` is one JetStream message on subject ``<prefix>.ev.<stream>``; its payload is a
``StoredBatch`` (MessagePack, array-like, tagged ``"rk1"``) holding the version of its first event
and the events themselves. Array-like keeps messages small; the format evolves only by appending
fields with defaults, or by a new tagged struct.

Positions: a message holds at most ``MAX_EVENTS`` (1000) events, and the **last** event of the
message with stream sequence ``seq`` has position ``seq * 1000``; the events before it count
down from there. So positions strictly increase across messages (message ``seq`` spans
``(seq - 1) * 1000 + 1 .. seq * 1000``), the last position of the log is ``last_seq * 1000``
without reading anything, and the message holding position ``p`` has sequence ``ceil(p / 1000)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from eventlog.codec import decode, encode
from eventlog.record import NO_HEADERS, Headers, NewEvent, Record

__all__ = [
    "MAX_EVENTS",
    "ApiError",
    "PubAck",
    "StoredBatch",
    "StoredEvent",
    "decode_batch",
    "decode_pub_ack",
    "encode_batch",
    "envelope_bytes",
    "event_bytes",
    "first_seq_after",
    "last_position_of",
    "records_of",
]

#: Events per message, and the factor between stream sequences and positions.
MAX_EVENTS = 1000


class StoredEvent(msgspec.Struct, frozen=True, array_like=True):
    """One event inside a stored batch (the stream and version come from the message)."""

    type: str
    timestamp: float
    data: bytes
    headers: Headers = NO_HEADERS


class StoredBatch(msgspec.Struct, frozen=True, array_like=True, tag="rk1"):
    """The payload of one JetStream message: the events of one ``append`` call.

    Attributes:
        version: the version of the first event.
        events: the events, in order.
        prev_seq: the stream sequence of the log stream's previous message (0 for its first):
            the sequence the append was conditioned on, kept so that a stream's messages can
            be walked backwards and checked.
    """

    version: int
    events: list[StoredEvent]
    prev_seq: int = 0


class ApiError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """JetStream's answer to a publish (decoded with msgspec: cheaper than nats-py's)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


_pub_ack_decoder = msgspec.json.Decoder(PubAck)


def encode_batch(
    version: int, events: Sequence[NewEvent], now: float, prev_seq: int
) -> tuple[bytes, StoredBatch]:
    """Encode ``events`` as the batch that starts at ``version`` (``now`` stamps bare events)."""
    batch = StoredBatch(
        version=version,
        prev_seq=prev_seq,
        events=[
            StoredEvent(
                type=event.type,
                timestamp=now if event.timestamp is None else event.timestamp,
                data=event.data,
                headers=event.headers,
            )
            for event in events
        ],
    )
    return encode(batch), batch


# The largest ints a batch's envelope holds (its first version, the previous sequence): sized
# with them, an envelope is never smaller than a real one.
_LARGEST_INT = 2**63 - 1
# What the events' array header grows by, from one element (how an event is sized) to many.
_ARRAY_HEADER_GROWTH = 4


def event_bytes(event: NewEvent) -> int:
    """An upper bound of the bytes ``event`` adds to any batch's payload."""
    return _batch_bytes([event]) - _batch_bytes([])


def envelope_bytes() -> int:
    """An upper bound of the bytes a batch's payload takes besides its events."""
    return _batch_bytes([]) + _ARRAY_HEADER_GROWTH


def _batch_bytes(events: Sequence[NewEvent]) -> int:
    return len(encode_batch(_LARGEST_INT, events, 0.0, _LARGEST_INT)[0])


def decode_batch(data: bytes) -> StoredBatch:
    """Decode a stored batch.

    Raises:
        msgspec.DecodeError: the message is not a RoomKit batch.
    """
    return decode(data, StoredBatch)


def decode_pub_ack(data: bytes) -> PubAck:
    return _pub_ack_decoder.decode(data)


def records_of(stream: str, seq: int, batch: StoredBatch) -> list[Record]:
    """The records that the message ``seq`` holding ``batch`` stands for."""
    events = batch.events
    first_position = seq * MAX_EVENTS - len(events) + 1
    version = batch.version
    return [
        Record(
            stream=stream,
            version=version + offset,
            position=first_position + offset,
            type=event.type,
            timestamp=event.timestamp,
            data=event.data,
            headers=event.headers,
        )
        for offset, event in enumerate(events)
    ]


def last_position_of(seq: int) -> int:
    """The position of the last event of the message with stream sequence ``seq``."""
    return seq * MAX_EVENTS


def first_seq_after(position: int) -> int:
    """The first stream sequence that may hold an event with a position above ``position``."""
    return max(position, 0) // MAX_EVENTS + 1
