"""The NATS ingress on a real nats-server: order, request-reply, dead letters, duplicates,
stops and restarts, and a kill -9 of the serving process mid-stream."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats
import nats.js.api
import nats.js.client
import nats.js.errors
import nats.js.kv
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg, RetentionPolicy, StreamConfig

import roomkit.ingress._handler
from eventlog import EventLog, LogUnavailable, MemoryEventLog, NewEvent, Record
from eventlog._nats_client import RoomKitNatsClient
from eventlog._nats_setup import open_client
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer, find_nats_server
from roomkit import (
    EventType,
    HookExecution,
    HookResult,
    HookTrigger,
    InboundMessage,
    InboundResult,
    RoomContext,
    RoomEvent,
    RoomKit,
    TextContent,
)
from roomkit.cli import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from roomkit.errors import (
    KitClosedError,
    RoomConflictError,
    RoomNotFoundError,
    StoreUnavailableError,
)
from roomkit.ingress import (
    InboundEnvelope,
    Ingress,
    IngressError,
    IngressErrorCode,
    IngressReply,
    IngressStats,
    IngressTimeout,
    IngressUnavailable,
    InvalidInbound,
    publish_inbound,
    serve_ingress,
)
from roomkit.ingress._crashes import CRASH_BUCKET, CrashLedger
from roomkit.ingress._nats import full_for_now, stored_size
from roomkit.ingress.cli import _load_app, add_serve_parser, run_serve
from roomkit.ingress.ingress import DEFAULT_MAX_LANES
from roomkit.ingress.wire import (
    DUPLICATE_PUBLISH,
    ERROR_DETAIL_HEADER,
    ERROR_HEADER,
    REPLY_TO_HEADER,
    STREAM_SEQ_HEADER,
    SUBJECT_HEADER,
    TRUNCATED_HEADER,
    decode_reply,
    msg_id_for,
)
from roomkit.ownership.nats import NatsOwnership
from roomkit.realtime.nats import NatsRealtime
from tests.roomkit import ingress_app
from tests.roomkit.kit_helpers import SimpleChannel, eventually, text

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]


# -- helpers -----------------------------------------------------------------------------------


def kit_on(log: EventLog, **kwargs: Any) -> RoomKit:
    kit = RoomKit(log=log, **kwargs)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    return kit


async def bodies(kit: RoomKit, room_id: str) -> list[str]:
    events = await kit.get_timeline(room_id, limit=10_000)
    return [
        e.content.body
        for e in events
        if e.type == EventType.MESSAGE and isinstance(e.content, TextContent)
    ]


async def make_rooms(kit: RoomKit, *room_ids: str) -> None:
    for room_id in room_ids:
        await kit.create_room(room_id=room_id)
        await kit.attach_channel(room_id, "sms")


def envelope(body: str, key: str | None, **fields: Any) -> bytes:
    data: dict[str, Any] = {
        "channel_id": "sms",
        "sender_id": "+15550001111",
        "content": {"type": "text", "body": body},
        "idempotency_key": key,
    }
    data.update(fields)
    return msgspec.json.encode({k: v for k, v in data.items() if v is not None})


class Replies:
    """Replies to one inbox, bridged from nats-py's callback into an anyio memory stream."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.inbox = nc.new_inbox()
        self._send, self._receive = anyio.create_memory_object_stream[IngressReply](100)

    async def __aenter__(self) -> Replies:
        async def on_reply(msg: Msg) -> None:
            self._send.send_nowait(decode_reply(msg.data))

        self._sub = await self.nc.subscribe(self.inbox, cb=on_reply)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._sub.unsubscribe()
        self._send.close()
        self._receive.close()

    async def resubscribe(self) -> None:
        """Listen on ``inbox`` as it is now (a test changed it)."""
        await self._sub.unsubscribe()
        await self.__aenter__()

    async def take(self, count: int) -> list[IngressReply]:
        with anyio.fail_after(10):
            return [await self._receive.receive() for _ in range(count)]


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """Another connection: the service that publishes inbound messages."""
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def log(nats_server: NatsServer) -> AsyncIterator[NatsEventLog]:
    async with NatsEventLog(nats_server.url, request_timeout=5.0, retry_timeout=10.0) as log:
        yield log


@pytest.fixture
async def nats_kit(log: NatsEventLog) -> AsyncIterator[RoomKit]:
    """A running kit on JetStream with channels ``sms`` and ``ws``."""
    async with kit_on(log) as kit:
        yield kit


# -- the package -------------------------------------------------------------------------------


def test_every_exported_name_imports_and_the_cli_needs_no_nats() -> None:
    import roomkit.ingress

    assert roomkit.ingress.__all__ == sorted(roomkit.ingress.__all__)
    for name in roomkit.ingress.__all__:
        assert getattr(roomkit.ingress, name) is not None, name
    # `roomkit --help` must work without the nats extra: the serve command imports it late.
    code = "import sys, roomkit.ingress.cli; assert 'nats' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_trio_is_refused_with_a_clear_error(nats_server: NatsServer) -> None:
    # nats-py runs on asyncio only: on trio it failed deep inside with "no running event loop".
    async def serve() -> None:
        async with RoomKit() as kit:
            await kit.serve_ingress(nats_server.url)

    with pytest.raises(IngressError, match="asyncio only"):
        anyio.run(serve, backend="trio")


# -- order and routing -------------------------------------------------------------------------


