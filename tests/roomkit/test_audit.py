"""The audit API: replay (up to a version or a time), the readable timeline, export/import
between backends, and the property that a replayed room is the live room."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js.api import StreamConfig

import roomkit.audit
from eventlog import EventLog, Headers, MemoryEventLog, NewEvent, Record
from eventlog._nats_codec import StoredBatch, StoredEvent
from eventlog.codec import encode
from eventlog.errors import ForeignMessage
from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from providers.sms.mock import MockSMSProvider
from roomkit import (
    AIChannel,
    ChannelCategory,
    HookResult,
    HookTrigger,
    Identity,
    InboundMessage,
    InvalidRoomIdError,
    MediaContent,
    MockAIProvider,
    MockIdentityResolver,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomNotFoundError,
    SMSChannel,
    TextContent,
)
from roomkit.audit import (
    AuditError,
    BadExport,
    CorruptRecord,
    DeliveryOutcome,
    ForeignRecord,
    ImportConflict,
    TextRenderer,
    TimelineEntry,
    entry_to_dict,
    export_room,
    follow,
    format_entry,
    format_rooms,
    format_state,
    import_room,
    read_export,
    replay,
    replay_point,
    room_to_dict,
    rooms,
    state_to_dict,
    timeline,
)
from roomkit.core._domain import (
    ChannelAttached,
    ChannelUpdated,
    DomainEvent,
    RoomCreated,
    RoomUpdated,
    dump,
    encode_domain_event,
)
from roomkit.core._room_ids import room_stream
from roomkit.models.channel import ChannelBinding
from roomkit.models.enums import ChannelType, RoomStatus
from roomkit.models.room import Room
from tests.roomkit.kit_helpers import RewritesUrls, SimpleChannel, category_of, text

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------------


async def entries(log: EventLog, room_id: str, **kwargs: Any) -> list[TimelineEntry]:
    return [entry async for entry in timeline(log, room_id, **kwargs)]


async def exported(log: EventLog, room_id: str) -> list[str]:
    return [line async for line in export_room(log, room_id)]


def without_position(record: Record) -> tuple[Any, ...]:
    return (record.stream, record.version, record.type, record.timestamp, record.data,
            record.headers)  # fmt: skip


async def append_at(log: EventLog, room_id: str, event: DomainEvent, when: datetime) -> None:
    version = await log.last_version(room_id)
    new = encode_domain_event(event, timestamp=when.timestamp())
    await log.append(room_id, [new], expected_version=version)


def binding(channel_id: str, room_id: str = "r1", **updates: Any) -> ChannelBinding:
    return ChannelBinding(
        channel_id=channel_id, room_id=room_id, channel_type=ChannelType.SMS, **updates
    )


async def hand_made_room(room_id: str = "r1") -> MemoryEventLog:
    """A room written event by event, one minute apart from T0 (v1 at T0, v2 at T0+1min...)."""
    log = MemoryEventLog()
    room = Room(id=room_id, created_at=T0, updated_at=T0)
    closed = room.model_copy(update={"status": RoomStatus.CLOSED})
    steps: list[DomainEvent] = [
        RoomCreated(room=dump(room)),
        ChannelAttached(binding=dump(binding("sms", room_id))),
        ChannelAttached(binding=dump(binding("ws", room_id))),
        ChannelUpdated(binding=dump(binding("ws", room_id, muted=True)), change="muted"),
        RoomUpdated(room=dump(closed), reason="closed"),
    ]
    for minute, step in enumerate(steps):
        await append_at(log, room_id, step, T0 + timedelta(minutes=minute))
    return log


async def room_with_a_message_changed_in_place(log: EventLog) -> int:
    """Room ``r1``: a message, then one its channel changed in place (the returned version),
    then another message; each delivered to the other channel."""
    media = MediaContent(url="https://vendor.example/m/1.png", mime_type="image/png")
    async with RoomKit(log=log) as kit:
        kit.register_channel(RewritesUrls("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.process_inbound(text("ws", "before"), room_id="r1")
        inbound = InboundMessage(channel_id="sms", sender_id="+1555", content=media)
        changed = (await kit.process_inbound(inbound, room_id="r1")).event
        await kit.process_inbound(text("ws", "after"), room_id="r1")
    assert changed is not None
    return next(
        r.version
        for r in await log.read("r1")
        if r.type == "message.recorded" and json.loads(r.data)["event"]["id"] == changed.id
    )


@pytest.fixture
async def conversation() -> AsyncIterator[MemoryEventLog]:
    """A kit conversation: an identified sender, an AI reply, a blocked message, a failed SMS
    delivery, a read marker."""
    log = MemoryEventLog()
    resolver = MockIdentityResolver(mapping={"+1555": Identity(id="carla", display_name="Carla")})
    async with RoomKit(log=log, identity_resolver=resolver) as kit:
        kit.register_channel(SMSChannel("sms", provider=MockSMSProvider(simulate_failure=True)))
        kit.register_channel(SimpleChannel("ws"))
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["on it"])))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def no_spam(event: RoomEvent, context: RoomContext) -> HookResult:
            if "spam" in getattr(event.content, "body", ""):
                return HookResult.block("spam detected")
            return HookResult.allow()

        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms", metadata={"phone_number": "+1555"})
        await kit.attach_channel("r1", "ws")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        await kit.process_inbound(text("sms", "hello there", sender="+1555"))
        await kit.mute("r1", "ai")
        await kit.process_inbound(text("ws", "buy spam now", sender="agent"))
        await kit.mark_all_read("r1", "ws")
        yield log


def find(found: list[TimelineEntry], **fields: Any) -> list[TimelineEntry]:
    return [e for e in found if all(getattr(e, k) == v for k, v in fields.items())]


# -- the package -----------------------------------------------------------------------------


def test_all_is_sorted_and_importable() -> None:
    assert list(roomkit.audit.__all__) == sorted(set(roomkit.audit.__all__))
    for name in roomkit.audit.__all__:
        assert getattr(roomkit.audit, name) is not None, name


# -- the timeline ----------------------------------------------------------------------------


class TestTimeline:
    async def test_one_entry_per_record_in_version_order(self, conversation: EventLog) -> None:
        found = await entries(conversation, "r1")
        records = await conversation.read("r1")
        assert [e.version for e in found] == [r.version for r in records]
        assert [e.kind for e in found] == [r.type for r in records]
        assert [e.position for e in found] == [r.position for r in records]
        assert all(e.time.tzinfo is UTC for e in found)

    async def test_message_shows_sender_by_name_channel_text_and_status(
        self, conversation: EventLog
    ) -> None:
        found = await entries(conversation, "r1")
        (hello,) = find(found, text="hello there")
        assert hello.kind == "message.recorded"
        assert (hello.who, hello.channel, hello.sender) == ("Carla@sms", "sms", "carla")
        assert hello.status == "delivered" and hello.blocked_by is None
        assert format_entry(hello).endswith('Carla@sms      "hello there" delivered')

    async def test_blocked_message_names_the_hook(self, conversation: EventLog) -> None:
        found = await entries(conversation, "r1")
        (spam,) = find(found, text="buy spam now")
        assert spam.status == "blocked" and spam.blocked_by == "no_spam"
        assert spam.who == "agent@ws"  # no participant record: the raw id
        assert '"buy spam now" BLOCKED by no_spam' in format_entry(spam)
        # Nothing was delivered for it.
        assert not find(found, kind="delivery.recorded", refers_to=spam.version)

    async def test_delivery_outcomes_per_channel(self, conversation: EventLog) -> None:
        found = await entries(conversation, "r1")
        (hello,) = find(found, text="hello there")
        (reply,) = find(found, text="on it")
        (to_ws,) = find(found, kind="delivery.recorded", refers_to=hello.version)
        assert to_ws.deliveries == (DeliveryOutcome("ws", True),)
        assert to_ws.what == f"v{hello.version} -> ws ok"
        (to_both,) = find(found, kind="delivery.recorded", refers_to=reply.version)
        by_channel = {d.channel_id: d for d in to_both.deliveries}
        assert by_channel["sms"] == DeliveryOutcome("sms", False, "simulated_failure")
        assert by_channel["ws"].success
        assert "sms FAILED (simulated_failure)" in to_both.what
        assert to_both.event_id == reply.event_id and to_both.who == "router"

    async def test_bindings_participants_and_read_markers(self, conversation: EventLog) -> None:
        found = await entries(conversation, "r1")
        (muted,) = find(found, kind="channel.updated")
        assert muted.channel == "ai" and "muted" in muted.what
        (joined,) = find(found, kind="participant.joined")
        assert joined.who == "Carla" and "identified" in joined.what
        (read,) = find(found, kind="read.marked")
        assert read.what == "ws read everything"
        assert find(found, kind="room.created")[0].what == "room created (status active)"

    async def test_modified_message_names_the_hooks(self) -> None:
        log = MemoryEventLog()
        async with RoomKit(log=log) as kit:
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(SimpleChannel("ws"))

            @kit.hook(HookTrigger.BEFORE_BROADCAST)
            async def shout(event: RoomEvent, context: RoomContext) -> HookResult:
                body = event.content.body.upper()  # type: ignore[union-attr]
                return HookResult.modify(
                    event.model_copy(update={"content": TextContent(body=body)})
                )

            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            await kit.attach_channel("r1", "ws")
            await kit.process_inbound(text("sms", "quiet"))
        (message,) = find(await entries(log, "r1"), text="QUIET")
        assert message.modified_by == ("shout",)
        assert message.what == '"QUIET" delivered, modified by shout'
        assert entry_to_dict(message)["modified_by"] == ["shout"]

    async def test_after_version_and_until(self, conversation: EventLog) -> None:
        everything = await entries(conversation, "r1")
        assert [e.version for e in await entries(conversation, "r1", after_version=5)] == [
            e.version for e in everything[5:]
        ]
        assert [e.version for e in await entries(conversation, "r1", until=4)] == [1, 2, 3, 4]
        # Names come from the whole room even when the entries start later.
        (hello,) = find(await entries(conversation, "r1", after_version=9), text="hello there")
        assert hello.who == "Carla@sms"

    async def test_json_dict_has_a_stable_shape(self, conversation: EventLog) -> None:
        found = await entries(conversation, "r1")
        dicts = [entry_to_dict(e) for e in found]
        keys = set(dicts[0])
        assert all(set(d) == keys for d in dicts)
        assert {"version", "time", "kind", "who", "what", "blocked_by", "deliveries"} <= keys
        delivery = next(d for d in dicts if d["kind"] == "delivery.recorded" and d["deliveries"])
        assert json.loads(json.dumps(delivery)) == delivery
        assert datetime.fromisoformat(dicts[0]["time"]) == found[0].time

    async def test_json_times_have_one_shape_on_a_whole_second_too(self) -> None:
        # isoformat() left the fraction out of a time on a whole second.
        log = MemoryEventLog()
        whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        await append_at(log, "r1", RoomCreated(room=dump(Room(id="r1"))), whole)
        (entry,) = await entries(log, "r1")
        assert entry_to_dict(entry)["time"] == "2026-01-02T03:04:05.000000+00:00"

    async def test_text_renderer_dates_each_day_once(self) -> None:
        log = MemoryEventLog()
        await append_at(log, "r1", RoomCreated(room=dump(Room(id="r1"))), T0)
        await append_at(log, "r1", ChannelAttached(binding=dump(binding("sms"))), T0)
        await append_at(log, "r1", ChannelAttached(binding=dump(binding("ws"))), T0 + timedelta(1))
        renderer = TextRenderer()
        lines = [line for e in await entries(log, "r1") for line in renderer.lines(e)]
        assert lines[0] == "-- 2026-03-01 (UTC) --"
        assert lines[1].startswith("   v1  12:00:00  room.created")
        assert lines[3] == "-- 2026-03-02 (UTC) --"
        assert len(lines) == 5

    async def test_unknown_and_undecodable_records_are_shown_not_fatal(self) -> None:
        log = await hand_made_room()
        await log.append("r1", [NewEvent("future.thing", b"{}")], expected_version=5)
        await log.append("r1", [NewEvent("channel.attached", b"{not json")], expected_version=6)
        found = await entries(log, "r1")
        assert found[5].what == "unknown event type (2 bytes)"
        assert found[6].what.startswith("undecodable record:")
        with pytest.raises(CorruptRecord) as caught:
            await replay(log, "r1")
        assert caught.value.version == 7
        assert str(caught.value).startswith("room 'r1' v7 (channel.attached) does not decode")

    async def test_a_record_that_does_not_validate_is_said_on_one_line(self) -> None:
        # pydantic's report spans several lines and ends with a link: the CLI printed it
        # with its line breaks escaped (import said it on one line).
        log = await hand_made_room()
        room = b'{"id":"r1","status":"no-such-status"}'
        data = b'{"room":' + room + b',"reason":"updated"}'
        await log.append("r1", [NewEvent("room.updated", data)], expected_version=5)
        with pytest.raises(CorruptRecord) as caught:
            await replay(log, "r1")
        said = str(caught.value)
        assert "\n" not in said and "errors.pydantic.dev" not in said
        assert "does not decode: 1 validation error for Room; status; Input should be" in said

    async def test_a_record_that_does_not_decode_is_named_by_its_room_id(self) -> None:
        # Named by its stream: "__bc3VwcG9ydDo0Mg v2" for room support:42.
        log = MemoryEventLog()
        async with RoomKit(log=log) as kit:
            await kit.create_room(room_id="support:42")
        stream = room_stream("support:42")
        await log.append(stream, [NewEvent("channel.attached", b"{not json")], expected_version=1)
        with pytest.raises(CorruptRecord) as caught:
            await replay(log, "support:42")
        assert caught.value.room_id == "support:42" and caught.value.stream == stream
        assert str(caught.value).startswith("room 'support:42' v2 (channel.attached)")
        found = await entries(log, "support:42")
        assert found[-1].what.startswith("undecodable record: room 'support:42' v2")

    async def test_a_message_whose_event_lacks_fields_is_a_corrupt_record(self) -> None:
        # Its envelope decodes; the event inside does not: a raw msgspec error escaped.
        log = await hand_made_room()
        broken = NewEvent("message.recorded", b'{"event":{"x":1}}')
        await log.append("r1", [broken], expected_version=5)
        with pytest.raises(CorruptRecord) as caught:
            await replay(log, "r1")
        assert caught.value.version == 6

    async def test_a_message_whose_event_does_not_validate_is_folded_from_its_fields(
        self,
    ) -> None:
        # Its event decodes as JSON but is no RoomEvent this version reads (a content type
        # it does not know, a URL an earlier version took, an event its channel changed in
        # place): the room's actor folds it from its few fields and keeps serving the room,
        # and replay must give the state the actor holds. It raised CorruptRecord, quoting
        # the message's content.
        log = MemoryEventLog()
        async with RoomKit(log=log) as kit:
            kit.register_channel(SimpleChannel("sms"))
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            await kit.process_inbound(text("sms", "hello"))
        event = json.loads((await log.read("r1"))[-1].data)["event"]
        event.update(id="e-new", content={"type": "hologram", "body": "PIN 4242"})
        data = json.dumps({"event": event}).encode()
        version = await log.last_version("r1")
        await log.append("r1", [NewEvent("message.recorded", data)], expected_version=version)
        before = await replay(log, "r1", until=version)
        after = await replay_point(log, "r1")
        assert after.version == version + 1
        assert after.state.event_count == before.event_count + 1
        # The timeline still says it cannot show it, without its content.
        shown = (await entries(log, "r1"))[-1].what
        assert shown.startswith("undecodable record:") and "PIN 4242" not in shown

    async def test_a_message_its_channel_changed_in_place_is_folded_into_the_timeline(
        self,
    ) -> None:
        # The timeline said it could not show the message and left it out of its fold: its
        # state lacked it (event count, idempotency key), unlike replay's and the room's, and
        # the delivery of that message named no version.
        log = MemoryEventLog()
        changed = await room_with_a_message_changed_in_place(log)
        read = timeline(log, "r1")
        found = [entry async for entry in read]
        assert read.state == await replay(log, "r1")
        odd = found[changed - 1]
        assert odd.what.startswith("undecodable record:") and "SECRET-4242" not in odd.what
        assert odd.event_id is not None and odd.event_type == "message"
        delivery = found[changed]
        assert delivery.kind == "delivery.recorded" and delivery.refers_to == changed

    async def test_a_record_that_does_not_validate_is_said_without_its_content(self) -> None:
        # pydantic's report quotes the input (input_value=...): a room's metadata, a
        # participant's name went into CorruptRecord's text, which the CLI prints.
        log = await hand_made_room()
        room = b'{"id":"r1","status":"no-such-status","metadata":{"pin":"4242"}}'
        data = b'{"room":' + room + b',"reason":"updated"}'
        await log.append("r1", [NewEvent("room.updated", data)], expected_version=5)
        with pytest.raises(CorruptRecord) as caught:
            await replay(log, "r1")
        said = str(caught.value)
        assert "status" in said and "no-such-status" not in said and "4242" not in said
        assert "input_value" not in said
        shown = (await entries(log, "r1"))[-1].what
        assert shown.startswith("undecodable record:") and "no-such-status" not in shown

    async def test_unknown_room_and_invalid_id(self) -> None:
        log = await hand_made_room()
        with pytest.raises(RoomNotFoundError):
            await entries(log, "nope")
        with pytest.raises(InvalidRoomIdError):
            await entries(log, "")


# -- replay ----------------------------------------------------------------------------------


class TestReplay:
    async def test_until_a_version(self) -> None:
        log = await hand_made_room()
        assert (await replay(log, "r1", until=2)).bindings.keys() == {"sms"}
        at3 = await replay(log, "r1", until=3)
        assert at3.bindings.keys() == {"sms", "ws"} and not at3.bindings["ws"].muted
        assert (await replay(log, "r1", until=4)).bindings["ws"].muted
        full = await replay(log, "r1")
        assert full.room is not None and full.room.status == RoomStatus.CLOSED
        empty = await replay_point(log, "r1", until=0)
        assert empty.version == 0 and empty.state.room is None and empty.time is None

    async def test_until_a_time(self) -> None:
        log = await hand_made_room()
        point = await replay_point(log, "r1", until=T0 + timedelta(minutes=2, seconds=30))
        assert point.version == 3 and point.time == T0 + timedelta(minutes=2)
        assert point.state.bindings.keys() == {"sms", "ws"}
        # A naive time is UTC, the log's clock.
        naive = (T0 + timedelta(minutes=1)).replace(tzinfo=None)
        assert (await replay_point(log, "r1", until=naive)).version == 2
        before = await replay_point(log, "r1", until=T0 - timedelta(seconds=1))
        assert before.version == 0 and before.state.room is None

    @pytest.mark.parametrize(
        ("until", "error"),
        [
            (T0.date(), TypeError),  # a date is not a datetime
            (T0.timestamp(), TypeError),  # a float timestamp
            ("3", TypeError),
            (True, TypeError),
            (-1, ValueError),
        ],
    )
    async def test_an_until_that_is_not_a_version_or_a_time_is_refused(
        self, until: object, error: type[Exception]
    ) -> None:
        # Each was taken as no bound at all: "as of 2000" gave the room as it is now.
        log = await hand_made_room()
        with pytest.raises(error, match="until"):
            await replay(log, "r1", until=until)  # type: ignore[arg-type]
        with pytest.raises(error, match="until"):
            timeline(log, "r1", until=until)  # type: ignore[arg-type]

    async def test_progress_counts_every_record_read(self) -> None:
        log = await hand_made_room()
        counts: list[int] = []
        await replay(log, "r1", progress=counts.append)
        assert sum(counts) == 5
        counts.clear()
        await replay(log, "r1", until=3, progress=counts.append)
        assert sum(counts) == 3

    async def test_unknown_room(self) -> None:
        with pytest.raises(RoomNotFoundError):
            await replay(MemoryEventLog(), "r1")

    async def test_state_renderings(self) -> None:
        log = await hand_made_room()
        point = await replay_point(log, "r1", until=4)
        lines = format_state(point)
        assert lines[0] == "room r1 as of v4 (2026-03-01 12:03:00 UTC)"
        assert any("ws" in line and "muted yes" in line for line in lines)
        assert any("sms" in line and "access read_write, visibility all" in line for line in lines)
        data = state_to_dict(point)
        assert data["version"] == 4 and data["room"]["status"] == "active"
        assert [b["channel_id"] for b in data["bindings"]] == ["sms", "ws"]
        assert json.loads(json.dumps(data)) == data


# -- export and import -----------------------------------------------------------------------


class TestExportImport:
    async def test_round_trip_gives_identical_records(self, conversation: EventLog) -> None:
        lines = await exported(conversation, "r1")
        assert all(line.endswith("\n") for line in lines)
        target = MemoryEventLog()
        report = await import_room(target, lines)
        assert report.appended == len(lines)
        # One room in the source log: positions match as well.
        assert await target.read("r1") == await conversation.read("r1")
        assert await exported(target, "r1") == lines
        assert await replay(target, "r1") == await replay(conversation, "r1")

    async def test_round_trip_of_interleaved_rooms_keeps_versions(self) -> None:
        source = MemoryEventLog()
        for n in range(3):
            for room_id in ("a", "b"):
                new = NewEvent("note", f"{room_id}{n}".encode(), Headers(correlation_id="x"))
                await source.append(room_id, [new], expected_version=n)
        target = MemoryEventLog()
        await import_room(target, await exported(source, "b"))
        await import_room(target, await exported(source, "a"))
        for room_id in ("a", "b"):
            assert [without_position(r) for r in await target.read(room_id)] == [
                without_position(r) for r in await source.read(room_id)
            ]
        assert [info.stream for info in await rooms(target)] == ["a", "b"]

    async def test_importing_twice_or_resuming_appends_only_what_is_missing(
        self, conversation: EventLog
    ) -> None:
        lines = await exported(conversation, "r1")
        target = MemoryEventLog()
        await import_room(target, lines[:4])
        report = await import_room(target, lines)
        (stream,) = report.streams
        assert (stream.appended, stream.already_present) == (len(lines) - 4, 4)
        again = await import_room(target, lines)
        assert again.appended == 0
        assert await target.read("r1") == await conversation.read("r1")

    async def test_a_resume_whose_first_record_reuses_a_held_message_id_says_so(self) -> None:
        # The target took the append for a retry of the held record's own (a log dedups an
        # append by its first event's message id): "differs at version 3", where nothing
        # differed, sent the user looking for a conflict there was not.
        def note(message_id: str) -> NewEvent:
            return NewEvent("custom.note", b"{}", headers=Headers(message_id=message_id))

        source = MemoryEventLog()
        await source.append("r1", [note("a")], expected_version=0)
        await source.append("r1", [note("b"), note("a")], expected_version=1)  # not first
        lines = await exported(source, "r1")
        target = MemoryEventLog()
        await import_room(target, lines[:2])
        with pytest.raises(BadExport, match="v3 reuses the message id 'a' of v1"):
            await import_room(target, lines)
        assert len(await target.read("r1")) == 2

    async def test_refuses_a_conflicting_stream_and_writes_nothing(self) -> None:
        ours = await hand_made_room()
        theirs = MemoryEventLog()
        await append_at(theirs, "r1", RoomCreated(room=dump(Room(id="r1"))), T0)
        await append_at(theirs, "other", RoomCreated(room=dump(Room(id="other"))), T0)
        lines = await exported(theirs, "other") + await exported(ours, "r1")
        before = await theirs.read_all()
        with pytest.raises(ImportConflict) as caught:
            await import_room(theirs, lines)
        assert caught.value.stream == "r1" and caught.value.version == 1
        assert "refusing to overwrite" in str(caught.value)
        assert await theirs.read_all() == before

    async def test_accepts_sync_or_async_lines_of_str_or_bytes_or_one_text(self) -> None:
        lines = await exported(await hand_made_room(), "r1")

        async def stream() -> AsyncIterator[bytes]:
            for line in lines:
                yield line.encode()

        target = MemoryEventLog()
        assert (await import_room(target, stream())).appended == 5
        assert (await import_room(MemoryEventLog(), ["", *lines, "\n"])).appended == 5
        # A whole export as one text (a file read at once): read character by character, it
        # was "not an exported record" (bytes: an AttributeError).
        whole = "".join(lines)
        assert (await import_room(MemoryEventLog(), whole)).appended == 5
        assert (await import_room(MemoryEventLog(), whole.encode())).appended == 5

    @pytest.mark.parametrize("separator", ["\u2028", "\u0085"])
    async def test_one_text_is_split_at_newlines_only(self, separator: str) -> None:
        # JSON strings hold these unescaped; str.splitlines cut the record at them
        # ("Input data was truncated"), which the same export as bytes or lines was not.
        source = MemoryEventLog()
        note = NewEvent("custom.note", b"{}", headers=Headers(message_id=f"a{separator}b"))
        await source.append("room-1", [note, note], expected_version=0)
        whole = "".join(await exported(source, "room-1"))
        assert separator in whole
        assert (await import_room(MemoryEventLog(), whole)).appended == 2
        # Lines ended by a CR (a file read with newline=""), as bytes are split.
        assert (await import_room(MemoryEventLog(), whole.replace("\n", "\r"))).appended == 2

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            (["not json\n"], "line 1: not an exported record"),
            # Bytes that were not UTF-8, read with surrogateescape: a UnicodeEncodeError.
            ([b'{"stream": "r\xff"}\n'.decode("utf-8", "surrogateescape")], "line 1: not UTF-8"),
            ([], "no record in the input"),
            (["   \n"], "no record in the input"),
        ],
    )
    async def test_bad_input(self, lines: list[str], message: str) -> None:
        with pytest.raises(BadExport, match=message):
            await import_room(MemoryEventLog(), lines)

    async def test_a_version_gap_is_bad_input(self) -> None:
        lines = await exported(await hand_made_room(), "r1")
        with pytest.raises(BadExport, match="line 3: room 'r1' jumps to version 4"):
            await import_room(MemoryEventLog(), [lines[0], lines[1], lines[3]])
        bad_id = lines[0].replace('"stream":"r1"', '"stream":"r.1"')
        with pytest.raises(BadExport, match="invalid stream id"):
            await import_room(MemoryEventLog(), [bad_id])

    async def test_a_room_renamed_in_its_export_is_bad_input(self) -> None:
        # Edited to copy the room under another id, it was imported: the stream's replay and
        # the kit's read model gave it the room the record names (r1), and a kit serving the
        # target rolled r1 back in its read model.
        lines = await exported(await hand_made_room(), "r1")
        copied = [line.replace('"stream":"r1"', '"stream":"r1-copy"') for line in lines]
        target = MemoryEventLog()
        with pytest.raises(
            BadExport, match="line 1: the stream of room 'r1-copy' begins with the creation of "
        ):
            await import_room(target, copied)
        assert await target.read_all() == []
        # Read to be audited (the offline commands' --file), as it is: the copy shows.
        scratch = MemoryEventLog()
        await import_room(scratch, await read_export(copied, keep_undecodable=True))
        assert len(await entries(scratch, "r1-copy")) == len(lines)

    async def test_batches_never_start_with_a_reused_message_id(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The log de-duplicates by the first event of an append; an id that an earlier record
        # of the stream carried must not start a batch, or the target would append nothing.
        source = MemoryEventLog()
        m1, m2 = Headers(message_id="m1"), Headers(message_id="m2")
        await source.append("r1", [NewEvent("a", b"1", m1), NewEvent("b")], expected_version=0)
        second = [NewEvent("c", b"", m2), NewEvent("d", b"", m1)]  # m1 again, not first
        await source.append("r1", second, expected_version=2)
        monkeypatch.setattr("roomkit.audit._transfer._BATCH", 3)
        target = MemoryEventLog()
        await import_room(target, await exported(source, "r1"))
        assert await target.read("r1") == await source.read("r1")

    async def test_export_of_an_unknown_room(self) -> None:
        with pytest.raises(RoomNotFoundError):
            await exported(MemoryEventLog(), "nope")


async def two_rooms_with_a_bad_last_record(**fields: Any) -> list[str]:
    """The export of room ``other`` (one record), then ``r1``'s five, the last with ``fields``
    changed: a good room before the bad record, as in an export of a whole log."""
    source = await hand_made_room()
    await append_at(source, "other", RoomCreated(room=dump(Room(id="other"))), T0)
    lines = await exported(source, "r1")
    last = json.loads(lines[-1]) | fields
    return await exported(source, "other") + lines[:-1] + [json.dumps(last)]


class TestImportChecksEveryRecordFirst:
    """Nothing of an import is written unless the target takes every record of it."""

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"timestamp": 1e300}, "timestamp 1e+300 is no date's (years 1-9999)"),
            ({"type": ""}, "an event's type is a non-empty str, not ''"),
        ],
    )
    async def test_a_record_no_log_takes(self, fields: dict[str, Any], reason: str) -> None:
        target = MemoryEventLog()
        lines = await two_rooms_with_a_bad_last_record(**fields)
        with pytest.raises(BadExport) as caught:
            await import_room(target, lines)
        assert str(caught.value).startswith("line 6: room 'r1' v5: no log takes it: ")
        assert reason in str(caught.value)
        assert await target.read_all() == []

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b'{"room": 42}', "1 validation error for Room; Input should be an object"),
            (b"{}", "Object missing required field `room`"),
        ],
    )
    async def test_a_payload_that_does_not_decode(self, payload: bytes, reason: str) -> None:
        target = MemoryEventLog()
        data = base64.b64encode(payload).decode()
        lines = await two_rooms_with_a_bad_last_record(type="room.updated", data=data)
        with pytest.raises(BadExport) as caught:
            await import_room(target, lines)
        message = str(caught.value)
        assert message.startswith(
            "line 6: room 'r1' v5 (room.updated) is a record that does not decode: "
        )
        assert reason in message and "\n" not in message
        assert await target.read_all() == []

    async def test_a_type_this_version_does_not_know_is_imported_as_it_is(self) -> None:
        # Forward compatibility, as replay skips such records: the checks must not refuse it.
        source = await hand_made_room()
        await source.append(
            "r1", [NewEvent("future.thing", b"\x00 any bytes")], expected_version=5
        )
        target = MemoryEventLog()
        assert (await import_room(target, await exported(source, "r1"))).appended == 6
        assert await target.read("r1") == await source.read("r1")

    async def test_read_export_checks_without_a_target(self) -> None:
        lines = await two_rooms_with_a_bad_last_record(timestamp=-1e20)
        with pytest.raises(BadExport, match="line 6: room 'r1' v5"):
            await read_export(lines)
        good = await read_export(await exported(await hand_made_room(), "r1"))
        assert [r.version for r in good.streams["r1"]] == [1, 2, 3, 4, 5]
        assert (await import_room(MemoryEventLog(), good)).appended == 5

    async def test_an_export_starting_with_a_byte_order_mark_is_read(self) -> None:
        # Saved by an editor on Windows: refused as "invalid character (byte 0)".
        lines = await exported(await hand_made_room(), "r1")
        for first in ("\ufeff" + lines[0], b"\xef\xbb\xbf" + lines[0].encode()):
            read = await read_export([first, *lines[1:]])
            assert [r.version for r in read.streams["r1"]] == [1, 2, 3, 4, 5]

    async def test_a_damaged_export_can_still_be_read_into_a_scratch_log(self) -> None:
        data = base64.b64encode(b'{"room": 42}').decode()
        lines = await two_rooms_with_a_bad_last_record(type="room.updated", data=data)
        scratch = MemoryEventLog()
        await import_room(scratch, await read_export(lines, keep_undecodable=True))
        assert (await entries(scratch, "r1"))[-1].what.startswith("undecodable record:")


class TestImportIntoNats:
    """The server's max payload (1 MB by default) bounds each append's bytes."""

    async def test_a_record_over_the_max_payload(self, nats_log: NatsEventLog) -> None:
        source = await hand_made_room()
        await append_at(source, "other", RoomCreated(room=dump(Room(id="other"))), T0)
        blob = NewEvent("future.blob", b"x" * 2_000_000)  # a memory log takes it
        await source.append("r1", [blob], expected_version=5)
        lines = await exported(source, "other") + await exported(source, "r1")
        with pytest.raises(BadExport, match=r"room 'r1' v6 \(future.blob\): 2,0\d\d,\d{3} bytes"):
            await import_room(nats_log, lines)
        assert await nats_log.read_all() == []

    async def test_records_that_fit_one_by_one_are_appended_in_batches_that_fit(
        self, nats_log: NatsEventLog
    ) -> None:
        source = await hand_made_room()
        blobs = [NewEvent("future.blob", bytes([n]) * 300_000) for n in range(8)]
        await source.append("r1", blobs, expected_version=5)
        assert (await import_room(nats_log, await exported(source, "r1"))).appended == 13
        assert [without_position(r) for r in await nats_log.read("r1")] == [
            without_position(r) for r in await source.read("r1")
        ]

    async def test_batches_fit_the_stream_s_own_max_msg_size(
        self, nats_server: NatsServer
    ) -> None:
        # An operator's limit below the server's max payload: batches cut to the server's
        # alone were refused half-way through the import (its first appends stored).
        nc = await nats.connect(nats_server.url)
        try:
            config = StreamConfig(
                name="ROOMKIT", subjects=["roomkit.ev.>"], max_msg_size=4_000, allow_direct=True
            )
            await nc.jetstream().add_stream(config)
        finally:
            await nc.close()
        source = await hand_made_room()
        notes = [NewEvent("future.note", bytes([n % 256]) * 900) for n in range(30)]
        await source.append("r1", notes, expected_version=5)
        async with NatsEventLog(nats_server.url) as log:
            assert log.max_append_bytes < 4_000
            assert (await import_room(log, await exported(source, "r1"))).appended == 35
            assert [without_position(r) for r in await log.read("r1")] == [
                without_position(r) for r in await source.read("r1")
            ]

    async def test_a_room_imported_into_a_stream_made_again_is_not_the_earlier_room(
        self, nats_server: NatsServer
    ) -> None:
        # The operator deleted the log's stream, its snapshot bucket left, then imported
        # another room of the same id: the kit took up the earlier room's snapshot, took a
        # new message for a duplicate of the earlier room's, and gave indexes twice.
        def kit_on(log: EventLog) -> RoomKit:
            kit = RoomKit(log=log, snapshot_every=5)
            kit.register_channel(SimpleChannel("sms"))
            return kit

        async def conversation(kit: RoomKit, prefix: str, count: int) -> None:
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            for n in range(count):
                message = text("sms", f"{prefix} {n}", idempotency_key=f"{prefix}-{n}")
                await kit.process_inbound(message, room_id="r1")

        async with NatsEventLog(nats_server.url) as log:
            async with kit_on(log) as kit:
                await conversation(kit, "earlier", 8)
            assert await log.load_snapshot(room_stream("r1")) is not None
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().delete_stream("ROOMKIT")
        finally:
            await nc.close()
        source = MemoryEventLog()
        async with kit_on(source) as kit:
            await conversation(kit, "other", 12)
        async with NatsEventLog(nats_server.url) as log:
            await import_room(log, await exported(source, "r1"))
            async with kit_on(log) as kit:
                taken = await kit.process_inbound(
                    text("sms", "new", idempotency_key="earlier-1"), room_id="r1"
                )
                assert not taken.blocked and taken.event is not None
                timeline = await kit.get_timeline("r1", limit=100)
                indexes = [event.index for event in timeline]
                assert len(set(indexes)) == len(indexes) and taken.event.index == max(indexes)
                room = await kit.get_room("r1")
                assert room.event_count == (await replay(log, "r1")).event_count


# -- follow (the CLI's tail) -----------------------------------------------------------------


class TestFollow:
    async def test_shows_the_last_entries_then_new_ones_live(self) -> None:
        log = await hand_made_room()
        await append_at(log, "other", RoomCreated(room=dump(Room(id="other"))), T0)
        lines: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: follow(log, lines.append, room_id="r1", last=2))
            await anyio.wait_all_tasks_blocked()
            assert [line.split()[0] for line in lines[1:]] == ["v4", "v5"]
            await append_at(log, "other", ChannelAttached(binding=dump(binding("x", "other"))), T0)
            await append_at(log, "r1", ChannelAttached(binding=dump(binding("email"))), T0)
            await anyio.wait_all_tasks_blocked()
            assert lines[-1].split()[0] == "v6" and "attached email" in lines[-1]
            assert not any("other" in line for line in lines)
            tg.cancel_scope.cancel()

    async def test_every_room_with_room_ids_and_json(self) -> None:
        log = await hand_made_room()
        lines: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: follow(log, lines.append, last=1, format="json"))
            await anyio.wait_all_tasks_blocked()
            assert [json.loads(line)["version"] for line in lines] == [5]
            await append_at(log, "r2", RoomCreated(room=dump(Room(id="r2"))), T0)
            await anyio.wait_all_tasks_blocked()
            assert json.loads(lines[-1])["room_id"] == "r2"
            tg.cancel_scope.cancel()
        text: list[str] = []
        await follow(log, text.append, last=2, live=False)
        assert [line.split()[:2] for line in text[1:]] == [["r1", "v5"], ["r2", "v1"]]

    @pytest.mark.parametrize("room_id", [None, "r1"])
    async def test_all_of_the_log_with_last_none(self, room_id: str | None) -> None:
        # Every room, not live: all of it was to come through the subscription, and nothing
        # came (the subscription is for a live follow only).
        log = await hand_made_room()
        await append_at(log, "r2", RoomCreated(room=dump(Room(id="r2"))), T0)
        lines: list[str] = []
        await follow(log, lines.append, room_id=room_id, last=None, live=False, format="json")
        shown = [(json.loads(line)["room_id"], json.loads(line)["version"]) for line in lines]
        expected = [("r1", version) for version in range(1, 6)]
        assert shown == (expected if room_id else [*expected, ("r2", 1)])


# -- replay equals the live room -------------------------------------------------------------

commands = st.lists(
    st.one_of(
        st.tuples(st.just("message"), st.sampled_from(["sms", "ws"]), st.integers(0, 4)),
        st.tuples(st.just("mute"), st.sampled_from(["sms", "ws", "ai"]), st.booleans()),
        st.tuples(st.just("metadata"), st.sampled_from(["a", "b"]), st.integers(0, 3)),
        st.tuples(st.just("read"), st.sampled_from(["sms", "ws"]), st.booleans()),
        st.tuples(st.just("participant"), st.sampled_from(["sms", "ws"]), st.integers(0, 2)),
        st.tuples(st.just("attach"), st.sampled_from(["ws", "ai"]), st.booleans()),
        st.tuples(st.just("visibility"), st.sampled_from(["sms", "ws"]), st.booleans()),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
async def test_replayed_state_equals_the_live_room(script: list[tuple[str, str, Any]]) -> None:
    log = MemoryEventLog()
    resolver = MockIdentityResolver(mapping={"u-1": Identity(id="id-1", display_name="One")})
    async with RoomKit(log=log, identity_resolver=resolver) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["noted"])))
        await kit.create_room(room_id="r1")
        for channel_id in ("sms", "ws", "ai"):
            await kit.attach_channel("r1", channel_id, category=category_of(channel_id))
        for kind, channel_id, arg in script:
            attached = {b.channel_id for b in await kit.list_bindings("r1")}
            if kind == "message" and channel_id in attached:
                sender = "u-1" if arg == 0 else f"u-{arg}"
                message = text(channel_id, f"m{arg}", sender=sender, idempotency_key=f"k{arg}")
                await kit.process_inbound(message, room_id="r1")
            elif kind == "mute" and channel_id in attached:
                await (kit.mute if arg else kit.unmute)("r1", channel_id)
            elif kind == "metadata":
                await kit.update_room_metadata("r1", {channel_id: arg})
            elif kind == "read" and channel_id in attached:
                if arg:
                    await kit.mark_all_read("r1", channel_id)
            elif kind == "participant":
                await kit.ensure_participant("r1", channel_id, f"p{arg}", display_name=f"P{arg}")
            elif kind == "attach":
                if channel_id in attached:
                    await kit.detach_channel("r1", channel_id)
                else:
                    await kit.attach_channel("r1", channel_id, category=category_of(channel_id))
            elif kind == "visibility" and channel_id in attached:
                await kit.set_visibility("r1", channel_id, "internal" if arg else "all")

        # The actor's own state (the private GetContext path: the public API only shows the
        # store's copy of it, compared below as well).
        live = await kit._context("r1")
        timeline_events = await kit.store.list_events("r1", limit=10_000)
        stored_room = await kit.get_room("r1")

    state = await replay(log, "r1")
    assert state.room == live.room == stored_room
    assert state.bindings == {b.channel_id: b for b in live.bindings}
    assert state.participants == {p.id: p for p in live.participants}
    assert state.event_count == live.room.event_count == len(timeline_events)
    assert state.idempotency == {
        e.idempotency_key: e.id for e in timeline_events if e.idempotency_key
    }
    assert list(state.recent) == live.recent_events


# -- on every backend ------------------------------------------------------------------------


class _Lines:
    """Collects ``follow``'s lines; ``wait_for(n)`` returns once ``n`` lines arrived."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    def write(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, count: int) -> list[str]:
        with anyio.fail_after(10):
            while len(self.lines) < count:
                await self._changed.wait()
                self._changed = anyio.Event()
        return self.lines


