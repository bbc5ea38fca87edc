"""Room ownership: each room's commands run in the one process that holds its partition.

The unit tests cover the partition function, the share each process aims at and what travels
between processes; the others run kits on a real nats-server, as processes sharing one
JetStream would (two kits in this process, and a third in a process of its own that is killed).
"""

from __future__ import annotations

import decimal
import enum
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import pydantic_core
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from pydantic import BaseModel, ValidationError

from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from roomkit import (
    ChannelBinding,
    ChannelCategory,
    ChannelNotFoundError,
    ChannelNotRegisteredError,
    ChannelOutput,
    ChannelType,
    EventRefusedError,
    EventType,
    HookExecution,
    HookResult,
    HookTrigger,
    IdentificationStatus,
    Identity,
    IdentityResult,
    InboundMessage,
    InboundResult,
    InvalidRoomIdError,
    KitClosedError,
    Observation,
    Participant,
    Room,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
    RoomNotFoundError,
    RoomStatus,
    StoreUnavailableError,
    Task,
    TextContent,
)
from roomkit.core import _commands
from roomkit.core._runtime import ROOM
from roomkit.identity.base import IdentityResolver
from roomkit.ingress import Ingress, publish_inbound
from roomkit.models.event import EventSource
from roomkit.models.hook import InjectedEvent
from roomkit.ownership import partition_of
from roomkit.ownership._partitions import rebalance
from roomkit.ownership._table import LeaseTable
from roomkit.ownership._wire import WireError, decode, decode_error, encode, encode_error
from roomkit.ownership.nats import NatsOwnership, NatsPlacement
from roomkit.store import InMemoryStore
from tests.eventlog.link import Link
from tests.roomkit.kit_helpers import SimpleChannel, eventually, room_with, stopped, text
from tests.roomkit.test_store_unavailable import FlakyStore

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 8
# Far longer than a loaded machine stalls (1.5 s leases lapsed under a 2 s stall and moved
# rooms in the middle of a test); handovers between live processes are announced, so the tests
# do not wait for renewals. Tests of leases that expire use short ones.
LEASE_TTL = 30.0
SHORT_LEASE_TTL = 1.5  # renewed every 0.5 s: a dead process's rooms move in seconds


# -- partitions and shares ----------------------------------------------------------------------


def test_a_room_s_partition_is_the_same_in_every_process() -> None:
    # CRC-32 of the UTF-8 id: no per-process salt, so every process places a room alike.
    assert partition_of("support-42", 64) == zlib.crc32(b"support-42") % 64
    assert partition_of("alice@example.com", 7) == zlib.crc32(b"alice@example.com") % 7
    found = {partition_of(f"room-{n}", 16) for n in range(1_000)}
    assert found == set(range(16))  # every partition gets rooms
    assert 0 <= partition_of("caf\u00e9 \U0001f600", 5) < 5


def _settle(members: list[str], owners: dict[int, str], partitions: int) -> dict[int, str]:
    """Let every member rebalance in turn until nothing changes, as their ticks would."""
    for _ in range(50):
        changed = False
        for me in members:
            held = {p for p, member in owners.items() if member == me}
            change = rebalance(me, held, owners, set(members), partitions)
            for partition in change.release:
                del owners[partition]
                changed = True
            for partition in change.claim:
                assert partition not in owners  # never one another process holds
                owners[partition] = me
                changed = True
        if not changed:
            return owners
    raise AssertionError("the shares never settled")


@pytest.mark.parametrize(("partitions", "count"), [(64, 1), (64, 2), (64, 3), (8, 5), (3, 5)])
def test_processes_settle_on_even_shares_that_cover_every_partition(
    partitions: int, count: int
) -> None:
    members = [f"m{n}" for n in range(count)]
    owners = _settle(members, {}, partitions)
    assert set(owners) == set(range(partitions))
    assert _shares(owners, members) == _fair(partitions, count)

    # One more process: the others give part of theirs back, and it gets them.
    members.append("late")
    owners = _settle(members, owners, partitions)
    assert set(owners) == set(range(partitions))
    assert _shares(owners, members) == _fair(partitions, len(members))

    # One gone (its leases expired): the others take its partitions up.
    gone = members.pop(0)
    owners = {p: m for p, m in owners.items() if m != gone}
    owners = _settle(members, owners, partitions)
    assert set(owners) == set(range(partitions)) and gone not in owners.values()
    assert _shares(owners, members) == _fair(partitions, len(members))


def _shares(owners: dict[int, str], members: list[str]) -> list[int]:
    return sorted(list(owners.values()).count(m) for m in members)


def _fair(partitions: int, count: int) -> list[int]:
    share, extra = divmod(partitions, count)
    return sorted([share + 1] * extra + [share] * (count - extra))


# -- what travels --------------------------------------------------------------------------------


def _every_command() -> list[object]:
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    room = Room(id="r1", metadata={"tier": "gold", "n": [1, 2.5, None]})
    binding = ChannelBinding(
        room_id="r1", channel_id="sms", channel_type=ChannelType.SMS, metadata={"k": "v"}
    )
    participant = Participant(id="p1", room_id="r1", channel_id="sms", display_name="Ann")
    event = RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms", channel_type=ChannelType.SMS),
        content=TextContent(body="hi"),
        idempotency_key="k1",
    )
    return [
        _commands.CreateRoom(room, (binding,)),
        _commands.UpdateRoomMetadata({"a": {"b": [1, (2, 3)]}, "inf": math.inf}, now),
        _commands.ReplaceRoom(room.model_copy(update={"status": RoomStatus.PAUSED})),
        _commands.PutBinding(binding),
        _commands.RemoveBinding("sms"),
        _commands.PutParticipant(participant),
        _commands.RecordObservation(
            Observation(room_id="r1", channel_id="ai", content="calm", category="sentiment")
        ),
        _commands.ImportEvent(event),
        _commands.CloseRoom(now),
        _commands.CheckTimers(now),
        _commands.AttachChannel(binding, now),
        _commands.DetachChannel("sms", now),
        _commands.UpdateBinding("sms", "muted", {"muted": True}, now),
        _commands.EnsureParticipant(participant, {"display_name": "Ann B"}, "joined", now),
        _commands.ResolveParticipant("p1", Identity(id="i1", display_name="Ann"), "crm", now),
        _commands.RecordInjected(
            [InjectedEvent(event=event, target_channel_ids=["sms"])], root="e0"
        ),
        _commands.SendEvent(
            "sms", TextContent(body="out"), EventType.MESSAGE, 1, None, {}, "all", now, "key-1"
        ),
        _commands.UpdateTask(Task(room_id="r1", title="call back")),
        _commands.MarkRead("sms", None),
        _commands.GetContext(),
    ]


def test_every_room_command_travels_as_it_left() -> None:
    commands = _every_command()
    assert {type(c).__name__ for c in commands} == {
        "CreateRoom", "UpdateRoomMetadata", "ReplaceRoom", "PutBinding", "RemoveBinding",
        "PutParticipant", "RecordObservation", "ImportEvent", "CloseRoom", "CheckTimers",
        "AttachChannel", "DetachChannel", "UpdateBinding", "EnsureParticipant",
        "ResolveParticipant", "RecordInjected", "SendEvent", "UpdateTask", "MarkRead",
        "GetContext",
    }  # fmt: skip
    for command in commands:
        assert decode(encode(command)) == command, command


def test_a_message_s_metadata_reaches_the_owner_as_it_left_or_as_the_log_writes_it() -> None:
    # A model travelled as its JSON dump: the owner's hooks saw a datetime as a str, a tuple
    # as a list; and a Decimal, bytes, a set or a UUID could not travel at all, so the
    # command ran in the caller's process, a second live actor of its room.
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    kept = {"when": when, "pair": (1, 2), "nan": math.nan, "inf": -math.inf, "big": 2**70}
    written = {
        "dec": decimal.Decimal("1.10"),
        "raw": b"ab",
        "set": {3},
        "id": uuid.UUID(int=7),
        "day": when.date(),
        # JSON keys are text: a dict keyed otherwise ran in the caller's process.
        "by_int": {1: "x"},
        "by_pair": {(1, 2): "y"},
    }
    message = InboundMessage(
        channel_id="sms",
        sender_id="u",
        content=TextContent(body="hi"),
        metadata={**kept, **written},
    )
    back = decode(encode({"message": message}))["message"]
    assert isinstance(back, InboundMessage)
    metadata = back.metadata
    assert metadata["when"] == when and metadata["pair"] == (1, 2) and metadata["big"] == 2**70
    assert math.isnan(metadata["nan"]) and metadata["inf"] == -math.inf
    as_logged = pydantic_core.to_jsonable_python(written)
    assert {key: metadata[key] for key in written} == as_logged
    assert as_logged["dec"] == "1.10" and as_logged["set"] == [3]
    assert as_logged["by_int"] == {"1": "x"} and as_logged["by_pair"] == {"1,2": "y"}
    # A model written by an earlier version (its JSON dump) is still read.
    earlier = {
        "$model": "roomkit.models.event:TextContent",
        "value": {"type": "text", "body": "x"},
    }
    assert decode(json.dumps(earlier).encode()) == TextContent(body="x")


def test_only_roomkit_s_own_classes_are_taken_from_another_process() -> None:
    for data in [
        b'{"$model": "builtins:object", "value": {}}',
        b'{"$model": "pathlib:Path", "value": "/"}',
        b'{"$enum": "signal:Signals", "value": 9}',
        b'{"$command": "ProcessInbound", "value": {}}',  # the delivery worker's, not a caller's
        b'{"$command": "RecordOutcome", "value": {}}',
        b'{"a": 1}',
        b"not json",
    ]:
        with pytest.raises(WireError):
            decode(data)
    # What only this process can hold is not sent: the caller runs it here instead.
    with pytest.raises(WireError):
        encode({"callback": print})
    with pytest.raises(WireError):
        encode({"m": {frozenset([1]): "a key JSON cannot write"}})


def test_an_error_comes_back_as_its_own_class() -> None:
    for error in [
        RoomNotFoundError("Room r9 not found"),
        EventRefusedError("too large"),
        InvalidRoomIdError("bad id"),
        ValueError("bad value"),
        TypeError("bad type"),
    ]:
        back = decode_error(encode_error(error), "b")
        assert type(back) is type(error) and str(back) == str(error)
    back = decode_error(encode_error(ZeroDivisionError("oops")), "b")
    assert type(back) is RoomKitError
    assert "process b failed" in str(back) and "ZeroDivisionError: oops" in str(back)
    back = decode_error({"type": "os:system", "message": "rm -rf"}, "b")
    assert type(back) is RoomKitError


