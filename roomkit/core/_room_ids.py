"""Room ids, and the event-log stream that holds each room.

RoomKit 0.3.0 took any string as a room id (``"support:42"``, ``"alice@example.com"``); an
event-log stream id is one NATS subject token of 1 to 64 characters from ``[A-Za-z0-9_-]``.
So a room id is its own stream id when it is one, and is encoded otherwise:

- ``__b`` + the base64url (no padding) of its UTF-8 bytes, when those are at most 45 bytes:
  reversible, so ``roomkit log rooms`` and the audit tools show the room id itself;
- ``__h`` + the base64url of its SHA-256, for longer ids (the room id is in the room's
  ``room.created`` record, which the audit tools read it from).

Every id that is a valid stream id keeps its stream (a log written before room ids could be
anything still reads). So that no two room ids share a stream, the two encoded shapes are
reserved: a plain id that *is* the ``__b`` form of another id, or has the exact shape of a
``__h`` form, is refused (``InvalidRoomIdError``). The base64url alphabet is ``[A-Za-z0-9_-]``:
every encoded form is a valid stream id of at most 64 characters.
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
# "__h" + the base64url of a SHA-256 digest (32 bytes: 43 characters).
_HASHED_SHAPE = re.compile(r"__h[A-Za-z0-9_-]{43}")
# 45 bytes make 60 base64 characters: with the 3-character prefix, 63 of the 64 allowed.
_MAX_REVERSIBLE = 45


def check_read_room_id(room_id: object) -> str:
    """Return ``room_id`` if a read may look it up: any str (one the kit would refuse to
    create is simply not found, as in 0.3.0).

    Raises:
        InvalidRoomIdError: it is not a str (the in-memory store found nothing, PostgreSQL's
            driver raised its own error).
    """
    if not isinstance(room_id, str):
        raise InvalidRoomIdError(f"a room id is a str, not {type(room_id).__name__}")
    return room_id


def check_room_id(room_id: object) -> str:
    """Return ``room_id`` if the kit accepts it as a room id.

    Raises:
        InvalidRoomIdError: it is not a str, is empty, is longer than ``MAX_ROOM_ID_LENGTH``
            characters, cannot be encoded as UTF-8 (a lone surrogate), or is reserved (a
            valid stream id spelled like an encoded one: see the module docstring).
    """
    room_id = check_read_room_id(room_id)
    if _PLAIN.fullmatch(room_id):  # the common case first: nothing else to check
        if room_id.startswith(_ENCODED) and _encoded_shape(room_id):
            # Checked here, before any room's actor sees it: refused there, it failed the
            # actor's start again and again.
            raise InvalidRoomIdError(
                f"room id {room_id!r} is reserved: it names the stream of another room id"
            )
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
    if _PLAIN.fullmatch(room_id):
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
        decoded = _decoded(stream)
        return decoded if decoded is not None else stream
    if _HASHED_SHAPE.fullmatch(stream):
        return None
    return stream


def _encoded_shape(stream: str) -> bool:
    """Whether ``stream`` is an encoded form: the ``__b`` form of an id that needs encoding,
    or anything of the ``__h`` form's shape (a hash cannot be checked)."""
    if stream.startswith(_BASE64):
        return _decoded(stream) is not None
    return _HASHED_SHAPE.fullmatch(stream) is not None


def _decoded(stream: str) -> str | None:
    """The id whose ``__b`` form ``stream`` is, if it is one (exactly what encoding gives)."""
    encoded = stream[len(_BASE64) :]
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not decoded or _PLAIN.fullmatch(decoded) or _b64(decoded.encode()) != encoded:
        # Not a room id, or a plain one (its own stream), or a spelling encoding never gives.
        return None
    return decoded


def room_stream_or_none(room_id: str) -> str | None:
    """``room_stream(room_id)``, or ``None`` for an id the kit refuses."""
    try:
        return room_stream(room_id)
    except InvalidRoomIdError:
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