class TestOnEveryBackend:
    async def test_import_replay_and_export_match_the_source(self, event_log: EventLog) -> None:
        source = await hand_made_room()
        lines = await exported(source, "r1")
        assert (await import_room(event_log, lines)).appended == 5
        assert [without_position(r) for r in await event_log.read("r1")] == [
            without_position(r) for r in await source.read("r1")
        ]
        assert await replay(event_log, "r1") == await replay(source, "r1")
        ours = [(e.version, e.time, e.kind, e.who, e.what) for e in await entries(source, "r1")]
        theirs = [
            (e.version, e.time, e.kind, e.who, e.what) for e in await entries(event_log, "r1")
        ]
        assert theirs == ours
        assert (await import_room(event_log, lines)).appended == 0
        other = MemoryEventLog()
        await append_at(other, "r1", RoomCreated(room=dump(Room(id="r1", metadata={"x": 1}))), T0)
        with pytest.raises(ImportConflict):
            await import_room(event_log, await exported(other, "r1"))
        assert [info.stream for info in await rooms(event_log)] == ["r1"]

    async def test_a_room_with_a_message_its_channel_changed_in_place_moves_as_it_is(
        self, event_log: EventLog
    ) -> None:
        # The room, its actor and replay take such a message by its few fields (the kit's
        # own record), but import refused the whole room as "a record that does not decode":
        # a room that could be audited in place could not be moved.
        source = MemoryEventLog()
        changed = await room_with_a_message_changed_in_place(source)
        lines = await exported(source, "r1")
        # One whose few fields do not decode either is no record a room folds: still refused.
        fieldless = base64.b64encode(b'{"event":{"x":1}}').decode()
        damaged = json.dumps(json.loads(lines[changed - 1]) | {"data": fieldless})
        with pytest.raises(BadExport, match=f"line {changed}: .* is a record that does not"):
            await read_export([*lines[: changed - 1], damaged, *lines[changed:]])
        report = await import_room(event_log, lines)
        assert report.appended == len(lines)
        assert [without_position(r) for r in await event_log.read("r1")] == [
            without_position(r) for r in await source.read("r1")
        ]
        assert await replay(event_log, "r1") == await replay(source, "r1")
        async with RoomKit(log=event_log) as kit:  # the room serves on from the target
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(SimpleChannel("ws"))
            count = (await kit.get_room("r1")).event_count
            await kit.process_inbound(text("ws", "moved"), room_id="r1")
            assert (await kit.get_room("r1")).event_count == count + 1

    async def test_follow_a_room_live(self, event_log: EventLog) -> None:
        await import_room(event_log, await exported(await hand_made_room(), "r1"))
        out = _Lines()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: follow(event_log, out.write, room_id="r1", last=1))
            assert [line.split()[0] for line in (await out.wait_for(2))[1:]] == ["v5"]
            await append_at(event_log, "r1", ChannelAttached(binding=dump(binding("email"))), T0)
            assert (await out.wait_for(3))[-1].split()[0] == "v6"
            tg.cancel_scope.cancel()


