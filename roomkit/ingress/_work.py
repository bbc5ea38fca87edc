"""One unit of ingress work: a message taken from JetStream, decoded and checked.

Decoding happens as soon as a message arrives, because the lane that keeps its room's order is
chosen from its content (room id or channel id). A message that cannot be processed carries
its rejection instead, and is dead-lettered by its lane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic

from roomkit.errors import InvalidRoomIdError
from roomkit.ingress.wire import (
    MAX_NESTING,
    InboundEnvelope,
    IngressErrorCode,
    check_room_id,
    decode_envelope,
)
from roomkit.models.delivery import InboundMessage

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = [
    "IngressStats",
    "LaneKey",
    "Rejection",
    "WorkItem",
    "default_lane_key",
    "message_of",
    "prepare",
    "refused",
]

logger = logging.getLogger("roomkit.ingress")

#: Picks the ordering key of a message: messages with equal keys are processed one at a time,
#: in the order JetStream delivered them. A function that raises, or returns something other
#: than a str, is not fatal: that message gets ``default_lane_key``'s key, with a warning
#: (so it may then run beside the others of the lane it was meant for).
LaneKey = Callable[[InboundEnvelope], str]

# Dead-letter details travel as one header line.
_MAX_DETAIL = 500


def default_lane_key(envelope: InboundEnvelope) -> str:
    """The room when the publisher names it; otherwise the channel.

    Without a room id the kit's inbound router picks the room from state that earlier messages
    of the same channel may change (the default router auto-creates a room bound to the
    channel on its first message, then routes every later message of the channel there), so
    messages of one channel must be routed one after the other.
    """
    if envelope.room_id is not None:
        return f"room:{envelope.room_id}"
    return f"channel:{envelope.channel_id}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is refused: the code and a one-line explanation."""

    code: IngressErrorCode
    detail: str

    @classmethod
    def of(cls, code: IngressErrorCode, detail: str) -> Rejection:
        """A rejection with ``detail`` squeezed to one bounded line (it becomes a header)."""
        line = " ".join(detail.split())
        if len(line) > _MAX_DETAIL:
            line = line[: _MAX_DETAIL - 3] + "..."
        return cls(code, line)


@dataclass(eq=False, slots=True)
class WorkItem:
    """A message on its way through a lane.

    Attributes:
        subject: where it was published.
        data: the raw payload (dead letters keep it byte for byte).
        headers: its NATS headers (``RoomKit-Reply-To`` among them).
        seq: its sequence in the ingress stream.
        msg: the JetStream delivery to acknowledge; ``None`` for a message recovered after a
            crash, whose delivery belonged to the process that died.
        key: the lane key (see ``LaneKey``).
        message: what to hand to ``process_inbound`` (``None`` when rejected).
        room_id: the room the publisher named.
        rejection: why it is refused, if it is.
        incarnation: the ingress stream's creation time (its sequences restart when it is
            made again): with ``seq``, what names the message's dead letter.
        again: not its first delivery (recovered, or redelivered by JetStream): the process
            may have died processing it (see ``roomkit.ingress._crashes``).
    """

    subject: str
    data: bytes
    headers: Mapping[str, str]
    seq: int | None
    msg: Msg | None
    key: str
    message: InboundMessage | None = None
    room_id: str | None = None
    rejection: Rejection | None = None
    incarnation: str = ""
    again: bool = False
    last_progress: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class IngressStats:
    """Counters of what the ingress did since it started.

    Attributes:
        received: messages taken from JetStream (redeliveries included).
        recorded: messages recorded in a room.
        blocked: messages a hook (or identity resolution) blocked; recorded as blocked.
        duplicates: messages recognised as already recorded (idempotency key).
        dead_lettered: messages refused and sent to the dead-letter subject.
        retried: retries after a transient failure.
        recovered: unacknowledged messages re-read after a crash, before fetching new ones.
        released: messages handed back to JetStream (nak) when stopping.
    """

    received: int = 0
    recorded: int = 0
    blocked: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    recovered: int = 0
    released: int = 0

    @property
    def processed(self) -> int:
        """Messages finished one way or another (recorded, blocked, duplicate, dead letter)."""
        return self.recorded + self.blocked + self.duplicates + self.dead_lettered


