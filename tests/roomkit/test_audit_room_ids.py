"""The audit tools and the ``roomkit`` CLI with room ids that are not stream ids.

Users name rooms by id (``"support:42"``); the log holds them in encoded streams. Every tool
takes the id, reads the stream, and shows the id back (see roomkit/core/_room_ids.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventlog import EventLog, MemoryEventLog
from roomkit import InvalidRoomIdError, RoomKit, RoomNotFoundError
from roomkit.audit import (
    TimelineBuilder,
    TimelineEntry,
    export_room,
    follow,
    format_state,
    import_room,
    replay,
    replay_point,
    rooms,
    timeline,
    write_replay,
    write_rooms,
)
from roomkit.cli import EXIT_CONFLICT, EXIT_OK, EXIT_UNKNOWN_ROOM, EXIT_USAGE
from roomkit.core._domain import DomainEvent, ReadMarked, RoomCreated, dump, encode_domain_event
from roomkit.core._room_ids import room_stream
from roomkit.models.room import Room
from tests.roomkit.kit_helpers import SimpleChannel, text
from tests.roomkit.test_cli import run  # the CLI in process, as its own tests run it

LONG = "tenant/acme/" + "y" * 188  # 200 characters: its stream is a hash, not reversible
# In creation order; the long id last, so that the log ends with its records.
ROOM_IDS = ["support:42", "alice@example.com", "__weird", "r1", LONG]
ENCODED = [room_id for room_id in ROOM_IDS if room_id != "r1"]


# -- helpers ---------------------------------------------------------------------------------


async def _kit_log() -> MemoryEventLog:
    """Every room of ``ROOM_IDS``: two channels, one message ``hello <n>``, ``ws`` muted."""
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))
        for n, room_id in enumerate(ROOM_IDS):
            await kit.create_room(room_id=room_id)
            await kit.attach_channel(room_id, "sms")
            await kit.attach_channel(room_id, "ws")
            await kit.process_inbound(text("sms", f"hello {n}"), room_id=room_id)
            await kit.mute(room_id, "ws")
    return log


async def entries(log: EventLog, room_id: str) -> list[TimelineEntry]:
    return [entry async for entry in timeline(log, room_id)]


async def exported(log: EventLog, room_id: str) -> list[str]:
    return [line async for line in export_room(log, room_id)]


@pytest.fixture
async def log() -> MemoryEventLog:
    return await _kit_log()


def test_the_ids_need_encoded_streams() -> None:
    # What the other tests rely on: only "__weird" and "r1" are their own streams, and LONG
    # is not reversible.
    own = [room_id for room_id in ROOM_IDS if room_stream(room_id) == room_id]
    assert own == ["__weird", "r1"]
    assert room_stream(LONG).startswith("__h")


# -- timeline and replay ---------------------------------------------------------------------


class TestTimelineAndReplay:
    @pytest.mark.parametrize("room_id", ROOM_IDS)
    async def test_timeline_reads_the_room_and_shows_its_id(
        self, log: MemoryEventLog, room_id: str
    ) -> None:
        found = await entries(log, room_id)
        assert {entry.room_id for entry in found} == {room_id}
        assert [entry.version for entry in found] == list(
            range(1, await log.last_version(room_stream(room_id)) + 1)
        )
        greetings = [entry.text for entry in found if (entry.text or "").startswith("hello")]
        assert greetings == [f"hello {ROOM_IDS.index(room_id)}"]

    @pytest.mark.parametrize("room_id", ROOM_IDS)
    async def test_replay_point_shows_the_room_id(self, log: MemoryEventLog, room_id: str) -> None:
        point = await replay_point(log, room_id)
        assert point.room_id == room_id
        assert point.state.room is not None and point.state.room.id == room_id
        assert point.state.bindings["ws"].muted
        assert format_state(point)[0].startswith(f"room {room_id} as of v{point.version} (")
        assert (await replay(log, room_id, until=1)).bindings == {}

    async def test_write_replay_text_and_json(self, log: MemoryEventLog) -> None:
        lines: list[str] = []
        await write_replay(log, "support:42", lines.append)
        version = await log.last_version(room_stream("support:42"))
        assert lines[0] == f"room support:42: log at version {version}"
        assert any('"hello 0"' in line for line in lines)
        as_json: list[str] = []
        await write_replay(log, LONG, as_json.append, format="json")
        assert {json.loads(line)["room_id"] for line in as_json} == {LONG}
        state: list[str] = []
        await write_replay(log, "alice@example.com", state.append, at=2, format="json")
        assert json.loads(state[0])["room_id"] == "alice@example.com"

    async def test_builder_reads_a_long_id_from_room_created(self, log: MemoryEventLog) -> None:
        builder = TimelineBuilder()
        shown = {builder.entry(record).room_id for record in await log.read_all()}
        assert shown == set(ROOM_IDS)
        assert builder.state(LONG).bindings.keys() == {"sms", "ws"}

    async def test_unknown_room_is_named_by_its_id(self, log: MemoryEventLog) -> None:
        message = "^Room support:43 not found in the log$"
        with pytest.raises(RoomNotFoundError, match=message):
            await replay(log, "support:43")
        with pytest.raises(RoomNotFoundError, match=message):
            await entries(log, "support:43")
        with pytest.raises(RoomNotFoundError, match=message):
            await exported(log, "support:43")

    @pytest.mark.parametrize("bad", ["", "z" * 256])
    async def test_an_invalid_room_id_is_refused(self, log: MemoryEventLog, bad: str) -> None:
        lines: list[str] = []
        with pytest.raises(InvalidRoomIdError):
            await replay(log, bad)
        with pytest.raises(InvalidRoomIdError):
            await entries(log, bad)
        with pytest.raises(InvalidRoomIdError):
            await exported(log, bad)
        with pytest.raises(InvalidRoomIdError):
            await write_replay(log, bad, lines.append)
        with pytest.raises(InvalidRoomIdError):
            await follow(log, lines.append, room_id=bad, live=False)
        with pytest.raises(InvalidRoomIdError):
            TimelineBuilder().state(bad)
        assert lines == []


# -- the room list ---------------------------------------------------------------------------


class TestRooms:
    async def test_lists_room_ids_in_order(self, log: MemoryEventLog) -> None:
        listed = await rooms(log)
        assert [info.room_id for info in listed] == sorted(ROOM_IDS)
        assert {info.room_id: info.stream for info in listed} == {
            room_id: room_stream(room_id) for room_id in ROOM_IDS
        }
        lines: list[str] = []
        assert await write_rooms(log, lines.append) == len(ROOM_IDS)
        assert [line.split()[0] for line in lines[1:]] == sorted(ROOM_IDS)
        as_json: list[str] = []
        await write_rooms(log, as_json.append, format="json")
        versions = {json.loads(line)["room_id"]: json.loads(line)["version"] for line in as_json}
        assert versions == {
            room_id: await log.last_version(room_stream(room_id)) for room_id in ROOM_IDS
        }

    async def test_a_stream_that_tells_no_room_id_shows_its_name(self) -> None:
        log = MemoryEventLog()
        # A hashed stream whose first record is not its room.created, one whose room.created
        # names another room, and the stream of the plain id "__weird".
        hashed, other = room_stream(LONG), room_stream("z" * 100)
        await _append(log, hashed, ReadMarked(channel_id="sms"))
        await _append(log, other, RoomCreated(room=dump(Room(id=LONG))))
        await _append(log, "__weird", RoomCreated(room=dump(Room(id="__weird"))))
        assert [info.room_id for info in await rooms(log)] == sorted([hashed, other, "__weird"])


async def _append(log: EventLog, stream: str, event: DomainEvent) -> None:
    await log.append(stream, [encode_domain_event(event, timestamp=1.0)], expected_version=0)


# -- export and import -----------------------------------------------------------------------


class TestTransfer:
    @pytest.mark.parametrize("room_id", ENCODED)
    async def test_export_then_import_keeps_the_room(
        self, log: MemoryEventLog, room_id: str
    ) -> None:
        lines = await exported(log, room_id)
        assert {json.loads(line)["stream"] for line in lines} == {room_stream(room_id)}
        target = MemoryEventLog()
        (imported,) = (await import_room(target, lines)).streams
        assert (imported.room_id, imported.stream) == (room_id, room_stream(room_id))
        moved = [(e.room_id, e.version, e.what) for e in await entries(target, room_id)]
        assert moved == [(e.room_id, e.version, e.what) for e in await entries(log, room_id)]


# -- follow (the CLI's tail) -----------------------------------------------------------------


class TestFollow:
    async def test_every_room_under_its_id(self, log: MemoryEventLog) -> None:
        lines: list[str] = []
        await follow(log, lines.append, last=1000, live=False, format="json")
        assert {json.loads(line)["room_id"] for line in lines} == set(ROOM_IDS)

    async def test_a_long_id_met_past_its_first_record(self, log: MemoryEventLog) -> None:
        # The log ends with LONG's records: the last two are not its room.created.
        lines: list[str] = []
        await follow(log, lines.append, last=2, live=False)
        assert [line.split()[0] for line in lines[1:]] == [LONG, LONG]

    async def test_one_room_live(self, log: MemoryEventLog) -> None:
        lines: list[str] = []
        async with RoomKit(log=log) as kit, anyio.create_task_group() as tg:
            kit.register_channel(SimpleChannel("sms"))
            kit.register_channel(SimpleChannel("ws"))
            tg.start_soon(lambda: follow(log, lines.append, room_id="support:42", format="json"))
            await anyio.wait_all_tasks_blocked()
            assert lines and {json.loads(line)["room_id"] for line in lines} == {"support:42"}
            await kit.process_inbound(text("sms", "elsewhere"), room_id="alice@example.com")
            await kit.process_inbound(text("sms", "again"), room_id="support:42")
            await anyio.wait_all_tasks_blocked()
            texts = [json.loads(line)["text"] for line in lines]
            assert "again" in texts and "elsewhere" not in texts
            assert {json.loads(line)["room_id"] for line in lines} == {"support:42"}
            tg.cancel_scope.cancel()


# -- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of every room of ``ROOM_IDS`` in one file."""
    path = tmp_path_factory.mktemp("room-ids") / "all.jsonl"

    async def build() -> None:
        log = await _kit_log()
        with path.open("w", encoding="utf-8") as out:
            for room_id in ROOM_IDS:
                out.writelines(await exported(log, room_id))

    anyio.run(build)
    return path


