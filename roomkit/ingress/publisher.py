"""``publish_inbound``: how a service feeds RoomKit through the NATS ingress.

::

    nc = await nats.connect(url)
    ack = await publish_inbound(nc, InboundMessage(channel_id="sms", sender_id="+1555...",
                                                   content=TextContent(body="Hi"),
                                                   idempotency_key="SM1001"))
    reply = await publish_inbound(nc, message, reply_timeout=5.0)   # wait for the outcome
    if reply.ok and not reply.blocked: print("recorded as", reply.event_id)

The message is published to JetStream (stored before the call returns) with
``Nats-Msg-Id = <channel_id>:<room_id>:<idempotency_key>`` (see ``wire.msg_id_for``), so a
service that retries a publish within JetStream's duplicate window stores it once; the rooms'
idempotency keys catch later repeats. ``publish_inbound`` does not retry by itself: on
``IngressUnavailable`` (a server restarting, an ack lost) publish the same message again; it
cannot be recorded twice.

A message that was dead-lettered and fixed (its room created, say) is published again with
``deduplicate=False``: with the same id, JetStream would drop it within its window.
"""

from __future__ import annotations

import contextlib
from typing import overload

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import PubAck

from actors import check_finite_seconds
from roomkit.errors import InvalidRoomIdError
from roomkit.ingress._deadletter import headers_size
from roomkit.ingress._nats import full_for_now, is_transient
from roomkit.ingress._work import Rejection, message_of
from roomkit.ingress.errors import IngressTimeout, IngressUnavailable, InvalidInbound
from roomkit.ingress.wire import (
    DUPLICATE_PUBLISH,
    MSG_ID_HEADER,
    REPLY_TO_HEADER,
    InboundEnvelope,
    IngressReply,
    check_room_id,
    check_subject_prefix,
    check_token,
    decode_envelope,
    decode_reply,
    encode_envelope,
    inbound_subject,
    msg_id_for,
)
from roomkit.models.delivery import InboundMessage

__all__ = ["publish_inbound"]


@overload
async def publish_inbound(
    nc: NatsClient,
    message: InboundMessage | InboundEnvelope,
    *,
    subject_prefix: str = ...,
    room_id: str | None = ...,
    reply_timeout: None = None,
    timeout: float = ...,
    require_idempotency_key: bool = ...,
    deduplicate: bool = ...,
) -> PubAck: ...


@overload
async def publish_inbound(
    nc: NatsClient,
    message: InboundMessage | InboundEnvelope,
    *,
    subject_prefix: str = ...,
    room_id: str | None = ...,
    reply_timeout: float,
    timeout: float = ...,
    require_idempotency_key: bool = ...,
    deduplicate: bool = ...,
) -> IngressReply: ...


