"""The ingress wire format: what services publish to feed RoomKit over NATS, and what they get.

Subjects (``prefix`` defaults to ``roomkit``)::

    <prefix>.in.<channel_id>     inbound messages; JetStream stream ROOMKIT_IN over <prefix>.in.>
    <prefix>.dlq.<channel_id>    dead letters; JetStream stream ROOMKIT_DLQ over <prefix>.dlq.>

``channel_id`` must be one subject token (no ``.``, ``*``, ``>``, white space or ASCII control
character) and must equal the payload's ``channel_id``.

Payload: one JSON object (UTF-8), an ``InboundEnvelope``::

    {"channel_id": "sms", "sender_id": "+15550001111",
     "content": {"type": "text", "body": "Hi!"},            # any RoomKit content dict
     "idempotency_key": "SM1001",                            # the provider's message id
     "external_id": "SM1001", "thread_id": null,            # optional
     "metadata": {"carrier": "acme"},                        # optional: a JSON object, or null
     "room_id": "support-1"}                                 # optional: else the kit routes

Unknown fields are ignored (newer publishers, older servers); new fields only ever get defaults.
``metadata`` and ``content`` may nest at most ``MAX_NESTING`` (100) levels deep: the kit's
serializer gives up near 255, so deeper ones are refused as ``bad_payload`` at once.

``idempotency_key`` is required by default. It makes delivery exactly-once in effect: JetStream
redelivers a message whose processing was not acknowledged (a crash, a timeout), and the room
recognises the key and records nothing twice, even across restarts. Without a key a redelivered
message may be recorded twice, so the ingress dead-letters keyless messages unless it was built
with ``require_idempotency_key=False``.

Headers (all optional)::

    Nats-Msg-Id: <channel_id>:<room_id>:<key>     JetStream's own de-duplication window (set by
                                                  publish_inbound, see ``msg_id_for``: without
                                                  a room ``<channel_id>:<key>``; a digest when a
                                                  part holds ``:`` or is not header-safe)
    RoomKit-Reply-To: <inbox>                     where the ingress publishes the IngressReply

Request-reply: a JetStream-delivered message's NATS ``reply`` is JetStream's ack subject, so the
caller names its inbox in ``RoomKit-Reply-To`` instead; once the message is committed (or
rejected) the ingress publishes one ``IngressReply`` JSON object there. It never replies on the
server's own subjects (``$JS.API...``, ``$KV...``: any starting with ``$``), the event log's
(``<log prefix>.ev.``) or its own (``<prefix>.in.``, ``<prefix>.dlq.``): a reply stored there
would become an event of another room, which no replay could then read, or an inbound
message. Such an inbox gets no reply (a warning is logged); the message is processed all the
same::

    {"ok": true, "event_id": "...", "room_id": "support-1", "index": 3, "stream_seq": 42}
    {"ok": true, "event_id": "...", "room_id": "support-1", "blocked": true, "reason": "duplicate"}
    {"ok": false, "error": "unknown_channel", "detail": "Channel fax not registered"}

A message recorded whose delivery or async hooks overran the kit's ``process_timeout`` is
answered ``{"ok": true, "event_id": "...", "blocked": true, "reason": "process_timeout"}``
(recorded; not tried again). A ``process_timeout`` before the commit is tried again, up to the
ingress's ``max_attempts``.

A duplicate caught by JetStream's window is not delivered to the ingress at all;
``publish_inbound`` then answers ``{"ok": true, "blocked": true, "reason":
"duplicate_publish", "stream_seq": <the first copy's>}`` itself, without an event id: this
copy was dropped, and what became of the first one (recorded, or dead-lettered) is for the
first copy's reply to say. A reply may come twice if a message is processed again after a
crash (the second one says ``"duplicate"``): requesters keep the first.

Dead letters keep the raw payload byte for byte and the original headers except ``Nats-*``
ones, plus ``RoomKit-Error`` (an ``IngressErrorCode``), ``RoomKit-Error-Detail``,
``RoomKit-Subject`` and ``RoomKit-Stream-Seq`` (the original subject and its sequence in the
ingress stream). A dead letter that would not fit the server's max payload with these headers
keeps only the payload's first bytes, and ``RoomKit-Truncated: <original size in bytes>``
says so (the original headers are dropped too if they alone do not fit). A dead letter's own
``Nats-Msg-Id`` is ``<stream>:<seq>@<the stream's creation time>``: a message dead-lettered
twice is stored once, and a stream made again (its sequences restart) does not clash.

To fix a dead letter and publish it again, publish it without a ``Nats-Msg-Id``
(``publish_inbound(nc, message, deduplicate=False)``): within JetStream's duplicate window
(2 minutes by default) a copy with the first one's id is dropped unseen. The room's
idempotency key still keeps it from being recorded twice.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any

import msgspec

from roomkit.core._room_ids import check_room_id as _kit_check_room_id
from roomkit.models.delivery import InboundMessage, InboundResult

__all__ = [
    "DUPLICATE_PUBLISH",
    "ERROR_DETAIL_HEADER",
    "ERROR_HEADER",
    "MAX_NESTING",
    "MAX_SUBJECT_BYTES",
    "MSG_ID_HEADER",
    "REPLY_TO_HEADER",
    "STREAM_SEQ_HEADER",
    "SUBJECT_HEADER",
    "TRUNCATED_HEADER",
    "InboundEnvelope",
    "IngressErrorCode",
    "IngressReply",
    "check_jetstream_name",
    "check_room_id",
    "check_subject_prefix",
    "check_token",
    "dead_letter_subject",
    "decode_envelope",
    "decode_reply",
    "encode_envelope",
    "encode_reply",
    "inbound_subject",
    "msg_id_for",
    "reply_for",
]

#: The caller's inbox for the ``IngressReply`` (JetStream owns the message's own ``reply``).
REPLY_TO_HEADER = "RoomKit-Reply-To"
#: JetStream's de-duplication header.
MSG_ID_HEADER = "Nats-Msg-Id"
#: Dead letters: why the message was refused (an ``IngressErrorCode``).
ERROR_HEADER = "RoomKit-Error"
#: Dead letters: a human-readable explanation.
ERROR_DETAIL_HEADER = "RoomKit-Error-Detail"
#: Dead letters: the subject the message was published on.
SUBJECT_HEADER = "RoomKit-Subject"
#: Dead letters: the message's sequence in the ingress stream.
STREAM_SEQ_HEADER = "RoomKit-Stream-Seq"
#: Dead letters: present when the payload was cut to fit the server; its original size.
TRUNCATED_HEADER = "RoomKit-Truncated"
#: The longest subject the ingress publishes on (a reply inbox, a dead letter's). The server
#: reads a publish's subject in a protocol line of at most 4096 bytes (its default
#: ``max_control_line``) and drops the connection past it, which nats-py then closes for good;
#: the line also holds the command, a reply subject (a JetStream publish's, ~60 bytes) and the
#: sizes.
MAX_SUBJECT_BYTES = 3_900
#: ``IngressReply.reason`` when JetStream dropped a publish as a copy of one it stores.
DUPLICATE_PUBLISH = "duplicate_publish"
#: How deep ``metadata`` and ``content`` may nest (the kit's serializer stops near 255).
MAX_NESTING = 100

# A Nats-Msg-Id travels as a header value: longer or unusual keys are sent as a digest.
_MAX_RAW_MSG_ID = 128
# Subject tokens and JetStream names: no separators or wildcards (names: no path separators
# either); white space and control characters are refused for both (_unsafe).
_SUBJECT_FORBIDDEN = frozenset(".*>")
_NAME_FORBIDDEN = frozenset(".*>/\\")

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class IngressErrorCode(StrEnum):
    """Why the ingress refused a message (the reply's ``error``, the dead letter's header)."""

    BAD_PAYLOAD = "bad_payload"
    """Not JSON, not an ``InboundEnvelope``, content that is no RoomKit content, or
    ``metadata``/``content`` nested deeper than ``MAX_NESTING``."""
    CHANNEL_MISMATCH = "channel_mismatch"
    """The subject's channel token differs from the payload's ``channel_id``."""
    MISSING_IDEMPOTENCY_KEY = "missing_idempotency_key"
    """No ``idempotency_key`` while the ingress requires one."""
    INVALID_ROOM_ID = "invalid_room_id"
    """``room_id`` is not a room id: empty, not a string, or over 255 characters."""
    UNKNOWN_CHANNEL = "unknown_channel"
    """No channel with this id is registered with the kit."""
    ROOM_NOT_FOUND = "room_not_found"
    """``room_id`` names no room."""
    EVENT_REFUSED = "event_refused"
    """The event log refused the message's event (too large for it, for instance): the
    same message would be refused again, so it is not retried."""
    FAILED = "failed"
    """Processing kept failing (a bug in a channel or a hook, a room that keeps timing out)."""


class InboundEnvelope(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """An inbound message on the wire: ``InboundMessage``'s fields plus an optional room.

    Attributes:
        channel_id: the registered channel that received it (also the subject's last token).
        sender_id: the sender's address on that channel (phone number, user id, ...).
        content: a RoomKit content dict (``{"type": "text", "body": ...}``, ``"media"``, ...),
            validated into the ``EventContent`` union by the ingress.
        idempotency_key: the provider's message id; see the module docs.
        external_id: the provider's id of the message, kept on the event.
        thread_id: the provider's thread or conversation id.
        metadata: any JSON object, kept on the event.
        room_id: the room to record it in; ``None`` lets the kit's inbound router choose.
    """

    channel_id: NonEmpty
    # Any str, as InboundMessage (and so the kit) takes it; an empty one too.
    sender_id: str
    content: dict[str, Any]
    idempotency_key: str | None = None
    external_id: str | None = None
    thread_id: str | None = None
    # None (JSON null: Go's encoding/json writes a nil map so) is taken as none.
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    room_id: str | None = None

    def __post_init__(self) -> None:
        if self.metadata is None:
            msgspec.structs.force_setattr(self, "metadata", {})

    @classmethod
    def from_message(
        cls, message: InboundMessage, *, room_id: str | None = None
    ) -> InboundEnvelope:
        """The envelope of ``message`` (content dumped to its JSON form), for ``room_id``."""
        return cls(
            channel_id=message.channel_id,
            sender_id=message.sender_id,
            content=message.content.model_dump(mode="json", exclude_none=True),
            idempotency_key=message.idempotency_key,
            external_id=message.external_id,
            thread_id=message.thread_id,
            metadata=dict(message.metadata),
            room_id=room_id,
        )

    def to_message(self) -> InboundMessage:
        """The ``InboundMessage`` to hand to ``process_inbound``.

        Raises:
            pydantic.ValidationError: ``content`` is not a RoomKit content, or ``metadata``
                does not validate.
        """
        return InboundMessage.model_validate(
            {
                "channel_id": self.channel_id,
                "sender_id": self.sender_id,
                "content": self.content,
                "idempotency_key": self.idempotency_key,
                "external_id": self.external_id,
                "thread_id": self.thread_id,
                "metadata": self.metadata,
            }
        )


class IngressReply(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """What a requester gets back: ``InboundResult`` in brief, or why the message was refused.

    Attributes:
        ok: the ingress did not refuse it: it was processed (recorded, blocked by a hook, or
            a duplicate), or, with ``reason="duplicate_publish"``, JetStream dropped this
            publish as a copy of the message it stores at ``stream_seq`` (that one's reply
            says what became of it).
        event_id: the recorded event (for a duplicate: the event recorded the first time).
        room_id: the room it was recorded in.
        index: the event's index in the room's timeline.
        blocked: a hook blocked it, it was a duplicate, or identity resolution stopped it.
        reason: why it was blocked (``"duplicate"``: the room recorded this key before;
            ``"duplicate_publish"``: see ``ok``).
        error: why the ingress refused it (``ok`` is False); see ``IngressErrorCode``.
        detail: a human-readable explanation of ``error``.
        stream_seq: the message's sequence in the ingress stream.
    """

    ok: bool
    event_id: str | None = None
    room_id: str | None = None
    index: int | None = None
    blocked: bool = False
    reason: str | None = None
    error: str | None = None
    detail: str | None = None
    stream_seq: int | None = None


_envelope_decoder = msgspec.json.Decoder(InboundEnvelope)
_reply_decoder = msgspec.json.Decoder(IngressReply)
_encoder = msgspec.json.Encoder()


def encode_envelope(envelope: InboundEnvelope) -> bytes:
    """The JSON payload of ``envelope``."""
    return _encoder.encode(envelope)


def decode_envelope(data: bytes) -> InboundEnvelope:
    """Decode a payload.

    Raises:
        msgspec.DecodeError: not JSON, or not the shape of an ``InboundEnvelope`` (a
            ``msgspec.ValidationError``, which says which field is wrong).
    """
    return _envelope_decoder.decode(data)


def encode_reply(reply: IngressReply) -> bytes:
    """The JSON payload of ``reply``."""
    return _encoder.encode(reply)


def decode_reply(data: bytes) -> IngressReply:
    """Decode a reply.

    Raises:
        msgspec.DecodeError: not an ``IngressReply``.
    """
    return _reply_decoder.decode(data)


def reply_for(result: InboundResult, *, stream_seq: int | None = None) -> IngressReply:
    """The ``IngressReply`` of a processed message."""
    event = result.event
    return IngressReply(
        ok=True,
        event_id=event.id if event is not None else None,
        room_id=event.room_id if event is not None else None,
        index=event.index if event is not None else None,
        blocked=result.blocked,
        reason=result.reason,
        stream_seq=stream_seq,
    )


# -- subjects ----------------------------------------------------------------------------------


def _usable(value: object, forbidden: frozenset[str]) -> bool:
    """Whether ``value`` is a non-empty str with no character ``forbidden`` or `_unsafe`."""
    return (
        isinstance(value, str)
        and bool(value)
        and not any(c in forbidden or _unsafe(c) for c in value)
    )


def _unsafe(c: str) -> bool:
    # White space of any kind and ASCII control characters: NATS splits protocol lines on
    # some of them, and none belongs in a subject or a name.
    return c.isspace() or c < " " or c == "\x7f"


def check_subject_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is one or more subject tokens without wildcards.

    Raises:
        TypeError: if it is not a str.
        ValueError: if it is not.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"a subject prefix is a str, not {type(prefix).__name__}")
    tokens = prefix.split(".")
    if not all(tokens) or any(c in "*>" or _unsafe(c) for c in prefix):
        raise ValueError(f"invalid subject prefix {prefix!r}")
    return prefix


def check_token(value: str, what: str = "channel id") -> str:
    """Return ``value`` if it can be one subject token.

    Raises:
        ValueError: if it is not a str, is empty, or holds ``.``, ``*``, ``>``, white space or
            an ASCII control character.
    """
    if not _usable(value, _SUBJECT_FORBIDDEN):
        raise ValueError(f"invalid {what} {value!r}: it must be one NATS subject token")
    return value


def check_jetstream_name(name: str, what: str = "JetStream name") -> str:
    """Return ``name`` if JetStream takes it as a stream or consumer name.

    Raises:
        ValueError: if it is not a str, is empty, or holds ``.``, ``*``, ``>``, ``/``, ``\\``,
            white space or an ASCII control character.
    """
    if not _usable(name, _NAME_FORBIDDEN):
        raise ValueError(f"invalid {what} {name!r}")
    return name


def check_room_id(room_id: str) -> str:
    """Return ``room_id`` if it is a valid room id (the kit's rule: a non-empty str of at most
    255 characters).

    Raises:
        InvalidRoomIdError: if it is not.
    """
    return _kit_check_room_id(room_id)


def inbound_subject(prefix: str, channel_id: str) -> str:
    """``<prefix>.in.<channel_id>``."""
    return f"{prefix}.in.{channel_id}"


def dead_letter_subject(prefix: str, channel_token: str) -> str:
    """``<prefix>.dlq.<channel_token>``; for a token too long to publish on (the subject of
    the message names it, in a header), ``<prefix>.dlq._long_<sha256 of it>``."""
    subject = f"{prefix}.dlq.{channel_token}"
    if len(subject.encode()) <= MAX_SUBJECT_BYTES:
        return subject
    digest = hashlib.sha256(channel_token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}.dlq._long_{digest}"


def msg_id_for(channel_id: str, idempotency_key: str, room_id: str | None = None) -> str:
    """The ``Nats-Msg-Id`` of a message: its key, scoped to its channel and room.

    JetStream's window spans the whole ingress stream, while the kit keeps idempotency keys
    per room (the same key in two rooms is two messages): so the id names the room too.
    ``<channel_id>:<room_id>:<key>``, or ``<channel_id>:<key>`` without a room; when a part
    holds ``:``, starts with ``#`` or is not header-safe, ``<channel_id>:#<sha256>`` (or
    ``#<sha256>``) of all of them instead, so that two different messages never share an id.
    """
    parts = [channel_id] + ([] if room_id is None else [room_id]) + [idempotency_key]
    if all(_plain_part(p) for p in parts):
        raw = ":".join(parts)
        if len(raw) <= _MAX_RAW_MSG_ID:
            return raw
    # nats-py rewrites header values it cannot carry verbatim: send a digest instead.
    digest = hashlib.sha256(_encoder.encode(parts)).hexdigest()
    return f"{channel_id}:#{digest}" if _plain_part(channel_id) else f"#{digest}"


def _plain_part(part: str) -> bool:
    return (
        bool(part)
        and ":" not in part
        and not part.startswith("#")
        and part.isprintable()
        and part == part.strip()
    )
