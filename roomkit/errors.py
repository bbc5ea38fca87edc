"""Errors raised by the RoomKit API.

What goes wrong in the kit's work raises a ``RoomKitError``; foreign exceptions (event log,
actor runtime, store) are translated at the boundary with ``raise ... from exc``. An argument
of the wrong type or value raises ``TypeError`` or ``ValueError`` (pydantic's
``ValidationError``, a ``ValueError``, for a model's fields), as in RoomKit 0.3.0::

    RoomKitError
    ├── RoomNotFoundError
    ├── ChannelNotFoundError
    ├── ChannelNotRegisteredError
    ├── ParticipantNotFoundError
    ├── IdentityNotFoundError
    ├── SourceAlreadyAttachedError
    ├── SourceNotFoundError
    ├── VoiceNotConfiguredError
    ├── VoiceBackendNotConfiguredError
    ├── InvalidRoomIdError (also a ValueError)
    ├── RoomConflictError      another process kept writing the room
    ├── RoomTimeoutError       (also a TimeoutError) the room did not answer in time
    ├── LogUnavailableError    the event log cannot be reached
    ├── EventRefusedError      (also a ValueError) what a command would write cannot be stored
    ├── StoreUnavailableError  the read model's database cannot be reached
    │   └── StoreClosedError   (roomkit.store.postgres; also a RuntimeError) closed by its owner
    ├── StoreSchemaError (roomkit.store.postgres) the tables are of another schema version
    ├── StoredEventError       an event the store holds does not validate
    ├── RealtimeUnavailableError (roomkit.realtime.nats) NATS cannot be reached for realtime
    └── KitClosedError         the kit takes no more commands

``ProviderError`` (AI providers) is not a ``RoomKitError``, as in RoomKit 0.3.0.
"""

from __future__ import annotations

__all__ = [
    "ChannelNotFoundError",
    "EventRefusedError",
    "ChannelNotRegisteredError",
    "IdentityNotFoundError",
    "InvalidRoomIdError",
    "KitClosedError",
    "LogUnavailableError",
    "ParticipantNotFoundError",
    "RoomConflictError",
    "RoomKitError",
    "RoomNotFoundError",
    "RoomTimeoutError",
    "SourceAlreadyAttachedError",
    "SourceNotFoundError",
    "StoreUnavailableError",
    "StoredEventError",
    "VoiceBackendNotConfiguredError",
    "VoiceNotConfiguredError",
]


class RoomKitError(Exception):
    """Base class of every error raised by the kit."""


class RoomNotFoundError(RoomKitError):
    """No room has this id."""


class ChannelNotFoundError(RoomKitError):
    """The channel is not attached to the room (no binding)."""


class ChannelNotRegisteredError(RoomKitError):
    """No channel with this id was registered with the kit (or it has the wrong kind)."""


class ParticipantNotFoundError(RoomKitError):
    """The room has no participant with this id."""


class IdentityNotFoundError(RoomKitError):
    """The store has no identity with this id."""


class SourceAlreadyAttachedError(RoomKitError):
    """A source is already attached to this channel."""


class SourceNotFoundError(RoomKitError):
    """No source is attached to this channel."""


class VoiceNotConfiguredError(RoomKitError):
    """The kit has no speech-to-text or text-to-speech provider."""


class VoiceBackendNotConfiguredError(RoomKitError):
    """The kit has no voice backend."""


class InvalidRoomIdError(RoomKitError, ValueError):
    """A room id must be a non-empty ``str`` of at most 255 characters (valid Unicode).

    Any such id works, ``"support:42"`` or ``"alice@example.com"`` included: a room whose id is
    not a valid event-log stream id is stored in a stream named after it (see
    ``docs/quirks.md``).
    """


class RoomConflictError(RoomKitError):
    """Another process kept writing the room while this one retried: the command was not
    applied (the room's history is never forked). Retrying later is safe."""


class RoomTimeoutError(RoomKitError, TimeoutError):
    """The room did not answer in time (its mailbox is backed up, or a hook is slow)."""


class LogUnavailableError(RoomKitError):
    """The event log cannot be reached, or did not answer in time.

    The call's append may have landed all the same (the server took it; its answer was lost).
    If it did, the room finds it before its next command, or before its actor stops, and goes
    on with it as committed: the message is delivered then (a process that ends first, or
    whose log is still away then, loses that delivery). Retry with the same idempotency key
    (the message's, or ``send_event``'s ``idempotency_key``): the retry is then answered as a
    duplicate of that message rather than recorded twice.
    """


class StoreUnavailableError(RoomKitError):
    """The store (the read model) cannot be reached right now: its database is down or
    restarting, its connection was lost.

    A store raises it for a failure that trying again later can cure. The kit's store
    projection then applies the same record again, after a pause that grows to 5 s, rather
    than skip it; meanwhile the kit's calls that wait for the read model wait for it too.
    """


class StoredEventError(RoomKitError):
    """An event the store holds does not validate as a ``RoomEvent``: its log record was
    written by another writer, by another RoomKit version (a content type this one does not
    know), or by the kit itself from an event its channel or a hook changed in place (not
    validated again as it is recorded). The read that met it fails; the room's other reads,
    and other rooms, do not. The room itself keeps working: it folds a message from its few
    fields.

    Attributes:
        room_id: the room the event names (``None`` when it names none).
        event_id: the event's id (``None`` when it has none).
        reason: what the validation said, in one line (without the event's content).
    """

    def __init__(self, room_id: str | None, event_id: str | None, reason: str) -> None:
        self.room_id = room_id
        self.event_id = event_id
        self.reason = reason
        super().__init__(
            f"event {event_id!r} of room {room_id!r} in the store does not validate (written "
            f"by another writer or RoomKit version, or changed in place?): {reason}"
        )


class EventRefusedError(RoomKitError, ValueError):
    """The events a command would have written cannot be stored: the kit refused them (JSON
    cannot hold them: a lone surrogate, a number of more than 4,300 digits, nesting too deep)
    or the event log did (too large for it). Nothing was committed, and the same command will
    be refused again."""


class KitClosedError(RoomKitError):
    """The kit is closed (or closing) and takes no more commands."""
