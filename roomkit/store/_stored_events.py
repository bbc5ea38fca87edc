"""Reading a stored event back as a ``RoomEvent``, with a typed error when it does not validate.

The in-memory and PostgreSQL stores keep each event as the JSON its log record holds, and
validate it only when it is read (validating every message as it is recorded cost the hot path
~20 µs). A record another writer appended, or another RoomKit version (a content type this
one does not know), or the kit itself (an event its channel changed in place, recorded as
it was), may hold an event that does not validate: its read raised pydantic's
``ValidationError``, which is no ``RoomKitError`` and named neither the room nor the event.
"""

from __future__ import annotations

import msgspec
import pydantic

from roomkit.errors import StoredEventError
from roomkit.models.event import RoomEvent

__all__ = ["stored_event"]

_REASONS_SHOWN = 3


class _Names(msgspec.Struct):
    """What an event that does not validate may still tell of itself."""

    id: str | None = None
    room_id: str | None = None


_names_decoder = msgspec.json.Decoder(_Names)


def stored_event(data: bytes | str) -> RoomEvent:
    """The event whose JSON a store holds.

    Raises:
        StoredEventError: it does not validate as a ``RoomEvent``.
    """
    try:
        return RoomEvent.model_validate_json(data)
    except ValueError as exc:  # pydantic's ValidationError, or JSON too deep to read
        reason = _reason(exc)
    # Raised outside the handler, neither chained nor in its context: pydantic's text quotes
    # the input (the message's content), and a traceback logged of this error (a failing
    # hook's, an app's logger.exception) would print it, as it prints a cause.
    room_id, event_id = _names(data)
    raise StoredEventError(room_id, event_id, reason)


def _names(data: bytes | str) -> tuple[str | None, str | None]:
    """The room id and event id the JSON holds, where it holds them as strings."""
    try:
        names = _names_decoder.decode(data)
    except msgspec.DecodeError:
        return None, None
    return names.room_id, names.id


def _reason(error: ValueError) -> str:
    """The validation's first errors, by place, in one line: not the input, a message's text
    (which may be megabytes, and which the kit does not log)."""
    if not isinstance(error, pydantic.ValidationError):
        return str(error).splitlines()[0]
    found = error.errors(include_url=False, include_input=False)
    text = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}"
        for e in found[:_REASONS_SHOWN]
    )
    if len(found) > _REASONS_SHOWN:
        text = f"{text}; and {len(found) - _REASONS_SHOWN} more"
    return text