class TestCli:
    def test_rooms(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "rooms", "--file", str(export))
        assert code == EXIT_OK
        assert [line.split()[0] for line in out.splitlines()[1:]] == sorted(ROOM_IDS)
        _, out, _ = run(capsys, "rooms", "--file", str(export), "--format", "json")
        assert [json.loads(line)["room_id"] for line in out.splitlines()] == sorted(ROOM_IDS)

    @pytest.mark.parametrize("room_id", ENCODED)
    def test_replay(self, capsys: pytest.CaptureFixture[str], export: Path, room_id: str) -> None:
        code, out, err = run(capsys, "replay", room_id, "--file", str(export))
        assert (code, err) == (EXIT_OK, "")
        assert out.startswith(f"room {room_id}: log at version ")
        assert f'"hello {ROOM_IDS.index(room_id)}"' in out
        code, out, _ = run(capsys, "replay", room_id, "--file", str(export), "--at", "1")
        assert code == EXIT_OK and out.startswith(f"room {room_id} as of v1 (")

    def test_export_and_tail(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "export", "alice@example.com", "--file", str(export))
        assert code == EXIT_OK
        assert {json.loads(line)["stream"] for line in out.splitlines()} == {
            room_stream("alice@example.com")
        }
        code, out, _ = run(capsys, "tail", "--file", str(export), "-n", "1")
        assert code == EXIT_OK and out.splitlines()[1].split()[0] == LONG

    def test_invalid_and_unknown_room_ids(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        for command in ("replay", "export", "tail"):
            code, out, err = run(capsys, command, "", "--file", str(export))
            assert (code, out) == (EXIT_USAGE, "")
            assert err == f"roomkit {command}: a room id cannot be empty\n"
        code, _, err = run(capsys, "replay", "support:43", "--file", str(export))
        assert code == EXIT_UNKNOWN_ROOM
        assert err == f"roomkit replay: Room support:43 not found in {export}\n"

    def test_import_reports_room_ids(
        self, capsys: pytest.CaptureFixture[str], export: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        target = MemoryEventLog()

        @asynccontextmanager
        async def fake_nats_log(
            args: Any, *, create: bool, check: Any = None
        ) -> AsyncIterator[EventLog]:
            yield target

        monkeypatch.setattr("roomkit.cli._nats_log", fake_nats_log)
        code, out, _ = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(export))
        assert code == EXIT_OK
        assert [line.split(": ")[0] for line in out.splitlines()] == ROOM_IDS

    @pytest.mark.parametrize("room_id", ["support:42", LONG])
    def test_an_import_conflict_names_the_room_id(
        self,
        capsys: pytest.CaptureFixture[str],
        export: Path,
        monkeypatch: pytest.MonkeyPatch,
        room_id: str,
    ) -> None:
        target = MemoryEventLog()

        @asynccontextmanager
        async def fake_nats_log(
            args: Any, *, create: bool, check: Any = None
        ) -> AsyncIterator[EventLog]:
            yield target

        monkeypatch.setattr("roomkit.cli._nats_log", fake_nats_log)
        assert run(capsys, "import", "--log", "nats://fake:4222", "--file", str(export))[0] == 0
        records = [json.loads(line) for line in export.read_text().splitlines()]
        (created,) = [
            r for r in records if (r["stream"], r["version"]) == (room_stream(room_id), 1)
        ]
        other = export.parent / "other-created.jsonl"
        other.write_text(json.dumps(created | {"timestamp": created["timestamp"] + 1}) + "\n")
        code, _, err = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(other))
        assert code == EXIT_CONFLICT
        assert err.startswith(f"roomkit import: room {room_id!r} already exists in the target")
        assert room_stream(room_id) not in err
