"""What the audit's text output shows: why a message was blocked or a room changed, columns
that align, senders named alike by ``replay`` and ``tail``, nothing a terminal would act on, and
output on a stream that is not UTF-8."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import anyio
import pytest

from eventlog import MemoryEventLog
from roomkit import HookResult, HookTrigger, RoomContext, RoomEvent, RoomKit
from roomkit.audit import TimelineEntry, export_room, follow, format_entry, replay
from roomkit.cli import EXIT_OK, main
from roomkit.core._domain import RoomUpdated, dump, encode_domain_event
from roomkit.models.enums import RoomStatus
from tests.roomkit.kit_helpers import SimpleChannel, text
from tests.roomkit.test_cli import run

ESC, BEL = "\x1b", "\x07"
# Cursor up, erase the line: raw, it would rewrite the audit line above it.
EVIL = f"ok{ESC}[1A{ESC}[2Kforged"
EVIL_NAME = f"Mal{ESC}]0;pwned{BEL}lory"  # sets the terminal's title
NEWLINE_ROOM = "r2\nFAKE-ROOM 999"  # a second row in the room list, raw
# Beyond the BMP (JSON writes a surrogate pair), and a right-to-left override and mark that
# would reorder what the line shows.
WINK = "wink \U0001f600 \u202elive\u202c \u200fok"
# What acts on a terminal: C0 but the newline that ends each line, DEL, C1.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


async def _conversation() -> MemoryEventLog:
    """Room ``r1``: Zoë joins on sms, a message blocked with a reason, one in Chinese, one
    holding ESC sequences, a participant whose name holds some, then a pause by timer; and a
    room whose id holds a newline."""
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST, name="guard")
        async def guard(event: RoomEvent, context: RoomContext) -> HookResult:
            if "spam" in getattr(event.content, "body", ""):
                return HookResult.block("contains a phishing link")
            return HookResult.allow()

        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.ensure_participant("r1", "sms", "u1", display_name="Zoë")
        await kit.process_inbound(text("sms", "buy spam here", sender="u1"))
        await kit.process_inbound(text("sms", "hello 你好", sender="u1"))
        await kit.process_inbound(text("sms", WINK, sender="u1"))
        await kit.process_inbound(text("sms", EVIL, sender="u1"))
        await kit.ensure_participant("r1", "sms", "m1", display_name=EVIL_NAME)
        await kit.create_room(room_id=NEWLINE_ROOM)
    # A pause by timer, as the room's timers record it (without waiting for the timer).
    room = (await replay(log, "r1")).room
    assert room is not None
    paused = room.model_copy(update={"status": RoomStatus.PAUSED})
    event = RoomUpdated(room=dump(paused), reason="room_paused_by_timer")
    version = await log.last_version("r1")
    await log.append("r1", [encode_domain_event(event, timestamp=None)], expected_version=version)
    return log


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text-output") / "rooms.jsonl"

    async def build() -> None:
        log = await _conversation()
        with path.open("w", encoding="utf-8") as out:
            for room_id in ("r1", NEWLINE_ROOM):
                async for line in export_room(log, room_id):
                    out.write(line)

    anyio.run(build)
    return path


def replay_lines(capsys: pytest.CaptureFixture[str], export: Path, *argv: str) -> list[str]:
    code, out, err = run(capsys, "replay", "r1", "--file", str(export), *argv)
    assert (code, err) == (EXIT_OK, "")
    return out.splitlines()


class TestReasons:
    def test_a_blocked_message_shows_the_reason_the_hook_gave(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        (line,) = [line for line in replay_lines(capsys, export) if "BLOCKED" in line]
        assert line.endswith('"buy spam here" BLOCKED by guard: contains a phishing link')
        entries = [json.loads(line) for line in replay_lines(capsys, export, "--format", "json")]
        (blocked,) = [e for e in entries if e["status"] == "blocked"]
        assert (blocked["blocked_by"], blocked["block_reason"]) == (
            "guard",
            "contains a phishing link",
        )
        # A new key on every entry: the shape stays the same for all of them.
        assert all(e["block_reason"] is None for e in entries if e is not blocked)

    def test_a_pause_by_timer_says_room_once(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        (line,) = [line for line in replay_lines(capsys, export) if "timer" in line]
        assert line.endswith(" room paused by timer (status paused)")
        assert "room room" not in line


def test_the_kind_column_fits_the_longest_kind() -> None:
    def line(kind: str) -> str:
        return format_entry(TimelineEntry("r1", 1, 1, None, kind, "sms", "what"))

    lines = [line(kind) for kind in ("observation.recorded", "participant.joined", "read.marked")]
    # The columns after the kind start at the same place, one space at least after it.
    assert len({line.index(" sms ") for line in lines}) == 1
    assert "observation.recorded sms" in lines[0]


class TestNothingATerminalActsOn:
    def test_timeline_and_state(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        for argv in ((), ("--at", "2999-01-01T00:00:00+00:00")):  # the state as it is now
            out = "\n".join(replay_lines(capsys, export, *argv))
            assert not CONTROL.search(out), argv
            assert "Mal\\x1b]0;pwned\\x07lory" in out
        timeline = "\n".join(replay_lines(capsys, export))
        assert '"ok\\x1b[1A\\x1b[2Kforged" delivered' in timeline
        # What reorders or hides part of a line, shown escaped; what merely shows, as it is.
        assert '"wink \U0001f600 \\u202elive\\u202c \\u200fok" delivered' in timeline

    def test_room_ids_in_the_room_list_and_tail(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        code, out, _ = run(capsys, "rooms", "--file", str(export))
        assert code == EXIT_OK
        header, *rows = out.splitlines()
        assert [row.split()[0] for row in rows] == ["r1", "r2\\x0aFAKE-ROOM"]
        code, out, _ = run(capsys, "tail", "--file", str(export), "-n", "50")
        assert code == EXIT_OK and not CONTROL.search(out)
        assert "r2\\x0aFAKE-ROOM 999     v1" in out
        code, out, _ = run(capsys, "replay", NEWLINE_ROOM, "--file", str(export))
        assert out.splitlines()[0] == "room r2\\x0aFAKE-ROOM 999: log at version 1"

    def test_json_keeps_the_exact_text(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        lines = replay_lines(capsys, export, "--format", "json")
        assert not any(ESC in line for line in lines)  # JSON writes it \u001b
        entries = [json.loads(line) for line in lines]
        assert EVIL in [e["text"] for e in entries]
        assert EVIL_NAME in [e["who"] for e in entries]


def test_tail_of_every_room_names_senders_as_replay_does(
    capsys: pytest.CaptureFixture[str], export: Path
) -> None:
    # Tail of every room met r1 past the record where Zoë joined: it named her u1.
    code, out, _ = run(capsys, "tail", "--file", str(export), "-n", "8", "--format", "json")
    assert code == EXIT_OK
    tailed = [json.loads(line) for line in out.splitlines()]
    replayed = {
        e["version"]: e for e in map(json.loads, replay_lines(capsys, export, "--format", "json"))
    }
    mine = [e for e in tailed if e["room_id"] == "r1"]
    assert mine and all(e == replayed[e["version"]] for e in mine)
    assert "Zoë@sms" in [e["who"] for e in mine]


async def test_follow_of_every_room_names_senders_as_replay_does() -> None:
    log = await _conversation()
    lines: list[str] = []
    await follow(log, lines.append, last=9, live=False)
    (hello,) = [line for line in lines if "hello" in line]
    assert 'Zoë@sms        "hello 你好" delivered' in hello


class TestStdoutNotUtf8:
    @staticmethod
    def main_on_latin1(monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
        """Run ``roomkit`` with a latin-1 stdout (set here: pytest's capture replaces one set
        by a fixture); return what it wrote."""
        raw = io.BytesIO()
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, encoding="latin-1"))
        assert main(list(argv)) == EXIT_OK
        return raw.getvalue().decode("latin-1")

    def test_text_escapes_what_the_encoding_cannot_hold(
        self, monkeypatch: pytest.MonkeyPatch, export: Path
    ) -> None:
        out = self.main_on_latin1(monkeypatch, "replay", "r1", "--file", str(export))
        assert 'Zoë@sms        "hello \\u4f60\\u597d" delivered' in out
        assert '"wink \\ud83d\\ude00 \\u202elive\\u202c \\u200fok" delivered' in out

    def test_json_stays_valid_and_means_the_same(
        self, monkeypatch: pytest.MonkeyPatch, export: Path
    ) -> None:
        argv = ("replay", "r1", "--file", str(export), "--format", "json")
        out = self.main_on_latin1(monkeypatch, *argv)
        texts = [json.loads(line)["text"] for line in out.splitlines()]
        assert "hello 你好" in texts and WINK in texts