async def test_the_tail_of_every_room_goes_past_a_room_another_app_wrote_in(
    nats_server: NatsServer, nats_log: NatsEventLog, caplog: pytest.LogCaptureFixture
) -> None:
    # A foreign message last on r1's subject: folding r1's earlier records raised, and the
    # tail of the whole log stopped there, showing nothing of any room.
    for room_id in ("r2", "r1"):
        await import_room(nats_log, await exported(await hand_made_room(room_id), room_id))
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(nats_log._subject("r1"), b'{"not": "roomkit"}')
    finally:
        await nc.close()
    lines: list[str] = []
    await follow(nats_log, lines.append, last=4, live=False)  # r1 past its first record
    shown = [line.split()[:2] for line in lines if not line.startswith("--")]
    assert shown == [["r1", f"v{v}"] for v in range(2, 6)]
    assert "the room's earlier records cannot be read" in caplog.text


async def test_reading_a_room_another_app_wrote_in_raises_an_audit_error(
    nats_server: NatsServer, nats_log: NatsEventLog
) -> None:
    # The log's ForeignMessage went through replay, timeline and export as it was: neither
    # an AuditError (the documented root of the audit's errors) nor a RoomKitError. Import
    # and follow(room_id=...) asked the log for the room's last version themselves, and
    # let it through still when that message was the last on the room's subject.
    lines = await exported(await hand_made_room("r1"), "r1")
    await import_room(nats_log, lines)
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(nats_log._subject("r1"), b'{"not": "roomkit"}')
    finally:
        await nc.close()
    for read in (
        lambda: replay(nats_log, "r1"),
        lambda: replay_point(nats_log, "r1", until=2),
        lambda: entries(nats_log, "r1"),
        lambda: exported(nats_log, "r1"),
        lambda: import_room(nats_log, lines),
        lambda: follow(nats_log, lambda line: None, room_id="r1", live=False),
    ):
        with pytest.raises(ForeignRecord) as caught:
            await read()
        assert isinstance(caught.value, AuditError)
        assert isinstance(caught.value.__cause__, ForeignMessage)
        assert caught.value.room_id == "r1"
        assert caught.value.subject == nats_log._subject("r1")
        assert str(caught.value).endswith("; the room cannot be read past it")