async def test_messages_from_another_connection_land_in_their_rooms_in_order(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    rooms = ["room-a", "room-b", "room-c"]
    await make_rooms(nats_kit, *rooms)
    async with Ingress(nats_kit, nats_server.url, max_in_flight=8) as ingress:
        for j in range(30):
            for room in rooms:
                message = text("sms", f"{room} #{j}", idempotency_key=f"{room}-{j}")
                ack = await publish_inbound(client, message, room_id=room)
                assert ack.stream == "ROOMKIT_IN"

        async def all_recorded() -> bool:
            return ingress.stats.recorded == 90

        await eventually(all_recorded, what="90 messages recorded")
        for room in rooms:
            assert await bodies(nats_kit, room) == [f"{room} #{j}" for j in range(30)]

        # Acknowledged after commit, every one of them: nothing pending, nothing left.
        js = client.jetstream()

        async def all_acknowledged() -> bool:
            info = await js.consumer_info("ROOMKIT_IN", "roomkit-ingress")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(all_acknowledged, what="every message acknowledged")
        assert (await js.stream_info("ROOMKIT_IN")).state.messages == 0  # work queue
    assert ingress.stats.dead_lettered == ingress.stats.duplicates == 0


async def test_a_fetch_handing_over_more_than_it_was_asked_for_loses_nothing(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # nats-py's fetch first hands over what an earlier fetch left in its queue (its wait
    # ended as the messages came: an event loop held up), however many were asked for. A
    # lane's buffer (max_in_flight) then overflowed, crashing `roomkit serve` (WouldBlock).
    rooms = ["room-a", "room-b"]
    await make_rooms(nats_kit, *rooms)
    async with Ingress(nats_kit, nats_server.url, max_in_flight=2, lanes=1) as ingress:
        sub = ingress._sub
        assert sub is not None
        fetch = sub.fetch
        asked: list[int] = []

        async def fetch_more(batch: int = 1, timeout: float | None = 5, **options: Any) -> Any:
            asked.append(batch)
            return await fetch(batch + 5, timeout=timeout, **options)

        sub.fetch = fetch_more  # type: ignore[method-assign]
        for j in range(20):
            for room in rooms:
                message = text("sms", f"{room} #{j}", idempotency_key=f"{room}-{j}")
                await publish_inbound(client, message, room_id=room)

        async def all_recorded() -> bool:
            return ingress.stats.recorded == 40

        await eventually(all_recorded, what="40 messages recorded")
        for room in rooms:
            assert await bodies(nats_kit, room) == [f"{room} #{j}" for j in range(20)]
        assert asked
    assert ingress.stats.dead_lettered == 0
    assert ingress._inflight._slots.value == 2  # the bound is back (nothing held, no fetch)


async def test_a_fetch_returning_to_a_cancelled_ingress_hands_its_messages_back(
    nats_server: NatsServer,
    nats_kit: RoomKit,
    client: NatsClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # nats-py's fetch can return messages after its task was cancelled (its wait swallows a
    # cancellation landing as they come; emulated here by a shield): the lanes had ended,
    # the first message raised BrokenResourceError out of the cancelled ingress, and the
    # batch's others were held by nobody. Each is handed back now, and a restart takes
    # them all.
    rooms = ["room-a", "room-b", "room-c"]
    await make_rooms(nats_kit, *rooms)
    fetch = nats.js.client.JetStreamContext.PullSubscription.fetch
    cancelled = anyio.Event()

    async def fetch_past_its_cancel(self: Any, *args: Any, **kwargs: Any) -> list[Msg]:
        with anyio.CancelScope(shield=True):
            await cancelled.wait()
            return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(
        nats.js.client.JetStreamContext.PullSubscription, "fetch", fetch_past_its_cancel
    )
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def serve(*, task_status: anyio.abc.TaskStatus[Ingress]) -> None:
                async with Ingress(nats_kit, nats_server.url, lanes=3) as ingress:
                    task_status.started(ingress)
                    await anyio.sleep_forever()

            ingress = await tg.start(serve)  # its first fetch waits for the cancel
            for j in range(2):
                for room in rooms:
                    message = text("sms", f"{room} #{j}", idempotency_key=f"{room}-{j}")
                    await publish_inbound(client, message, room_id=room)
            tg.cancel_scope.cancel()
            cancelled.set()
    assert ingress.stats.released == 6
    monkeypatch.undo()
    async with Ingress(nats_kit, nats_server.url) as again:

        async def all_recorded() -> bool:
            return again.stats.recorded == 6

        await eventually(all_recorded, what="6 messages recorded")
    for room in rooms:
        assert await bodies(nats_kit, room) == [f"{room} #0", f"{room} #1"]


async def test_rooms_are_processed_concurrently(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "slow", "fast")
    fast_seen = anyio.Event()

    @nats_kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def gate(event: RoomEvent, context: RoomContext) -> HookResult:
        # The slow room's first message waits for the fast room: with one lane for all
        # rooms this would never finish.
        if context.room.id == "slow":
            with anyio.fail_after(30):  # a hang guard: 5 s ran out on a loaded machine
                await fast_seen.wait()
        else:
            fast_seen.set()
        return HookResult.allow()

    async with Ingress(nats_kit, nats_server.url), Replies(client) as replies:
        js = client.jetstream()
        for room, key in (("slow", "s1"), ("slow", "s2"), ("fast", "f1")):
            await js.publish(
                "roomkit.in.sms",
                envelope(f"{room} {key}", key, room_id=room),
                headers={REPLY_TO_HEADER: replies.inbox},
            )
        got = await replies.take(3)
    assert all(r.ok and not r.blocked for r in got)
    assert [r.room_id for r in got] == ["fast", "slow", "slow"]
    assert await bodies(nats_kit, "slow") == ["slow s1", "slow s2"]


async def test_without_a_room_id_the_kit_routes_one_channel_in_order(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    async with Ingress(nats_kit, nats_server.url) as ingress:
        for j in range(20):
            message = text("ws", f"ws #{j}", sender=f"user-{j % 3}", idempotency_key=f"w{j}")
            await publish_inbound(client, message)

        async def all_recorded() -> bool:
            return ingress.stats.recorded == 20

        await eventually(all_recorded, what="20 messages recorded")
    # The first message created a room bound to the channel; the others followed it there.
    rooms = await nats_kit.store.list_rooms()
    assert len(rooms) == 1
    assert await bodies(nats_kit, rooms[0].id) == [f"ws #{j}" for j in range(20)]


# -- request-reply -----------------------------------------------------------------------------


async def test_a_message_recorded_whose_async_hooks_overran_is_answered_once_as_recorded(
    nats_server: NatsServer, log: NatsEventLog, client: NatsClient
) -> None:
    # Its process_timeout came after the commit: tried again, it was answered "duplicate"
    # (the only reply a message published once got) and counted as one.
    async with kit_on(log, process_timeout=0.3) as kit:
        await make_rooms(kit, "room-1")

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def slow(event: RoomEvent, context: RoomContext) -> None:
            await anyio.sleep(1.0)

        async with Ingress(kit, nats_server.url) as ingress:
            message = text("sms", "hello", idempotency_key="k1")
            reply = await publish_inbound(client, message, room_id="room-1", reply_timeout=10)
        (event,) = [e for e in await kit.get_timeline("room-1") if e.type == EventType.MESSAGE]
    assert reply.ok and reply.reason == "process_timeout" and reply.event_id == event.id
    assert (ingress.stats.recorded, ingress.stats.retried, ingress.stats.duplicates) == (1, 0, 0)


async def test_a_requester_gets_the_inbound_result(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "support-1")

    @nats_kit.hook(HookTrigger.BEFORE_BROADCAST, name="no_secrets")
    async def no_secrets(event: RoomEvent, context: RoomContext) -> HookResult:
        if "secret" in getattr(event.content, "body", ""):
            return HookResult.block("no secrets")
        return HookResult.allow()

    async with Ingress(nats_kit, nats_server.url):
        hello = text("sms", "hello", idempotency_key="SM1")
        first = await publish_inbound(client, hello, room_id="support-1", reply_timeout=10)
        timeline = await nats_kit.get_timeline("support-1")
        recorded = timeline[-1]
        assert first == IngressReply(
            ok=True,
            event_id=recorded.id,
            room_id="support-1",
            index=recorded.index,
            stream_seq=1,
        )

        secret = text("sms", "the secret is 42", idempotency_key="SM2")
        blocked = await publish_inbound(client, secret, room_id="support-1", reply_timeout=10)
        assert blocked.ok and blocked.blocked and blocked.reason == "no secrets"
        assert blocked.event_id is not None

        # Re-published within JetStream's window: stored once, answered at once, without
        # claiming that this copy was recorded.
        again = await publish_inbound(client, hello, room_id="support-1", reply_timeout=10)
        assert again == IngressReply(ok=True, blocked=True, reason=DUPLICATE_PUBLISH, stream_seq=1)

        # Re-sent past JetStream's dedup (no Nats-Msg-Id): the room recognises the key.
        async with Replies(client) as replies:
            await client.jetstream().publish(
                "roomkit.in.sms",
                envelope("hello", "SM1", room_id="support-1"),
                headers={REPLY_TO_HEADER: replies.inbox},
            )
            (late,) = await replies.take(1)
        assert late.ok and late.blocked and late.reason == "duplicate"
        assert late.event_id == recorded.id
    assert await bodies(nats_kit, "support-1") == ["hello", "the secret is 42"]


async def test_no_reply_is_published_on_the_logs_or_the_ingress_or_the_servers_subjects(
    nats_server: NatsServer, log: NatsEventLog, nats_kit: RoomKit, client: NatsClient
) -> None:
    # A reply published on roomkit.ev.<room> was stored as an event of that room: its later
    # messages failed ("not a RoomKit event batch") and no replay could read it.
    await make_rooms(nats_kit, "room-1", "room-2")
    before = len(await log.read("room-2"))
    js = client.jetstream()
    inboxes = ["roomkit.ev.room-2", "roomkit.in.sms", "roomkit.dlq.sms", "$JS.API.INFO"]
    async with Ingress(nats_kit, nats_server.url) as ingress:
        for n, inbox in enumerate(inboxes):
            payload = envelope(f"m{n}", f"k{n}", room_id="room-1")
            await js.publish("roomkit.in.sms", payload, headers={REPLY_TO_HEADER: inbox})
        # And a reply where it may go, after them: the ones before were processed.
        last = text("sms", "last", idempotency_key="k-last")
        reply = await publish_inbound(client, last, room_id="room-1", reply_timeout=10)
        assert reply.ok
    assert await bodies(nats_kit, "room-1") == ["m0", "m1", "m2", "m3", "last"]
    assert len(await log.read("room-2")) == before
    assert ingress.stats.received == ingress.stats.recorded == 5  # nothing taken in as inbound
    await nats_kit.process_inbound(text("sms", "room-2 still works"), room_id="room-2")
    assert await bodies(nats_kit, "room-2") == ["room-2 still works"]


async def test_no_reply_is_published_on_the_subjects_of_the_kit_s_ownership_or_realtime(
    nats_server: NatsServer, log: NatsEventLog, client: NatsClient
) -> None:
    # A reply on roomkit.owner.<member> reached that process as a room command it could not
    # read; one on roomkit.rt.<channel>, every realtime subscriber of that channel.
    url = nats_server.url
    kit = kit_on(log, realtime=NatsRealtime(url), ownership=NatsOwnership(url, member="m"))
    seen: list[bytes] = []

    async def note(msg: Msg) -> None:
        seen.append(msg.data)

    for subject in ("roomkit.owner.>", "roomkit.owners", "roomkit.rt.>"):
        await client.subscribe(subject, cb=note)
    async with kit:
        await make_rooms(kit, "room-1")
        js = client.jetstream()
        inboxes = ["roomkit.owner.m", "roomkit.owners", "roomkit.rt.room-1"]
        async with Ingress(kit, url):
            for n, inbox in enumerate(inboxes):
                payload = envelope(f"m{n}", f"k{n}", room_id="room-1")
                await js.publish("roomkit.in.sms", payload, headers={REPLY_TO_HEADER: inbox})
            last = text("sms", "last", idempotency_key="k-last")
            assert (await publish_inbound(client, last, room_id="room-1", reply_timeout=10)).ok
            # A subject that only starts like theirs is answered.
            async with Replies(client) as replies:
                replies.inbox = "roomkit.owner_app.replies"
                await replies.resubscribe()
                message = envelope("mine", "k-mine", room_id="room-1")
                headers = {REPLY_TO_HEADER: replies.inbox}
                await js.publish("roomkit.in.sms", message, headers=headers)
                assert (await replies.take(1))[0].ok
        assert await bodies(kit, "room-1") == ["m0", "m1", "m2", "last", "mine"]
    await client.flush()
    assert not [data for data in seen if data.startswith(b'{"ok"')]


# -- bad input ---------------------------------------------------------------------------------

BAD_INPUT: list[tuple[str, bytes, IngressErrorCode]] = [
    ("roomkit.in.sms", b"{not json", IngressErrorCode.BAD_PAYLOAD),
    ("roomkit.in.sms", b'{"channel_id": "sms"}', IngressErrorCode.BAD_PAYLOAD),
    (
        "roomkit.in.sms",
        envelope("x", "k3", content={"type": "hologram"}),
        IngressErrorCode.BAD_PAYLOAD,
    ),
    ("roomkit.in.fax", envelope("x", "k4", channel_id="fax"), IngressErrorCode.UNKNOWN_CHANNEL),
    ("roomkit.in.sms", envelope("x", "k5", room_id="r" * 256), IngressErrorCode.INVALID_ROOM_ID),
    ("roomkit.in.sms", envelope("x", "k6", room_id="no-such"), IngressErrorCode.ROOM_NOT_FOUND),
    ("roomkit.in.sms", envelope("x", None), IngressErrorCode.MISSING_IDEMPOTENCY_KEY),
    ("roomkit.in.ws", envelope("x", "k8"), IngressErrorCode.CHANNEL_MISMATCH),
]


async def test_bad_input_is_dead_lettered_with_its_reason_and_the_ingress_goes_on(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        for subject, payload, _ in BAD_INPUT:
            await js.publish(subject, payload, headers={REPLY_TO_HEADER: replies.inbox})
        errors = await replies.take(len(BAD_INPUT))
        # Still serving: a valid message after all of them is recorded.
        valid = text("sms", "still here", idempotency_key="ok")
        ok = await publish_inbound(client, valid, room_id="room-1", reply_timeout=10)
    assert ok.ok and not ok.blocked
    assert await bodies(nats_kit, "room-1") == ["still here"]
    # Lanes run concurrently: replies and dead letters come in any order across channels.
    errors.sort(key=lambda r: r.stream_seq or 0)
    assert [(r.ok, r.error, r.stream_seq) for r in errors] == [
        (False, code, seq) for seq, (_, _, code) in enumerate(BAD_INPUT, 1)
    ]
    assert all(r.detail for r in errors)
    assert ingress.stats.dead_lettered == len(BAD_INPUT)

    # Each dead letter is stored with the raw payload and the reason.
    info = await js.stream_info("ROOMKIT_DLQ")
    assert info.state.messages == len(BAD_INPUT)
    stored = [await js.get_msg("ROOMKIT_DLQ", seq) for seq in range(1, len(BAD_INPUT) + 1)]
    stored.sort(key=lambda m: int((m.headers or {})[STREAM_SEQ_HEADER]))
    for seq, ((subject, payload, code), dead) in enumerate(zip(BAD_INPUT, stored, strict=True), 1):
        headers = dead.headers or {}
        assert dead.subject == subject.replace(".in.", ".dlq.")
        assert dead.data == payload
        assert headers[ERROR_HEADER] == code
        assert headers[SUBJECT_HEADER] == subject
        assert headers[STREAM_SEQ_HEADER] == str(seq)
        assert headers[ERROR_DETAIL_HEADER]
    # Terminated, not left for redelivery.
    consumer = await js.consumer_info("ROOMKIT_IN", "roomkit-ingress")
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


def publish_raw(
    url: str,
    subject: str | bytes,
    header_lines: Sequence[bytes],
    payload: bytes,
    status_line: bytes = b"NATS/1.0",
) -> None:
    """Publish as a client that is not nats-py may: the subject's bytes, the header block's
    first line and header lines as given (blocking)."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    if isinstance(subject, str):
        subject = subject.encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.recv(65536)  # the server's INFO
        lines = [status_line, *header_lines]
        block = b"".join(line + b"\r\n" for line in lines) + b"\r\n"
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'
            + b"HPUB %s %d %d\r\n" % (subject, len(block), len(block) + len(payload))
            + block
            + payload
            + b"\r\nPING\r\n"
        )
        answer = b""
        while b"PONG" not in answer and b"-ERR" not in answer:
            answer += sock.recv(65536)
    assert b"-ERR" not in answer, answer


async def test_a_header_nats_py_cannot_send_is_left_out_of_the_dead_letter(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # A raw client published a header named "X(1)", which the server stores and nats-py
    # refuses to send: the dead letter was retried for ever, and again after every restart
    # (its recovery), so that the ingress took nothing else.
    lines = [b"X(1): v", b"X-Kept: yes"]
    subject = "roomkit.in.sms"
    dead = await raw_dead_letter(nats_server, nats_kit, client, subject, lines, b"not json")
    headers = dead.headers or {}
    assert headers[ERROR_HEADER] == "bad_payload"
    assert headers["X-Kept"] == "yes" and "X(1)" not in headers


async def raw_dead_letter(
    nats_server: NatsServer,
    kit: RoomKit,
    client: NatsClient,
    subject: str | bytes,
    header_lines: Sequence[bytes],
    payload: bytes,
) -> RawStreamMsg:
    """Publish as a raw client (``publish_raw``) to a running ingress; check that it
    dead-lettered that message and went on with the next one; return the dead letter."""
    await make_rooms(kit, "room-1")
    async with Ingress(kit, nats_server.url) as ingress:
        await anyio.to_thread.run_sync(
            publish_raw, nats_server.url, subject, header_lines, payload
        )

        async def dead_lettered() -> bool:
            return ingress.stats.dead_lettered == 1

        await eventually(dead_lettered, what="the message dead-lettered")
        after = text("sms", "after", idempotency_key="k")
        ok = await publish_inbound(client, after, room_id="room-1", reply_timeout=10)
    assert ok.ok and await bodies(kit, "room-1") == ["after"]
    return await client.jetstream().get_msg("ROOMKIT_DLQ", 1)


async def test_a_subject_that_is_not_utf_8_is_dead_lettered_and_the_ingress_goes_on(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # A raw client's subject with a byte that is not UTF-8, which the stream over
    # roomkit.in.> stores: nats-py's strict decoding raised in its read loop, which stopped
    # for good, and the ingress received nothing more, of any room, also after a restart.
    payload = envelope("poison", "p", room_id="room-1")
    subject = b"roomkit.in.sm\xffs"
    dead = await raw_dead_letter(nats_server, nats_kit, client, subject, [b"X-Kept: yes"], payload)
    headers = dead.headers or {}
    assert headers[ERROR_HEADER] == "channel_mismatch"
    assert dead.subject == "roomkit.dlq.sm\ufffds"
    assert dead.data == payload and headers["X-Kept"] == "yes"


async def test_a_status_line_that_is_not_utf_8_does_not_stop_the_kit_s_client(
    nats_server: NatsServer,
) -> None:
    # "NATS/1.0 \xff\xfe" on a subject a kit's client subscribes to (a realtime or an
    # ownership subject): nats-py decoded the status line strictly in its read loop, which
    # stopped for good (the connection still said it was connected). A JetStream consumer
    # is not concerned: the ingress recorded such a message.
    nc = await open_client([nats_server.url], connect_timeout=5, request_timeout=5, options={})
    got: list[tuple[str, bytes]] = []
    try:

        async def take(msg: Msg) -> None:
            got.append((msg.subject, msg.data))

        await nc.subscribe("x.>", cb=take)
        await nc.flush()
        await anyio.to_thread.run_sync(
            publish_raw, nats_server.url, "x.s", [], b"odd", b"NATS/1.0 \xff\xfe"
        )
        await nc.publish("x.after", b"ok")

        async def both() -> bool:
            return len(got) == 2

        await eventually(both, what="both messages")
    finally:
        await nc.close()
    assert got == [("x.s", b"odd"), ("x.after", b"ok")]


async def test_subjects_too_long_for_the_server_do_not_stop_the_ingress(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # The server reads a publish's subject in a line of at most 4096 bytes and drops the
    # connection past it, which nats-py then closes for good: a reply inbox that long, or a
    # dead letter's subject made from a channel token that long, stopped the ingress.
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    token = "c" * 4030
    async with Ingress(nats_kit, nats_server.url) as ingress:
        inbox = "_INBOX." + "x" * 5000
        message = envelope("long inbox", "k1", room_id="room-1")
        await js.publish("roomkit.in.sms", message, headers={REPLY_TO_HEADER: inbox})
        await client.publish(f"roomkit.in.{token}", envelope("long token", "k2"))
        after = text("sms", "after", idempotency_key="k3")
        ok = await publish_inbound(client, after, room_id="room-1", reply_timeout=10)
        # A long inbox the server takes is answered.
        async with Replies(client) as replies:
            replies.inbox += "." + "y" * 1_500
            await replies.resubscribe()
            message = envelope("long, but not too long", "k4", room_id="room-1")
            await js.publish("roomkit.in.sms", message, headers={REPLY_TO_HEADER: replies.inbox})
            (answer,) = await replies.take(1)

        async def dead_lettered() -> bool:
            return ingress.stats.dead_lettered == 1

        await eventually(dead_lettered, what="the long token dead-lettered")
    assert ok.ok and answer.ok
    assert await bodies(nats_kit, "room-1") == ["long inbox", "after", "long, but not too long"]
    dead = await js.get_msg("ROOMKIT_DLQ", 1)
    assert dead.subject is not None and dead.subject.startswith("roomkit.dlq._long_")
    assert (dead.headers or {})[SUBJECT_HEADER] == f"roomkit.in.{token}"


class FailingFirst(SimpleChannel):
    """Fails the message "#1" while ``failing``: a transient failure, retried in place."""

    failing = True

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        content = message.content
        if self.failing and isinstance(content, TextContent) and content.body == "#1":
            raise RuntimeError("the provider lookup failed")
        return await super().handle_inbound(message, context)


async def test_a_stop_hands_back_a_room_s_messages_behind_the_one_it_retried(
    nats_server: NatsServer, log: NatsEventLog, client: NatsClient
) -> None:
    # #1 was being retried in place when the ingress stopped: it was handed back, and its
    # lane went on with #2 and #3, recorded before it.
    channel = FailingFirst("sms")
    kit = RoomKit(log=log)
    kit.register_channel(channel)
    async with kit:
        await make_rooms(kit, "r")
        async with Ingress(kit, nats_server.url, max_attempts=1_000) as ingress:
            for n in (1, 2, 3):
                await publish_inbound(
                    client, text("sms", f"#{n}", idempotency_key=f"k{n}"), room_id="r"
                )

            async def retrying() -> bool:
                return ingress.stats.retried >= 2

            await eventually(retrying, what="#1 retried in place")
        assert await bodies(kit, "r") == []
        assert ingress.stats.released == 3
        channel.failing = False
        async with Ingress(kit, nats_server.url) as again:

            async def recorded() -> bool:
                return again.stats.recorded == 3

            await eventually(recorded, what="the three recorded")
        assert await bodies(kit, "r") == ["#1", "#2", "#3"]


async def test_a_dead_letter_stream_deleted_under_the_ingress_is_made_again(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # Retried alone, the dead letter held its lane for good, and the messages behind it.
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    async with Ingress(nats_kit, nats_server.url, lanes=1) as ingress:
        first = text("sms", "first", idempotency_key="k0")
        assert (await publish_inbound(client, first, room_id="room-1", reply_timeout=10)).ok
        await js.delete_stream("ROOMKIT_DLQ")
        lost = text("sms", "to no room", idempotency_key="k1")
        refused = await publish_inbound(client, lost, room_id="nowhere", reply_timeout=10)
        after = text("sms", "after", idempotency_key="k2")
        ok = await publish_inbound(client, after, room_id="room-1", reply_timeout=10)
    assert not refused.ok and ok.ok
    assert await bodies(nats_kit, "room-1") == ["first", "after"]
    assert ingress.stats.dead_lettered == 1
    assert (await js.stream_info("ROOMKIT_DLQ")).state.messages == 1


async def test_a_core_subscriber_sees_dead_letters_live(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    send, receive = anyio.create_memory_object_stream[Msg](10)

    async def on_dead_letter(msg: Msg) -> None:
        send.send_nowait(msg)

    with send, receive:
        sub = await client.subscribe("roomkit.dlq.>", cb=on_dead_letter)
        async with Ingress(nats_kit, nats_server.url, dlq_stream=None):
            await client.jetstream().publish("roomkit.in.sms", b"\xff garbage")
            with anyio.fail_after(10):
                dead = await receive.receive()
        await sub.unsubscribe()
    assert dead.subject == "roomkit.dlq.sms"
    assert dead.data == b"\xff garbage"
    assert (dead.headers or {})[ERROR_HEADER] == "bad_payload"


def nested(depth: int, key: str) -> bytes:
    """An envelope whose metadata nests ``depth`` lists deep (built as bytes: too deep for
    the encoder)."""
    return (
        b'{"channel_id":"sms","sender_id":"a","content":{"type":"text","body":"deep"},'
        b'"room_id":"room-1","idempotency_key":"' + key.encode() + b'",'
        b'"metadata":{"m":' + b"[" * depth + b"]" * depth + b"}}"
    )


async def hold_and_die(nc: NatsClient, count: int, *, ack: Sequence[int] = ()) -> None:
    """Be a serving process that fetched ``count`` messages, acknowledged those at the
    indexes ``ack`` and died holding the others (they stay unacknowledged until ack_wait)."""
    sub = await nc.jetstream().pull_subscribe_bind(durable="roomkit-ingress", stream="ROOMKIT_IN")
    msgs = await sub.fetch(count, timeout=5)
    assert len(msgs) == count
    for index in ack:
        await msgs[index].ack_sync()
    await sub.unsubscribe()


async def test_a_payload_nested_too_deep_is_refused_at_once_and_the_ingress_goes_on(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        # 1,000 levels: msgspec raises RecursionError (not DecodeError) while decoding.
        # 500 levels: decodes and validates, but the kit's serializer gives up near 255.
        for depth in (1000, 500):
            payload = nested(depth, f"deep-{depth}")
            await js.publish("roomkit.in.sms", payload, headers={REPLY_TO_HEADER: replies.inbox})
        refusals = await replies.take(2)
        valid = text("sms", "still here", idempotency_key="ok")
        ok = await publish_inbound(client, valid, room_id="room-1", reply_timeout=10)
    assert sorted((r.stream_seq, r.error) for r in refusals) == [
        (1, IngressErrorCode.BAD_PAYLOAD),
        (2, IngressErrorCode.BAD_PAYLOAD),
    ]
    assert ingress.stats.retried == 0  # refused when read, not after ten failed attempts
    assert ok.ok and await bodies(nats_kit, "room-1") == ["still here"]


async def test_a_payload_too_deep_to_decode_is_recovered_without_stopping_the_ingress(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    async with Ingress(nats_kit, nats_server.url):
        pass  # creates the stream and the durable consumer
    await client.jetstream().publish("roomkit.in.sms", nested(1000, "deep"))
    await hold_and_die(client, 1)
    # The restart re-reads it first (recovery), and must refuse it, not die on it again.
    async with Ingress(nats_kit, nats_server.url) as ingress:

        async def dead_lettered() -> bool:
            return ingress.stats.dead_lettered == 1

        await eventually(dead_lettered, what="the recovered message dead-lettered")
    assert ingress.stats.recovered == 1


async def test_recovered_messages_are_settled_once_and_not_redelivered(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # A recovered message has no delivery to settle: JetStream redelivered it after ack_wait,
    # and a bad one was dead-lettered again once the dead letters' duplicate_window was past
    # (with the defaults, behind 50 slow held messages).
    await make_rooms(nats_kit, "room-1")
    async with Ingress(nats_kit, nats_server.url):
        pass  # creates the stream and the durable consumer
    js = client.jetstream()
    await js.publish("roomkit.in.sms", b"not json")
    await js.publish("roomkit.in.sms", envelope("held", "k1", room_id="room-1"))
    await hold_and_die(client, 2)
    async with Ingress(nats_kit, nats_server.url) as ingress:

        async def settled() -> bool:
            consumer = await js.consumer_info("ROOMKIT_IN", "roomkit-ingress")
            stream = await js.stream_info("ROOMKIT_IN")
            return consumer.num_ack_pending == 0 and stream.state.messages == 0

        await eventually(settled, what="the recovered messages settled")
        stats = ingress.stats
    assert (stats.recovered, stats.received) == (2, 0)
    assert (stats.dead_lettered, stats.recorded) == (1, 1)
    assert await bodies(nats_kit, "room-1") == ["held"]
    assert (await js.stream_info("ROOMKIT_DLQ")).state.messages == 1


async def test_a_stop_during_recovery_hands_the_rest_back(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # The stop waited for the whole recovery (a minute for 64 slow messages), far past the
    # drain_timeout it promises, and a second signal was the only way out.
    await make_rooms(nats_kit, "room-1")
    started = anyio.Event()

    @nats_kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
        started.set()
        await anyio.sleep(0.2)
        return HookResult.allow()

    async with Ingress(nats_kit, nats_server.url):
        pass  # creates the stream and the durable consumer
    js = client.jetstream()
    for j in range(5):
        await js.publish("roomkit.in.sms", envelope(f"#{j}", f"k{j}", room_id="room-1"))
    await hold_and_die(client, 5)
    async with Ingress(nats_kit, nats_server.url) as stopped:
        await started.wait()  # recovering: the stop comes now
    assert 1 <= stopped.stats.recorded < 5
    async with Ingress(nats_kit, nats_server.url) as again:

        async def the_rest() -> bool:
            return stopped.stats.recorded + again.stats.recorded == 5

        await eventually(the_rest, what="the rest recorded at the next start")
    assert await bodies(nats_kit, "room-1") == [f"#{j}" for j in range(5)]


class DeadlyChannel(SimpleChannel):
    """Hangs on a message saying "poison", as a process does that this message kills, until
    ``recover()`` (from then on, it raises on it: the "process" is gone)."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.in_hand = anyio.Event()
        self._released = anyio.Event()
        self.deadly = True

    def recover(self) -> None:
        self._released.set()

    def again(self, *, deadly: bool = True) -> None:
        self.in_hand, self._released, self.deadly = anyio.Event(), anyio.Event(), deadly

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        body = message.content.body if isinstance(message.content, TextContent) else ""
        if body == "poison" and self.deadly:
            if self._released.is_set():
                raise RuntimeError("the process died")
            self.in_hand.set()
            await self._released.wait()
            raise RuntimeError("the process died")
        return await super().handle_inbound(message, context)


async def run_until_poison_in_hand(
    kit: RoomKit, channel: DeadlyChannel, url: str, *, dies: bool, **options: Any
) -> Ingress:
    """Run an ingress until the poison message is in hand; then the process dies (its NATS
    connection closes: nothing it held is settled, nothing more is sent) or, if not
    ``dies``, stops gracefully. The channel is ready for the next run (``again``)."""
    nc = await _ingress_client(url)
    async with Ingress(kit, nc, drain_timeout=0, **options) as ingress:
        with anyio.fail_after(10):
            await channel.in_hand.wait()
        if dies:
            await nc.close()
    channel.recover()
    if not dies:
        await nc.close()
    channel.again()
    return ingress


async def run_until(
    kit: RoomKit, url: str, done: Callable[[IngressStats], bool], **options: Any
) -> Ingress:
    """Run an ingress until its stats say ``done``; then stop it gracefully."""
    async with Ingress(kit, url, **options) as ingress:

        async def finished() -> bool:
            return done(ingress.stats)

        try:
            await eventually(finished, what="the ingress's stats to be done")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; they are {ingress.stats}") from None
    return ingress


async def _ingress_client(url: str) -> NatsClient:
    client = RoomKitNatsClient()
    await client.connect(url)
    return client


@contextlib.asynccontextmanager
async def poisoned(url: str, client: NatsClient) -> AsyncIterator[tuple[RoomKit, DeadlyChannel]]:
    """A running kit whose channel a message saying "poison" kills (see ``DeadlyChannel``),
    the ingress's streams made, and that message published to room-1."""
    channel = DeadlyChannel("sms")
    async with RoomKit() as kit:
        kit.register_channel(channel)
        await make_rooms(kit, "room-1")
        async with Ingress(kit, url):
            pass  # creates the streams and the durable consumer
        await client.jetstream().publish(
            "roomkit.in.sms", envelope("poison", "k-poison", room_id="room-1")
        )
        yield kit, channel


@contextlib.asynccontextmanager
async def redelivered(url: str, client: NatsClient) -> AsyncIterator[RoomKit]:
    """``poisoned``, its message handed back once by a graceful stop (its next delivery is a
    redelivery, whose crashes are counted), and no longer deadly."""
    async with poisoned(url, client) as (kit, channel):
        await run_until_poison_in_hand(kit, channel, url, dies=False, max_crashes=1)
        channel.again(deadly=False)
        yield kit


async def test_a_message_that_keeps_killing_the_ingress_is_dead_lettered_after_max_crashes(
    nats_server: NatsServer, client: NatsClient
) -> None:
    # Recovery re-read a message the process died with at every start, and JetStream
    # redelivered it for ever (max_deliver=-1): a message that kills the process crash-looped
    # it. Here the process dies three times with it in hand: at its first delivery (not
    # counted: see roomkit/ingress/_crashes.py) and twice after.
    url = nats_server.url
    js = client.jetstream()
    async with poisoned(url, client) as (kit, channel):
        await js.publish("roomkit.in.sms", envelope("after", "k-after", room_id="room-1"))
        for _ in range(3):
            await run_until_poison_in_hand(kit, channel, url, dies=True, max_crashes=2)
        await run_until(kit, url, lambda s: s.dead_lettered == s.recorded == 1, max_crashes=2)
        assert await bodies(kit, "room-1") == ["after"]
    dead = await js.get_msg("ROOMKIT_DLQ", 1)
    headers = dead.headers or {}
    assert headers[ERROR_HEADER] == IngressErrorCode.FAILED
    assert headers[ERROR_DETAIL_HEADER] == (
        "the ingress died while processing it, 2 time(s) (max_crashes=2)"
    )
    assert dead.data == envelope("poison", "k-poison", room_id="room-1")


async def test_a_message_handed_back_at_a_graceful_stop_is_not_counted_as_a_crash(
    nats_server: NatsServer, client: NatsClient
) -> None:
    url = nats_server.url
    async with poisoned(url, client) as (kit, channel):
        # Dies at its first delivery (not counted), then is in hand twice more, recovered,
        # and handed back each time by a graceful stop: with max_crashes=1, either counted
        # would have it dead-lettered.
        await run_until_poison_in_hand(kit, channel, url, dies=True, max_crashes=1)
        for _ in range(2):
            stopped = await run_until_poison_in_hand(kit, channel, url, dies=False, max_crashes=1)
            assert stopped.stats.recovered == 1 and stopped.stats.dead_lettered == 0
        channel.again(deadly=False)
        ingress = await run_until(kit, url, lambda s: s.recorded == 1, max_crashes=1)
        assert ingress.stats.dead_lettered == 0
        assert await bodies(kit, "room-1") == ["poison"]


async def test_a_mark_being_written_as_the_ingress_is_cancelled_does_not_count(
    nats_server: NatsServer, client: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark was stored but its ack not read when the ingress was cancelled: not known to
    # be marked, it was not cleared, and the next start counted a death that never was.
    url = nats_server.url
    async with redelivered(url, client) as kit:
        put = nats.js.kv.KeyValue.put
        stored = anyio.Event()

        async def late_ack(self: nats.js.kv.KeyValue, key: str, value: bytes) -> int:
            revision = await put(self, key, value)
            stored.set()
            await anyio.sleep(10)  # the ack still on its way when the ingress is cancelled
            return revision

        monkeypatch.setattr(nats.js.kv.KeyValue, "put", late_ack)
        with anyio.CancelScope() as scope:
            async with Ingress(kit, url, max_crashes=1, drain_timeout=0):
                await stored.wait()
                scope.cancel()
        monkeypatch.setattr(nats.js.kv.KeyValue, "put", put)
        ingress = await run_until(kit, url, lambda s: s.recorded == 1, max_crashes=1)
        assert ingress.stats.dead_lettered == 0


async def test_a_crash_ledger_that_does_not_answer_costs_one_timeout_and_no_clearing(
    nats_server: NatsServer, client: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The KeyValue API away (a permission missing, an outage): the message is processed
    # after one request_timeout, unmarked; it waited a second one, shielded, to clear the
    # mark it never wrote (and held up a cancelled ingress as long).
    url = nats_server.url
    async with redelivered(url, client) as kit:
        cleared: list[int] = []
        finished = CrashLedger.finished

        async def spy(self: CrashLedger, seq: int, incarnation: str) -> None:
            cleared.append(seq)
            await finished(self, seq, incarnation)

        async def unanswered(self: Any, config: Any) -> Any:
            await anyio.sleep_forever()

        monkeypatch.setattr(CrashLedger, "finished", spy)
        monkeypatch.setattr(nats.js.client.JetStreamContext, "create_key_value", unanswered)
        ingress = await run_until(
            kit, url, lambda s: s.recorded == 1, max_crashes=1, request_timeout=3.0
        )
        assert ingress.stats.dead_lettered == 0 and cleared == []


async def test_a_mark_stored_without_its_answer_is_cleared_by_the_ledger(
    nats_server: NatsServer, client: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not counted (its answer never came), the message is processed as unmarked: a mark
    # stored all the same would count a death at its next delivery.
    url = nats_server.url
    async with redelivered(url, client) as kit:
        put = nats.js.kv.KeyValue.put

        async def unanswered(self: nats.js.kv.KeyValue, key: str, value: bytes) -> int:
            await put(self, key, value)
            await anyio.sleep_forever()  # stored; the answer never comes
            raise AssertionError

        monkeypatch.setattr(nats.js.kv.KeyValue, "put", unanswered)
        await run_until(kit, url, lambda s: s.recorded == 1, max_crashes=1, request_timeout=3.0)
    marks = await client.jetstream().key_value(CRASH_BUCKET)
    with pytest.raises(nats.js.errors.NoKeysError):
        await marks.keys()


class Bystanding(DeadlyChannel):
    """``DeadlyChannel``, and a message saying "slow" takes its time: until the poison is in
    hand, or a second if it is not on its way (a slow but harmless message)."""

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        if isinstance(message.content, TextContent) and message.content.body == "slow":
            with anyio.move_on_after(1):
                await self.in_hand.wait()
        return await super().handle_inbound(message, context)


async def test_a_message_in_hand_beside_a_crasher_is_not_dead_lettered_with_it(
    nats_server: NatsServer, client: NatsClient
) -> None:
    # The messages in hand as the process died came back together, in their rooms' lanes,
    # and each death was counted against all of them: a slow message of another room was
    # dead-lettered with the crasher.
    url = nats_server.url
    channel = Bystanding("sms")
    async with RoomKit() as kit:
        kit.register_channel(channel)
        await make_rooms(kit, "room-1", "room-2")
        async with Ingress(kit, url):
            pass  # creates the streams and the durable consumer
        js = client.jetstream()
        await js.publish("roomkit.in.sms", envelope("poison", "k-poison", room_id="room-1"))
        await js.publish("roomkit.in.sms", envelope("slow", "k-slow", room_id="room-2"))
        # Dies with both in hand at their first delivery (not counted), then once more.
        for _ in range(2):
            await run_until_poison_in_hand(kit, channel, url, dies=True, max_crashes=1)
        ingress = await run_until(
            kit, url, lambda s: s.dead_lettered + s.recorded + s.duplicates == 2, max_crashes=1
        )
        assert ingress.stats.dead_lettered == 1
        assert await bodies(kit, "room-2") == ["slow"]
    dead = await js.get_msg("ROOMKIT_DLQ", 1)
    assert dead.data == envelope("poison", "k-poison", room_id="room-1")
    assert (await js.stream_info("ROOMKIT_DLQ")).state.messages == 1


async def test_a_stream_made_again_counts_its_messages_crashes_anew(
    nats_server: NatsServer, client: NatsClient
) -> None:
    # Its sequences start from 1 again: message #1 of the new stream inherited the count of
    # the old #1, a crasher dead-lettered (whose mark is kept).
    url = nats_server.url
    js = client.jetstream()
    async with poisoned(url, client) as (kit, channel):
        for _ in range(2):  # dies at its first delivery, then once counted
            await run_until_poison_in_hand(kit, channel, url, dies=True, max_crashes=1)
        await run_until(kit, url, lambda s: s.dead_lettered == 1, max_crashes=1)
        await js.delete_stream("ROOMKIT_IN")  # an operator's; the ingress makes it again
        async with Ingress(kit, url):
            pass
        again = await js.publish("roomkit.in.sms", envelope("poison", "k-new", room_id="room-1"))
        assert again.seq == 1
        # Dies once, at its first delivery: not counted.
        await run_until_poison_in_hand(kit, channel, url, dies=True, max_crashes=1)
        channel.again(deadly=False)
        ingress = await run_until(kit, url, lambda s: s.recorded == 1, max_crashes=1)
        assert ingress.stats.dead_lettered == 0


async def test_messages_with_a_status_header_of_their_own_are_recorded_in_order(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # nats-py reads a header named Status as the server's status: the fetch dropped a
    # "Status: 404" message as "no messages" (redelivered for ever, never recorded) and
    # raised on "Status: 503", losing the rest of its batch until ack_wait.
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    statuses = {1: "503", 3: "404", 4: "408"}
    async with Ingress(nats_kit, nats_server.url) as ingress:
        for n in range(6):
            headers = {"Status": statuses[n]} if n in statuses else None
            payload = envelope(f"m{n}", f"k{n}", room_id="room-1")
            await js.publish("roomkit.in.sms", payload, headers=headers)

        async def all_recorded() -> bool:
            return ingress.stats.recorded == 6

        await eventually(all_recorded, what="6 messages recorded")
    assert await bodies(nats_kit, "room-1") == [f"m{n}" for n in range(6)]
    assert ingress.stats.dead_lettered == ingress.stats.retried == 0


async def test_a_message_with_a_status_header_of_its_own_is_dead_lettered_with_it(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # Its dead letter keeps the original headers: the header read back as "Status
    # (published)", which nats-py refuses to send (a space), failed the dead letter for ever
    # and held its lane.
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    async with Ingress(nats_kit, nats_server.url) as ingress:
        bad = envelope("lost?", "k-bad", room_id="no-such-room")
        await js.publish("roomkit.in.sms", bad, headers={"Status": "200"})
        after = envelope("after", "k-after", room_id="room-1")
        await js.publish("roomkit.in.sms", after)

        async def both_done() -> bool:
            return ingress.stats.dead_lettered == 1 and ingress.stats.recorded == 1

        await eventually(both_done, what="one dead letter, one message recorded")
    assert await bodies(nats_kit, "room-1") == ["after"]
    dead = await js.get_msg("ROOMKIT_DLQ", 1)
    assert dead.data == bad
    assert (dead.headers or {})[ERROR_HEADER] == IngressErrorCode.ROOM_NOT_FOUND


async def test_a_held_message_with_a_status_header_is_recovered(
    nats_server: NatsServer, nats_kit: RoomKit
) -> None:
    # Recovery re-reads what a dead process held: read back, "Status: 503" made the direct
    # get answer "no responders", retried for ever, and the ingress processed nothing.
    await make_rooms(nats_kit, "room-1")
    async with Ingress(nats_kit, nats_server.url):
        pass  # creates the stream and the durable consumer
    holder = RoomKitNatsClient()  # whose fetch can get it at all
    await holder.connect(nats_server.url)
    try:
        payload = envelope("held", "k-held", room_id="room-1")
        await holder.jetstream().publish("roomkit.in.sms", payload, headers={"Status": "503"})
        await hold_and_die(holder, 1)
    finally:
        await holder.close()
    async with Ingress(nats_kit, nats_server.url) as ingress:

        async def recorded() -> bool:
            return ingress.stats.recorded == 1

        await eventually(recorded, what="the held message recorded")
    assert ingress.stats.recovered == 1
    assert await bodies(nats_kit, "room-1") == ["held"]


async def test_a_dead_letter_too_large_for_the_server_is_stored_cut_and_says_so(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    bad = b"{" + b"x" * (client.max_payload - 200)  # not JSON, just under the server's limit
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        await js.publish("roomkit.in.sms", bad, headers={REPLY_TO_HEADER: replies.inbox})
        (refusal,) = await replies.take(1)
        valid = text("sms", "still here", idempotency_key="ok")
        ok = await publish_inbound(client, valid, room_id="room-1", reply_timeout=10)
    assert refusal.error == IngressErrorCode.BAD_PAYLOAD
    assert ok.ok and ingress.stats.dead_lettered == 1
    dead = await js.get_msg("ROOMKIT_DLQ", 1, direct=True)
    headers = dead.headers or {}
    assert headers[ERROR_HEADER] == "bad_payload"
    assert headers[TRUNCATED_HEADER] == str(len(bad))
    assert dead.data and len(dead.data) < len(bad) and bad.startswith(dead.data)


async def test_a_message_the_log_refuses_is_dead_lettered_at_once(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    # The envelope fits the server; its event, with the event's own fields, does not.
    big = text("sms", "x" * (client.max_payload - 400), idempotency_key="big")
    async with Ingress(nats_kit, nats_server.url) as ingress:
        refusal = await publish_inbound(client, big, room_id="room-1", reply_timeout=8)
        valid = text("sms", "still here", idempotency_key="ok")
        ok = await publish_inbound(client, valid, room_id="room-1", reply_timeout=10)
    assert (refusal.ok, refusal.error) == (False, IngressErrorCode.EVENT_REFUSED)
    assert ingress.stats.retried == 0 and ingress.stats.dead_lettered == 1
    assert ok.ok and await bodies(nats_kit, "room-1") == ["still here"]
    dead = await client.jetstream().get_msg("ROOMKIT_DLQ", 1, direct=True)
    assert (dead.headers or {})[ERROR_HEADER] == "event_refused"


class ClosingKit:
    """Closes the ingress's NATS connection, then refuses the message: its dead letter meets
    a connection closed for good."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc

    async def process_inbound(self, message: object, *, room_id: str | None = None) -> None:
        await self.nc.close()
        raise RoomNotFoundError(f"Room {room_id} not found")


async def test_a_connection_closed_under_a_dead_letter_stops_the_ingress(
    nats_server: NatsServer, client: NatsClient
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        # One message in flight: the fetch loop waits for its slot, so only the dead letter
        # meets the closed connection.
        kit = ClosingKit(nc)
        async with Ingress(kit, nc, max_in_flight=1) as ingress:  # type: ignore[arg-type]
            await publish_inbound(client, text("sms", "x", idempotency_key="k"), room_id="r")
            with pytest.raises(IngressUnavailable, match="closed"), anyio.fail_after(10):
                await ingress.wait()
    finally:
        await nc.close()
    assert ingress.stats.dead_lettered == 0 and ingress.stats.released == 1


async def test_a_lane_key_that_fails_falls_back_to_the_default_lane(
    nats_server: NatsServer,
    nats_kit: RoomKit,
    client: NatsClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_rooms(nats_kit, "room-1")

    def by_tenant(envelope: InboundEnvelope) -> str:
        if envelope.metadata.get("odd"):
            return envelope.metadata.get("tenant")  # type: ignore[no-any-return]  # None
        if envelope.metadata.get("tenant") == "t2":
            return "tenant:\ud800"  # a str UTF-8 cannot hold: it stopped the ingress
        return "tenant:" + envelope.metadata["tenant"]  # KeyError without a tenant

    caplog.set_level(logging.WARNING, "roomkit.ingress")
    async with Ingress(nats_kit, nats_server.url, lane_key=by_tenant) as ingress:
        for j, metadata in enumerate([{"tenant": "t1"}, {}, {"odd": True}, {"tenant": "t2"}]):
            message = text("sms", f"#{j}", idempotency_key=f"k{j}")
            message.metadata.update(metadata)
            reply = await publish_inbound(client, message, room_id="room-1", reply_timeout=10)
            assert reply.ok and not reply.blocked, reply
    assert ingress.stats.recorded == 4
    assert await bodies(nats_kit, "room-1") == ["#0", "#1", "#2", "#3"]
    assert "lane_key raised" in caplog.text and "not a str" in caplog.text


async def test_dead_letters_of_a_stream_made_again_are_not_taken_for_the_old_ones(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    js = client.jetstream()
    async with (
        Ingress(nats_kit, nats_server.url, fetch_timeout=0.2) as ingress,
        Replies(client) as replies,
    ):
        await js.publish("roomkit.in.sms", b"first", headers={REPLY_TO_HEADER: replies.inbox})
        await replies.take(1)
        await js.delete_stream("ROOMKIT_IN")  # an operator resets it; the ingress makes it again
        await eventually(lambda: consumer_exists(client), what="the stream made again")
        ack = await js.publish(
            "roomkit.in.sms", b"second", headers={REPLY_TO_HEADER: replies.inbox}
        )
        assert ack.seq == 1  # the same sequence as the first one
        await replies.take(1)
    assert ingress.stats.dead_lettered == 2
    assert (await js.stream_info("ROOMKIT_DLQ")).state.messages == 2
    stored = [await js.get_msg("ROOMKIT_DLQ", seq) for seq in (1, 2)]
    assert [m.data for m in stored] == [b"first", b"second"]


async def test_a_full_dead_letter_stream_is_waited_for_with_the_letter_whole(
    nats_server: NatsServer,
    nats_kit: RoomKit,
    client: NatsClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Refused as full, the letter was stripped of its payload (lost once the stream had
    # room), then sent again at once, thousands of times a second.
    js = client.jetstream()
    await _refusing_when_full(client, "ROOMKIT_DLQ", max_msgs=1)
    caplog.set_level(logging.WARNING, "roomkit.ingress")
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        headers = {REPLY_TO_HEADER: replies.inbox}
        await js.publish("roomkit.in.sms", b"first", headers=headers)
        await replies.take(1)
        await js.publish("roomkit.in.sms", b"second, kept whole", headers=headers)
        await eventually(
            lambda: _said(caplog, "the dead-letter stream is full"), what="the stream full"
        )
        await js.purge_stream("ROOMKIT_DLQ")  # the operator makes room
        await replies.take(1)
    assert ingress.stats.dead_lettered == 2
    info = await js.stream_info("ROOMKIT_DLQ")
    dead = await js.get_msg("ROOMKIT_DLQ", info.state.last_seq)
    assert dead.data == b"second, kept whole"
    assert "without its payload" not in caplog.text


async def test_a_dead_letter_over_the_dead_letter_stream_s_max_bytes_is_stored_stripped(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # It never fits, whatever the stream holds: taken for a full stream, it was retried for
    # ever, and its message never terminated.
    js = client.jetstream()
    await _refusing_when_full(client, "ROOMKIT_DLQ", max_bytes=400)
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        headers = {REPLY_TO_HEADER: replies.inbox}
        await js.publish("roomkit.in.sms", b"x" * 2_000, headers=headers)  # not an envelope
        await replies.take(1)
    assert ingress.stats.dead_lettered == 1
    dead = await js.get_msg("ROOMKIT_DLQ", 1)
    assert not dead.data and dead.headers is not None and "RoomKit-Truncated" in dead.headers


async def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


# -- duplicates --------------------------------------------------------------------------------


async def test_a_message_published_twice_is_recorded_once(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    message = text("sms", "only once", idempotency_key="SM-42")
    async with Ingress(nats_kit, nats_server.url) as ingress:
        first = await publish_inbound(client, message, room_id="room-1")
        second = await publish_inbound(client, message, room_id="room-1")
        assert not first.duplicate and second.duplicate and second.seq == first.seq
        # Past JetStream's window (no Nats-Msg-Id): the ingress sees it, the room drops it.
        await client.jetstream().publish(
            "roomkit.in.sms", envelope("only once", "SM-42", room_id="room-1")
        )

        async def both_seen() -> bool:
            return ingress.stats.processed == 2

        await eventually(both_seen, what="two messages processed")
    assert (ingress.stats.recorded, ingress.stats.duplicates) == (1, 1)
    assert await bodies(nats_kit, "room-1") == ["only once"]


async def test_one_idempotency_key_in_two_rooms_is_two_messages(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # The kit keeps keys per room: JetStream's window must not take one for the other.
    await make_rooms(nats_kit, "room-a", "room-b")
    async with Ingress(nats_kit, nats_server.url):
        for room in ("room-a", "room-b"):
            message = text("sms", f"to {room}", idempotency_key="SAME")
            reply = await publish_inbound(client, message, room_id=room, reply_timeout=10)
            assert reply.ok and not reply.blocked and reply.room_id == room
    assert await bodies(nats_kit, "room-a") == ["to room-a"]
    assert await bodies(nats_kit, "room-b") == ["to room-b"]


async def test_a_fixed_dead_letter_is_published_again_without_its_msg_id(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    message = text("sms", "hello", idempotency_key="SM-1")
    async with Ingress(nats_kit, nats_server.url):
        first = await publish_inbound(client, message, room_id="support-1", reply_timeout=10)
        assert first.error == IngressErrorCode.ROOM_NOT_FOUND
        await make_rooms(nats_kit, "support-1")  # the fix
        dropped = await publish_inbound(client, message, room_id="support-1", reply_timeout=10)
        assert dropped.reason == DUPLICATE_PUBLISH and dropped.event_id is None
        again = await publish_inbound(
            client, message, room_id="support-1", reply_timeout=10, deduplicate=False
        )
        assert again.ok and not again.blocked and again.event_id is not None
        # Still recorded once: the room knows the key.
        late = await publish_inbound(
            client, message, room_id="support-1", reply_timeout=10, deduplicate=False
        )
        assert late.reason == "duplicate" and late.event_id == again.event_id
    assert await bodies(nats_kit, "support-1") == ["hello"]


def test_msg_ids_tell_channels_rooms_and_keys_apart() -> None:
    cases = [
        ("sms", "k", None),
        ("sms", "k", "a"),
        ("sms", "k", "b"),
        ("sms", "a:k", None),
        ("sms", "k", "a:b"),
        ("sms", "b:k", "a"),
        ("sms:a", "k", None),
        ("sms", "#k", None),
        ("sms", "k" * 200, "a"),
        ("sms", "k" * 200, "b"),
        ("sms", " k", "a"),
    ]
    ids = [msg_id_for(channel, key, room) for channel, key, room in cases]
    assert len(set(ids)) == len(cases)
    assert all(i.isprintable() and len(i) <= 128 for i in ids)
    assert ids[:2] == ["sms:k", "sms:a:k"]  # readable when every part is plain


async def test_a_room_id_that_is_not_a_stream_id_works_through_the_ingress(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # 0.3.0 took any string as a room id; the room's stream is named after it.
    await make_rooms(nats_kit, "support:42")
    async with Ingress(nats_kit, nats_server.url):
        reply = await publish_inbound(
            client,
            text("sms", "hello", idempotency_key="SM-1"),
            room_id="support:42",
            reply_timeout=10,
        )
    assert isinstance(reply, IngressReply)
    assert reply.ok and reply.room_id == "support:42" and not reply.blocked
    assert await bodies(nats_kit, "support:42") == ["hello"]


async def test_keyless_messages_when_the_ingress_allows_them(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    message = text("sms", "no key")
    async with Ingress(nats_kit, nats_server.url, require_idempotency_key=False):
        reply = await publish_inbound(
            client, message, room_id="room-1", reply_timeout=10, require_idempotency_key=False
        )
    assert reply.ok and reply.event_id is not None
    assert await bodies(nats_kit, "room-1") == ["no key"]


# -- the publisher helper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("max_in_flight", 0, ValueError),
        ("max_in_flight", 2.5, TypeError),
        ("lanes", "4", TypeError),
        ("fetch_batch", None, TypeError),
        ("max_attempts", True, TypeError),
        ("max_crashes", 0, ValueError),
        ("max_crashes", 1.5, TypeError),
        ("ack_wait", 0, ValueError),
        ("ack_wait", math.inf, ValueError),  # JetStream takes it in nanoseconds
        ("duplicate_window", 10**400, ValueError),
        ("fetch_timeout", -1, ValueError),
        ("request_timeout", math.nan, ValueError),
        ("connect_timeout", "5", TypeError),
        ("drain_timeout", -0.5, ValueError),
        ("drain_timeout", [1], TypeError),
        ("stream_name", "a/b", ValueError),
        ("durable", "x\x00", ValueError),
        ("dlq_stream", "ROOMKIT_IN", ValueError),
    ],
)
def test_a_bad_setting_is_refused_when_the_ingress_is_made(
    setting: str, value: object, error: type[Exception]
) -> None:
    # Not when a task of the running ingress (or NATS) first uses it.
    with pytest.raises(error, match=setting):
        Ingress(RoomKit(), **{setting: value})


def test_lanes_are_bounded_by_default() -> None:
    # One task (and one stream) per lane: max_in_flight=200_000 must not make 200,000.
    assert Ingress(RoomKit(), max_in_flight=200_000).lanes == DEFAULT_MAX_LANES == 256
    assert Ingress(RoomKit(), max_in_flight=8).lanes == 8
    assert Ingress(RoomKit(), max_in_flight=1000, lanes=1000).lanes == 1000


def test_settings_take_numbers_of_any_kind() -> None:
    ingress = Ingress(RoomKit(), ack_wait=Fraction(15), drain_timeout=math.inf, lanes=2)
    assert ingress.lanes == 2
    Ingress(RoomKit(), duplicate_window=0)  # the server's default window


async def test_publish_inbound_refuses_what_the_ingress_would_refuse(client: NatsClient) -> None:
    with pytest.raises(InvalidInbound, match="idempotency_key"):
        await publish_inbound(client, text("sms", "x"))
    with pytest.raises(InvalidInbound, match="subject token"):
        await publish_inbound(client, text("sms.eu", "x", idempotency_key="k"))
    with pytest.raises(InvalidInbound, match="room id"):
        await publish_inbound(client, text("sms", "x", idempotency_key="k"), room_id="")
    # A JetStream context, or nothing, for the client: an AttributeError from deep inside.
    for wrong in (client.jetstream(), None):
        with pytest.raises(TypeError, match="nats-py client"):
            await publish_inbound(wrong, text("sms", "x", idempotency_key="k"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "options", "error", "match"),
    [
        (
            InboundEnvelope(channel_id="sms", sender_id=5, content="hi", idempotency_key="k"),  # type: ignore[arg-type]
            {},
            InvalidInbound,
            "not a valid envelope",
        ),
        (
            InboundEnvelope(
                channel_id="sms", sender_id="u", content={"type": "hologram"}, idempotency_key="k"
            ),
            {},
            InvalidInbound,
            "invalid message",
        ),
        (
            text("sms", "x", idempotency_key="k", metadata={"o": object()}),
            {},
            InvalidInbound,
            "does not encode",
        ),
        (
            text("sms", "x" * (2 * 1024 * 1024), idempotency_key="k"),
            {},
            InvalidInbound,
            "max payload",
        ),
        (text("sms\x0b", "x", idempotency_key="k"), {}, InvalidInbound, "subject token"),
        (text("sms\u00a0", "x", idempotency_key="k"), {}, InvalidInbound, "subject token"),
        (text("sms\x00", "x", idempotency_key="k"), {}, InvalidInbound, "subject token"),
        (text("sms", "x", idempotency_key="k"), {"timeout": math.nan}, ValueError, "timeout"),
        (text("sms", "x", idempotency_key="k"), {"timeout": -1}, ValueError, "timeout"),
        (text("sms", "x", idempotency_key="k"), {"reply_timeout": -1}, ValueError, "reply_"),
        (text("sms", "x", idempotency_key="k"), {"reply_timeout": "5"}, TypeError, "reply_"),
        (text("sms", "x", idempotency_key="k"), {"subject_prefix": None}, TypeError, "prefix"),
        ({"channel_id": "sms"}, {}, TypeError, "InboundMessage"),
    ],
)
async def test_publish_inbound_refuses_before_publishing_what_would_fail(
    client: NatsClient,
    message: Any,
    options: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    # No stream captures the subject: a message that got as far as publishing would raise
    # IngressUnavailable instead.
    with pytest.raises(error, match=match):
        await publish_inbound(client, message, **options)


async def test_publish_inbound_refuses_metadata_nested_too_deep(client: NatsClient) -> None:
    deep: Any = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(InvalidInbound, match="nested"):
        await publish_inbound(client, text("sms", "x", idempotency_key="k", metadata={"m": deep}))
    # Well within the bound: checked, then published (and no stream takes it here).
    shallow = text("sms", "x", idempotency_key="k", metadata={"m": [[[[]]]]})
    with pytest.raises(IngressUnavailable):
        await publish_inbound(client, shallow, timeout=1)


async def test_an_empty_sender_id_goes_through_as_the_kit_takes_it(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    message = InboundMessage(
        channel_id="sms", sender_id="", content=TextContent(body="x"), idempotency_key="k"
    )
    async with Ingress(nats_kit, nats_server.url):
        reply = await publish_inbound(client, message, room_id="room-1", reply_timeout=10)
    assert reply.ok and not reply.blocked


async def test_publish_inbound_says_when_nothing_stores_or_answers(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    message = text("sms", "anyone?", idempotency_key="k1")
    with pytest.raises(IngressUnavailable, match="start the ingress"):
        await publish_inbound(client, message, timeout=2)
    async with Ingress(nats_kit, nats_server.url):
        pass  # creates the stream, then stops
    with pytest.raises(IngressTimeout, match="will still be processed"):
        await publish_inbound(client, message, reply_timeout=0.2)
    # The next ingress processes it.
    async with Ingress(nats_kit, nats_server.url) as ingress:

        async def recorded() -> bool:
            return ingress.stats.recorded == 1

        await eventually(recorded, what="the stored message recorded")


async def test_publish_inbound_says_when_jetstream_refuses_the_message_for_good(
    client: NatsClient,
) -> None:
    # A limit of the stream (an operator's): the message is refused whenever it is sent.
    # It was IngressUnavailable, which callers publish again, for ever.
    await client.jetstream().add_stream(
        name="ROOMKIT_IN", subjects=["roomkit.in.>"], max_msg_size=500
    )
    large = text("sms", "x" * 1_000, idempotency_key="k1")
    with pytest.raises(InvalidInbound, match="refused the message.*maximum"):
        await publish_inbound(client, large)
    assert (await publish_inbound(client, text("sms", "small", idempotency_key="k2"))).seq == 1


async def _refusing_when_full(client: NatsClient, name: str, **limits: int) -> None:
    """Make the ingress's stream ``name`` (ROOMKIT_IN or ROOMKIT_DLQ) with ``limits`` and
    discard=new: at its limits it refuses what comes, as an operator may set it up."""
    subjects = ["roomkit.in.>" if name == "ROOMKIT_IN" else "roomkit.dlq.>"]
    discard = nats.js.api.DiscardPolicy.NEW
    await client.jetstream().add_stream(name=name, subjects=subjects, discard=discard, **limits)


async def test_publish_inbound_says_a_full_work_queue_is_unavailable_not_the_message_invalid(
    client: NatsClient,
) -> None:
    # The stream at its limits with discard=new empties as the ingress takes its messages: a
    # valid message was said invalid (InvalidInbound, a ValueError), and callers dropped it.
    await _refusing_when_full(client, "ROOMKIT_IN", max_msgs=1)
    await publish_inbound(client, text("sms", "one", idempotency_key="k1"))
    with pytest.raises(IngressUnavailable, match="try again.*maximum messages"):
        await publish_inbound(client, text("sms", "two", idempotency_key="k2"))


@pytest.mark.parametrize("storage", [nats.js.api.StorageType.MEMORY, nats.js.api.StorageType.FILE])
@pytest.mark.parametrize("headers", [None, {"RoomKit-Error": "bad_payload", "X": "é"}])
async def test_what_a_message_takes_in_a_stream_is_counted_as_jetstream_counts_it(
    client: NatsClient,
    storage: nats.js.api.StorageType,
    headers: dict[str, str] | None,
) -> None:
    # Whether a message can ever fit a stream's max_bytes: counting only its payload, one a
    # little under the limit was taken for fitting, and its dead letter waited for ever.
    js = client.jetstream()
    subject, payload = "roomkit.dlq.sms", b"x" * 500
    size = stored_size(subject, len(payload), headers, storage)
    discard = nats.js.api.DiscardPolicy.NEW
    for name, limit, fits in (("EXACT", size, True), ("SHORT", size - 1, False)):
        await js.add_stream(
            name=name, subjects=[subject], storage=storage, max_bytes=limit, discard=discard
        )
        try:
            await js.publish(subject, payload, headers=dict(headers or {}) or None)
        except nats.js.errors.APIError as exc:
            assert not fits, exc
            assert not await full_for_now(exc, js, name, subject, len(payload), headers, 5)
        else:
            assert fits
        await js.delete_stream(name)


async def test_a_count_limit_is_full_for_now_though_the_stream_was_emptied_since(
    client: NatsClient,
) -> None:
    # Its consumer emptied the queue between the refusal and the look at it: "the stream
    # holds nothing" said the message never fits, and publish_inbound called a valid message
    # invalid for good (20 of 2,400 with a consumer acking as fast as it could).
    js = client.jetstream()
    await _refusing_when_full(client, "ROOMKIT_IN", max_msgs=1)
    await js.publish("roomkit.in.sms", b"one")
    with pytest.raises(nats.js.errors.APIError, match="maximum messages") as refused:
        await js.publish("roomkit.in.sms", b"two")
    await js.purge_stream("ROOMKIT_IN")
    assert await full_for_now(refused.value, js, None, "roomkit.in.sms", 3, None, 5)


async def test_a_dead_letter_under_max_bytes_but_not_with_its_headers_is_stored_stripped(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # Its payload alone under the dead-letter stream's max_bytes, it was taken for a letter
    # that fits once the stream holds less: it waited for ever, its message never settled.
    js = client.jetstream()
    await _refusing_when_full(client, "ROOMKIT_DLQ", max_bytes=2_000)
    await js.publish("roomkit.dlq.sms", b"an older letter")
    async with Ingress(nats_kit, nats_server.url) as ingress, Replies(client) as replies:
        headers = {REPLY_TO_HEADER: replies.inbox}
        await js.publish("roomkit.in.sms", b"x" * 1_900, headers=headers)  # not an envelope
        await replies.take(1)
    assert ingress.stats.dead_lettered == 1
    dead = await js.get_msg("ROOMKIT_DLQ", 2)
    assert not dead.data and dead.headers is not None and "RoomKit-Truncated" in dead.headers


async def test_publish_inbound_says_a_message_over_the_queue_s_max_bytes_is_refused_for_good(
    client: NatsClient,
) -> None:
    # Over the stream's max_bytes, it is refused whatever the stream holds: not "try again".
    await _refusing_when_full(client, "ROOMKIT_IN", max_bytes=300)
    with pytest.raises(InvalidInbound, match="refused the message.*maximum bytes"):
        await publish_inbound(client, text("sms", "y" * 1_000, idempotency_key="k1"))


async def test_optional_fields_written_as_null_are_taken_as_absent(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    # Go's encoding/json writes a nil map as null: such a message was dead-lettered as a
    # bad payload, though its metadata is optional.
    await make_rooms(nats_kit, "room-1")
    fields = {"channel_id": "sms", "sender_id": "+1555", "room_id": "room-1"}
    nulls = {"metadata": None, "external_id": None, "thread_id": None}
    content = {"type": "text", "body": "from go"}
    payload = msgspec.json.encode(fields | nulls | {"content": content, "idempotency_key": "g1"})
    async with Ingress(nats_kit, nats_server.url), Replies(client) as replies:
        headers = {REPLY_TO_HEADER: replies.inbox}
        await client.jetstream().publish("roomkit.in.sms", payload, headers=headers)
        (answer,) = await replies.take(1)
    assert answer.ok and not answer.blocked
    event = (await nats_kit.get_timeline("room-1"))[-1]
    assert event.metadata == {} and event.content == TextContent(body="from go")


async def test_an_envelope_round_trips_an_inbound_message() -> None:
    message = text("sms", "hi", idempotency_key="k", external_id="e", thread_id="t")
    message.metadata["carrier"] = "acme"
    envelope = InboundEnvelope.from_message(message, room_id="r")
    decoded = msgspec.json.decode(msgspec.json.encode(envelope), type=InboundEnvelope)
    assert decoded == envelope
    assert decoded.to_message() == message


# -- stopping, failing, restarting -------------------------------------------------------------


async def test_held_messages_go_back_on_cancel_and_the_next_ingress_keeps_the_order(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    release = anyio.Event()
    entered = anyio.Event()

    @nats_kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def hold(event: RoomEvent, context: RoomContext) -> HookResult:
        entered.set()
        await release.wait()
        return HookResult.allow()

    async with anyio.create_task_group() as tg:
        first: Ingress = await tg.start(serve_ingress, nats_kit, nats_server.url)
        for j in range(5):
            message = text("sms", f"#{j}", idempotency_key=f"k{j}")
            await publish_inbound(client, message, room_id="room-1")

        async def all_held() -> bool:
            return entered.is_set() and first.stats.received == 5

        # Message #0 is in the room's hook; the other four wait behind it in its lane.
        await eventually(all_held, what="five messages held")
        tg.cancel_scope.cancel()
    assert first.stats.released >= 4  # handed back to JetStream, not dropped
    release.set()

    async with Ingress(nats_kit, nats_server.url) as second:

        async def done() -> bool:
            return await bodies(nats_kit, "room-1") == [f"#{j}" for j in range(5)]

        await eventually(done, what="the five messages in order")
    # Message #0 may have been committed while the first ingress was cancelled: at most a
    # recognised duplicate, never a second event.
    assert second.stats.recorded + first.stats.recorded <= 5


async def test_messages_held_longer_than_ack_wait_are_kept_alive(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")

    @nats_kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
        if getattr(event.content, "body", "") == "#0":
            await anyio.sleep(1.6)  # the scenario: a hook slower than ack_wait
        return HookResult.allow()

    async with Ingress(nats_kit, nats_server.url, ack_wait=1.0) as ingress:
        for j in range(3):
            message = text("sms", f"#{j}", idempotency_key=f"k{j}")
            await publish_inbound(client, message, room_id="room-1")

        async def all_recorded() -> bool:
            return ingress.stats.recorded == 3

        await eventually(all_recorded, what="three messages recorded")
    # "In progress" acks kept JetStream from redelivering the held messages meanwhile.
    assert ingress.stats.received == 3 and ingress.stats.duplicates == 0
    assert await bodies(nats_kit, "room-1") == ["#0", "#1", "#2"]


async def test_without_work_queue_a_restart_does_not_replay_acknowledged_messages(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    # Limits retention keeps acknowledged messages; keyless ones could be recorded twice.
    options: dict[str, Any] = {
        "work_queue": False,
        "require_idempotency_key": False,
        "ack_wait": 1.0,
    }
    async with Ingress(nats_kit, nats_server.url, **options):
        pass  # creates the stream and the durable consumer
    js = client.jetstream()
    for body in ("A", "B"):
        await js.publish("roomkit.in.sms", envelope(body, None, room_id="room-1"))
    # A process that fetched both, acknowledged B (so it handled it), and died holding A.
    await hold_and_die(client, 2, ack=[1])
    async with Ingress(nats_kit, nats_server.url, **options), Replies(client) as replies:

        async def redelivered() -> bool:
            return await bodies(nats_kit, "room-1") == ["A"]

        await eventually(redelivered, what="A redelivered after ack_wait")
        await js.publish(
            "roomkit.in.sms",
            envelope("C", None, room_id="room-1"),
            headers={REPLY_TO_HEADER: replies.inbox},
        )
        await replies.take(1)
    assert await bodies(nats_kit, "room-1") == ["A", "C"]  # B was not read again


class FlakyLog(MemoryEventLog):
    """A memory log whose appends fail while ``down`` (the log's server is away)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> list[Record]:
        if self.down:
            self.refused += 1
            if self.refused >= 3:
                self.down = False  # back after a few refusals
            raise LogUnavailable("the log is away")
        return await super().append(stream, events, expected_version=expected_version)


async def test_an_unavailable_log_is_retried_in_place_keeping_the_order(
    nats_server: NatsServer, client: NatsClient
) -> None:
    log = FlakyLog()
    async with kit_on(log) as kit:
        await make_rooms(kit, "room-1")
        log.down = True
        async with Ingress(kit, nats_server.url) as ingress:
            for j in range(10):
                await publish_inbound(
                    client, text("sms", f"#{j}", idempotency_key=f"k{j}"), room_id="room-1"
                )

            async def all_recorded() -> bool:
                return ingress.stats.recorded == 10

            await eventually(all_recorded, what="10 messages recorded")
        assert log.refused >= 3 and ingress.stats.retried >= 3
        assert ingress.stats.dead_lettered == 0
        assert await bodies(kit, "room-1") == [f"#{j}" for j in range(10)]


@pytest.mark.parametrize(
    ("error", "failing", "tries", "recorded"),
    [
        # Services sharing the ingress without ownership, all busy in one room: each conflict
        # counted as a failed attempt, and valid messages were dead-lettered ("failed"). Not
        # counted at all, one whose own hook changed its room through another writer at every
        # try was tried for as long as the ingress ran, its room blocked behind it.
        (RoomConflictError("room room-1 kept changing under another writer"), 3, 4, True),
        (RoomConflictError("room room-1 kept changing"), 1_000, 20, False),  # ten an attempt
        # The kit raises StoreUnavailableError for a message it cannot route while its read
        # model's database is away: counted as failed attempts, the message was dead-lettered
        # once the outage outlasted them. Not counted, as the log's outages are not.
        (StoreUnavailableError("the read model does not hold what was recorded"), 5, 6, True),
    ],
    ids=["conflicts-then-room", "conflicts-for-ever", "store-away"],
)
async def test_what_other_writers_or_a_store_outage_cost_in_attempts(
    nats_server: NatsServer,
    client: NatsClient,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    failing: int,
    tries: int,
    recorded: bool,
) -> None:
    monkeypatch.setattr(roomkit.ingress._handler, "_RETRY_MAX_DELAY", 0.01)
    async with kit_on(MemoryEventLog()) as kit:
        await make_rooms(kit, "room-1")
        process_inbound = kit.process_inbound
        tried = 0

        async def failing_first(*args: Any, **kwargs: Any) -> InboundResult:
            nonlocal tried
            tried += 1
            if tried <= failing:
                raise error
            return await process_inbound(*args, **kwargs)

        kit.process_inbound = failing_first  # type: ignore[method-assign]
        async with Ingress(kit, nats_server.url, max_attempts=2) as ingress:
            await publish_inbound(
                client, text("sms", "busy", idempotency_key="k1"), room_id="room-1"
            )

            async def settled() -> bool:
                return ingress.stats.recorded + ingress.stats.dead_lettered == 1

            await eventually(settled, what="the message recorded or dead-lettered")
        assert (tried, ingress.stats.recorded, ingress.stats.dead_lettered) == (
            tries,
            int(recorded),
            int(not recorded),
        )
        assert await bodies(kit, "room-1") == (["busy"] if recorded else [])


async def test_a_message_recovered_from_a_stream_without_direct_gets_keeps_its_headers(
    nats_server: NatsServer, client: NatsClient
) -> None:
    # An operator's stream without allow_direct (used as it is): nats-py reads a message back
    # with a header of UTF-8 text as an email Header object, and recovery left such headers
    # out. The dead letter lost them, and the reply inbox got nothing.
    js = client.jetstream()
    config = StreamConfig(
        name="ROOMKIT_IN",
        subjects=["roomkit.in.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        allow_direct=False,
    )
    await js.add_stream(config)
    replies: list[str] = []
    letters: list[dict[str, str]] = []

    async def on_reply(msg: Msg) -> None:
        replies.append(msg.subject)

    async def on_letter(msg: Msg) -> None:
        letters.append(dict(msg.headers or {}))

    await client.subscribe("my.inbox.>", cb=on_reply)
    await client.subscribe("roomkit.dlq.>", cb=on_letter)
    release = anyio.Event()
    async with kit_on(MemoryEventLog()) as kit:
        await make_rooms(kit, "room-1")

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def hold(event: RoomEvent, context: RoomContext) -> None:
            await release.wait()

        # The first ingress holds a message and the bad one behind it (both in the lane of
        # channel sms: neither names a room), and hands both back.
        async with Ingress(kit, nats_server.url, drain_timeout=0.2) as first:
            await publish_inbound(client, text("sms", "held", idempotency_key="k1"))
            headers = {"X-Note": "café", "RoomKit-Reply-To": "my.inbox.é"}
            await js.publish("roomkit.in.sms", b"not json", headers=headers)

            async def both_held() -> bool:
                return first.stats.received == 2

            await eventually(both_held, what="both messages in hand")
        release.set()
        async with Ingress(kit, nats_server.url) as second:

            async def recovered() -> bool:
                return bool(letters) and bool(replies)

            await eventually(recovered, what="the bad one recovered and dead-lettered")
            assert second.stats.recovered >= 1
    assert letters[0]["X-Note"] == "café" and replies == ["my.inbox.é"]


async def test_a_server_restart_mid_stream_loses_nothing_and_keeps_the_order(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    rooms = [f"room-{i}" for i in range(10)]
    per_room = 50
    total = len(rooms) * per_room
    async with (
        NatsEventLog(server.url, request_timeout=2.0, retry_timeout=10.0) as log,
        kit_on(log) as kit,
    ):
        await make_rooms(kit, *rooms)
        async with Ingress(kit, server.url):
            pass  # creates the streams and the durable consumer: the backlog waits there
        nc = await nats.connect(server.url)
        try:
            for j in range(per_room):
                for room in rooms:
                    message = text("sms", f"{room} #{j}", idempotency_key=f"{room}-{j}")
                    await publish_inbound(nc, message, room_id=room)
        finally:
            await nc.close()

        async with Ingress(kit, server.url, request_timeout=2.0) as ingress:

            async def some_recorded() -> bool:
                return ingress.stats.recorded >= total // 4

            await eventually(some_recorded, what="a quarter recorded")
            # SIGKILL while messages, acks and fetches are in flight; back on the same store.
            server.kill()
            server.start()

            async def all_recorded() -> bool:
                return ingress.stats.recorded == total

            await eventually(all_recorded, timeout=25, what="every message recorded")
        for room in rooms:
            assert await bodies(kit, room) == [f"{room} #{j}" for j in range(per_room)]


async def test_a_deleted_consumer_is_created_again(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    await make_rooms(nats_kit, "room-1")
    js = client.jetstream()
    async with Ingress(nats_kit, nats_server.url, fetch_timeout=0.2) as ingress:
        first = text("sms", "#0", idempotency_key="k0")
        assert (await publish_inbound(client, first, room_id="room-1", reply_timeout=10)).ok
        await js.delete_consumer("ROOMKIT_IN", "roomkit-ingress")  # an operator's mistake
        await eventually(lambda: consumer_exists(client), what="the consumer created again")
        second = text("sms", "#1", idempotency_key="k1")
        assert (await publish_inbound(client, second, room_id="room-1", reply_timeout=10)).ok
    assert ingress.stats.recorded == 2
    assert await bodies(nats_kit, "room-1") == ["#0", "#1"]


async def test_a_second_durable_on_the_work_queue_is_refused_saying_why(
    nats_server: NatsServer, nats_kit: RoomKit
) -> None:
    # It was "exists with another configuration; using it", then "consumer not found".
    async with Ingress(nats_kit, nats_server.url):
        pass  # the stream, and its consumer roomkit-ingress
    with pytest.raises(IngressError, match="work queue with a consumer already") as refused:
        async with Ingress(nats_kit, nats_server.url, durable="another"):
            pass
    assert "'another'" in str(refused.value)


class ClosedKit:
    """Stands for a kit that was closed under the ingress (its commands all fail so)."""

    async def process_inbound(self, message: object, *, room_id: str | None = None) -> None:
        raise KitClosedError("the kit is closed")


async def test_the_kit_closing_stops_the_ingress_and_hands_messages_back(
    nats_server: NatsServer, nats_kit: RoomKit, client: NatsClient
) -> None:
    async with Ingress(ClosedKit(), nats_server.url) as ingress:  # type: ignore[arg-type]
        message = text("sms", "late", idempotency_key="k")
        await publish_inbound(client, message, room_id="room-1")
        with pytest.raises(KitClosedError), anyio.fail_after(10):
            await ingress.wait()
    assert ingress.stats.released == 1 and ingress.stats.processed == 0
    # Nothing lost: a working kit gets it.
    await make_rooms(nats_kit, "room-1")
    async with Ingress(nats_kit, nats_server.url) as again:

        async def recorded() -> bool:
            return again.stats.recorded == 1

        await eventually(recorded, what="the message recorded")


# -- roomkit serve -----------------------------------------------------------------------------


async def consumer_exists(nc: NatsClient) -> bool:
    try:
        await nc.jetstream().consumer_info("ROOMKIT_IN", "roomkit-ingress")
    except nats.js.errors.NotFoundError:
        return False
    return True


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nocolon", "expected MODULE:NAME"),
        ("no_such_module_xyz:build", "cannot import"),
        ("tests.roomkit.ingress_app:nothing", "has no nothing"),
        ("tests.roomkit.ingress_app:APP", "neither a RoomKit nor a function"),
        ("tests.roomkit.kit_helpers:text", "cannot be called that way"),
        ("tests.roomkit.kit_helpers:SimpleChannel", "cannot be called that way"),
    ],
)
async def test_serve_refuses_a_bad_app(app: str, message: str) -> None:
    with pytest.raises(CliError, match=message) as caught:
        await run_serve(serve_args("--app", app, "--nats", "nats://127.0.0.1:1"))
    assert caught.value.code == EXIT_USAGE


async def test_serve_refuses_a_closed_kit_as_a_bad_app() -> None:
    # It came out as a KitClosedError traceback with exit code 1.
    args = serve_args(
        "--app", "tests.roomkit.ingress_app:build_closed_kit", "--nats", "nats://h:1"
    )
    with pytest.raises(CliError, match="the kit it gives is closed") as caught:
        await run_serve(args)
    assert caught.value.code == EXIT_USAGE


async def test_an_app_that_exits_as_it_loads_exits_serve_as_it_asked() -> None:
    # Loaded inside the task group that watches the signals, its SystemExit came out wrapped
    # in an exception group: a traceback and exit code 1 instead of its own 3.
    with pytest.raises(SystemExit) as caught:
        await run_serve(serve_args("--app", "tests.roomkit.exiting_app:x", "--nats", "nats://h:1"))
    assert caught.value.code == 3


async def test_serve_says_the_log_s_stream_is_set_up_for_another_prefix(
    nats_server: NatsServer, log: NatsEventLog
) -> None:
    # A traceback ending in StreamConflict, where the ingress's own stream in conflict got a
    # one-line message.
    await log.append("room-1", [NewEvent("noted", b"{}")], expected_version=0)  # the stream
    args = serve_args(
        "--app",
        "tests.roomkit.ingress_app:build_kit",
        "--nats",
        nats_server.url,
        "--prefix",
        "acme",
    )
    with pytest.raises(CliError, match="holds subjects") as caught:
        await run_serve(args)
    assert caught.value.code == EXIT_ERROR


def test_serve_imports_the_app_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `python -m` and uvicorn do: the README's `roomkit serve --app myservice.rooms:...`
    # run from the project holding `myservice/` said "No module named 'myservice'".
    package = tmp_path / "cwd_probe_service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rooms.py").write_text("def make_kit():\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_probe_service", raising=False)
    monkeypatch.delitem(sys.modules, "cwd_probe_service.rooms", raising=False)
    target = _load_app("cwd_probe_service.rooms:make_kit", CliError, EXIT_USAGE)
    assert target.__name__ == "make_kit"


def test_serve_takes_every_url_nats_py_takes() -> None:
    # A bare host:port is nats://host:port to nats-py (the review: it was refused once).
    from roomkit.ingress.cli import _is_nats_url

    for url in ("127.0.0.1:4222", "nats://a:1", "tls://b", "ws://c:8080", "localhost"):
        assert _is_nats_url(url), url
    for url in ("http://a:1", "nats://a:port", "nats://", ":4222"):
        assert not _is_nats_url(url), url


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--prefix", "a..b"], "subject prefix"),
        (["--prefix", "a b"], "subject prefix"),
        (["--stream", "a.b"], "--stream"),
        (["--dlq-stream", ""], "--dlq-stream"),
        (["--durable", "x y"], "--durable"),
        (["--stream", "ROOMKIT"], "--log-stream"),
        (["--dlq-stream", "ROOMKIT_IN"], "--dlq-stream"),
        (["--lanes", "0"], "--lanes"),
        (["--max-crashes", "-1"], "--max-crashes"),
        (["--nats", "http://127.0.0.1:4222"], "--nats 'http://127.0.0.1:4222' is not a NATS"),
        (["--nats", "nats://host:port"], "--nats"),
        (["--log", "127.0.0.1:port"], "--log"),
        (["--nats", "nats://svc:S3cretPass@h:42x2"], "--nats 'nats://svc:***@h:42x2' is not"),
    ],
)
async def test_serve_refuses_bad_settings_before_connecting(argv: list[str], message: str) -> None:
    # Port 1 answers nothing: a setting checked only once connected would fail otherwise.
    args = serve_args("--app", ingress_app.APP, "--nats", "nats://127.0.0.1:1", *argv)
    with pytest.raises(CliError, match=re.escape(message)) as caught:
        await run_serve(args)
    assert caught.value.code == EXIT_USAGE


async def test_serve_gives_up_opening_the_log_after_its_timeout(tmp_path: Path) -> None:
    # A nats-server without JetStream: the log's stream was asked for again and again over
    # the log's own retry_timeout (10 s; ~12.6 s measured) whatever --timeout said. What
    # the log waited for is said (it said only "did not open", and the log's own error
    # "NATS did not answer" where the server had answered that JetStream was off).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plain = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"nats://127.0.0.1:{port}"

        async def listening() -> bool:
            try:
                await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
            except OSError:
                return False
            return True

        await eventually(listening, timeout=20, what="nats-server to listen")
        args = serve_args("--app", ingress_app.APP, "--nats", url, "--timeout", "0.5")
        with pytest.raises(CliError) as caught:
            await run_serve(args)
    finally:
        plain.terminate()
        plain.wait()
    assert caught.value.code == EXIT_UNREACHABLE
    assert str(caught.value) == (
        f"the log at {url} did not open within 0.5s (creating the stream: the server's "
        "JetStream is unavailable (not enabled there, or its cluster has no leader yet))"
    )


async def test_serve_runs_the_factory_kit(
    nats_server: NatsServer, client: NatsClient, log: NatsEventLog
) -> None:
    async with kit_on(log) as kit:
        await make_rooms(kit, "room-1")
    notes: list[str] = []

    class Notes:
        def note(self, line: str) -> None:
            notes.append(line)

    # With credentials, which a server without authentication takes: the start line printed
    # the password.
    url = nats_server.url.replace("nats://", "nats://svc:S3cretPass@")
    args = serve_args("--app", ingress_app.APP, "--nats", url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_serve, args, Notes())
        await eventually(lambda: consumer_exists(client), what="the ingress consumer")
        message = text("sms", "via serve", idempotency_key="k")
        reply = await publish_inbound(client, message, room_id="room-1", reply_timeout=10)
        tg.cancel_scope.cancel()  # SIGTERM's graceful stop is in the kill -9 test
    assert reply.ok and reply.room_id == "room-1"
    assert notes == [
        "roomkit serve: consuming roomkit.in.> on "
        f"{url.replace('S3cretPass', '***')} (stream ROOMKIT_IN, durable roomkit-ingress); "
        "dead letters on roomkit.dlq.>; Ctrl-C stops"
    ]
    async with kit_on(log) as kit:
        assert await bodies(kit, "room-1") == ["via serve"]


async def test_serve_connects_the_log_of_a_kit_made_at_import(
    nats_server: NatsServer,
    client: NatsClient,
    log: NatsEventLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `kit = RoomKit(log=NatsEventLog(URL))` in the app's module: nothing could connect that
    # log before serve ran, and the kit could not start (a 58-line traceback, exit 1).
    async with kit_on(log) as kit:
        await make_rooms(kit, "room-1")
    (tmp_path / "import_time_app.py").write_text(
        "from eventlog.nats import NatsEventLog\n"
        "from tests.roomkit.ingress_app import build_kit\n"
        f"kit = build_kit(NatsEventLog({nats_server.url!r}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = serve_args("--app", "import_time_app:kit", "--nats", nats_server.url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_serve, args, _Quiet())
        await eventually(lambda: consumer_exists(client), what="the ingress consumer")
        message = text("sms", "via a kit made at import", idempotency_key="k")
        reply = await publish_inbound(client, message, room_id="room-1", reply_timeout=10)
        tg.cancel_scope.cancel()
    assert reply.ok and reply.room_id == "room-1"
    async with kit_on(log) as kit:
        assert await bodies(kit, "room-1") == ["via a kit made at import"]


class _Quiet:
    def note(self, line: str) -> None:
        pass


# -- kill -9 of the serving process ------------------------------------------------------------


async def committed(log: EventLog, rooms: Sequence[str], baseline: dict[str, int]) -> int:
    """Messages committed so far: each one is one record of its room's stream."""
    versions = {info.stream: info.version for info in await log.streams()}
    return sum(versions.get(room, 0) - baseline[room] for room in rooms)


def start_server(url: str, output: Path, *options: str) -> subprocess.Popen[bytes]:
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.roomkit.ingress_app", "--nats", url, *options],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


async def test_kill_9_mid_stream_loses_nothing_and_records_nothing_twice(
    nats_server: NatsServer, client: NatsClient, log: NatsEventLog, tmp_path: Path
) -> None:
    rooms = [f"room-{i:02d}" for i in range(50)]
    per_room = 20
    async with ingress_app.build_kit(log) as kit:
        await make_rooms(kit, *rooms)
        async with Ingress(kit, nats_server.url):
            pass  # creates the streams and the durable consumer: the backlog waits there
    baseline = {info.stream: info.version for info in await log.streams()}

    # The service: 1,000 messages, each room's in order, rooms interleaved.
    server = start_server(nats_server.url, tmp_path / "serve-1.log")
    processes = [server]
    try:
        for j in range(per_room):
            async with anyio.create_task_group() as tg:
                for room in rooms:
                    message = text("sms", f"{room} #{j}", idempotency_key=f"{room}-{j}")
                    tg.start_soon(lambda m=message, r=room: publish_inbound(client, m, room_id=r))

        async def some_committed() -> bool:
            return await committed(log, rooms, baseline) >= 300

        await eventually(some_committed, timeout=20, what="300 messages committed")
        server.kill()  # SIGKILL: no drain, no nak, acks in flight lost
        server.wait(5)
        at_kill = await committed(log, rooms, baseline)
        assert 300 <= at_kill < len(rooms) * per_room, "the kill was not mid-way"

        restarted = start_server(nats_server.url, tmp_path / "serve-2.log")
        processes.append(restarted)

        async def all_committed() -> bool:
            return await committed(log, rooms, baseline) >= len(rooms) * per_room

        await eventually(all_committed, timeout=20, what="1,000 messages committed")
        restarted.send_signal(signal.SIGTERM)  # a graceful stop
        assert restarted.wait(15) == 0
        assert "roomkit serve: stopped;" in (tmp_path / "serve-2.log").read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert await committed(log, rooms, baseline) == len(rooms) * per_room
    async with ingress_app.build_kit(log) as rebuilt:
        for room in rooms:
            timeline = await rebuilt.get_timeline(room, limit=1000)
            messages = [e for e in timeline if e.type == EventType.MESSAGE]
            assert [e.content.body for e in messages] == [  # type: ignore[union-attr]
                f"{room} #{j}" for j in range(per_room)
            ], f"room {room}"
            assert [e.idempotency_key for e in messages] == [
                f"{room}-{j}" for j in range(per_room)
            ]
            indexes = [e.index for e in timeline]
            assert indexes == sorted(set(indexes))


async def exit_code(server: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """The exit code of a ``start_server`` process, killed if it has not ended in time."""
    try:
        return await anyio.to_thread.run_sync(lambda: server.wait(timeout))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@contextmanager
def serve_process(url: str, output: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``start_server`` process for the block; killed after it if still running (the test
    failed before it ended)."""
    server = start_server(url, output, *options)
    try:
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def says(output: Path, text: str) -> Callable[[], Awaitable[bool]]:
    """Whether a ``start_server`` process has written ``text`` (for ``eventually``)."""

    async def said() -> bool:
        return text in output.read_text()

    return said


@pytest.mark.parametrize("gap", [0.0, 0.01, 0.1])
async def test_a_second_signal_while_serve_stops_stops_it_at_once_without_a_traceback(
    nats_server: NatsServer, tmp_path: Path, gap: float
) -> None:
    # `timeout 30 roomkit serve` signalled, say, sends SIGINT to it twice. The first one's
    # receiver was closed by then: the second raised KeyboardInterrupt wherever the graceful
    # stop was (a traceback, a cancel scope error, exit code 1, or a hang).
    output = tmp_path / "serve.log"
    with serve_process(nats_server.url, output) as server:
        await eventually(says(output, "Ctrl-C stops"), timeout=20, what="serve to consume")
        server.send_signal(signal.SIGINT)
        await anyio.sleep(gap)
        server.send_signal(signal.SIGINT)
        code = await exit_code(server)
    text_out = output.read_text()
    assert "Traceback" not in text_out, text_out
    if code == -signal.SIGINT:  # it came once the stop was over: Python's own way out
        assert "roomkit serve: stopped;" in text_out
    else:  # stopped gracefully before the second one, or at once
        assert code in (0, 130), text_out


async def test_a_signal_after_the_graceful_stop_as_the_process_ends_gives_130_not_a_traceback(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Once the stop is over the signal receiver is closed and Python's own SIGINT handler is
    # back: a Ctrl-C as the run ends (here while asyncio waits for an executor thread) raised
    # KeyboardInterrupt out of anyio.run. The entry point turns it into 130, no traceback.
    output = tmp_path / "serve.log"
    with serve_process(nats_server.url, output, "--lingering") as server:
        await eventually(says(output, "Ctrl-C stops"), timeout=20, what="serve to consume")
        server.send_signal(signal.SIGINT)
        await eventually(says(output, "roomkit serve: stopped;"), timeout=20, what="the stop")
        await anyio.sleep(0.2)  # in the second and a half the process lingers
        assert server.poll() is None, output.read_text()
        server.send_signal(signal.SIGINT)
        code = await exit_code(server)
    text_out = output.read_text()
    assert "Traceback" not in text_out, text_out
    assert code == 130, text_out


_CANCELLED_SCOPE = """
import sys, anyio
from roomkit import RoomKit
from roomkit.ingress.ingress import Ingress
from tests.roomkit.kit_helpers import SimpleChannel

async def main(url):
    with anyio.CancelScope() as scope:
        async with RoomKit() as kit:
            kit.register_channel(SimpleChannel("sms"))
            async with Ingress(kit, url):
                scope.cancel()
                await anyio.sleep(1)
    print("ended")

anyio.run(main, sys.argv[1])
"""


async def test_a_kit_and_its_ingress_in_a_cancelled_scope_end(nats_server: NatsServer) -> None:
    # The kit's runtime task ended with a CancelledError whose context was itself (its exit
    # stack's doing): anyio followed that chain for ever as the task ended, and the event loop
    # hung, spinning. In a process of its own: a hung loop would hang the test run.
    with anyio.fail_after(60):  # a hang guard: the process is killed if it hangs
        ran = await anyio.run_process(
            [sys.executable, "-c", _CANCELLED_SCOPE, nats_server.url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert ran.returncode == 0 and ran.stdout.strip() == b"ended", ran.stderr.decode()


async def test_a_signal_while_serve_loads_its_app_stops_it_without_a_traceback(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Loading the app came before the signals were watched: a Ctrl-C then raised
    # KeyboardInterrupt through the import (a traceback, exit code -2).
    output = tmp_path / "serve.log"
    app = "tests.roomkit.interrupting_app:build_kit"
    code = await exit_code(start_server(nats_server.url, output, "--app", app))
    text_out = output.read_text()
    assert "Traceback" not in text_out, text_out
    assert code == 130, text_out
