"""Room ids, and the event-log stream that holds each room.

RoomKit 0.3.0 took any string as a room id (``"support:42"``, ``"alice@example.com"``); an
event-log stream id is one NATS subject token of 1 to 64 characters from ``[A-Za-z0-9_-]``.
So a room id is its own stream id when it is one, and is encoded otherwise:

- ``__b`` + the base64url (no padding) of its UTF-8 bytes, when those are at most 45 bytes:
  reversible, so ``roomkit log rooms`` and the audit tools show the room id itself;
- ``__h`` + the base64url of its SHA-256, for longer ids (the room id is in the room's
  ``room.created`` record, which the audit tools read it from).

An id that is already a stream id but starts with ``__`` is encoded too, so no two room ids
ever share a stream. The base64url alphabet is ``[A-Za-z0-9_-]``: every encoded form is a
valid stream id of at most 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from roomkit.errors import InvalidRoomIdError

__all__ = [
    "MAX_ROOM_ID_LENGTH",
    "check_room_id",
    "room_of_stream",
    "room_stream",
    "room_stream_or_none",
]

MAX_ROOM_ID_LENGTH = 255
"""The longest room id accepted, in characters (0.3.0 set no limit; a bound keeps a hostile
inbound message from naming a room with megabytes)."""

_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENCODED = "__"
_BASE64 = "__b"
_HASHED = "__h"
# 45 bytes make 60 base64 characters: with the 3-character prefix, 63 of the 64 allowed.
_MAX_REVERSIBLE = 45


def check_room_id(room_id: object) -> str:
    """Return ``room_id`` if the kit accepts it as a room id.

    Raises:
        InvalidRoomIdError: it is not a str, is empty, is longer than ``MAX_ROOM_ID_LENGTH``
            characters, or cannot be encoded as UTF-8 (a lone surrogate).
    """
    if not isinstance(room_id, str):
        raise InvalidRoomIdError(f"a room id is a str, not {type(room_id).__name__}")
    if _PLAIN.fullmatch(room_id):  # the common case first: nothing else to check
        return room_id
    if not room_id:
        raise InvalidRoomIdError("a room id cannot be empty")
    if len(room_id) > MAX_ROOM_ID_LENGTH:
        raise InvalidRoomIdError(
            f"room id {room_id[:40]!r}... has {len(room_id)} characters; "
            f"at most {MAX_ROOM_ID_LENGTH} are accepted"
        )
    try:
        room_id.encode()
    except UnicodeEncodeError as exc:
        raise InvalidRoomIdError(f"room id {room_id!r} is not valid Unicode text") from exc
    return room_id


def room_stream(room_id: str) -> str:
    """The id of the event-log stream holding ``room_id`` (itself when it is a valid one).

    Raises:
        InvalidRoomIdError: ``room_id`` is not a valid room id (see ``check_room_id``).
    """
    check_room_id(room_id)
    if _PLAIN.fullmatch(room_id) and not room_id.startswith(_ENCODED):
        return room_id
    data = room_id.encode()
    if len(data) <= _MAX_REVERSIBLE:
        return _BASE64 + _b64(data)
    return _HASHED + _b64(hashlib.sha256(data).digest())


def room_of_stream(stream: str) -> str | None:
    """The room id held by ``stream``, or ``None`` when the stream name does not tell it
    (the hashed form of a long id; read the room's ``room.created`` record instead)."""
    if not stream.startswith(_ENCODED):
        return stream
    if stream.startswith(_BASE64):
        encoded = stream[len(_BASE64) :]
        try:
            decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        # Only an id the kit would have encoded this way: anything else is not a room's stream.
        return decoded if room_stream_or_none(decoded) == stream else None
    return None


def room_stream_or_none(room_id: str) -> str | None:
    """``room_stream(room_id)``, or ``None`` for an id the kit refuses."""
    try:
        return room_stream(room_id)
    except InvalidRoomIdError:
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