# -- records written before appends checked their timestamps ---------------------------------


async def test_a_timestamp_that_is_not_a_time_reads_as_unknown(
    nats_server: NatsServer, nats_log: NatsEventLog
) -> None:
    """Appends refuse a NaN or out-of-range timestamp, but a log written before they did (or
    by another writer) may hold one: the audit tools read it as unknown, and the rest of the
    record and of the log stays readable. Such a record is published to the stream's subject
    by hand, as an older writer would have stored it."""
    source = await hand_made_room()
    await import_room(nats_log, await exported(source, "r1"))
    reopened = Room(id="r1", created_at=T0, updated_at=T0, metadata={"n": 1})
    nc = await nats.connect(nats_server.url)
    try:
        for offset, timestamp in enumerate([math.nan, 1e300]):
            updated = encode_domain_event(
                RoomUpdated(room=dump(reopened), reason="updated"), timestamp=None
            )
            batch = StoredBatch(
                version=6 + offset,
                events=[StoredEvent(type=updated.type, timestamp=timestamp, data=updated.data)],
            )
            await nc.jetstream().publish(nats_log._subject("r1"), encode(batch))
    finally:
        await nc.close()
    found = await entries(nats_log, "r1")
    assert [(e.version, e.time, e.kind) for e in found[5:]] == [
        (6, None, "room.updated"),
        (7, None, "room.updated"),
    ]
    assert found[4].time == T0 + timedelta(minutes=4)
    lines: list[str] = []
    renderer = TextRenderer()
    for entry in found:
        lines.extend(renderer.lines(entry))
    assert lines[-1].split()[:2] == ["v7", "??:??:??"]
    assert entry_to_dict(found[-1])["time"] is None
    point = await replay_point(nats_log, "r1")
    assert (point.version, point.time, point.state.room) == (7, None, reopened)
    assert "time unknown" in format_state(point)[0]
    listed = await rooms(nats_log)
    assert format_rooms(listed)[1].split()[-2:] == ["????-??-??", "??:??:??"]
    assert room_to_dict(listed[0])["last_activity"] is None