def refused(
    *,
    subject: str,
    channel_token: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    seq: int | None,
    msg: Msg | None,
    code: IngressErrorCode,
    detail: str,
) -> WorkItem:
    """The work item of a message refused with ``code`` (it goes to its channel's lane)."""
    return WorkItem(
        subject=subject,
        data=data,
        headers=headers or {},
        seq=seq,
        msg=msg,
        key=f"channel:{channel_token}",
        rejection=Rejection.of(code, detail),
    )


def prepare(
    *,
    subject: str,
    channel_token: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    seq: int | None,
    msg: Msg | None,
    lane_key: LaneKey,
    require_idempotency_key: bool,
) -> WorkItem:
    """Decode and check a message; return the work item (carrying a rejection if refused).

    Never raises (but ``BaseException``s): whatever the payload, it becomes work, so no single
    message can stop the consumer.
    """

    def refuse(code: IngressErrorCode, detail: str) -> WorkItem:
        return refused(
            subject=subject,
            channel_token=channel_token,
            data=data,
            headers=headers,
            seq=seq,
            msg=msg,
            code=code,
            detail=detail,
        )

    try:
        envelope = decode_envelope(data)
    except Exception as exc:  # DecodeError, but also RecursionError on deep nesting
        return refuse(IngressErrorCode.BAD_PAYLOAD, f"the payload does not decode: {exc}")
    if envelope.channel_id != channel_token:
        return refuse(
            IngressErrorCode.CHANNEL_MISMATCH,
            f"published on {subject} but the payload's channel_id is {envelope.channel_id!r}",
        )
    if not envelope.idempotency_key and require_idempotency_key:
        return refuse(
            IngressErrorCode.MISSING_IDEMPOTENCY_KEY,
            "no idempotency_key: a redelivery could record the message twice",
        )
    if envelope.room_id is not None:
        try:
            check_room_id(envelope.room_id)
        except InvalidRoomIdError as exc:
            return refuse(IngressErrorCode.INVALID_ROOM_ID, str(exc))
    message = message_of(envelope)
    if isinstance(message, Rejection):
        return refuse(message.code, message.detail)
    return WorkItem(
        subject=subject,
        data=data,
        headers=headers or {},
        seq=seq,
        msg=msg,
        key=_lane_key_of(lane_key, envelope, subject, seq),
        message=message,
        room_id=envelope.room_id,
    )


def message_of(envelope: InboundEnvelope) -> InboundMessage | Rejection:
    """The ``InboundMessage`` of ``envelope``, or why it is none (``bad_payload``)."""
    for name, value in (("metadata", envelope.metadata), ("content", envelope.content)):
        if _deeper_than(value, MAX_NESTING):
            # The kit's serializer would fail on it at every attempt: refuse it now.
            return Rejection.of(
                IngressErrorCode.BAD_PAYLOAD,
                f"{name} is nested more than {MAX_NESTING} levels deep",
            )
    try:
        return envelope.to_message()
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return Rejection.of(IngressErrorCode.BAD_PAYLOAD, f"invalid message: {problems}")
    except Exception as exc:  # whatever else validation meets: still this message's fault
        return Rejection.of(IngressErrorCode.BAD_PAYLOAD, f"invalid message: {exc!r}")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers in ``value`` nest more than ``limit`` levels (``value`` is level 1).

    Iterative: the values this looks at may be too deep for recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _lane_key_of(
    lane_key: LaneKey, envelope: InboundEnvelope, subject: str, seq: int | None
) -> str:
    """``lane_key(envelope)``; the default key if it raises or returns no str (see
    ``LaneKey``): a user's function must not stop the ingress."""
    try:
        key: object = lane_key(envelope)
    except Exception:
        logger.warning(
            "ingress: lane_key raised on %s #%s; using the default lane key",
            subject,
            seq,
            exc_info=True,
        )
        return default_lane_key(envelope)
    if not isinstance(key, str):
        logger.warning(
            "ingress: lane_key returned %s, not a str, on %s #%s; using the default lane key",
            type(key).__name__,
            subject,
            seq,
        )
        return default_lane_key(envelope)
    return key
