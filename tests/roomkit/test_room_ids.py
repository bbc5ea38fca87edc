"""Room ids: any non-empty str of at most 255 characters works, as in RoomKit 0.3.0; rooms whose
id is not a valid stream id live in a stream named after it (roomkit/core/_room_ids.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import EventLog
from eventlog._streams import check_stream_id
from roomkit import InvalidRoomIdError, RoomKit
from roomkit.core._room_ids import MAX_ROOM_ID_LENGTH, check_room_id, room_of_stream, room_stream
from tests.roomkit.kit_helpers import SimpleChannel, text

# Ids a 0.3.0 user may well have: none of them is a valid stream id but the last.
ROOM_IDS = [
    "support:42",
    "alice@example.com",
    "tenant/acme/room 7",
    "room.with.dots",
    "héllo wörld ✓",
    "x" * 200,  # too long to be encoded reversibly
    "__looks_encoded",  # a valid stream id, but in the encoded forms' namespace
    "plain-id_1",
]

room_ids = st.text(min_size=1, max_size=MAX_ROOM_ID_LENGTH).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)


class TestStreams:
    def test_a_valid_stream_id_is_its_own_stream(self) -> None:
        # What every log written before this change holds: such rooms keep their streams.
        for room_id in ["support-1", "r1", "0123456789abcdef0123456789abcdef", "a" * 64, "_x"]:
            assert room_stream(room_id) == room_id
            assert room_of_stream(room_id) == room_id

    @given(room_ids)
    def test_every_room_id_has_a_valid_stream(self, room_id: str) -> None:
        stream = room_stream(room_id)
        assert check_stream_id(stream) == stream
        assert room_of_stream(stream) in (room_id, None)
        if len(room_id.encode()) <= 45:
            assert room_of_stream(stream) == room_id  # reversible: the audit tools show it

    @given(room_ids, room_ids)
    def test_two_room_ids_never_share_a_stream(self, one: str, other: str) -> None:
        if one != other:
            assert room_stream(one) != room_stream(other)

    def test_ids_starting_with_two_underscores_keep_their_streams(self) -> None:
        # Logs written when every room id had to be a stream id hold such streams.
        for room_id in ["__support", "__b", "__bcGxhaW4", "__h", "__hshort"]:
            assert room_stream(room_id) == room_id
            assert room_of_stream(room_id) == room_id

    def test_an_id_spelled_like_an_encoded_stream_is_refused(self) -> None:
        # It would share the stream of another room id.
        for other in ["support:42", "y" * 100]:
            encoded = room_stream(other)
            with pytest.raises(InvalidRoomIdError, match="reserved"):
                room_stream(encoded)
            with pytest.raises(InvalidRoomIdError, match="reserved"):
                check_room_id(encoded)

    def test_a_hashed_stream_does_not_tell_its_room_id(self) -> None:
        assert room_of_stream(room_stream("y" * 100)) is None  # read its room.created

    @pytest.mark.parametrize(
        "bad", ["", "r" * (MAX_ROOM_ID_LENGTH + 1), "\ud800", 42, None, b"bytes"]
    )
    def test_invalid_room_ids_are_a_typed_error(self, bad: object) -> None:
        with pytest.raises(InvalidRoomIdError):
            check_room_id(bad)
        with pytest.raises(InvalidRoomIdError):
            room_stream(bad)  # type: ignore[arg-type]


class TestKit:
    """Each scenario runs on the memory log and on JetStream; the ``kit`` fixture then checks
    that a kit rebuilt from the log has the same rooms, bindings, timeline and read markers."""

    async def test_rooms_with_any_id_work_end_to_end(
        self, kit: RoomKit, event_log: EventLog
    ) -> None:
        kit.register_channel(SimpleChannel("sms"))
        ws = SimpleChannel("ws")
        kit.register_channel(ws)
        for n, room_id in enumerate(ROOM_IDS):
            room = await kit.create_room(room_id=room_id, metadata={"n": n})
            assert room.id == room_id
            await kit.attach_channel(room_id, "sms")
            await kit.attach_channel(room_id, "ws")
            result = await kit.process_inbound(text("sms", f"hello {n}"), room_id=room_id)
            assert result.event is not None and result.event.room_id == room_id
            await kit.mark_read(room_id, "ws", result.event.id)
            await kit.mute(room_id, "ws")
            assert await kit.detach_channel(room_id, "ws")
        assert ws.texts() == [f"hello {n}" for n in range(len(ROOM_IDS))]
        for n, room_id in enumerate(ROOM_IDS):
            room = await kit.get_room(room_id)
            assert room.metadata == {"n": n}
            assert [b.channel_id for b in await kit.list_bindings(room_id)] == ["sms"]
            bodies = [e.content.body for e in await kit.get_timeline(room_id)]  # type: ignore[union-attr]
            assert f"hello {n}" in bodies
        streams = {info.stream for info in await event_log.streams()}
        assert streams == {room_stream(room_id) for room_id in ROOM_IDS}

    async def test_a_duplicate_is_recognised_in_a_room_with_any_id(self, kit: RoomKit) -> None:
        kit.register_channel(SimpleChannel("sms"))
        await kit.create_room(room_id="support:42")
        await kit.attach_channel("support:42", "sms")
        first = await kit.process_inbound(
            text("sms", "once", idempotency_key="k1"), room_id="support:42"
        )
        again = await kit.process_inbound(
            text("sms", "once", idempotency_key="k1"), room_id="support:42"
        )
        assert again.blocked and again.reason == "duplicate"
        assert again.event is not None and first.event is not None
        assert again.event.id == first.event.id

    async def test_an_invalid_room_id_is_refused_before_anything_is_written(
        self, kit: RoomKit, event_log: EventLog
    ) -> None:
        kit.register_channel(SimpleChannel("sms"))
        with pytest.raises(InvalidRoomIdError):
            await kit.create_room(room_id="r" * (MAX_ROOM_ID_LENGTH + 1))
        with pytest.raises(InvalidRoomIdError):
            await kit.process_inbound(text("sms", "hi"), room_id="")
        # Those that are false, too: they made a room of a new id without a word.
        for not_an_id in (123, 0, False, 0.0, [], {}):
            with pytest.raises(InvalidRoomIdError):
                await kit.create_room(room_id=not_an_id)  # type: ignore[arg-type]
        reserved = room_stream("support:42")
        # Refused before the room's actor sees it (there, it failed the actor's start again
        # and again, and the caller got "room unavailable").
        with pytest.raises(InvalidRoomIdError, match="reserved"):
            await kit.create_room(room_id=reserved)
        with pytest.raises(InvalidRoomIdError, match="reserved"):
            await kit.process_inbound(text("sms", "hi"), room_id=reserved)
        assert await event_log.streams() == []
        created = await kit.create_room(room_id="")  # as 0.3.0: a new id
        assert len(created.id) == 32