async def publish_inbound(
    nc: NatsClient,
    message: InboundMessage | InboundEnvelope,
    *,
    subject_prefix: str = "roomkit",
    room_id: str | None = None,
    reply_timeout: float | None = None,
    timeout: float = 5.0,
    require_idempotency_key: bool = True,
    deduplicate: bool = True,
) -> PubAck | IngressReply:
    """Publish ``message`` on ``<prefix>.in.<channel_id>``; optionally wait for its outcome.

    Args:
        nc: a connected nats-py client.
        message: the message, as a channel received it (or an envelope already built).
        subject_prefix: the ingress's subject prefix.
        room_id: record it in this room (overrides the envelope's); ``None`` lets the kit's
            inbound router choose.
        reply_timeout: wait this long (after JetStream stored the message) for the
            ``IngressReply``; ``None`` returns as soon as JetStream stored it.
        timeout: bound of the publish itself.
        require_idempotency_key: refuse a message without an idempotency key, as the ingress
            does by default (pass ``False`` for an ingress configured to accept them).
        deduplicate: send a ``Nats-Msg-Id`` (when the message has an idempotency key), so
            that JetStream stores a publish repeated within its duplicate window once. Pass
            ``False`` to publish again a dead letter that was fixed: JetStream would drop it
            as a copy of the first publish otherwise. The room's idempotency key still keeps
            it from being recorded twice.

    Metadata goes as JSON, as the kit's log keeps it: a datetime as its ISO text, a tuple or
    a set as a list, NaN as null, bytes as base64 (msgspec's form for them).

    Returns:
        JetStream's ``PubAck`` (``duplicate=True`` if the id was seen within its window), or
        with ``reply_timeout`` the ``IngressReply``. A publish that JetStream drops as a
        duplicate gets ``IngressReply(ok=True, blocked=True, reason="duplicate_publish",
        stream_seq=<the first copy's>)`` at once, without an event id: this copy was not
        processed, and whether the first one was recorded or dead-lettered is its own
        reply's to say.

    Raises:
        InvalidInbound: a message the ingress would refuse: a channel id that is not one
            subject token, an invalid room id, no idempotency key while one is required, an
            envelope that does not encode or decode as one (wrong field types, metadata with
            values JSON has no form for), content that is no RoomKit content, or a message
            larger than the server's max payload; or one JetStream refused for good (a limit
            of the stream on each message, ``max_msg_size`` say): publishing it again would be
            refused again.
        IngressUnavailable: JetStream did not store the message (no server, no stream: the
            ingress creates its stream when it starts; the stream full, its limits on what
            it holds reached with ``discard=new``, until the ingress takes its messages).
        IngressTimeout: no reply within ``reply_timeout`` (the message is stored and will
            still be processed).
        TypeError: ``nc`` is not a nats-py client (a JetStream context, say), ``message`` is
            neither an ``InboundMessage`` nor an ``InboundEnvelope``, ``subject_prefix`` is
            not a str, or a timeout is not a number.
        ValueError: ``subject_prefix`` is not a valid subject prefix, or a timeout is not
            positive and finite.
    """
    if not (hasattr(nc, "jetstream") and hasattr(nc, "max_payload")):
        # Said here: deep inside, it was an AttributeError about max_payload.
        raise TypeError(
            f"nc must be a connected nats-py client (await nats.connect(url)), not "
            f"{type(nc).__name__}"
        )
    # Checked before anything is published: NATS would take NaN as no bound at all.
    timeout = check_finite_seconds("timeout", timeout)
    if reply_timeout is not None:
        reply_timeout = check_finite_seconds("reply_timeout", reply_timeout)
    check_subject_prefix(subject_prefix)
    envelope = _envelope(message, room_id, require_idempotency_key)
    subject = inbound_subject(subject_prefix, envelope.channel_id)
    payload = _payload(envelope)
    headers: dict[str, str] = {}
    if envelope.idempotency_key and deduplicate:
        headers[MSG_ID_HEADER] = msg_id_for(
            envelope.channel_id, envelope.idempotency_key, envelope.room_id
        )
    if reply_timeout is None:
        _check_size(nc, payload, headers)
        return await _publish(nc, subject, payload, headers, timeout)

    inbox = nc.new_inbox()
    headers[REPLY_TO_HEADER] = inbox
    _check_size(nc, payload, headers)
    # nats-py calls back in its own asyncio task: hand the reply over through a memory stream.
    send, receive = anyio.create_memory_object_stream[bytes](1)

    async def on_reply(msg: Msg) -> None:
        # A second reply (a redelivery processed again) is dropped: the first one counts.
        with contextlib.suppress(
            anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError
        ):
            send.send_nowait(msg.data)

    with send, receive:
        try:
            with anyio.fail_after(timeout):
                subscription = await nc.subscribe(inbox, cb=on_reply)
        except (TimeoutError, nats.errors.Error) as exc:
            raise IngressUnavailable(f"cannot subscribe to a reply inbox: {exc!r}") from exc
        try:
            ack = await _publish(nc, subject, payload, headers, timeout)
            if ack.duplicate:
                return IngressReply(
                    ok=True, blocked=True, reason=DUPLICATE_PUBLISH, stream_seq=ack.seq
                )
            try:
                with anyio.fail_after(reply_timeout):
                    data = await receive.receive()
            except TimeoutError as exc:
                raise IngressTimeout(
                    f"no reply within {reply_timeout} s for message {ack.seq} on {subject}; "
                    "it is stored and will still be processed"
                ) from exc
        finally:
            # A failure means the connection is closing: the subscription goes with it.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(timeout),
                contextlib.suppress(nats.errors.Error),
            ):
                await subscription.unsubscribe()
    try:
        return decode_reply(data)
    except msgspec.DecodeError as exc:
        raise IngressUnavailable(f"the ingress replied something else: {data[:200]!r}") from exc