async def remove_versions(log: NatsEventLog, url: str, message: int) -> None:
    """Room ``room-1`` on ``log`` with its JetStream ``message`` removed, as a retention limit
    or ``nats stream rmm`` removes one: messages 1 to 4 hold its versions 1 (room.created),
    2-3 (sms attached), 4-5 (ws attached), 6-7 (sms muted)."""
    await room_of_four_messages(log)
    await remove_message(url, message)


async def room_of_four_messages(log: EventLog) -> None:
    """Room ``room-1``, in four appends (see ``remove_versions``)."""
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        await kit.create_room(room_id="room-1")
        await kit.attach_channel("room-1", "sms")
        await kit.attach_channel("room-1", "ws")
        await kit.mute("room-1", "sms")


async def remove_message(url: str, message: int) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_msg("ROOMKIT", message)
    finally:
        await nc.close()


class TestMissingVersions:
    """A room's log with versions removed from under it (a JetStream message deleted)."""

    @pytest.fixture
    async def gapped(self, nats_log: NatsEventLog, nats_server: NatsServer) -> NatsEventLog:
        await remove_versions(nats_log, nats_server.url, 3)  # versions 4-5
        return nats_log

    async def test_an_import_into_a_target_missing_versions_says_so(
        self, nats_log: NatsEventLog, nats_server: NatsServer
    ) -> None:
        # The room's whole export, imported into its log that lost v4-5 since: "0 appended,
        # 7 already present", though the target cannot take them back.
        await room_of_four_messages(nats_log)
        lines = await exported(nats_log, "room-1")
        await remove_message(nats_server.url, 3)
        with pytest.raises(roomkit.audit.MissingRecords) as refused:
            await import_room(nats_log, lines)
        assert (refused.value.first, refused.value.last) == (4, 5)
        assert "cannot import into the target" in str(refused.value)

    async def test_replay_refuses_a_state_past_the_gap(self, gapped: NatsEventLog) -> None:
        assert (await replay_point(gapped, "room-1", 3)).version == 3
        for until in (4, 5, 7, None):
            with pytest.raises(roomkit.audit.MissingRecords) as refused:
                await replay(gapped, "room-1", until)
            assert (refused.value.room_id, refused.value.first, refused.value.last) == (
                "room-1",
                4,
                5 if until is None or until > 5 else until,
            )

    async def test_timeline_up_to_a_version_inside_the_gap_ends_with_it(
        self, gapped: NatsEventLog
    ) -> None:
        found = [(e.kind, e.version, e.missing) async for e in timeline(gapped, "room-1", until=4)]
        assert found[-1] == (roomkit.audit.MISSING, 4, (4, 4))
        assert [version for _, version, _ in found] == [1, 2, 3, 4]
        after = [e.version async for e in timeline(gapped, "room-1", after_version=5)]
        assert after == [6, 7]  # the gap is below them: not theirs to say

    async def test_tail_of_the_room_shows_the_gap(self, gapped: NatsEventLog) -> None:
        lines: list[str] = []
        await follow(gapped, lines.append, room_id="room-1", last=3, live=False, format="json")
        entries = [json.loads(line) for line in lines]
        assert [(e["version"], e["kind"]) for e in entries] == [
            (4, "versions.missing"),
            (6, "channel.updated"),
            (7, "message.recorded"),
        ]
        assert entries[0]["missing"] == {"first": 4, "last": 5}

    async def test_export_stops_at_the_gap(self, gapped: NatsEventLog) -> None:
        lines = export_room(gapped, "room-1")
        assert [json.loads(await lines.__anext__())["version"] for _ in range(3)] == [1, 2, 3]
        with pytest.raises(roomkit.audit.MissingRecords, match="versions 4-5 are missing"):
            await lines.__anext__()