def test_ownership_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="partitions"):
        NatsOwnership(partitions=0)
    with pytest.raises(TypeError, match="partitions"):
        NatsOwnership(partitions=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease_ttl"):
        NatsOwnership(lease_ttl=0.1)
    with pytest.raises(ValueError, match="lease_ttl"):
        NatsOwnership(lease_ttl=math.nan)
    with pytest.raises(ValueError, match="forward_timeout"):
        NatsOwnership(forward_timeout=0)
    with pytest.raises(ValueError, match="member"):
        NatsOwnership(member="a.b")
    with pytest.raises(ValueError, match="bucket"):
        NatsOwnership(bucket="a b")
    with pytest.raises(TypeError, match="ownership"):
        RoomKit(ownership="nats://127.0.0.1:4222")  # type: ignore[arg-type]
    assert NatsOwnership().member != NatsOwnership().member  # unique by default


# -- processes on one JetStream -------------------------------------------------------------------


def kit_of(
    log: NatsEventLog,
    url: str,
    member: str,
    ran: list[tuple[str, str]],
    *,
    wait_for_delivery: bool = True,
    forward_timeout: float = 20.0,
    lease_ttl: float = LEASE_TTL,
    store: InMemoryStore | None = None,
    process_timeout: float = 30.0,
) -> RoomKit:
    """A kit as each process of a deployment would make it: same channels, same hooks."""
    kit = RoomKit(
        log=log,
        store=store,
        process_timeout=process_timeout,
        wait_for_delivery=wait_for_delivery,
        ownership=NatsOwnership(
            url,
            member=member,
            partitions=PARTITIONS,
            lease_ttl=lease_ttl,
            forward_timeout=forward_timeout,
        ),
    )
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def note_where_it_ran(event: RoomEvent, context: RoomContext) -> HookResult:
        ran.append((member, event.room_id))
        if isinstance(event.content, TextContent) and event.content.body == "slow":
            await anyio.sleep(3)
        return HookResult.allow()

    return kit


@pytest.mark.nats
async def test_a_caller_whose_store_is_away_is_answered_as_for_its_own_rooms(
    nats_server: NatsServer,
) -> None:
    """Its read model cannot show what the room's owner did (its database away): it waited
    the whole forward_timeout, then was answered as if it could (a message not blocked, a
    command returned). Now as for a room of its own: ``process_timeout`` with the recorded
    event, ``StoreUnavailableError`` for a command."""
    store = FlakyStore()
    settings = {"a": {"store": store, "process_timeout": 0.3, "forward_timeout": 5.0}}
    async with processes(nats_server, "a", "b", settings=settings) as ((a, b), _):
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms")
        store.failures = 1_000_000
        with anyio.fail_after(4):  # short of forward_timeout
            result = await a.process_inbound(text("sms", "hi"), room_id=room_id)
        assert (result.blocked, result.reason) == (True, "process_timeout")
        assert result.event is not None and result.event.room_id == room_id
        with anyio.fail_after(4), pytest.raises(StoreUnavailableError, match="at process b"):
            await a.update_room_metadata(room_id, {"tier": "gold"})
        store.failures = 0

        async def shown() -> bool:
            room = await a.get_room(room_id)
            return room.metadata == {"tier": "gold"}

        await eventually(shown, what="what b recorded, in a's read model once its store is back")
        assert bodies_of(await a.get_timeline(room_id)) == ["hi"]


def placement(kit: RoomKit) -> NatsPlacement:
    found = kit._runtime.placement
    assert isinstance(found, NatsPlacement)
    return found


def settled(kit: RoomKit, share: int) -> bool:
    """Whether ``kit`` holds ``share`` partitions and knows who holds every other one."""
    seen = placement(kit)
    return len(seen.held) == share and len(seen.owners) == PARTITIONS


async def even_shares(*kits: RoomKit) -> None:
    """Return once each of ``kits`` holds its even share and knows who holds the rest."""
    share = PARTITIONS // len(kits)

    async def shared() -> bool:
        return all(settled(kit, share) for kit in kits)

    await eventually(shared, what="each process holds its share")


@asynccontextmanager
async def three_processes(
    server: NatsServer,
) -> AsyncIterator[tuple[RoomKit, RoomKit, RoomKit, list[tuple[str, str]]]]:
    """Kits "a", "b" and "c" (``kit_of``, not started), each on a log of its own, and the
    list of where their hooks ran."""
    ran: list[tuple[str, str]] = []
    async with (
        NatsEventLog(server.url) as log_a,
        NatsEventLog(server.url) as log_b,
        NatsEventLog(server.url) as log_c,
    ):
        a, b, c = (
            kit_of(log, server.url, member, ran)
            for log, member in ((log_a, "a"), (log_b, "b"), (log_c, "c"))
        )
        yield a, b, c, ran


async def all_placed(*kits: RoomKit) -> None:
    """Return once ``kits`` hold every partition between them and each knows who holds
    which (shares of an odd split)."""

    async def placed() -> bool:
        held = [placement(kit).held for kit in kits]
        return sum(map(len, held)) == PARTITIONS and all(
            len(placement(kit).owners) == PARTITIONS and min(map(len, held)) > 0 for kit in kits
        )

    await eventually(placed, what="the partitions placed")


def runs_here(kit: RoomKit, room_id: str) -> bool:
    system = kit._runtime._system
    return system is not None and system.is_active(ROOM, room_id)


@asynccontextmanager
async def processes(
    server: NatsServer,
    *members: str,
    lease_ttl: float = LEASE_TTL,
    settings: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[tuple[list[RoomKit], list[tuple[str, str]]]]:
    """Kits named ``members`` (with ``kit_of``'s ``settings`` of each, by name), started,
    once each holds its share of the partitions. A test may close them in the block."""
    ran: list[tuple[str, str]] = []
    given = settings or {}
    async with NatsEventLog(server.url) as log_a, NatsEventLog(server.url) as log_b:
        logs = [log_a, log_b]
        kits = [
            kit_of(logs[n], server.url, m, ran, lease_ttl=lease_ttl, **given.get(m, {}))
            for n, m in enumerate(members)
        ]
        async with kits[0], kits[1]:
            await even_shares(*kits)
            yield kits, ran


@asynccontextmanager
async def b_to_close(a: RoomKit, b: RoomKit) -> AsyncIterator[None]:
    """``a`` and ``b`` started and holding their shares; the test closes ``b`` itself (its
    exit then only finishes what the close left)."""
    async with a:
        await b.__aenter__()
        try:
            await even_shares(a, b)
            yield
        finally:
            await b.__aexit__(None, None, None)


@asynccontextmanager
async def slow_to_b(a: RoomKit, b: RoomKit) -> AsyncIterator[tuple[str, list[InboundResult]]]:
    """``a`` sends "slow" to a room ``b`` holds, in a task the block ends with: the room,
    and the message's answer once the block ended."""
    room_id = rooms_of(b, 1)[0]
    await room_with(a, room_id, "sms")
    answers: list[InboundResult] = []

    async def send_slow() -> None:
        answers.append(await a.process_inbound(text("sms", "slow"), room_id=room_id))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send_slow)
        yield room_id, answers


def bodies_of(timeline: list[RoomEvent]) -> list[str]:
    """The messages' texts in ``timeline``."""
    return [e.content.body for e in timeline if e.type == EventType.MESSAGE]  # type: ignore[union-attr]


def rooms_of(kit: RoomKit, count: int) -> list[str]:
    """``count`` room ids in partitions ``kit`` holds."""
    held = placement(kit).held
    rooms = [f"room-{n}" for n in range(1_000) if partition_of(f"room-{n}", PARTITIONS) in held]
    return rooms[:count]


@pytest.mark.nats
async def test_each_room_s_commands_run_in_the_process_that_holds_it(
    nats_server: NatsServer,
) -> None:
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        assert placement(a).held.isdisjoint(placement(b).held)
        for room_id in rooms_of(b, 3):
            # Everything below is asked of a; b holds the room.
            assert placement(a).owner_of(room_id) == "b"
            room = await a.create_room(room_id=room_id, metadata={"from": "a"})
            assert room.id == room_id
            binding = await a.attach_channel(room_id, "sms")
            assert binding.channel_id == "sms"
            await a.attach_channel(room_id, "ws", category=ChannelCategory.TRANSPORT)
            result = await a.process_inbound(text("sms", "hello", idempotency_key=room_id))
            assert result.event is not None and result.event.room_id == room_id
            # a's own read model shows what b did once a's call returns.
            assert [e.id for e in await a.get_timeline(room_id)][-1] == result.event.id
            again = await a.process_inbound(text("sms", "hello", idempotency_key=room_id))
            assert again.blocked and again.reason == "duplicate"
            muted = await a.mute(room_id, "ws")
            assert muted.muted and (await a.get_binding(room_id, "ws")).muted
            sent = await a.send_event(room_id, "sms", TextContent(body="from sms"))
            assert sent.room_id == room_id and sent.index > result.event.index
            updated = await a.update_room_metadata(room_id, {"step": 2})
            assert updated.metadata == {"from": "a", "step": 2}
            await a.mark_read(room_id, "sms", sent.id)
            assert await a.detach_channel(room_id, "ws") is True
            closed = await a.close_room(room_id)
            assert closed.status == RoomStatus.CLOSED
            assert (await a.get_room(room_id)).status == RoomStatus.CLOSED

            assert runs_here(b, room_id) and not runs_here(a, room_id)
        assert ran and {member for member, _ in ran} == {"b"}  # the hooks ran at the owner

        # And the other way round: b asks, a holds.
        ran.clear()
        for room_id in rooms_of(a, 2):
            await room_with(b, room_id, "sms")
            await b.process_inbound(text("sms", "hi"), room_id=room_id)
            assert runs_here(a, room_id) and not runs_here(b, room_id)
        assert ran and {member for member, _ in ran} == {"a"}


@pytest.mark.nats
def raw_request(url: str, subject: bytes, reply: bytes) -> None:
    """Publish a request as a client that is not nats-py may: any bytes as its reply subject."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.recv(65536)  # the server's INFO
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false}\r\n'
            + b"PUB %s %s 2\r\n{}\r\nPING\r\n" % (subject, reply)
        )
        answer = b""
        while b"PONG" not in answer:
            answer += sock.recv(65536)


async def test_a_request_with_a_reply_subject_that_is_not_utf_8_is_answered_to_no_one(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Publishing the answer raised UnicodeEncodeError in the answering task: lost as "Task
    # exception was never retrieved", with its traceback.
    async with processes(nats_server, "a", "b") as ((a, _), _):
        await anyio.to_thread.run_sync(
            raw_request, nats_server.url, b"roomkit.owner.a", b"_INBOX.x\xff"
        )

        async def said() -> bool:
            return "the answer to a command was lost" in caplog.text

        await eventually(said, what="the lost answer logged")
        await a.create_room(room_id="after")  # and the process goes on


async def test_what_a_command_raised_at_the_owner_reaches_its_caller(
    nats_server: NatsServer,
) -> None:
    async with processes(nats_server, "a", "b") as ((a, b), _):
        room_id = rooms_of(b, 1)[0]
        with pytest.raises(RoomNotFoundError, match=room_id):
            await a.attach_channel(room_id, "sms")
        with pytest.raises(RoomNotFoundError):
            await a.update_room_metadata(room_id, {"x": 1})
        await a.create_room(room_id=room_id)
        with pytest.raises(ChannelNotFoundError):
            await a.mute(room_id, "ws")
        # The owner's slow hook outlasts the caller's forward_timeout (0.5 s): the caller is
        # told the room did not answer, as process_inbound says of any timeout.
        await a.attach_channel(room_id, "sms")
        result = await a.process_inbound(text("sms", "fast"), room_id=room_id)
        assert not result.blocked
        placement(a)._owner.forward_timeout = 0.5
        late = await a.process_inbound(text("sms", "slow"), room_id=room_id)
        assert late.blocked and late.reason == "process_timeout"


@asynccontextmanager
async def jetstream_of(server: NatsServer) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on ``server``, its connection closed after."""
    nc = await nats.connect(server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


@pytest.mark.nats
async def test_a_new_lease_ttl_is_taken_once_no_process_uses_the_old_one(
    nats_server: NatsServer,
) -> None:
    # The bucket kept the ttl it was made with: a fleet started again with a new lease_ttl
    # was refused for good, told to use the ttl of processes that were gone.
    async with jetstream_of(nats_server) as js:
        old = LeaseTable(js, "leases", 6.0, "a")
        await old.open()
        await old.heartbeat()
        with pytest.raises(ValueError, match=r"6.0 s, not 3.0 s, and 1 process\(es\) use it"):
            await LeaseTable(js, "leases", 3.0, "b").open()
        await old.leave()
        new = LeaseTable(js, "leases", 3.0, "b")
        await new.open()
        await new.heartbeat()
        assert (await js.stream_info("KV_leases")).config.max_age == 3.0
        assert (await new.read(5)).members == {"b"}


async def left_by_a_stopped_fleet(js: JetStreamContext, bucket: str, ttl: float) -> None:
    """The lease bucket ``bucket`` as a fleet that used ``ttl`` left it: no live process."""
    config = KeyValueConfig(bucket=bucket, history=1, ttl=ttl, storage=StorageType.MEMORY)
    await js.create_key_value(config)


async def bucket_ttl(js: JetStreamContext, bucket: str = "roomkit_owners") -> float | None:
    return (await js.stream_info(f"KV_{bucket}")).config.max_age


@pytest.mark.nats
@pytest.mark.parametrize("changed_last", ["as the first changes it", "once the first opened"])
async def test_processes_started_together_with_other_lease_ttls_never_both_take_the_bucket(
    nats_server: NatsServer, changed_last: str
) -> None:
    # Two processes started together with different lease_ttl on a bucket no live process
    # used: each found nobody, each took the bucket to its own ttl, and both went on. The
    # leases of the one whose ttl lost (12 s, renewed every 4) lapsed after 2 s, and the other
    # took its rooms while it still ran them. Now one of them is refused and the bucket keeps
    # the other's ttl (the second changes it "as the first changes it": before the first
    # says it is alive; "once the first opened": after the first checked the bucket).
    async with jetstream_of(nats_server) as js_a, jetstream_of(nats_server) as js_b:
        await left_by_a_stopped_fleet(js_a, "leases", 6.0)
        a = LeaseTable(js_a, "leases", 12.0, "a")
        b = LeaseTable(js_b, "leases", 2.0, "b")
        first, second = (js_a, b) if changed_last == "as the first changes it" else (js_b, a)
        update = first.update_stream

        async def the_other_opens_meanwhile(*args: Any, **kwargs: Any) -> Any:
            first.update_stream = update  # type: ignore[method-assign]
            if changed_last == "as the first changes it":
                info = await update(*args, **kwargs)
                await second.open()
                return info
            await second.open()
            return await update(*args, **kwargs)

        first.update_stream = the_other_opens_meanwhile  # type: ignore[method-assign]
        if changed_last == "as the first changes it":
            with pytest.raises(ValueError, match=r"lets leases live 2.0 s, not 12.0 s"):
                await a.open()
            kept, alive = 2.0, {"b"}
        else:
            with pytest.raises(ValueError, match=r"use lease_ttl \[12.0\] s, not 2.0 s"):
                await b.open()
            kept, alive = 12.0, {"a"}
        assert await bucket_ttl(js_a, "leases") == kept
        assert (await a.read(5)).members == alive  # the one refused does not say it is alive


@pytest.mark.nats
async def test_processes_started_together_with_one_new_lease_ttl_all_take_the_bucket(
    nats_server: NatsServer,
) -> None:
    # A fleet restarted with a new lease_ttl: b read the bucket's old ttl, a (of b's ttl)
    # took it to theirs and said it was alive meanwhile, and b, finding a live process, was
    # refused (LeaseTtlError) though a used its own ttl.
    async with jetstream_of(nats_server) as js_a, jetstream_of(nats_server) as js_b:
        await left_by_a_stopped_fleet(js_a, "leases", 6.0)
        a = LeaseTable(js_a, "leases", 3.0, "a")
        b = LeaseTable(js_b, "leases", 3.0, "b")
        read = b.read

        async def a_opens_meanwhile(timeout: float) -> Any:
            b.read = read  # type: ignore[method-assign]
            await a.open()
            return await read(timeout)

        b.read = a_opens_meanwhile  # type: ignore[method-assign]
        await b.open()
        assert await bucket_ttl(js_a, "leases") == 3.0
        assert (await a.read(5)).members == {"a", "b"}


@pytest.mark.nats
async def test_a_read_of_the_lease_table_sees_every_entry_and_leaves_no_consumer(
    nats_server: NatsServer,
) -> None:
    # nats-py's key watch, read before, could end its snapshot before its entries (a full
    # table read as empty: the process took its peers for dead), and left a consumer on the
    # server for five minutes after each read.
    async with jetstream_of(nats_server) as js:
        empty = LeaseTable(js, "empty", LEASE_TTL, "a")
        await empty.open()  # which says "a" is alive
        await empty.leave()
        view = await empty.read(5)
        assert (view.owners, view.members) == ({}, set())
        tables = [LeaseTable(js, "leases", LEASE_TTL, member) for member in ("a", "b")]
        for table in tables:
            await table.open()
            await table.heartbeat()
        revisions = [await tables[p % 2].claim(p) for p in range(PARTITIONS)]
        last = PARTITIONS - 1
        await tables[last % 2].release(last, revisions[last] or 0)  # a deletion is no lease
        for _ in range(50):
            view = await tables[0].read(5)
            assert view.owners == {p: "ab"[p % 2] for p in range(last)}
            assert view.members == {"a", "b"}
        for bucket in ("empty", "leases"):
            assert (await js.stream_info(f"KV_{bucket}")).state.consumer_count == 0


@pytest.mark.nats
async def test_a_lease_whose_deletion_marker_expires_as_it_is_claimed_is_claimed(
    nats_server: NatsServer,
) -> None:
    # nats-py's create() writes "if absent", finds the key there (the marker of a lease given
    # back), reads it and finds nothing: the marker expired in between (the bucket keeps
    # entries lease_ttl). Its KeyNotFoundError failed the start of a process joining one that
    # had left, as the log being away.
    async with jetstream_of(nats_server) as js:
        table = LeaseTable(js, "leases", LEASE_TTL, "a")
        await table.open()
        revision = await table.claim(0)
        assert revision is not None
        await table.release(0, revision)  # a deletion marker is left
        kv = table._open_kv()
        read = kv._get

        async def as_the_marker_expires(key: str, *args: Any, **kwargs: Any) -> Any:
            # What its expiry does, at the worst moment: no message of the key is left.
            await js.purge_stream("KV_leases", subject=f"$KV.leases.{key}")
            return await read(key, *args, **kwargs)

        kv._get = as_the_marker_expires  # type: ignore[method-assign]
        assert await table.claim(0) is not None
        assert (await table.read(5)).owners == {0: "a"}


@pytest.mark.nats
async def test_a_read_of_the_lease_table_cut_short_fails_rather_than_reading_nothing(
    nats_server: NatsServer,
) -> None:
    # The server went silent after the read's consumer was made: the read returned what it
    # had, nothing, and its process took its peers for dead (it claimed and ran their rooms).
    assert nats_server.port is not None
    async with Link(nats_server.port) as link:
        nc = await nats.connect(link.url)
        try:
            js = nc.jetstream()
            table = LeaseTable(js, "leases", LEASE_TTL, "a")
            await table.open()
            await table.heartbeat()
            await table.claim(0)
            made = js.add_consumer

            async def then_silence(*args: Any, **kwargs: Any) -> Any:
                info = await made(*args, **kwargs)
                link.holding = True  # nothing the server sends from now on arrives
                return info

            js.add_consumer = then_silence  # type: ignore[method-assign]
            with pytest.raises(TimeoutError):
                await table.read(1.0)
        finally:
            link.cut()
            await nc.close()


@pytest.mark.nats
async def test_an_owner_whose_connection_blips_still_answers_the_commands_it_took(
    nats_server: NatsServer,
) -> None:
    # A command sent while the owner's connection was down got no responders, and that
    # ended the waits of the other commands in flight to it, though it had taken them and
    # answered them once back: the one without a key was answered process_timeout (and
    # recorded there), the keyed one was decided again here.
    assert nats_server.port is not None
    ran: list[tuple[str, str]] = []
    async with (
        Link(nats_server.port) as link,
        NatsEventLog(nats_server.url) as log_a,
        NatsEventLog(nats_server.url) as log_b,
    ):
        a = kit_of(log_a, nats_server.url, "a", ran)
        b = kit_of(log_b, link.url, "b", ran)  # its ownership connection goes through link
        async with a, b:
            await even_shares(a, b)
            keyed, plain, third = rooms_of(b, 3)
            for room_id in (keyed, plain, third):
                await room_with(a, room_id, "sms")
            ran.clear()
            results: dict[str, InboundResult] = {}

            async def send(room_id: str, key: str | None) -> None:
                message = text("sms", "slow", sender=room_id, idempotency_key=key)
                results[room_id] = await a.process_inbound(message, room_id=room_id)

            async def taken() -> bool:  # b runs both (its hook takes 3 s)
                return {("b", keyed), ("b", plain)} <= set(ran)

            with anyio.fail_after(25):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send, keyed, "k1")
                    tg.start_soon(send, plain, None)
                    await eventually(taken, what="b takes both up")
                    link.cut()  # b reconnects after its reconnect wait
                    tg.start_soon(send, third, "k3")  # no responders, likely
        assert results[plain].reason is None and results[plain].event is not None
        assert results[keyed].reason is None
        assert ("a", keyed) not in ran and ("a", plain) not in ran


@pytest.mark.nats
async def test_processes_that_split_the_rooms_otherwise_are_reported(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # 64 partitions here, 16 there: a room's partition differs between them and its commands
    # ran in both, and nothing said so.
    url = nats_server.url

    def kit(log: NatsEventLog, member: str, partitions: int) -> RoomKit:
        ownership = NatsOwnership(url, member=member, partitions=partitions, lease_ttl=LEASE_TTL)
        return RoomKit(log=log, ownership=ownership)

    async with (
        NatsEventLog(url) as log_a,
        NatsEventLog(url) as log_b,
        kit(log_a, "a", 64),
        kit(log_b, "b", 16),
    ):

        async def reported() -> bool:
            return (
                "process b splits the rooms into 16 partitions, this one (a) into 64"
                in caplog.text
                and "process a splits the rooms into 64 partitions, this one (b) into 16"
                in caplog.text
            )

        await eventually(reported, what="each reports the other")


@pytest.mark.nats
async def test_a_process_gives_its_rooms_back_while_the_bucket_lets_leases_live_another_ttl(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A process checked the bucket's ttl only as it started: one started with another
    # lease_ttl at the same time took the bucket to its own, and the first renewed its leases
    # at its own pace, kept them (lapsed under a shorter ttl, taken by the other meanwhile)
    # and ran their rooms. Now it gives them back at its next renewal, and takes the bucket
    # back to its own ttl once no process uses the other.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL) as a,
        jetstream_of(nats_server) as js,
    ):
        await takes_all_up(a)
        # What the other's open did, the other alive (it says so in the bucket).
        other = LeaseTable(js, "roomkit_owners", 10.0, "b")
        other._kv = await js.key_value("roomkit_owners")
        config = (await js.stream_info("KV_roomkit_owners")).config
        config.max_age = 10.0
        await js.update_stream(config)
        await other.heartbeat()

        async def given_back() -> bool:
            return not placement(a).held and "(lease_ttl 1.5 s) takes no rooms" in caplog.text

        await eventually(given_back, what="a gives its leases back")
        assert await bucket_ttl(js) == 10.0
        await other.leave()
        await takes_all_up(a)
        assert await bucket_ttl(js) == SHORT_LEASE_TTL
        assert "lets leases live 1.5 s again: a takes rooms again" in caplog.text


@pytest.mark.nats
async def test_a_process_back_from_an_outage_refused_by_another_lease_ttl_waits_for_it(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Cut off longer than its lease_ttl, a process found, back, the bucket taken to another
    # ttl by a process started meanwhile: its open raised ValueError in the lease loop, which
    # only expected a failure of the table, and the kit's runtime ended with it.
    ran: list[tuple[str, str]] = []
    assert nats_server.port is not None
    async with (
        Link(nats_server.port) as link,
        NatsEventLog(nats_server.url) as log,
        kit_of(log, link.url, "a", ran, lease_ttl=SHORT_LEASE_TTL) as a,
        jetstream_of(nats_server) as js,
    ):
        await takes_all_up(a)
        link.holding = True  # a's requests go unanswered from now on
        watcher = LeaseTable(js, "roomkit_owners", SHORT_LEASE_TTL, "watcher")

        async def a_gone() -> bool:
            try:
                return not (await watcher.read(1)).members
            except TimeoutError:  # a's entry expired as it was read: counted, never sent
                return False

        await eventually(a_gone, what="a's heartbeat lapses")
        other = LeaseTable(js, "roomkit_owners", 10.0, "b")
        await other.open()  # nobody alive: it takes the bucket to its ttl
        await other.heartbeat()
        link.cut()  # a reconnects

        async def refused() -> bool:
            return "(lease_ttl 1.5 s) takes no rooms" in caplog.text

        await eventually(refused, timeout=30, what="a refused by b's ttl")
        assert not placement(a).held
        await other.leave()
        await takes_all_up(a)  # its lease loop went on
        assert await bucket_ttl(js) == SHORT_LEASE_TTL


@pytest.mark.nats
async def test_processes_that_join_and_leave_share_the_partitions_at_once(
    nats_server: NatsServer,
) -> None:
    # Leases renewed every 200 s: the others learn of a join, a claim or a leave from its
    # announcement, not from their next renewal (which would take minutes here).
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with NatsEventLog(url) as log_a, NatsEventLog(url) as log_b:
        a = kit_of(log_a, url, "a", ran, lease_ttl=600)
        b = kit_of(log_b, url, "b", ran, lease_ttl=600)
        async with a:
            assert len(placement(a).held) == PARTITIONS
            async with b:
                await even_shares(a, b)
            assert placement(b).held == frozenset()

            async def all_to_a() -> bool:
                return len(placement(a).held) == PARTITIONS and placement(a).members == {"a"}

            await eventually(all_to_a, what="a takes b's partitions up")


@pytest.mark.nats
async def test_a_process_that_stops_hands_its_rooms_over(nats_server: NatsServer) -> None:
    ran: list[tuple[str, str]] = []
    async with NatsEventLog(nats_server.url) as log_a, NatsEventLog(nats_server.url) as log_b:
        a = kit_of(log_a, nats_server.url, "a", ran)
        b = kit_of(log_b, nats_server.url, "b", ran)
        async with a:
            async with b:
                await even_shares(a, b)
                rooms = rooms_of(b, 3)
                for room_id in rooms:
                    await room_with(a, room_id, "sms")
                    await a.process_inbound(text("sms", "before", sender=room_id), room_id=room_id)
                    assert runs_here(b, room_id)
            # b closed: it answered what it had taken and gave its leases back.

            async def all_to_a() -> bool:
                return len(placement(a).held) == PARTITIONS

            await eventually(all_to_a, timeout=5, what="a takes b's partitions up")
            ran.clear()
            for room_id in rooms:
                result = await a.process_inbound(
                    text("sms", "after", sender=room_id), room_id=room_id
                )
                assert result.event is not None and not result.blocked
                assert runs_here(a, room_id)
                bodies = [e.content.body for e in await a.get_timeline(room_id)]  # type: ignore[union-attr]
                assert bodies[-2:] == ["before", "after"]
            assert {member for member, _ in ran} == {"a"}


class GatedChannel(SimpleChannel):
    """Delivers once ``gate`` is set."""

    def __init__(self, channel_id: str, gate: anyio.Event) -> None:
        super().__init__(channel_id)
        self.gate = gate

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        await self.gate.wait()
        return await super().deliver(event, binding, context)


@pytest.mark.nats
async def test_a_caller_that_does_not_wait_for_deliveries_is_answered_at_the_commit(
    nats_server: NatsServer,
) -> None:
    # a returns from its commands once they are committed (wait_for_delivery=False, or a
    # delivery worker's own job): so does b when it runs them for a. Else a waited for a
    # delivery it never waits for, here until its forward_timeout (20 s): RoomTimeoutError.
    gate = anyio.Event()
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with NatsEventLog(url) as log_a, NatsEventLog(url) as log_b:
        a = kit_of(log_a, url, "a", ran, wait_for_delivery=False)
        b = kit_of(log_b, url, "b", ran)
        channels = {kit: GatedChannel("gated", gate) for kit in (a, b)}
        for kit, channel in channels.items():
            kit.register_channel(channel)
        async with a, b:
            await even_shares(a, b)
            room_id = rooms_of(b, 1)[0]
            await room_with(a, room_id, "sms")
            await a.attach_channel(room_id, "gated")
            with anyio.fail_after(60):  # a guard against a hang, not a timing
                sent = await a.send_event(room_id, "sms", TextContent(body="out"))
                result = await a.process_inbound(text("sms", "in"), room_id=room_id)
            assert result.event is not None
            assert [e.id for e in await a.get_timeline(room_id)][-2:] == [
                sent.id,
                result.event.id,
            ]
            assert channels[b].delivered == []  # still at the gate
            gate.set()

            async def delivered() -> bool:
                return len(channels[b].delivered) == 2

            await eventually(delivered, what="b delivers both once the gate opens")
            assert channels[a].delivered == []


_VICTIM = """
import anyio, sys
from eventlog.nats import NatsEventLog
from roomkit import RoomKit
from roomkit.ownership.nats import NatsOwnership
from tests.roomkit.kit_helpers import Retried, SimpleChannel

async def main(url: str) -> None:
    async with NatsEventLog(url) as log:
        kit = RoomKit(
            log=log,
            ownership=NatsOwnership(url, member="{member}", partitions={partitions},
                                    lease_ttl={lease_ttl}),
        )
        kit.register_channel(SimpleChannel("sms"))
        {more_channels}
        async with kit:
            placement = kit._runtime.placement
            while len(placement.held) < {share}:
                await anyio.sleep(0.05)
            print("ready", flush=True)
            await anyio.sleep_forever()

anyio.run(main, sys.argv[1])
"""


@asynccontextmanager
async def victim(
    url: str, directory: Path, member: str, lease_ttl: float, *, stuck_ws: bool = False
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A process named ``member`` holding its share of the partitions, killed with SIGKILL
    as the block ends; ``stuck_ws``: with a "ws" channel whose first delivery never ends."""
    script = directory / f"{member}.py"
    script.write_text(
        textwrap.dedent(_VICTIM).format(
            member=member,
            partitions=PARTITIONS,
            lease_ttl=lease_ttl,
            share=PARTITIONS // 2,
            more_channels='kit.register_channel(Retried("ws"))' if stuck_ws else "",
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script), url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = await anyio.to_thread.run_sync(process.stdout.readline)
        assert line.strip() == b"ready"
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.nats
async def test_a_killed_process_s_rooms_go_to_the_others_with_nothing_committed_lost(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    ran: list[tuple[str, str]] = []
    share = PARTITIONS // 2
    url = nats_server.url
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL) as a,
    ):
        async with victim(url, tmp_path, "victim", SHORT_LEASE_TTL):

            async def shared() -> bool:
                return settled(a, share) and "victim" in placement(a).members

            await eventually(shared, what="the victim holds its share")
            rooms = [
                r
                for r in (f"room-{n}" for n in range(200))
                if placement(a).owner_of(r) == "victim"
            ][:3]
            for room_id in rooms:
                await room_with(a, room_id, "sms")
                result = await a.process_inbound(
                    text("sms", "to the victim", sender=room_id), room_id=room_id
                )
                assert result.event is not None
            assert not ran  # the victim ran them

        # Until its leases expire, the victim's rooms run where they are asked, once nobody
        # listens on its subject (a request the server still passed on to the dead process
        # would be a timeout: it might have been applied, for all the caller knows).
        async def nobody_listens() -> bool:
            seen = placement(a)
            try:
                await seen._nc.request(seen._owner.subject("victim"), b"", timeout=0.2)
            except nats.errors.NoRespondersError:
                return True
            except nats.errors.TimeoutError:
                return False
            raise AssertionError("the victim answered")

        await eventually(nobody_listens, what="the server noticed the victim is gone")
        first = rooms[0]
        now = await a.process_inbound(text("sms", "right away", sender=first), room_id=first)
        assert now.event is not None and not now.blocked
        assert ("a", first) in ran

        async def all_to_a() -> bool:
            return len(placement(a).held) == PARTITIONS

        await eventually(all_to_a, timeout=SHORT_LEASE_TTL * 4, what="a takes the victim's up")
        assert placement(a).members == {"a"}
        for room_id in rooms:
            await a.process_inbound(text("sms", "after", sender=room_id), room_id=room_id)
            bodies = bodies_of(await a.get_timeline(room_id))
            expected = ["to the victim", "right away", "after"] if room_id == first else None
            assert bodies == (expected or ["to the victim", "after"])


async def a_room_of(a: RoomKit, member: str) -> str:
    """Once ``member`` holds its share of the partitions as ``a`` sees them, a room it holds."""

    async def shared() -> bool:
        return settled(a, PARTITIONS // 2) and member in placement(a).members

    await eventually(shared, what=f"{member} holds its share")
    return next(r for r in (f"room-{n}" for n in range(200)) if placement(a).owner_of(r) == member)


async def takes_all_up(a: RoomKit) -> None:
    """Wait until ``a`` holds every partition (the other process's leases lapsed)."""

    async def all_to_a() -> bool:
        return len(placement(a).held) == PARTITIONS

    await eventually(all_to_a, timeout=30, what="a takes the frozen process's rooms up")


@pytest.mark.nats
async def test_a_process_frozen_past_its_leases_does_not_act_on_them_as_it_wakes(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # A command sent to it while it was frozen (SIGSTOP, a stalled VM) waited on its
    # connection; as it woke it ran it, before its lease loop saw the leases gone, in a room
    # another process held and had decided meanwhile.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL, forward_timeout=60.0) as a,
    ):
        async with victim(url, tmp_path, "victim", SHORT_LEASE_TTL) as frozen:
            room_id = await a_room_of(a, "victim")
            await room_with(a, room_id, "sms")
            frozen.send_signal(signal.SIGSTOP)
            try:
                answers: list[InboundResult] = []
                # Ends once a sees the frozen process's leases lapse (see the test below),
                # long before its forward_timeout, and in doubt: it has no idempotency key.
                with anyio.fail_after(20):
                    answers.append(
                        await a.process_inbound(text("sms", "sent first"), room_id=room_id)
                    )
                await takes_all_up(a)
                await a.process_inbound(text("sms", "sent second"), room_id=room_id)
                await anyio.sleep(SHORT_LEASE_TTL)  # frozen well past its leases
                frozen.send_signal(signal.SIGCONT)

                async def back() -> bool:  # woken, and past the command it had not taken
                    return "victim" in placement(a).members

                await eventually(back, what="the frozen process back in the table")
                await anyio.sleep(0.5)
            finally:
                frozen.send_signal(signal.SIGCONT)
            assert (answers[0].reason, answers[0].event) == ("process_timeout", None)
        # The one sent first was not run by the woken process (it no longer held the room).
        assert ran.count(("a", room_id)) == 1
        assert bodies_of(await a.get_timeline(room_id)) == ["sent second"]


@pytest.mark.nats
@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_a_command_whose_owner_dies_before_answering_ends_once_its_leases_lapse(
    nats_server: NatsServer, tmp_path: Path, how: str
) -> None:
    # Sent to the room's owner, which then died (SIGKILL) or froze (SIGSTOP), a command was
    # waited for the whole forward_timeout (60 s by default), while another process took the
    # room up within a lease_ttl and its next message was recorded at once: the callers got
    # process_timeout (RoomTimeoutError) a minute later, with nothing recorded. Now those
    # that are safe to send again go to the room's new holder, and the others end in doubt
    # as soon as the owner is seen gone.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL, forward_timeout=60.0) as a,
    ):
        async with victim(url, tmp_path, "victim", SHORT_LEASE_TTL) as owner:
            room_id = await a_room_of(a, "victim")
            await room_with(a, room_id, "sms")
            owner.send_signal(signal.SIGSTOP)  # it takes nothing from now on
            inbound: dict[str, InboundResult] = {}
            sent: list[RoomEvent] = []
            refused: list[BaseException] = []
            try:
                with anyio.fail_after(20):  # well short of forward_timeout
                    async with anyio.create_task_group() as tasks:

                        async def send(body: str, key: str | None) -> None:
                            message = text("sms", body, idempotency_key=key)
                            inbound[body] = await a.process_inbound(message, room_id=room_id)

                        async def send_event() -> None:
                            content = TextContent(body="sent event")
                            event = await a.send_event(
                                room_id, "sms", content, idempotency_key="event-1"
                            )
                            sent.append(event)

                        async def update() -> None:
                            try:
                                await a.update_room_metadata(room_id, {"step": 1})
                            except RoomKitError as exc:
                                refused.append(exc)

                        tasks.start_soon(send, "with a key", "key-1")
                        tasks.start_soon(send, "without a key", None)
                        tasks.start_soon(send_event)
                        tasks.start_soon(update)

                        async def all_sent() -> bool:  # all four on their way to the owner
                            return placement(a)._sending == 4

                        await eventually(all_sent, what="the commands sent to the owner")
                        if how == "killed":
                            owner.send_signal(signal.SIGKILL)
            finally:
                owner.send_signal(signal.SIGCONT)
        assert placement(a).owner_of(room_id) is None  # a took the room up
        keyed, unkeyed = inbound["with a key"], inbound["without a key"]
        assert keyed.reason is None and keyed.event is not None
        assert (unkeyed.reason, unkeyed.event) == ("process_timeout", None)
        assert [e.content.body for e in sent] == ["sent event"]  # type: ignore[union-attr]
        assert len(refused) == 1 and "may have been applied" in str(refused[0]), refused
        await a.process_inbound(text("sms", "next"), room_id=room_id)
        timeline = await a.get_timeline(room_id)
        assert sorted(bodies_of(timeline)[:2]) == ["sent event", "with a key"]
        assert bodies_of(timeline)[2:] == ["next"]
        assert (await a.get_room(room_id)).metadata == {}


@pytest.mark.nats
async def test_a_message_its_dead_owner_recorded_is_answered_as_a_duplicate_by_the_next(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Recorded by its owner, which died as it delivered it: its caller waited the whole
    # forward_timeout, then got process_timeout. Sent on to the room's next holder once the
    # dead owner's leases lapse, it is answered as what its dedup finds: the recorded event.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL, forward_timeout=60.0) as a,
    ):
        async with victim(url, tmp_path, "victim", SHORT_LEASE_TTL, stuck_ws=True) as owner:
            room_id = await a_room_of(a, "victim")
            await room_with(a, room_id, "sms", "ws")
            answers: list[InboundResult] = []
            with anyio.fail_after(20):  # well short of forward_timeout
                async with anyio.create_task_group() as tasks:

                    async def send() -> None:
                        message = text("sms", "recorded", idempotency_key="key-1")
                        answers.append(await a.process_inbound(message, room_id=room_id))

                    tasks.start_soon(send)

                    async def recorded() -> bool:  # and its delivery to "ws" stuck
                        return bodies_of(await a.get_timeline(room_id)) == ["recorded"]

                    await eventually(recorded, what="the owner records the message")
                    owner.send_signal(signal.SIGKILL)
        [answer] = answers
        assert (answer.blocked, answer.reason) == (True, "duplicate")
        [event] = [e for e in await a.get_timeline(room_id) if e.type == EventType.MESSAGE]
        assert answer.event is not None and answer.event.id == event.id
        assert not ran  # decided once, by the owner that died


@pytest.mark.nats
async def test_commands_two_processes_sent_a_closing_one_run_where_its_room_goes(
    nats_server: NatsServer,
) -> None:
    # Told "leaving", each sender waited for the room's leases; once given back, a sender that
    # was not the one to take the room up found it held by nobody and ran its command itself,
    # while the other ran its own at the process that did: the room decided by two at once.
    async with three_processes(nats_server) as (a, b, c, ran):
        async with b, c:
            await a.__aenter__()
            try:
                await all_placed(a, b, c)
                room_id = rooms_of(a, 1)[0]
                await room_with(a, room_id, "sms")
                for kit in (b, c):  # a's partitions free for a while once it gave them back
                    table = placement(kit)._table
                    claim = table.claim

                    async def slow_claim(partition: int, claim: Any = claim) -> int | None:
                        await anyio.sleep(0.3)
                        return await claim(partition)  # type: ignore[no-any-return]

                    table.claim = slow_claim  # type: ignore[method-assign]
                answers: list[InboundResult] = []
                async with sending(a, "slow", room_id) as first:
                    await until_ran(ran, "a", room_id)
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(a.close)
                        await until_leaving(a)
                        for kit, body in ((b, "from b"), (c, "from c")):

                            async def send(kit: RoomKit = kit, body: str = body) -> None:
                                answers.append(
                                    await kit.process_inbound(text("sms", body), room_id=room_id)
                                )

                            tasks.start_soon(send)
            finally:
                await a.__aexit__(None, None, None)
        assert [r.reason for r in (*first, *answers)] == [None, None, None]
        decided = [who for who, room in ran if room == room_id]
        assert len(decided) == 3, decided  # each once
        holder = decided[1]
        assert decided == ["a", holder, holder], decided


@pytest.mark.nats
async def test_what_a_process_gives_back_is_all_taken_up_while_another_is_leaving(
    nats_server: NatsServer,
) -> None:
    # The leaving process was counted in the shares: the one staying took up only its share
    # of what a closed process gave back, and the rest stayed free until the leaving one was
    # gone; commands for those rooms waited for a holder that did not come (forward_timeout).
    async with three_processes(nats_server) as (a, b, c, ran), b, c:
        await a.__aenter__()
        try:
            await all_placed(a, b, c)
            given_back = set(placement(a).held)
            own = rooms_of(b, 1)[0]
            await room_with(b, own, "sms")
            async with sending(b, "slow", own), anyio.create_task_group() as tasks:
                await until_ran(ran, "b", own)
                tasks.start_soon(b.close)  # leaving for as long as "slow" is decided
                await until_leaving(b)
                await a.close()

                async def all_taken_up() -> bool:
                    return given_back <= placement(c).held

                await eventually(all_taken_up, what="c taking up all a gave back")
                assert placement(b)._left and not placement(b)._released
        finally:
            await a.__aexit__(None, None, None)


@pytest.mark.nats
async def test_a_process_restarted_under_its_name_runs_its_predecessor_s_rooms(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # A pod of a StatefulSet, say, killed and started again at once as "b": its
    # predecessor's leases name "b" until they expire. It answered that it did not hold
    # their rooms, and their commands went back and forth until forward_timeout.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    async with NatsEventLog(url) as log_a, NatsEventLog(url) as log_b:
        async with kit_of(log_a, url, "a", ran, forward_timeout=5.0) as a:
            async with victim(url, tmp_path, "b", LEASE_TTL):

                async def shared() -> bool:
                    return settled(a, PARTITIONS // 2)

                await eventually(shared, what="the first b holds its share")
            room_id = next(r for r in (f"room-{n}" for n in range(200)) if runs_at(a, r, "b"))
            await room_with(a, room_id, "sms")  # decided here: b is gone
            async with kit_of(log_b, url, "b", ran):

                async def back() -> bool:
                    return runs_at(a, room_id, "b")

                await eventually(back, what="a seeing b again")
                ran.clear()
                result = await a.process_inbound(text("sms", "hello"), room_id=room_id)
        assert result.reason is None
        assert ran == [("b", room_id)]


def runs_at(kit: RoomKit, room_id: str, member: str) -> bool:
    return placement(kit).owner_of(room_id) == member


@pytest.mark.nats
async def test_the_leases_are_taken_again_after_the_server_restarted(
    restartable_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The lease bucket is kept in memory: a restarted server has none. The processes make it
    # again and share the partitions as before, and the rooms go on.
    server = restartable_nats_server
    async with processes(server, "a", "b", lease_ttl=SHORT_LEASE_TTL) as ((a, b), ran):
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms")
        await a.process_inbound(text("sms", "before"), room_id=room_id)

        server.kill()
        server.restart()

        async def noticed() -> bool:
            return all(placement(kit)._failing for kit in (a, b))

        await eventually(noticed, what="both noticed the bucket is gone")

        async def shared_again() -> bool:
            return all(
                settled(kit, PARTITIONS // 2) and not placement(kit)._failing for kit in (a, b)
            )

        await eventually(shared_again, timeout=30, what="both hold their shares again")
        ran.clear()
        owner, other = (a, b) if placement(b).owner_of(room_id) == "a" else (b, a)
        result = await other.process_inbound(text("sms", "after"), room_id=room_id)
        assert result.event is not None and not result.blocked
        assert {member for member, _ in ran} == {placement(owner)._me}
    assert "the lease table failed" in caplog.text


@pytest.mark.nats
async def test_inbound_messages_from_nats_are_recorded_by_their_room_s_owner(
    nats_server: NatsServer,
) -> None:
    # Both processes consume the one ingress (the messages are shared between them as they
    # come); each message is recorded once, by the process that holds its room. (Not always
    # in order: two processes sharing one durable consumer may take two messages of a room
    # at once; see roomkit.ingress.ingress.)
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        rooms = rooms_of(a, 3) + rooms_of(b, 3)
        for room_id in rooms:
            await room_with(a, room_id, "sms")
        ran.clear()
        ingresses = [Ingress(kit, nats_server.url, max_in_flight=8) for kit in (a, b)]
        async with ingresses[0], ingresses[1], await nats.connect(nats_server.url) as client:
            for n in range(10):
                for room_id in rooms:
                    message = text("sms", f"#{n}", idempotency_key=f"{room_id}-{n}")
                    await publish_inbound(client, message, room_id=room_id)

            async def all_recorded() -> bool:
                return sum(ingress.stats.recorded for ingress in ingresses) == 10 * len(rooms)

            await eventually(all_recorded, timeout=30, what="every message recorded")
        assert all(ingress.stats.recorded for ingress in ingresses)  # both took some
        for room_id in rooms:
            bodies = bodies_of(await b.get_timeline(room_id, limit=100))
            assert sorted(bodies) == [f"#{n}" for n in range(10)]
            owner = "a" if room_id in rooms[:3] else "b"
            assert ran.count((owner, room_id)) == 10 and len(set(ran)) == len(rooms)


# -- what the review of the first version found ----------------------------------------------


def test_an_error_of_a_builtin_kind_comes_back_of_that_kind() -> None:
    # pydantic's ValidationError is a ValueError: an `except ValueError` catches it at the
    # caller as it would at the owner (it came back as a plain RoomKitError).
    with pytest.raises(ValidationError) as raised:
        ChannelBinding(room_id="r1", channel_id="sms", channel_type=ChannelType.SMS, access=5)  # type: ignore[arg-type]
    back = decode_error(encode_error(raised.value), "b")
    assert type(back) is ValueError and "validation error for ChannelBinding" in str(back)


def test_an_app_s_own_model_does_not_travel() -> None:
    # The owner could not make it, and as RoomKit's class it would lose what the app gave it:
    # the caller runs the command itself (it failed at the owner with WireError).
    class Tagged(InboundMessage):
        tag: str = "vip"

    with pytest.raises(WireError, match="not a RoomKit class"):
        encode({"message": Tagged(channel_id="sms", sender_id="u", content=TextContent(body="x"))})


def test_ownership_needs_a_log_the_processes_share() -> None:
    with pytest.raises(ValueError, match="sharing one event log"):
        RoomKit(ownership=NatsOwnership())  # each kit's own memory log


def relaying(kit: RoomKit, member: str, notes: list[tuple[str, ...]]) -> None:
    """A hook sending on what a message asks: "relay:R" sends R a message; "to:R" sends R
    "back:<this room>"; "back:R" sends an event to R. What each call raised goes in ``notes``."""

    @kit.hook(HookTrigger.BEFORE_BROADCAST, name="relay")
    async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
        body = event.content.body  # type: ignore[union-attr]
        try:
            if body.startswith("relay:"):
                await kit.process_inbound(text("sms", f"from {event.room_id}"), room_id=body[6:])
            elif body.startswith("to:"):
                await kit.process_inbound(text("sms", f"back:{event.room_id}"), room_id=body[3:])
            elif body.startswith("back:"):
                await kit.send_event(body[5:], "sms", TextContent(body="call-back"))
        except RoomKitError as exc:
            notes.append((member, event.room_id, str(exc)))
        return HookResult.allow()


@asynccontextmanager
async def relaying_processes(
    server: NatsServer,
) -> AsyncIterator[tuple[RoomKit, RoomKit, list[tuple[str, str]], list[tuple[str, ...]]]]:
    """Processes "a" and "b" (see ``processes``) with the ``relaying`` hook; yields them,
    where each hook ran and what each relay raised."""
    notes: list[tuple[str, ...]] = []
    async with processes(server, "a", "b") as ((a, b), ran):
        relaying(a, "a", notes)
        relaying(b, "b", notes)
        yield a, b, ran, notes


@pytest.mark.nats
async def test_a_room_first_woken_by_another_process_sends_on_to_the_rooms_owners(
    nats_server: NatsServer,
) -> None:
    # A room's actor first started for a command another process sent kept running every
    # command its hooks made for other rooms here, whoever owned them.
    async with relaying_processes(nats_server) as (a, b, ran, notes):
        woken_by_a = rooms_of(b, 1)[0]
        target = rooms_of(a, 1)[0]
        for room_id in (woken_by_a, target):
            await room_with(a, room_id, "sms")
        ran.clear()
        await a.process_inbound(text("sms", f"relay:{target}"), room_id=woken_by_a)
        assert ran == [("b", woken_by_a), ("a", target)]
        assert not runs_here(b, target) and not notes

        # An app's own message class does not travel: it runs where it was given.
        class Tagged(InboundMessage):
            tag: str = "vip"

        ran.clear()
        tagged = Tagged(channel_id="sms", sender_id="u", content=TextContent(body="tagged"))
        result = await a.process_inbound(tagged, room_id=woken_by_a)
        assert result.event is not None and ran == [("a", woken_by_a)]


@pytest.mark.nats
async def test_a_call_back_into_a_deciding_room_of_another_process_is_refused_at_once(
    nats_server: NatsServer,
) -> None:
    # Room x's hook (at a) sends room y (at b) a message whose hook calls back into x: x's
    # decision waits for it. One process refuses the call-back at once; across two, the two
    # decisions held each other until process_timeout, and the message was dropped.
    async with relaying_processes(nats_server) as (a, b, ran, notes):
        x, y = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        for room_id in (x, y):
            await room_with(a, room_id, "sms")
        with anyio.fail_after(15):  # a guard against the hold, not a timing
            result = await a.process_inbound(text("sms", f"to:{y}"), room_id=x)
        assert result.event is not None and not result.blocked
        assert len(notes) == 1
        member, room_id, error = notes[0]
        assert (member, room_id) == ("b", y)
        assert f"room {x} cannot take a command from another room's decision" in error
        assert bodies_of(await a.get_timeline(y)) == [f"back:{x}"]


@pytest.mark.nats
async def test_a_process_that_closes_answers_the_commands_on_their_way(
    nats_server: NatsServer,
) -> None:
    # b closes while a keeps 60 callers busy with b's rooms. Each request already sent to b
    # is answered (b drains its subscription): a dropped one cost its caller forward_timeout,
    # then reason="process_timeout", for a command that might have run.
    ran: list[tuple[str, str]] = []
    async with NatsEventLog(nats_server.url) as log_a, NatsEventLog(nats_server.url) as log_b:
        a = kit_of(log_a, nats_server.url, "a", ran)
        b = kit_of(log_b, nats_server.url, "b", ran)
        async with b_to_close(a, b):
            rooms = rooms_of(b, 10)
            for room_id in rooms:
                await room_with(a, room_id, "sms")
            results: list[str | None] = []
            stop = anyio.Event()

            async def caller(n: int) -> None:
                count = 0
                while not stop.is_set():
                    count += 1
                    message = text("sms", "m", idempotency_key=f"{n}-{count}")
                    result = await a.process_inbound(message, room_id=rooms[n % len(rooms)])
                    results.append(result.reason)

            async with anyio.create_task_group() as callers:
                for n in range(60):
                    callers.start_soon(caller, n)
                await anyio.sleep(1)
                await b.close()
                await anyio.sleep(1)
                stop.set()
        assert results and set(results) == {None}, set(results)


@pytest.mark.nats
async def test_a_slow_command_taken_before_a_close_is_answered(nats_server: NatsServer) -> None:
    # b took a command whose hook runs longer than its connect_timeout (1 s here), then
    # closed: it gave up waiting after that long and closed its connection under the
    # command, which was recorded and its caller told process_timeout after forward_timeout.
    ran: list[tuple[str, str]] = []
    async with NatsEventLog(nats_server.url) as log_a, NatsEventLog(nats_server.url) as log_b:
        a = kit_of(log_a, nats_server.url, "a", ran)
        b = RoomKit(
            log=log_b,
            ownership=NatsOwnership(
                nats_server.url,
                member="b",
                partitions=PARTITIONS,
                lease_ttl=LEASE_TTL,
                connect_timeout=1.0,
            ),
        )
        b.register_channel(SimpleChannel("sms"))

        @b.hook(HookTrigger.BEFORE_BROADCAST)
        async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
            ran.append(("b", event.room_id))
            if event.content.body == "slow":  # type: ignore[union-attr]
                await anyio.sleep(2.5)
            return HookResult.allow()

        async with b_to_close(a, b), slow_to_b(a, b) as (room_id, answers):

            async def taken() -> bool:
                return ("b", room_id) in ran

            await eventually(taken, what="b took the slow message")
            await b.close()
        assert answers[0].event is not None and not answers[0].blocked


async def until_ran(ran: list[tuple[str, str]], member: str, room_id: str) -> None:
    """Return once ``member``'s hooks ran for ``room_id`` (it is deciding there)."""

    async def ran_there() -> bool:
        return (member, room_id) in ran

    await eventually(ran_there, what=f"{member} deciding in {room_id}")


async def until_leaving(kit: RoomKit) -> None:
    """Return once ``kit``'s close began to give its rooms back."""

    async def leaving() -> bool:
        return placement(kit)._left

    await eventually(leaving, what="the process leaving")


@asynccontextmanager
async def sending(kit: RoomKit, body: str, room_id: str) -> AsyncIterator[list[InboundResult]]:
    """``kit`` sends ``body`` to ``room_id`` in a task the block ends with: its answer, once
    the block ended."""
    answers: list[InboundResult] = []

    async def send() -> None:
        answers.append(await kit.process_inbound(text("sms", body), room_id=room_id))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send)
        yield answers


@pytest.mark.nats
async def test_a_closing_owner_s_room_is_decided_nowhere_else_before_it_gives_it_back(
    nats_server: NatsServer,
) -> None:
    # b unsubscribed as it began to close, while still deciding what it had taken: a got no
    # responders, took b for gone and decided the room's next messages itself, ahead of the
    # one b was deciding (their hooks ran in both processes at once).
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms")
        async with sending(a, "slow", room_id) as answers:
            await until_ran(ran, "b", room_id)
            async with anyio.create_task_group() as closing:
                closing.start_soon(b.close)
                await until_leaving(b)
                await anyio.sleep(0.3)  # past the drain of b's requests on their way
                for n in range(3):
                    result = await a.process_inbound(text("sms", f"m{n}"), room_id=room_id)
                    assert result.event is not None
        assert answers[0].event is not None
        assert bodies_of(await a.get_timeline(room_id)) == ["slow", "m0", "m1", "m2"]


@pytest.mark.nats
async def test_what_a_closing_process_sent_another_is_answered_and_delivered(
    nats_server: NatsServer,
) -> None:
    # a closed its connection under its own forwarded call (its caller waited forward_timeout
    # and was told process_timeout, though b recorded the message); b, closing, gave up on
    # what it had taken after its forward_timeout, and a message was recorded but never
    # delivered nor had its AFTER_BROADCAST hooks run.
    settings = {"b": {"forward_timeout": 1.0}}
    async with processes(nats_server, "a", "b", settings=settings) as ((a, b), ran):
        ws = b.get_channel("ws")
        assert isinstance(ws, SimpleChannel)
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms", "ws")
        async with sending(a, "slow", room_id) as answers, anyio.create_task_group() as tasks:
            await until_ran(ran, "b", room_id)
            tasks.start_soon(a.close)
            await b.close()
        assert answers[0].event is not None and answers[0].reason is None
        assert [e.content.body for e in ws.delivered] == ["slow"]  # type: ignore[union-attr]


@pytest.mark.nats
async def test_a_closing_process_keeps_its_rooms_while_its_own_callers_run(
    nats_server: NatsServer,
) -> None:
    # Its leases were given back once other processes' commands were answered: b decided
    # the room while a's own caller's message was still being decided there.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        room_id = rooms_of(a, 1)[0]
        await room_with(a, room_id, "sms")
        async with sending(a, "slow", room_id) as answers, anyio.create_task_group() as tasks:
            await until_ran(ran, "a", room_id)
            tasks.start_soon(a.close)
            await until_leaving(a)
            later = await b.process_inbound(text("sms", "m0"), room_id=room_id)
        assert answers[0].event is not None and later.event is not None
        assert bodies_of(await b.get_timeline(room_id)) == ["slow", "m0"]
        assert [who for who, room in ran if room == room_id] == ["a", "b"]


@pytest.mark.nats
async def test_a_closing_process_sends_on_what_its_callers_send_to_others_rooms(
    nats_server: NatsServer,
) -> None:
    # Leaving, a no longer sent on: its caller's hook's message to b's room was decided at a
    # while b decided that room's earlier message. Both ran the room's hooks at once, and the
    # later message was recorded first.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        mine, theirs = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        for room_id in (mine, theirs):
            await room_with(a, room_id, "sms")

        @a.hook(HookTrigger.BEFORE_BROADCAST)
        async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
            if isinstance(event.content, TextContent) and event.content.body == "relay":
                await until_leaving(a)
                await a.process_inbound(text("sms", "inner"), room_id=theirs)
            return HookResult.allow()

        async with sending(b, "slow", theirs) as slow:
            await until_ran(ran, "b", theirs)
            async with sending(a, "relay", mine) as relayed:
                await until_ran(ran, "a", mine)
                await a.close()
        assert slow[0].event is not None and relayed[0].event is not None
        assert bodies_of(await b.get_timeline(theirs)) == ["slow", "inner"]
        assert [who for who, room in ran if room == theirs] == ["b", "b"]


@pytest.mark.nats
async def test_two_processes_closing_at_once_run_what_they_send_each_other(
    nats_server: NatsServer,
) -> None:
    # Each answered the other "leaving" and waited for the other's leases, which the other
    # held until its own command (this very relay) was done: both relays waited
    # forward_timeout, and were lost.
    relayed: list[InboundResult] = []
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        rooms = {"a": rooms_of(a, 1)[0], "b": rooms_of(b, 1)[0]}
        for room_id in rooms.values():
            await room_with(a, room_id, "sms")
        for kit, other in ((a, rooms["b"]), (b, rooms["a"])):

            @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
            async def relay(
                event: RoomEvent, context: RoomContext, kit: RoomKit = kit, other: str = other
            ) -> None:
                if isinstance(event.content, TextContent) and event.content.body == "slow":
                    await until_leaving(a)
                    await until_leaving(b)
                    relayed.append(
                        await kit.process_inbound(text("sms", "relayed"), room_id=other)
                    )

        async with sending(a, "slow", rooms["a"]), sending(b, "slow", rooms["b"]):
            await until_ran(ran, "a", rooms["a"])
            await until_ran(ran, "b", rooms["b"])
            async with anyio.create_task_group() as closing:
                closing.start_soon(a.close)
                closing.start_soon(b.close)
        assert [r.reason for r in relayed] == [None, None]
        for member, room_id in rooms.items():
            # Each decided once: the relay where the room is held, or, once both gave their
            # leases back (and nobody holds it), where it is made.
            assert [who for who, room in ran if room == room_id][0] == member
            assert len([room for _, room in ran if room == room_id]) == 2


@pytest.mark.nats
async def test_a_process_that_left_sends_nothing_more_and_decides_no_room_of_another(
    nats_server: NatsServer,
) -> None:
    # A close waits for its turns' async hooks before it gives its leases back, but one whose
    # caller gave up does not: a hook's command made after that, for another's room or for
    # one it held, was decided here (logged "run here"), at once with the room's owner.
    refused: list[BaseException] = []
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        mine, theirs = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        for room_id in (mine, theirs):
            await room_with(a, room_id, "sms")

        @a.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def relay(event: RoomEvent, context: RoomContext) -> None:
            if isinstance(event.content, TextContent) and event.content.body == "relay":

                async def gone() -> bool:
                    return placement(a)._gone

                await eventually(gone, what="a's connection closed as it left")
                for room_id in (theirs, mine):
                    try:
                        await a.process_inbound(text("sms", "inner"), room_id=room_id)
                    except KitClosedError as exc:
                        refused.append(exc)

        async with sending(a, "relay", mine):
            await until_ran(ran, "a", mine)
            with anyio.move_on_after(0.5):
                await a.close()  # given up: the hook still waits

            async def both_refused() -> bool:
                return len(refused) == 2

            await eventually(both_refused, what="the hook's two commands")
            await a.close()
        assert all("connection to the other processes" in str(exc) for exc in refused), refused
        assert ("a", theirs) not in ran
        for room_id in (theirs, mine):
            assert "inner" not in bodies_of(await b.get_timeline(room_id))


@pytest.mark.nats
async def test_a_request_a_closing_process_had_not_taken_yet_is_answered(
    nats_server: NatsServer,
) -> None:
    # Unsubscribing as it closed dropped a request its subscription held and had not yet
    # taken: its sender waited its whole forward_timeout and said process_timeout.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        room_id = rooms_of(a, 1)[0]
        await room_with(b, room_id, "sms")
        leaving = placement(a)
        serving = leaving._serving
        assert serving is not None
        take, arrived, gate = serving._cb, anyio.Event(), anyio.Event()
        assert take is not None

        async def held(msg: Msg) -> None:  # taken once a gave its leases back
            arrived.set()
            await gate.wait()
            await take(msg)

        serving._cb = held
        async with sending(b, "late", room_id) as answers, anyio.create_task_group() as tasks:
            await arrived.wait()
            tasks.start_soon(a.close)

            async def given_back() -> bool:
                return leaving._released

            await eventually(given_back, what="a giving its leases back")
            gate.set()
        [answer] = answers
        assert answer.event is not None, answer.reason
        assert bodies_of(await b.get_timeline(room_id)) == ["late"]
        assert ran == [("b", room_id)]


@pytest.mark.nats
async def test_a_command_to_a_leaving_process_runs_when_the_sender_leaves_too(
    nats_server: NatsServer,
) -> None:
    # Leaving too, the sender no longer followed the table: it waited for b's leases its
    # whole forward_timeout, and the message failed.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        slow_room, other = rooms_of(b, 2)
        for room_id in (slow_room, other):
            await room_with(a, room_id, "sms")
        late: list[InboundResult | BaseException] = []
        async with sending(a, "slow", slow_room) as answers:
            await until_ran(ran, "b", slow_room)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(b.close)
                await until_leaving(b)

                async def send() -> None:
                    try:
                        late.append(await a.process_inbound(text("sms", "late"), room_id=other))
                    except KitClosedError as exc:  # run by a, closing by then
                        late.append(exc)

                tasks.start_soon(send)
                await anyio.sleep(0.3)  # answered "leaving" by b
                tasks.start_soon(a.close)
        assert answers[0].event is not None
        [outcome] = late
        assert not (isinstance(outcome, InboundResult) and outcome.reason == "process_timeout")


@pytest.mark.nats
async def test_a_leaving_process_answers_what_its_own_waiting_decision_needs(
    nats_server: NatsServer,
) -> None:
    # b's message to a's room x: x's hook (at a) sends b's room y a message, whose hook
    # sends a's room z an event. a, closing meanwhile, answered z "leaving" without looking
    # at what waited for it: b waited for a's leases, a for x's decision, x for b: all held
    # until forward_timeout.
    notes: list[str] = []
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        for kit in (a, b):

            @kit.hook(HookTrigger.BEFORE_BROADCAST, name="chain")
            async def chain(event: RoomEvent, context: RoomContext, kit: RoomKit = kit) -> None:
                body = event.content.body  # type: ignore[union-attr]
                if body.startswith("chain:"):
                    _, y, z = body.split(":")
                    await kit.process_inbound(text("sms", f"later:{z}"), room_id=y)
                elif body.startswith("later:"):
                    await anyio.sleep(1)  # a is leaving by then
                    await kit.send_event(body[6:], "sms", TextContent(body="call"))
                    notes.append("sent to z")

        x, z = rooms_of(a, 2)
        y = rooms_of(b, 1)[0]
        for room_id in (x, y, z):
            await room_with(b, room_id, "sms")
        async with sending(b, f"chain:{y}:{z}", x) as answers:
            await until_ran(ran, "b", y)
            await a.close()
        assert notes == ["sent to z"]
        assert answers[0].event is not None and answers[0].reason is None


class SlowToIdentify(IdentityResolver):
    """Identifies every sender as alice; a message "slow" takes half a second."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        if message.content.body == "slow":  # type: ignore[union-attr]
            self.started.set()
            await anyio.sleep(0.5)
        return IdentityResult(
            status=IdentificationStatus.IDENTIFIED, identity=Identity(id="alice")
        )


@pytest.mark.nats
async def test_a_message_taken_before_a_close_finishes_its_identity_steps(
    nats_server: NatsServer,
) -> None:
    # b owns the room and resolves the sender of a's message when it is closed: the steps
    # that followed (the participant, the message) were refused as commands made after the
    # close, and a's message was lost ("the kit is closing and takes no more commands").
    ran: list[tuple[str, str]] = []
    resolver = SlowToIdentify()
    async with NatsEventLog(nats_server.url) as log_a, NatsEventLog(nats_server.url) as log_b:
        a = kit_of(log_a, nats_server.url, "a", ran)
        b = RoomKit(
            log=log_b,
            identity_resolver=resolver,
            ownership=NatsOwnership(
                nats_server.url, member="b", partitions=PARTITIONS, lease_ttl=LEASE_TTL
            ),
        )
        b.register_channel(SimpleChannel("sms"))
        async with b_to_close(a, b):
            async with slow_to_b(a, b) as (room_id, answers):
                await resolver.started.wait()
                await b.close()
            [answer] = answers
            assert answer.event is not None and not answer.blocked
            assert answer.event.source.participant_id == "alice"
            timeline = await a.get_timeline(room_id)
            assert [e.content.body for e in timeline][-1] == "slow"  # type: ignore[union-attr]


@pytest.mark.nats
async def test_an_answer_too_large_for_nats_is_said_so_or_read_here(
    nats_server: NatsServer,
) -> None:
    # A room's context (its 50 recent events) of more than NATS's 1 MB: the owner's answer
    # was refused by NATS, and the caller waited forward_timeout for nothing. Reading it is
    # done here instead (it changes nothing).
    async with processes(nats_server, "a", "b") as ((a, b), _):
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms")
        for n in range(50):
            await a.process_inbound(text("sms", f"{n:02d}" + "x" * 25_000), room_id=room_id)
        with anyio.fail_after(15):  # a guard against the wait, not a timing
            with pytest.raises(ChannelNotRegisteredError):
                await a.attach_channel(room_id, "unregistered")
            binding = await a.attach_channel(room_id, "ws")
        assert binding.channel_id == "ws"


@pytest.mark.nats
async def test_a_call_back_after_the_deciding_room_gave_up_waiting_runs(
    nats_server: NatsServer,
) -> None:
    # x's hook gives up waiting for y (its 1 s timeout); y's hook calls x back 2 s later, when
    # x's decision is over: one process runs the call-back, and so do two (the chain's link
    # back to x is x's own wait, over by then; it was refused as if x still waited).
    notes: list[tuple[str, ...]] = []

    def hooks(kit: RoomKit, member: str) -> None:
        @kit.hook(HookTrigger.BEFORE_BROADCAST, name="send", timeout=1.0)
        async def send(event: RoomEvent, context: RoomContext) -> HookResult:
            body = event.content.body  # type: ignore[union-attr]
            if body.startswith("to:"):
                await kit.process_inbound(text("sms", f"later:{event.room_id}"), room_id=body[3:])
            return HookResult.allow()

        @kit.hook(HookTrigger.BEFORE_BROADCAST, name="back", timeout=10.0)
        async def back(event: RoomEvent, context: RoomContext) -> HookResult:
            body = event.content.body  # type: ignore[union-attr]
            if body.startswith("later:"):
                await anyio.sleep(2)
                try:
                    await kit.send_event(body[6:], "sms", TextContent(body="call-back"))
                    notes.append((member, "sent"))
                except RoomKitError as exc:
                    notes.append((member, str(exc)))
            return HookResult.allow()

    async with processes(nats_server, "a", "b") as ((a, b), _):
        hooks(a, "a")
        hooks(b, "b")
        x, y = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        for room_id in (x, y):
            await room_with(a, room_id, "sms")
        await a.process_inbound(text("sms", f"to:{y}"), room_id=x)

        async def called_back() -> bool:
            return bool(notes)

        await eventually(called_back, what="y's hook called x back")
        assert notes == [("b", "sent")]


@pytest.mark.nats
async def test_a_close_does_not_wait_for_ever_for_a_command_whose_hook_never_returns(
    nats_server: NatsServer,
) -> None:
    # b runs, for a, a command whose async hook never returns (no timeout): b's close waited
    # for the command for ever. The hook is cut at process_timeout now, as the room's
    # deliveries wait for it (a gave up after its forward_timeout before).
    ran: list[tuple[str, str]] = []
    async with NatsEventLog(nats_server.url) as log_a, NatsEventLog(nats_server.url) as log_b:
        kits = []
        for member, log in (("a", log_a), ("b", log_b)):
            kit = RoomKit(
                log=log,
                process_timeout=1.0,
                ownership=NatsOwnership(
                    nats_server.url,
                    member=member,
                    partitions=PARTITIONS,
                    lease_ttl=LEASE_TTL,
                    forward_timeout=2.0,
                ),
            )
            kit.register_channel(SimpleChannel("sms"))

            @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, timeout=None)
            async def never_returns(event: RoomEvent, context: RoomContext) -> None:
                ran.append(("hook", event.room_id))
                await anyio.sleep_forever()

            kits.append(kit)
        a, b = kits
        async with b_to_close(a, b):
            room_id = rooms_of(b, 1)[0]
            await room_with(a, room_id, "sms")
            sent = await a.send_event(room_id, "sms", TextContent(body="x"))
            assert sent.room_id == room_id
            with anyio.fail_after(30):  # a guard against the hang, not a timing
                await b.close()
        assert ("hook", room_id) in ran


@pytest.mark.nats
async def test_a_command_a_given_up_close_cut_is_not_run_again_by_its_caller(
    nats_server: NatsServer,
) -> None:
    # b recorded a message a sent it, then its close was given up (its caller's deadline):
    # b said it was gone, and a recorded the message again. Now a is told the message may
    # have been recorded (a retry with its idempotency key is then a duplicate), or, when
    # the answer was lost with b's connection, that it timed out (process_timeout). b's
    # ownership is given a client of the app's, which outlives b's close.
    ran: list[tuple[str, str]] = []
    async with (
        NatsEventLog(nats_server.url) as log_a,
        NatsEventLog(nats_server.url) as log_b,
        await nats.connect(nats_server.url) as client,
    ):
        a = kit_of(log_a, nats_server.url, "a", ran, forward_timeout=4.0)
        b = RoomKit(
            log=log_b,
            ownership=NatsOwnership(
                client, member="b", partitions=PARTITIONS, lease_ttl=LEASE_TTL
            ),
        )
        b.register_channel(SimpleChannel("sms"))
        started = anyio.Event()

        @b.hook(HookTrigger.BEFORE_BROADCAST, name="slow")
        async def slow(event: RoomEvent, context: RoomContext) -> HookResult:
            started.set()
            await anyio.sleep(2)
            return HookResult.allow()

        async with a:
            # b not entered: started at its first use, stopped by close() (a close given up
            # in an `async with` leaves its exit to finish the shutdown).
            await b._ensure_runtime()
            try:
                await even_shares(a, b)
                room_id = rooms_of(b, 1)[0]
                await a.create_room(room_id=room_id)
                outcome: list[object] = []

                async def send() -> None:
                    try:
                        # No idempotency key: nothing would tell a second record from the first.
                        outcome.append(
                            await a.process_inbound(text("sms", "once"), room_id=room_id)
                        )
                    except RoomKitError as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(send)
                    with anyio.fail_after(10):  # guards against a hang, not timings
                        await started.wait()
                    with anyio.move_on_after(0.3):
                        await b.close()
            finally:
                with anyio.fail_after(30):
                    await b.close()
            await anyio.sleep(1)
            recorded = [e for e in await a.get_timeline(room_id) if e.type == EventType.MESSAGE]
            assert len(recorded) <= 1, recorded  # never twice (b may also have dropped it)
            if isinstance(outcome[0], RoomKitError):
                assert "may have been applied" in str(outcome[0])
            else:
                # Timed out, or answered: b's read model now catches up with what it recorded
                # as its actors stopped, and its answer can go out.
                assert isinstance(outcome[0], InboundResult)
                assert outcome[0].reason == "process_timeout" or (
                    outcome[0].event is not None and not outcome[0].blocked
                )


def hold_requests(kit: RoomKit, arrived: list[str], gate: anyio.Event) -> None:
    """Hold each request ``kit`` receives (noting its member in ``arrived``) until ``gate``:
    a message in flight while its receiver's close begins."""
    serving = placement(kit)._serving
    assert serving is not None
    take = serving._cb
    assert take is not None

    async def held(msg: Msg) -> None:
        arrived.append(placement(kit)._me)
        await gate.wait()
        await take(msg)

    serving._cb = held


@pytest.mark.nats
async def test_commands_two_processes_sent_each_other_just_before_closing_run(
    nats_server: NatsServer,
) -> None:
    # Each command said its sender was not leaving (so it was when sent), and was sent again
    # as it was: each process answered the other "leaving" and waited for the other's leases,
    # which the other kept until its own command was done. Both were lost after
    # forward_timeout, and both closes took that long.
    settings = {m: {"forward_timeout": 8.0} for m in ("a", "b")}
    async with processes(nats_server, "a", "b", settings=settings) as ((a, b), ran):
        rooms = {"a": rooms_of(a, 1)[0], "b": rooms_of(b, 1)[0]}
        for room_id in rooms.values():
            await room_with(a, room_id, "sms")
        arrived: list[str] = []
        gate = anyio.Event()
        hold_requests(a, arrived, gate)
        hold_requests(b, arrived, gate)
        async with (
            sending(a, "from a", rooms["b"]) as from_a,
            sending(b, "from b", rooms["a"]) as from_b,
        ):

            async def both_arrived() -> bool:
                return len(arrived) == 2

            await eventually(both_arrived, what="each request at the other process")
            async with anyio.create_task_group() as closing:
                closing.start_soon(a.close)
                closing.start_soon(b.close)
                await until_leaving(a)
                await until_leaving(b)
                gate.set()
        assert [r.reason for r in (*from_a, *from_b)] == [None, None]
        assert sorted(ran) == sorted([("a", rooms["a"]), ("b", rooms["b"])])
        for room_id, body in ((rooms["a"], "from b"), (rooms["b"], "from a")):
            assert bodies_of(await b.get_timeline(room_id)) == [body]


class SlowFirstChannel(SimpleChannel):
    """Delivers "first" in ``seconds``, anything else at once; notes what it delivered, in
    order."""

    def __init__(self, channel_id: str, delivered: list[str], seconds: float = 1.0) -> None:
        super().__init__(channel_id)
        self.bodies = delivered
        self.seconds = seconds
        self.started = anyio.Event()

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        body = event.content.body if isinstance(event.content, TextContent) else ""
        if body == "first":
            self.started.set()
            await anyio.sleep(self.seconds)
        self.bodies.append(body)
        return await super().deliver(event, binding, context)


@pytest.mark.nats
async def test_a_slow_delivery_of_a_closing_process_holds_none_of_its_rooms(
    nats_server: NatsServer,
) -> None:
    # Kept until every delivery and async hook of the process ended, its leases held all its
    # rooms for its slowest channel: another process's command for any of them waited, and
    # was lost at forward_timeout. A room's message recorded before the handover may so be
    # delivered after the next one, recorded by the room's new holder (README).
    delivered: list[str] = []
    async with processes(nats_server, "a", "b") as ((a, b), _ran):
        slow_at_a = SlowFirstChannel("slow", delivered, seconds=3.0)
        a.register_channel(slow_at_a)
        b.register_channel(SlowFirstChannel("slow", delivered))
        busy, other = rooms_of(a, 2)
        await room_with(a, busy, "sms", "slow")
        await room_with(a, other, "sms", "slow")
        async with sending(a, "first", busy) as first, anyio.create_task_group() as tasks:
            await slow_at_a.started.wait()
            tasks.start_soon(a.close)

            async def given_back() -> bool:
                return placement(a)._released

            await eventually(given_back, what="a giving its leases back")
            elsewhere = await b.process_inbound(text("sms", "meanwhile"), room_id=other)
            assert "first" not in delivered  # still being delivered at a
        assert [first[0].reason, elsewhere.reason] == [None, None]
        assert sorted(delivered) == ["first", "meanwhile"]


@pytest.mark.nats
async def test_a_closing_process_s_hook_may_wait_for_another_s_command_to_its_rooms(
    nats_server: NatsServer,
) -> None:
    # Its async hook waited for a service that posts, through another process, to another of
    # its rooms: that command waited for the leases, which waited for the hook (until
    # forward_timeout, and the command was lost).
    answered: list[InboundResult] = []
    async with processes(nats_server, "a", "b") as ((a, b), _ran):
        ping, pong = rooms_of(a, 2)
        for room_id in (ping, pong):
            await room_with(a, room_id, "sms")

        @a.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def ask_the_service(event: RoomEvent, context: RoomContext) -> None:
            if isinstance(event.content, TextContent) and event.content.body == "ping":
                await until_leaving(a)
                answered.append(await b.process_inbound(text("sms", "pong"), room_id=pong))

        async with sending(a, "ping", ping):
            await until_ran(_ran, "a", ping)
            await a.close()
        assert [r.reason for r in answered] == [None]
        assert bodies_of(await b.get_timeline(pong)) == ["pong"]


@pytest.mark.nats
async def test_a_closing_process_runs_what_its_caller_s_command_sends_back_to_it(
    nats_server: NatsServer,
) -> None:
    # Its caller's message went to another process, whose hook sent one back to a room of
    # the closing process: answered "leaving", it waited for the leases, which waited for the
    # caller, which waited for the hook (until forward_timeout; both messages lost).
    relayed: list[InboundResult] = []
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        mine, theirs = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        for room_id in (mine, theirs):
            await room_with(a, room_id, "sms")

        @b.hook(HookTrigger.BEFORE_BROADCAST)
        async def relay(event: RoomEvent, context: RoomContext) -> HookResult:
            if isinstance(event.content, TextContent) and event.content.body == "relay":
                await until_leaving(a)
                relayed.append(await b.process_inbound(text("sms", "relayed"), room_id=mine))
            return HookResult.allow()

        async with sending(a, "relay", theirs) as first:
            await until_ran(ran, "b", theirs)
            await a.close()
        assert [r.reason for r in (*first, *relayed)] == [None, None]
        assert ("a", mine) in ran
        assert bodies_of(await b.get_timeline(mine)) == ["relayed"]


@pytest.mark.nats
async def test_a_closing_process_sends_its_hooks_commands_where_its_rooms_went(
    nats_server: NatsServer,
) -> None:
    # Closing, it no longer follows the table: its view named the process that had held the
    # room, which had closed since; finding nobody there, it decided the room itself while
    # the room's new holder decided it too.
    async with three_processes(nats_server) as (a, b, c, ran), a, b, c:
        await all_placed(a, b, c)
        moving, own = rooms_of(a, 1)[0], rooms_of(b, 1)[0]
        await room_with(c, moving, "sms")
        await room_with(c, own, "sms")

        @b.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def relay(event: RoomEvent, context: RoomContext) -> None:
            if isinstance(event.content, TextContent) and event.content.body == "go":
                await until_ran(ran, "c", moving)  # c holds it now, and decides there
                await b.process_inbound(text("sms", "relayed"), room_id=moving)

        ran.clear()
        async with sending(b, "go", own), anyio.create_task_group() as tasks:
            await until_ran(ran, "b", own)
            tasks.start_soon(b.close)
            await until_leaving(b)
            await a.close()

            async def c_holds() -> bool:
                return partition_of(moving, PARTITIONS) in placement(c).held

            await eventually(c_holds, what="c holding the room a gave back")
            await c.process_inbound(text("sms", "slow"), room_id=moving)
        assert ("b", moving) not in ran
        assert [who for who, room in ran if room == moving] == ["c", "c"]
        assert bodies_of(await c.get_timeline(moving)) == ["slow", "relayed"]


@pytest.mark.nats
async def test_a_command_sent_to_a_process_that_no_longer_holds_its_room_goes_on_to_the_holder(
    nats_server: NatsServer,
) -> None:
    # The sender's view of the table was stale (a leaving process no longer follows it):
    # the process it named ran the command while the room's holder decided it too.
    async with three_processes(nats_server) as (a, b, c, ran), a, b, c:
        await all_placed(a, b, c)
        room_id = rooms_of(c, 1)[0]
        await room_with(c, room_id, "sms")
        ran.clear()
        # a takes the room for b's: b's view, read again, says c.
        placement(a)._view.owners[partition_of(room_id, PARTITIONS)] = "b"
        result = await a.process_inbound(text("sms", "stale"), room_id=room_id)
        assert result.reason is None
        assert ran == [("c", room_id)]
        assert bodies_of(await c.get_timeline(room_id)) == ["stale"]


@pytest.mark.nats
async def test_a_close_given_up_keeps_the_rooms_until_their_decisions_end(
    nats_server: NatsServer,
) -> None:
    # The leases went back at once: the room's new owner decided the next message while the
    # closing process still decided the one before, which conflicted and was decided again
    # after it (its hooks twice, the room's order reversed). And the process's connection
    # was left open for good.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        room_id = rooms_of(a, 1)[0]
        await room_with(b, room_id, "sms")
        async with sending(b, "slow", room_id) as first:
            await until_ran(ran, "a", room_id)
            with anyio.move_on_after(0.2):
                await a.close()

            async def b_holds() -> bool:
                return partition_of(room_id, PARTITIONS) in placement(b).held

            await eventually(b_holds, what="b holding the room")
            second = await b.process_inbound(text("sms", "next"), room_id=room_id)
        assert [first[0].reason, second.reason] == [None, None]
        assert bodies_of(await b.get_timeline(room_id)) == ["slow", "next"]
        assert ran == [("a", room_id), ("b", room_id)]

        async def connection_closed() -> bool:
            return placement(a)._nc.is_closed

        await eventually(connection_closed, what="a's connection closed")


class _Tier(enum.Enum):  # an app's plain Enum
    GOLD = "gold"


class _Order(BaseModel):  # an app's model, in metadata
    ref: str = "A-1"


@pytest.mark.nats
@pytest.mark.parametrize(
    "metadata", [{"tier": _Tier.GOLD}, {"order": _Order()}], ids=["app-enum", "app-model"]
)
async def test_an_app_s_enum_or_model_in_metadata_runs_at_the_owner(
    nats_server: NatsServer, metadata: dict[str, Any]
) -> None:
    # The wire refused classes not RoomKit's: the caller decided the room itself, a second
    # live actor of it, though the log writes both as JSON.
    async with processes(nats_server, "a", "b") as ((a, b), ran):
        room_id = rooms_of(b, 1)[0]
        await room_with(a, room_id, "sms")
        message = text("sms", "hi", metadata=metadata)
        with anyio.fail_after(30):
            result = await a.process_inbound(message, room_id=room_id)
        assert not result.blocked
        assert ran == [("b", room_id)]


_WOKEN = """
import anyio, sys, time
from eventlog.nats import NatsEventLog
from roomkit import RoomKit, HookTrigger, HookResult
from roomkit.ownership import partition_of
from roomkit.ownership.nats import NatsOwnership
from tests.roomkit.kit_helpers import SimpleChannel, text

async def main(url: str) -> None:
    async with NatsEventLog(url) as log:
        kit = RoomKit(log=log, ownership=NatsOwnership(url, member="woken",
                      partitions={partitions}, lease_ttl={lease_ttl}))
        kit.register_channel(SimpleChannel("sms"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def note(event, context):
            # Back, it is a member again, and a gives half the partitions back: a room it
            # holds again ("ran-held"), or one between the two ("ran-free", run where made),
            # is rightly run here; one another process holds ("ran-here") is the defect.
            placement = kit._runtime.placement
            partition = partition_of(event.room_id, {partitions})
            if partition in placement.held:
                print("ran-held", flush=True)
            else:
                holder = (await placement._table.read(5.0)).owners.get(partition)
                print("ran-free" if holder in (None, "woken") else "ran-here", flush=True)
            return HookResult.allow()

        async with kit:
            placement = kit._runtime.placement
            while len(placement.held) < {share}:
                await anyio.sleep(0.05)
            print("ready", flush=True)
{arranged}
            room_ids = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
            # Timed from before it says "room": stopped between the two (its parent sends
            # SIGSTOP on reading it), it timed the loop from after it woke, never saw the
            # jump, never called nor answered, and the test waited until pytest's timeout.
            before = time.monotonic()
{armed}
            print("room", flush=True)
            while True:  # callers of its own (web handlers, say) that wake with it, at once
                await anyio.sleep(0.02)
                now = time.monotonic()
                if now - before > {lease_ttl}:
{woken}
                    async def call(room_id: str) -> None:
                        await kit.process_inbound(text("sms", "from the woken"), room_id=room_id)

                    async with anyio.create_task_group() as callers:
                        for room_id in room_ids:
                            callers.start_soon(call, room_id)
                    print("answered", flush=True)
                    break
                before = now
            await anyio.sleep_forever()

anyio.run(main, sys.argv[1])
"""

# The woken process stops itself in the tail of a tick's read of the table (its consumer's
# deletion): woken, that tick returns a view read before the freeze, naming this process for
# the partitions it lost meanwhile, as its callers' own read (their leases expired) is under
# way. Installed over theirs, that view ran them here.
_FROZEN_IN_A_TICKS_READ = """
import os, signal
read = placement._table.read
armed = [False]
async def frozen_in_its_tail(timeout):
    view = await read(timeout)
    if armed[0]:
        armed[0] = False
        os.kill(os.getpid(), signal.SIGSTOP)
        for _ in range(2000):  # woken: until the callers' read is under way
            if placement._view_read is not None:
                break
            await anyio.sleep(0.001)
    return view
placement._table.read = frozen_in_its_tail
"""

# The woken process's tick renews first (refused: a holds the partitions), and the read after
# is slow: the callers that come meanwhile found the partitions neither held nor another's in
# a view still naming this process, and ran here.
_RENEWALS_REFUSED_BEFORE_THE_CALLERS = """
renew, read = placement._table.renew, placement._table.read
lost = [False]
async def noted_renew(partition, revision):
    revision = await renew(partition, revision)
    lost[0] = lost[0] or revision is None
    return revision
async def slow_read_after_a_loss(timeout):
    if lost[0]:
        lost[0] = False
        await anyio.sleep(0.3)
    return await read(timeout)
placement._table.renew, placement._table.read = noted_renew, slow_read_after_a_loss
"""

_WOKEN_WAYS = {
    "stopped by its parent": ("", "", ""),
    "frozen in a tick's read": (_FROZEN_IN_A_TICKS_READ, "armed[0] = True", ""),
    "renewals refused first": (_RENEWALS_REFUSED_BEFORE_THE_CALLERS, "", "await anyio.sleep(0.1)"),
}


@pytest.mark.nats
@pytest.mark.parametrize("way", list(_WOKEN_WAYS))
async def test_a_process_woken_past_its_leases_sends_its_own_callers_commands_on(
    nats_server: NatsServer, tmp_path: Path, way: str
) -> None:
    # Its leases dropped as it woke, its view named no holder: "run here", in a room another
    # process held by then. Callers coming at once with the first (that one reading the
    # table) ran here on that view too.
    ran: list[tuple[str, str]] = []
    url = nats_server.url
    script = tmp_path / "woken.py"
    arranged, armed, woken = _WOKEN_WAYS[way]
    script.write_text(
        textwrap.dedent(_WOKEN).format(
            partitions=PARTITIONS,
            lease_ttl=SHORT_LEASE_TTL,
            share=PARTITIONS // 2,
            arranged=textwrap.indent(textwrap.dedent(arranged), " " * 12),
            armed=textwrap.indent(armed, " " * 12),
            woken=textwrap.indent(woken, " " * 20),
        )
    )
    async with (
        NatsEventLog(url) as log,
        kit_of(log, url, "a", ran, lease_ttl=SHORT_LEASE_TTL) as a,
    ):
        process = subprocess.Popen(
            [sys.executable, str(script), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        said: list[str] = []
        try:
            assert process.stdout is not None and process.stdin is not None
            stdout = process.stdout
            assert (await anyio.to_thread.run_sync(stdout.readline)).strip() == b"ready"

            await a_room_of(a, "woken")
            rooms = [
                r for r in (f"room-{n}" for n in range(400)) if placement(a).owner_of(r) == "woken"
            ][:4]
            for room_id in rooms:
                await room_with(a, room_id, "sms")
            process.stdin.write(" ".join(rooms).encode() + b"\n")
            process.stdin.flush()
            assert (await anyio.to_thread.run_sync(stdout.readline)).strip() == b"room"
            if way == "frozen in a tick's read":
                with anyio.fail_after(10):
                    while stopped(process.pid) is False:  # by itself
                        await anyio.sleep(0.01)
            else:
                process.send_signal(signal.SIGSTOP)  # its caller's loop sees the jump as it wakes
            try:
                await takes_all_up(a)
                for room_id in rooms:
                    await a.process_inbound(text("sms", "sent by a meanwhile"), room_id=room_id)
                await anyio.sleep(SHORT_LEASE_TTL)
            finally:
                process.send_signal(signal.SIGCONT)
            # A readline left to its thread once the bound is spent (the child is killed
            # below, which ends it): a child that never says "answered" fails the test at 30 s.
            with anyio.fail_after(30):
                while not said or said[-1] not in ("answered", ""):
                    line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
                    said.append(line.decode().strip())
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
            if process.stdin is not None:
                process.stdin.close()
        assert said[-1] == "answered" and "ran-here" not in said, said
        # a ran its own four and those of the woken's callers the woken did not run itself.
        assert sorted(set(ran)) == sorted(("a", room_id) for room_id in rooms), ran
        run_here = said.count("ran-held") + said.count("ran-free")
        assert len(ran) == 2 * len(rooms) - run_here, (ran, said)