def _envelope(
    message: InboundMessage | InboundEnvelope, room_id: str | None, require_key: bool
) -> InboundEnvelope:
    if isinstance(message, InboundMessage):
        envelope = InboundEnvelope.from_message(message, room_id=room_id)
    elif isinstance(message, InboundEnvelope):
        envelope = message
        if room_id is not None:
            envelope = msgspec.structs.replace(message, room_id=room_id)
    else:
        raise TypeError(
            f"publish_inbound takes an InboundMessage or an InboundEnvelope, "
            f"not {type(message).__name__}"
        )
    try:
        check_token(envelope.channel_id)
        if envelope.room_id is not None:
            check_room_id(envelope.room_id)
    except (ValueError, InvalidRoomIdError) as exc:
        raise InvalidInbound(str(exc)) from exc
    if require_key and not envelope.idempotency_key:
        raise InvalidInbound(
            "the message has no idempotency_key (the provider's message id): the ingress "
            "refuses it, since a redelivery could record it twice"
        )
    return envelope


def _payload(envelope: InboundEnvelope) -> bytes:
    """The payload of ``envelope``, once it decodes as the ingress will decode it.

    msgspec does not check a Struct's fields when it is made, so an envelope built by hand
    may hold anything: the round trip finds what the ingress would refuse.
    """
    try:
        payload = encode_envelope(envelope)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise InvalidInbound(f"the message does not encode as JSON: {exc}") from exc
    try:
        decoded = decode_envelope(payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidInbound(f"the message is not a valid envelope: {exc}") from exc
    checked = message_of(decoded)
    if isinstance(checked, Rejection):
        raise InvalidInbound(checked.detail)
    return payload


def _check_size(nc: NatsClient, payload: bytes, headers: dict[str, str]) -> None:
    # The server closes a connection that publishes more than its max payload.
    size = len(payload) + (headers_size(headers) if headers else 0)
    if size > nc.max_payload:
        raise InvalidInbound(
            f"the message takes {size} bytes with its headers, more than the server's max "
            f"payload ({nc.max_payload})"
        )


async def _publish(
    nc: NatsClient, subject: str, payload: bytes, headers: dict[str, str], timeout: float
) -> PubAck:
    js = nc.jetstream(timeout=timeout)
    try:
        with anyio.fail_after(timeout + 1):  # nats-py's own timeout first; this one in case
            return await js.publish(subject, payload, timeout=timeout, headers=headers or None)
    except nats.js.errors.NoStreamResponseError as exc:
        raise IngressUnavailable(
            f"no JetStream stream captures {subject}: start the ingress first (it creates "
            "its stream), or check the subject prefix"
        ) from exc
    except nats.js.errors.APIError as exc:
        if is_transient(exc) or await full_for_now(
            exc, js, None, subject, len(payload), headers, timeout
        ):
            # A work queue at its limits (discard=new) empties as the ingress acknowledges
            # what it holds: taken for a message of its own that is refused for good, a valid
            # one was said invalid.
            raise IngressUnavailable(
                f"JetStream did not store the message on {subject} (try again): {exc}"
            ) from exc
        # Taken for an outage, it was published again and again by callers doing as told.
        raise InvalidInbound(f"JetStream refused the message on {subject}: {exc}") from exc
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise IngressUnavailable(
            f"JetStream did not store the message on {subject}: {exc!r}"
        ) from exc
