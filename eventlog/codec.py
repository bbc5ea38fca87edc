"""The module-level msgspec codec for log records and payloads.

One encoder and one typed decoder per type, created once and reused (msgspec is fastest that
way). MessagePack is the storage format; JSON is for exports and humans.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import msgspec

from eventlog.record import NO_HEADERS, Headers, NewEvent, Record, Snapshot

__all__ = [
    "decode",
    "decode_record",
    "decode_record_json",
    "decode_snapshot",
    "encode",
    "encode_json",
]

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)
_record_json_decoder = msgspec.json.Decoder(Record)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_new_event_decoder = msgspec.msgpack.Decoder(NewEvent)
_typed_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    Record: _record_decoder,
    Snapshot: _snapshot_decoder,
    NewEvent: _new_event_decoder,
}


def encode(obj: Any) -> bytes:
    """Encode any msgspec-supported value (a Struct, list, dict, ...) as MessagePack."""
    return _encoder.encode(obj)


def encode_json(obj: Any) -> bytes:
    """Encode a value as JSON (exports, wire formats meant for other languages)."""
    return _json_encoder.encode(obj)


def decode(data: bytes, type: type[T]) -> T:
    """Decode MessagePack ``data`` as ``type``, reusing one decoder per type.

    Raises:
        msgspec.DecodeError: if ``data`` is not a valid encoding of ``type``.
    """
    decoder = _typed_decoders.get(type)
    if decoder is None:
        decoder = _typed_decoders[type] = msgspec.msgpack.Decoder(type)
    result: T = decoder.decode(data)
    return result


def decode_record(data: bytes) -> Record:
    """Decode one MessagePack-encoded ``Record``."""
    return _record_decoder.decode(data)


class _UntimedRecord(msgspec.Struct, frozen=True, gc=False):
    """A ``Record`` in JSON whose timestamp may be ``null``: how JSON writes one that is not
    a number (NaN), which a log written by another writer, or before appends checked, may
    hold."""

    stream: str
    version: int
    position: int
    type: str
    timestamp: float | None
    data: bytes
    headers: Headers = NO_HEADERS


_untimed_json_decoder = msgspec.json.Decoder(_UntimedRecord)


def decode_record_json(data: bytes | str) -> Record:
    """Decode one JSON-encoded ``Record`` (one line of an export); a ``null`` timestamp is
    NaN, as it was when exported (an export that exited 0 was refused by its own import)."""
    try:
        return _record_json_decoder.decode(data)
    except msgspec.ValidationError as refused:
        try:
            untimed = _untimed_json_decoder.decode(data)
        except msgspec.ValidationError:
            raise refused from None
        if untimed.timestamp is not None:
            raise
        return Record(
            stream=untimed.stream,
            version=untimed.version,
            position=untimed.position,
            type=untimed.type,
            timestamp=math.nan,
            data=untimed.data,
            headers=untimed.headers,
        )


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode one MessagePack-encoded ``Snapshot``."""
    return _snapshot_decoder.decode(data)
