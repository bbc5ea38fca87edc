"""The ``roomkit`` command line, run in-process with an export file as its log."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from eventlog import EventLog, InvalidAppend, MemoryEventLog
from eventlog._redacted import redacted
from eventlog.testing_nats import NatsServer
from roomkit import HookResult, HookTrigger, RoomContext, RoomEvent, RoomKit
from roomkit.audit import export_room, import_room
from roomkit.cli import (
    EXIT_BAD_INPUT,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN_ROOM,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
)
from roomkit.core._domain import ReadMarked, RoomCreated, dump, encode_domain_event
from roomkit.ingress.cli import _Stderr
from roomkit.models.room import Room
from tests.roomkit.kit_helpers import SimpleChannel, text
from tests.roomkit.test_audit import remove_versions
from tests.roomkit.test_ingress import publish_raw


async def _conversation() -> MemoryEventLog:
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(SimpleChannel("ws"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def no_spam(event: RoomEvent, context: RoomContext) -> HookResult:
            if "spam" in getattr(event.content, "body", ""):
                return HookResult.block("spam detected")
            return HookResult.allow()

        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ws")
        await kit.process_inbound(text("sms", "hello", idempotency_key="k1"))
        await kit.process_inbound(text("sms", "buy spam"))
        await kit.mute("r1", "ws")
    return log


async def _write_export(log: EventLog, room_id: str, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        async for line in export_room(log, room_id):
            out.write(line)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of room ``r1``: 2 channels, a delivered and a blocked message, a mute."""
    path = tmp_path_factory.mktemp("export") / "r1.jsonl"

    async def build() -> None:
        await _write_export(await _conversation(), "r1", path)

    anyio.run(build)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def versions(export: Path) -> int:
    return sum(1 for line in export.read_text().splitlines() if line.strip())


class TestReplay:
    def test_text_timeline_shows_every_version(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        code, out, err = run(capsys, "replay", "r1", "--file", str(export))
        assert (code, err) == (EXIT_OK, "")
        lines = out.splitlines()
        total = versions(export)
        assert lines[0] == f"room r1: log at version {total}"
        assert lines[1].startswith("-- ") and lines[1].endswith(" (UTC) --")
        assert [line.split()[0] for line in lines[2:]] == [f"v{n}" for n in range(1, total + 1)]
        assert any('"buy spam" BLOCKED by no_spam' in line for line in lines)
        assert any("delivery.recorded" in line and "-> ws ok" in line for line in lines)

    def test_json_lines(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "replay", "r1", "--file", str(export), "--format", "json")
        assert code == EXIT_OK
        entries = [json.loads(line) for line in out.splitlines()]
        assert [e["version"] for e in entries] == list(range(1, versions(export) + 1))
        blocked = next(e for e in entries if e["status"] == "blocked")
        assert (blocked["blocked_by"], blocked["text"]) == ("no_spam", "buy spam")

    def test_state_at_a_version(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "replay", "r1", "--file", str(export), "--at", "3")
        assert code == EXIT_OK
        lines = out.splitlines()
        assert lines[0].startswith("room r1 as of v3 (")
        assert "  status: active" in lines[1]
        assert "  bindings (1):" in lines
        assert any(line.split()[0] == "sms" and "muted no" in line for line in lines)
        code, out, _ = run(capsys, "replay", "r1", "--file", str(export))
        last = versions(export)
        code, out, _ = run(
            capsys, "replay", "r1", "--file", str(export), "--at", str(last), "--format", "json"
        )
        state = json.loads(out)
        assert state["version"] == last
        assert {b["channel_id"]: b["muted"] for b in state["bindings"]} == {
            "sms": False,
            "ws": True,
        }
        assert list(state["idempotency_keys"]) == ["k1"]

    def test_a_version_past_the_end_says_so(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        last = versions(export)
        code, out, err = run(capsys, "replay", "r1", "--file", str(export), "--at", "999")
        assert code == EXIT_OK
        assert out.startswith(f"room r1 as of v{last} (")
        assert f"room r1 is at v{last}, not yet at v999" in err

    def test_state_at_a_time(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "replay", "r1", "--file", str(export), "--at", "2000-01-01")
        assert code == EXIT_OK
        assert out.splitlines() == ["room r1 as of v0 (the start)", "  not created yet"]
        code, out, _ = run(
            capsys, "replay", "r1", "--file", str(export), "--at", "2999-01-01T00:00:00+00:00"
        )
        assert out.startswith(f"room r1 as of v{versions(export)} (")


class TestOtherCommands:
    def test_rooms(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        code, out, _ = run(capsys, "rooms", "--file", str(export))
        assert code == EXIT_OK
        header, row = out.splitlines()
        assert header.split()[:2] == ["ROOM", "VERSION"]
        assert row.split()[:2] == ["r1", str(versions(export))]
        code, out, _ = run(capsys, "rooms", "--file", str(export), "--format", "json")
        (room,) = [json.loads(line) for line in out.splitlines()]
        assert (room["room_id"], room["version"]) == ("r1", versions(export))

    def test_export_writes_the_same_lines(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        code, out, _ = run(capsys, "export", "r1", "--file", str(export))
        assert code == EXIT_OK
        assert out == export.read_text()

    def test_export_of_one_room_of_a_file_keeps_its_lines(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        # Each record's position was replaced by its line number in the file: the order of
        # the rooms' records in the source log, which only the positions keep, was lost.
        async def two_rooms() -> MemoryEventLog:
            log = MemoryEventLog()
            async with RoomKit(log=log) as kit:
                for room_id in ("a", "b"):
                    await kit.create_room(room_id=room_id)
                for room_id in ("a", "b"):
                    await kit.close_room(room_id)
            return log

        log = anyio.run(two_rooms)
        a_lines, b_lines = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        anyio.run(_write_export, log, "a", a_lines)
        anyio.run(_write_export, log, "b", b_lines)
        whole = tmp_path / "whole.jsonl"
        whole.write_text(a_lines.read_text() + b_lines.read_text())
        code, out, _ = run(capsys, "export", "b", "--file", str(whole))
        assert code == EXIT_OK
        assert out == b_lines.read_text()  # positions 2, 4: the source log's

    def test_tail_of_a_file_prints_the_last_entries_and_exits(
        self, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        code, out, _ = run(capsys, "tail", "r1", "--file", str(export), "-n", "2")
        assert code == EXIT_OK
        total = versions(export)
        assert [line.split()[0] for line in out.splitlines()[1:]] == [f"v{total - 1}", f"v{total}"]

    def test_help_documents_the_exit_codes(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "--help")
        assert code == EXIT_OK
        for code_line in ("0  success", "2  usage", "3  the log cannot be reached", "4  unknown"):
            assert code_line in out

    def test_serve_s_help_says_its_defaults(self, capsys: pytest.CaptureFixture[str]) -> None:
        # --nats's was given as an example, not as the default it is.
        code, out, _ = run(capsys, "serve", "--help")
        assert code == EXIT_OK
        assert "the NATS server (default nats://127.0.0.1:4222)" in " ".join(out.split())

    def test_python_dash_m_roomkit(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "roomkit", "rooms", "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == EXIT_OK and "usage: roomkit rooms" in done.stdout


def create_room(url: str, room_id: str) -> None:
    """Create the room through a kit on the JetStream log at ``url``."""

    async def create() -> None:
        from eventlog.nats import NatsEventLog

        async with NatsEventLog(url) as log, RoomKit(log=log) as kit:
            await kit.create_room(room_id=room_id)

    anyio.run(create)


def _ctrl_c_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def tail_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``roomkit tail ARGS`` running; stopped with Ctrl-C after, which must end it with
    success."""
    import signal

    # Its output buffered as a user's is (a pipe, no PYTHONUNBUFFERED): lines it did not flush
    # reached a `| grep` only at 8 KiB, or never once a SIGTERM stopped it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with subprocess.Popen(
        [sys.executable, "-m", "roomkit", "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        # Ctrl-C as a terminal sends it: a suite started in the background by a shell without
        # job control inherits SIGINT ignored, and the tail never stopped.
        preexec_fn=_ctrl_c_default,
    ) as tail:
        try:
            yield tail
        finally:
            tail.send_signal(signal.SIGINT)
            code = tail.wait(timeout=20)
    assert code == EXIT_OK  # Ctrl-C ends tail with success


def test_tail_waits_for_a_log_that_does_not_exist_yet(nats_server: Any) -> None:
    # Started before the service that writes the log (a terminal opened first), it exited
    # with "nothing to follow"; now it waits, as `tail -F` waits for its file.
    with tail_process("--log", nats_server.url) as tail:
        assert tail.stderr is not None and tail.stdout is not None
        assert "waiting for it" in tail.stderr.readline()  # looked, found nothing, waits
        create_room(nats_server.url, "late-room")
        lines = [tail.stdout.readline() for _ in range(2)]  # a date heading, the event
        assert lines[0].startswith("-- ") and "late-room" in lines[1]


def create_rooms(url: str, *room_ids: str) -> None:
    """Create the rooms, one after the other, through one kit on the JetStream log at ``url``."""

    async def create() -> None:
        from eventlog.nats import NatsEventLog

        async with NatsEventLog(url) as log, RoomKit(log=log) as kit:
            for room_id in room_ids:
                await kit.create_room(room_id=room_id)

    anyio.run(create)


def lines_within(stream: Any, count: int, seconds: float = 20) -> list[str]:
    """Up to ``count`` lines of a tail's output pipe: those that came within ``seconds``."""
    came: queue.Queue[str] = queue.Queue()

    def read() -> None:  # ends when the tail does (its pipe closes)
        for _ in range(count):
            line = stream.readline()
            if not line:
                return
            came.put(line)

    threading.Thread(target=read, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while len(lines) < count:
        try:
            lines.append(came.get(timeout=max(deadline - time.monotonic(), 0)))
        except queue.Empty:
            break
    return lines


def test_tail_shows_all_of_a_log_that_came_while_it_waited(nats_server: Any) -> None:
    # Once the log came, it followed from the log's end as it was then (or showed its last
    # -n lines): what was written before its next look (up to a second) never showed.
    rooms = [f"early-{n}" for n in range(5)]
    with tail_process("--log", nats_server.url, "-n", "0", "--format", "json") as tail:
        assert tail.stderr is not None and tail.stdout is not None
        assert "waiting for it" in tail.stderr.readline()
        create_rooms(nats_server.url, *rooms)
        lines = lines_within(tail.stdout, len(rooms))
    assert [json.loads(line)["room_id"] for line in lines] == rooms


def test_tail_waiting_for_the_log_rides_out_a_server_restart(
    restartable_nats_server: NatsServer,
) -> None:
    # A tail following a log did; one still waiting for it ended with exit 3 ("cannot reach
    # the log"), and what the service wrote once the server was back never showed.
    server = restartable_nats_server
    with tail_process("--log", server.url, "--format", "json") as tail:
        assert tail.stderr is not None and tail.stdout is not None
        assert "waiting for it" in tail.stderr.readline()
        server.stop()
        assert "cannot reach the log" in tail.stderr.readline()
        server.start()
        create_rooms(server.url, "after-the-restart")
        lines = lines_within(tail.stdout, 1)
        assert tail.poll() is None
    assert [json.loads(line)["room_id"] for line in lines] == ["after-the-restart"]


def test_tail_of_a_room_not_in_the_log_says_it_waits_for_it(nats_server: Any) -> None:
    # It waited without a word, so a mistyped room id looked like a quiet room.
    create_room(nats_server.url, "other-room")
    with tail_process("new-room", "--log", nats_server.url) as tail:
        assert tail.stderr is not None and tail.stdout is not None
        assert tail.stderr.readline() == (
            "room new-room has no events in the log yet: waiting for its first (Ctrl-C to stop)\n"
        )
        create_room(nats_server.url, "new-room")
        lines = [tail.stdout.readline() for _ in range(2)]  # a date heading, the event
        assert lines[0].startswith("-- ") and "room created" in lines[1]


def test_an_import_into_a_full_stream_is_one_line(
    capsys: pytest.CaptureFixture[str], nats_server: Any, export: Path
) -> None:
    # The stream's limits refuse the import's appends: a traceback, exit 1, was printed.
    async def full_stream() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            config = StreamConfig(
                name="ROOMKIT",
                subjects=["roomkit.ev.>"],
                max_bytes=64,  # not even the first append (of all ten records)
                discard=DiscardPolicy.NEW,
                allow_direct=True,
            )
            await nc.jetstream().add_stream(config)
        finally:
            await nc.close()

    anyio.run(full_stream)
    code, out, err = run(capsys, "import", "--log", nats_server.url, "--file", str(export))
    assert (code, out) == (EXIT_ERROR, "")
    assert err.startswith("roomkit import: append to 'r1' refused: JetStream stream ROOMKIT")
    assert err.count("\n") == 1


class TestExitCodes:
    def test_unknown_room(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        # tail too: nothing is live in a file, a room it lacks will never show.
        for command in ("replay", "export", "tail"):
            code, out, err = run(capsys, command, "nope", "--file", str(export))
            assert (code, out) == (EXIT_UNKNOWN_ROOM, "")
            assert err == f"roomkit {command}: Room nope not found in {export}\n"

    def test_the_exit_code_holds_when_stderr_is_a_closed_pipe(
        self, export: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The note's BrokenPipeError escaped the handler that maps errors to codes: exit 1
        # for an unknown room (4), and for a usage error (2).
        class ClosedPipe(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

        monkeypatch.setattr(sys, "stderr", ClosedPipe())
        assert main(["replay", "nope", "--file", str(export)]) == EXIT_UNKNOWN_ROOM
        assert main(["replay", "r1", "--file", str(export), "--at", "bad"]) == EXIT_USAGE
        # A process: the note left in stderr's buffer failed Python's flush at exit (120).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        for argv, expected in (
            (["nope", "--file", str(export)], EXIT_UNKNOWN_ROOM),
            (["r1", "--file", str(export), "--at", "bad"], EXIT_USAGE),
            ([], EXIT_USAGE),  # argparse's own usage error
        ):
            read_end, write_end = os.pipe()
            os.close(read_end)  # its reader is gone
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "roomkit", "replay", *argv],
                    stdout=subprocess.DEVNULL,
                    stderr=write_end,
                    check=False,
                    env=env,
                )
            finally:
                os.close(write_end)
            assert done.returncode == expected, argv
        # stdout closed as well: "no standard output to write to" was written bare, and its
        # BrokenPipeError made the exit code 1.
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "roomkit", "rooms", "--file", str(export)],
                stderr=write_end,
                preexec_fn=lambda: os.close(1),  # noqa: PLW1509 - the child only closes a fd
                check=False,
                env=env,
            )
        finally:
            os.close(write_end)
        assert done.returncode == EXIT_USAGE

    def test_unknown_room_in_an_export_on_stdin(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        export: Path,
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(export.read_text()))
        code, _, err = run(capsys, "replay", "nope", "--file", "-")
        assert code == EXIT_UNKNOWN_ROOM
        assert err == "roomkit replay: Room nope not found in the export on stdin\n"

    @pytest.mark.parametrize(
        "argv",
        [["import", "--log", "nats://127.0.0.1:1"], ["replay", "r1", "--file", "-"]],
    )
    def test_a_closed_stdin_is_no_export(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
    ) -> None:
        # Python sets sys.stdin to None when file descriptor 0 is closed (a service without
        # stdin): an AttributeError traceback and exit 1 before.
        monkeypatch.setattr("sys.stdin", None)
        code, out, err = run(capsys, *argv)
        assert (code, out) == (EXIT_USAGE, "")
        assert err == f"roomkit {argv[0]}: no export on stdin: pipe one in, or use --file EXPORT\n"

    def test_a_closed_stdout_is_said_on_stderr(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        export: Path,
    ) -> None:
        # sys.stdout is None when file descriptor 1 is closed (>&-): an AttributeError
        # traceback and exit 1 before.
        monkeypatch.setattr("sys.stdout", None)
        assert main(["replay", "r1", "--file", str(export)]) == EXIT_USAGE
        assert capsys.readouterr().err == "roomkit replay: no standard output to write to\n"

    @pytest.mark.parametrize(
        ("argv", "code"),
        [
            (["rooms", "--log", "nats://127.0.0.1:1", "--timeout", "0.5"], EXIT_UNREACHABLE),
            (["replay", "nope", "--file", "EXPORT"], EXIT_UNKNOWN_ROOM),
            (["replay", "r1", "--at", "99", "--file", "EXPORT"], EXIT_OK),
        ],
    )
    def test_a_closed_stderr_loses_the_notes_not_the_exit_code(
        self, monkeypatch: pytest.MonkeyPatch, export: Path, argv: list[str], code: int
    ) -> None:
        # sys.stderr is None when file descriptor 2 is closed (2>&-): every note or error
        # raised AttributeError (exit 1), and `roomkit serve` died writing its first line.
        monkeypatch.setattr("sys.stderr", None)
        argv = [str(export) if arg == "EXPORT" else arg for arg in argv]
        assert main(argv) == code
        _Stderr().note("roomkit serve: consuming ...")  # serve's own lines

    def test_what_a_command_writes_to_a_closed_stderr_is_not_kept(
        self, monkeypatch: pytest.MonkeyPatch, export: Path
    ) -> None:
        # It went into a StringIO for the whole command: `roomkit serve` kept every line it
        # logged for as long as it ran.
        monkeypatch.setattr("sys.stderr", None)
        seen: list[Any] = []

        def writes(argv: Sequence[str] | None) -> int:
            sys.stderr.write("x" * 100_000)
            seen.append(sys.stderr)
            return 0

        monkeypatch.setattr("roomkit.cli._main", writes)
        assert main(["rooms", "--file", str(export)]) == 0
        assert seen[0].name == os.devnull and not hasattr(seen[0], "getvalue")

    def test_a_usage_error_with_stderr_closed_writes_nothing_to_stdout(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # argparse wrote its usage line to stdout then: into the export a caller was keeping.
        monkeypatch.setattr("sys.stderr", None)
        assert main(["export", "r1", "--bogus"]) == EXIT_USAGE
        assert capsys.readouterr().out == ""

    @pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
    def test_stdin_a_host_already_read_from_is_read_as_it_is(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        export: Path,
        encoding: str,
    ) -> None:
        # Its encoding cannot be set once read from: "cannot read stdin", exit 5, for a
        # valid export (in-process use: the roomkit command reads nothing before).
        stdin = io.TextIOWrapper(io.BytesIO(b"\n" + export.read_bytes()), encoding=encoding)
        assert stdin.readline() == "\n"
        monkeypatch.setattr("sys.stdin", stdin)
        code, out, _ = run(capsys, "rooms", "--file", "-")
        assert code == EXIT_OK and "r1" in out

    @pytest.mark.parametrize("argv", [["rooms"], ["replay", "r1"], ["export", "r1"]])
    def test_bytes_on_stdin_that_are_not_utf_8_are_bad_input(
        self, export: Path, argv: list[str]
    ) -> None:
        # Read with surrogateescape under the C locale, they came out as a UnicodeEncodeError
        # traceback, exit 1 (the same bytes in a --file were "cannot read", exit 5).
        damaged = export.read_bytes().replace(b'"r1"', b'"r\xe9"', 1)
        done = subprocess.run(
            [sys.executable, "-m", "roomkit", *argv, "--file", "-"],
            input=damaged,
            capture_output=True,
            check=False,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""},
        )
        assert done.returncode == EXIT_BAD_INPUT, done.stderr.decode()
        assert done.stderr.decode().startswith(
            f"roomkit {argv[0]}: cannot read stdin: 'utf-8' codec can't decode byte 0xe9"
        )

    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
    def test_an_output_that_cannot_be_written(self, export: Path) -> None:
        # A full disk gave a 30-line traceback (and another at exit, from the unflushed rest).
        with Path("/dev/full").open("w") as full:
            done = roomkit_process("export", "r1", "--file", str(export), stdout=full)
        assert (done.returncode, done.stderr) == (
            EXIT_ERROR,
            "roomkit export: cannot write the output: [Errno 28] No space left on device\n",
        )

    def test_an_export_that_cannot_be_held_aside(
        self,
        capsys: pytest.CaptureFixture[str],
        nats_server: Any,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # An export is held until the whole room is read, on disk past _EXPORT_SPOOL bytes: a
        # temporary directory without room for it gave a traceback.
        create_room(nats_server.url, "room-1")
        monkeypatch.setattr("roomkit.cli._EXPORT_SPOOL", 10)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
        code, out, err = run(capsys, "export", "room-1", "--log", nats_server.url)
        assert (code, out) == (EXIT_ERROR, "")
        assert err.startswith("roomkit export: cannot hold the export in a temporary file: ")
        assert err.count("\n") == 1

    def test_bad_or_missing_file(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"stream": "r1"}\n')
        code, _, err = run(capsys, "replay", "r1", "--file", str(bad))
        assert code == EXIT_BAD_INPUT and "line 1: not an exported record" in err
        code, _, err = run(capsys, "rooms", "--file", str(tmp_path / "missing.jsonl"))
        assert code == EXIT_BAD_INPUT and "cannot read" in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["replay", "r1"],  # no log
            ["replay", "r1", "--file", "x", "--log", "nats://127.0.0.1:4222"],
            ["replay", "", "--file", "{export}"],
            ["replay", "r1", "--file", "{export}", "--at", "yesterday"],
            ["replay", "r1", "--file", "{export}", "--at", "²"],  # a digit to isdigit only
            ["rooms", "--log", "nats://127.0.0.1:4222", "--timeout", "inf"],
            ["rooms", "--log", "nats://127.0.0.1:4222", "--timeout", "0"],
            ["tail", "-n", "-2", "--file", "{export}"],  # printed nothing and said 0
            ["tail", "-n", "x", "--file", "{export}"],
            ["replay", "r1", "--log", "http://127.0.0.1:4222"],
            ["frobnicate"],
            [],
        ],
    )
    def test_usage_errors(
        self, capsys: pytest.CaptureFixture[str], export: Path, argv: list[str]
    ) -> None:
        code, out, err = run(capsys, *(a.format(export=export) for a in argv))
        assert (code, out) == (EXIT_USAGE, "")
        assert err

    def test_unreachable_log(self, capsys: pytest.CaptureFixture[str], export: Path) -> None:
        url = "nats://127.0.0.1:1"
        for argv in (["rooms"], ["replay", "r1"], ["import", "--file", str(export)]):
            code, out, err = run(capsys, *argv, "--log", url, "--timeout", "5")
            assert (code, out) == (EXIT_UNREACHABLE, "")
            assert err.startswith(f"roomkit {argv[0]}: cannot reach the log at {url}")

    def test_ctrl_c_ends_tail_with_success_and_other_commands_with_130(
        self, capsys: pytest.CaptureFixture[str], export: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def interrupted(*args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr("roomkit.cli.follow", interrupted)
        monkeypatch.setattr("roomkit.cli.write_replay", interrupted)
        assert run(capsys, "tail", "--file", str(export))[0] == EXIT_OK
        assert run(capsys, "replay", "r1", "--file", str(export))[0] == EXIT_INTERRUPTED


class TestImport:
    """``import`` writes to ``--log``; here a memory log stands in for the NATS server."""

    @pytest.fixture
    def target(self, monkeypatch: pytest.MonkeyPatch) -> MemoryEventLog:
        log = MemoryEventLog()

        @asynccontextmanager
        async def fake_nats_log(
            args: Any, *, create: bool, check: Any = None
        ) -> AsyncIterator[EventLog]:
            yield log

        monkeypatch.setattr("roomkit.cli._nats_log", fake_nats_log)
        return log

    def test_import_then_again_then_a_conflict(
        self, capsys: pytest.CaptureFixture[str], export: Path, target: MemoryEventLog
    ) -> None:
        total = versions(export)
        argv = ("import", "--log", "nats://fake:4222", "--file", str(export))
        assert run(capsys, *argv) == (
            EXIT_OK,
            f"r1: {total} records appended, 0 already present\n",
            "",
        )
        assert run(capsys, *argv)[1] == f"r1: 0 records appended, {total} already present\n"

        other = export.parent / "other.jsonl"

        async def different_r1() -> None:
            log = MemoryEventLog()
            created = encode_domain_event(RoomCreated(room=dump(Room(id="r1"))), timestamp=1.0)
            await log.append("r1", [created], expected_version=0)
            await _write_export(log, "r1", other)

        anyio.run(different_r1)
        code, out, err = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(other))
        assert (code, out) == (EXIT_CONFLICT, "")
        assert "refusing to overwrite" in err

    def test_import_reads_stdin(
        self,
        capsys: pytest.CaptureFixture[str],
        export: Path,
        target: MemoryEventLog,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(export.read_text()))
        code, out, _ = run(capsys, "import", "--log", "nats://fake:4222")
        assert code == EXIT_OK and out.startswith("r1: ")

    def test_import_of_a_bad_file(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, target: MemoryEventLog
    ) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n\n")
        code, _, err = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(bad))
        assert code == EXIT_BAD_INPUT and "no record in the input" in err

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"timestamp": 1e300}, "no log takes it: event 'note': timestamp 1e+300"),
            (
                {"type": "channel.updated", "data": base64.b64encode(b'{"binding": 42}').decode()},
                "(channel.updated) is a record that does not decode: 1 validation error",
            ),
        ],
    )
    def test_a_bad_record_is_bad_input_and_nothing_is_written(
        self,
        capsys: pytest.CaptureFixture[str],
        export: Path,
        target: MemoryEventLog,
        fields: dict[str, Any],
        reason: str,
    ) -> None:
        # Another room first, and the bad record past the first append of 500 records.
        lines = export.read_text().splitlines()
        note = {"stream": "r1", "position": 0, "type": "note", "timestamp": 1.0, "data": ""}
        other = [json.dumps(note | {"stream": "r0", "version": n}) for n in range(1, 4)]
        filler = [note] * 600
        r1 = [*map(json.loads, lines), *filler]
        r1 = [record | {"version": n} for n, record in enumerate(r1, 1)]
        r1[-1] = r1[-1] | fields
        bad = export.parent / "bad-record.jsonl"
        bad.write_text("\n".join([*other, *map(json.dumps, r1)]) + "\n")
        code, out, err = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(bad))
        assert (code, out) == (EXIT_BAD_INPUT, "")
        assert err.startswith(f"roomkit import: line {len(other) + len(r1)}: room 'r1' v{len(r1)}")
        assert reason in err and err.count("\n") == 1
        assert anyio.run(target.read_all) == []
        # The same file as an offline source: the memory log refuses the same records.
        if "timestamp" in fields:
            code, _, err = run(capsys, "replay", "r1", "--file", str(bad))
            assert code == EXIT_BAD_INPUT and reason in err

    def test_an_append_the_log_refuses_is_bad_input(
        self,
        capsys: pytest.CaptureFixture[str],
        export: Path,
        target: MemoryEventLog,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Whatever the checks before it miss, a refused append is bad input, not a crash.
        async def refused(*args: Any) -> None:
            raise InvalidAppend("append to 'r1': 2000000 bytes, more than the server's max")

        monkeypatch.setattr("roomkit.cli.import_room", refused)
        code, _, err = run(capsys, "import", "--log", "nats://fake:4222", "--file", str(export))
        assert code == EXIT_BAD_INPUT
        assert err == "roomkit import: append to 'r1': 2000000 bytes, more than the server's max\n"


@pytest.fixture(scope="module")
def long_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of room ``big``: 1001 records, past the progress bar's threshold."""
    path = tmp_path_factory.mktemp("long") / "long.jsonl"

    async def build() -> None:
        log = MemoryEventLog()
        events = [encode_domain_event(RoomCreated(room=dump(Room(id="big"))), timestamp=1.0)]
        events += [
            encode_domain_event(ReadMarked(channel_id="sms"), timestamp=2.0) for _ in range(1000)
        ]
        await log.append("big", events, expected_version=0)
        await _write_export(log, "big", path)

    anyio.run(build)
    return path


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestProgressBar:
    def test_on_a_terminal_for_long_replays(
        self, long_export: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pytest.importorskip("tqdm")
        out, err = _Terminal(), _Terminal()
        monkeypatch.setattr("sys.stdout", out)
        monkeypatch.setattr("sys.stderr", err)
        assert main(["replay", "big", "--file", str(long_export), "--at", "1001"]) == EXIT_OK
        assert "replay:" in err.getvalue() and "1001" in err.getvalue()
        assert out.getvalue().startswith("room big as of v1001")
        # Timeline lines go above the bar, all of them.
        out.seek(0), out.truncate()
        assert main(["replay", "big", "--file", str(long_export)]) == EXIT_OK
        assert sum(1 for line in out.getvalue().splitlines() if "read.marked" in line) == 1000

    def test_not_when_stderr_is_not_a_terminal_or_the_room_is_short(
        self, capsys: pytest.CaptureFixture[str], long_export: Path, export: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        assert run(capsys, "replay", "big", "--file", str(long_export))[2] == ""
        err = _Terminal()
        monkeypatch.setattr("sys.stderr", err)
        assert main(["replay", "r1", "--file", str(export)]) == EXIT_OK
        assert err.getvalue() == ""


class TestOnNats:
    """The same commands on a real nats-server: an export moved in, then read back."""

    def test_import_rooms_replay_export(
        self, capsys: pytest.CaptureFixture[str], export: Path, nats_server: Any
    ) -> None:
        url = nats_server.url
        total = versions(export)
        code, out, err = run(capsys, "import", "--log", url, "--file", str(export))
        assert (code, out, err) == (
            EXIT_OK,
            f"r1: {total} records appended, 0 already present\n",
            "",
        )
        code, out, _ = run(capsys, "rooms", "--log", url)
        assert out.splitlines()[1].split()[:2] == ["r1", str(total)]

        def without_positions(out: str) -> list[dict[str, Any]]:
            return [{**json.loads(line), "position": None} for line in out.splitlines()]

        from_file = run(capsys, "replay", "r1", "--file", str(export), "--format", "json")[1]
        from_nats = run(capsys, "replay", "r1", "--log", url, "--format", "json")[1]
        assert without_positions(from_nats) == without_positions(from_file)
        assert run(capsys, "replay", "nope", "--log", url)[0] == EXIT_UNKNOWN_ROOM
        assert run(capsys, "replay", "", "--log", url)[0] == EXIT_USAGE
        bad = export.parent / "bad-for-nats.jsonl"
        bad.write_text("{}\n")
        code, _, err = run(capsys, "import", "--log", url, "--file", str(bad))
        assert code == EXIT_BAD_INPUT and "line 1: not an exported record" in err
        exported_again = run(capsys, "export", "r1", "--log", url)[1]
        assert without_positions(exported_again) == without_positions(export.read_text())

    def test_importing_into_a_second_stream_on_the_same_subjects_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], export: Path, nats_server: Any
    ) -> None:
        # The subjects are the first stream's: a traceback and exit 1 before, for a setting.
        url = nats_server.url
        assert run(capsys, "import", "--log", url, "--file", str(export))[0] == EXIT_OK
        code, out, err = run(
            capsys, "import", "--log", url, "--stream", "OTHER", "--file", str(export)
        )
        assert (code, out) == (EXIT_USAGE, "")
        assert "another stream holds subjects" in err and "Traceback" not in err
        code, _, err = run(
            capsys,
            "import",
            "--log",
            url,
            "--stream",
            "OTHER",
            "--subject-prefix",
            "other",
            "--file",
            str(export),
        )
        assert (code, err) == (EXIT_OK, "")

    def test_a_stream_name_too_long_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], export: Path, nats_server: Any
    ) -> None:
        # The server's refusal was said as "cannot read the log" (exit 3, unreachable).
        name = "S" * 300
        code, out, err = run(
            capsys, "import", "--log", nats_server.url, "--stream", name, "--file", str(export)
        )
        assert (code, out) == (EXIT_USAGE, "")
        assert "300 bytes, more than 255" in err and "Traceback" not in err

    def test_a_rejected_import_leaves_the_server_as_it_was(
        self, capsys: pytest.CaptureFixture[str], export: Path, nats_server: Any
    ) -> None:
        async def streams() -> list[str]:
            import nats

            nc = await nats.connect(nats_server.url)
            try:
                return [info.config.name for info in await nc.jetstream().streams_info()]
            finally:
                await nc.close()

        bad = export.parent / "not-an-export.jsonl"
        bad.write_text("not an export\n")
        code, _, err = run(capsys, "import", "--log", nats_server.url, "--file", str(bad))
        assert code == EXIT_BAD_INPUT and "line 1: not an exported record" in err
        assert anyio.run(streams) == []  # neither the log's stream nor its snapshots bucket
        # A record over what the server takes in a message (known once connected): the
        # stream and the bucket were made, and left empty.
        lines = export.read_text().splitlines()
        big = base64.b64encode(b"x" * 1_200_000).decode()
        record = {"stream": "r1", "version": len(lines) + 1, "position": 0, "type": "note"}
        too_big = export.parent / "too-big.jsonl"
        too_big.write_text(
            "\n".join([*lines, json.dumps(record | {"timestamp": 1.0, "data": big})])
        )
        code, _, err = run(capsys, "import", "--log", nats_server.url, "--file", str(too_big))
        assert code == EXIT_BAD_INPUT and "bytes" in err
        assert anyio.run(streams) == []

    def test_reading_leaves_the_server_as_it_was(
        self,
        capsys: pytest.CaptureFixture[str],
        export: Path,
        nats_server: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        url = nats_server.url

        async def stream_storage() -> str | None:
            import nats
            import nats.js.errors

            nc = await nats.connect(url)
            try:
                info = await nc.jetstream().stream_info("ROOMKIT")
            except nats.js.errors.NotFoundError:
                return None
            finally:
                await nc.close()
            return str(info.config.storage)

        # No RoomKit stream yet: reading finds nothing and creates nothing.
        assert run(capsys, "rooms", "--log", url)[:2] == (
            EXIT_OK,
            "ROOM  VERSION  LAST ACTIVITY (UTC)\n",
        )
        assert run(capsys, "replay", "r1", "--log", url)[0] == EXIT_UNKNOWN_ROOM
        assert anyio.run(stream_storage) is None
        # Said, where it was an INFO line: a mistyped --stream read as an empty log.
        warned = [r for r in caplog.records if r.levelname == "WARNING"]
        assert any("no JetStream stream ROOMKIT" in r.getMessage() for r in warned)

        # A stream its owner keeps in memory stays in memory (the log's default is file).
        async def create_in_memory() -> None:
            from eventlog.nats import NatsEventLog

            async with NatsEventLog(url, storage="memory") as log:
                await import_room(log, export.read_text().splitlines())

        anyio.run(create_in_memory)
        assert run(capsys, "rooms", "--log", url)[0] == EXIT_OK
        assert run(capsys, "replay", "r1", "--log", url)[0] == EXIT_OK
        assert anyio.run(stream_storage) == "memory"
        code, _, err = run(capsys, "rooms", "--log", url, "--subject-prefix", "other")
        assert code == EXIT_USAGE and "holds ['roomkit.ev.>'], not other.ev.>" in err

        # Without its snapshot bucket, or with direct gets off, the stream is read as it is:
        # reading made the bucket, and turned direct gets on (a read-only account could not
        # read at all, told the log did not open in time).
        async def change(what: str) -> set[str]:
            import nats

            nc = await nats.connect(url)
            try:
                js = nc.jetstream()
                if what == "no bucket":
                    await js.delete_key_value("ROOMKIT_snapshots")
                elif what == "no direct gets":
                    config = (await js.stream_info("ROOMKIT")).config
                    config.allow_direct = False
                    await js.update_stream(config)
                infos = await js.streams_info()
                return {f"{i.config.name} direct={i.config.allow_direct}" for i in infos}
            finally:
                await nc.close()

        before = anyio.run(change, "no bucket")
        for command in (
            ["rooms"],
            ["replay", "r1"],
            ["replay", "r1", "--at", "1"],
            ["export", "r1"],
        ):
            assert run(capsys, *command, "--log", url)[0] == EXIT_OK, command
        before = anyio.run(change, "no direct gets")
        assert before == {"ROOMKIT direct=False"}
        code, _, err = run(capsys, "replay", "r1", "--log", url)
        assert code == EXIT_UNREACHABLE and "direct gets off" in err
        assert anyio.run(change, "") == before


def test_all_is_sorted_and_importable() -> None:
    import roomkit.cli

    assert list(roomkit.cli.__all__) == sorted(set(roomkit.cli.__all__))
    for name in roomkit.cli.__all__:
        assert getattr(roomkit.cli, name) is not None, name


def roomkit_process(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """``python -m roomkit ARGS`` in a process of its own: what a user's terminal shows,
    logging (nats-py's included) as configured outside pytest."""
    return subprocess.run(
        [sys.executable, "-m", "roomkit", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


class TestNatsConnectionErrors:
    """Connecting fails in one line, exit 3, and the URL's password is never shown."""

    @pytest.fixture
    def secured_server(self, tmp_path: Path) -> Iterator[NatsServer]:
        with NatsServer(
            tmp_path / "nats", extra_args=("--user", "auditor", "--pass", "s3cret")
        ) as server:
            yield server

    def test_a_server_without_jetstream_is_named_so(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], export: Path
    ) -> None:
        # The server answers each JetStream request with a 503: it was said as "no JetStream
        # answers at ...: ServiceUnavailableError()".
        with NatsServer(tmp_path / "nats", extra_args=("-js=false",)) as plain:
            url = plain.url
            said = {
                command: run(capsys, *argv, "--log", url, "--timeout", "2")
                for command, *argv in (
                    ("rooms", "rooms"),
                    ("replay", "replay", "r1"),
                    ("import", "import", "--file", str(export)),
                )
            }
        for command, answer in said.items():
            assert answer == (
                EXIT_UNREACHABLE,
                "",
                f"roomkit {command}: JetStream is unavailable at {url} (not enabled there, "
                "or its cluster has no leader yet)\n",
            )

    def test_refused_credentials(self, secured_server: NatsServer) -> None:
        # nats-py printed its "nats: encountered error" traceback first, and the message
        # echoed the password given in the URL.
        address = secured_server.url.removeprefix("nats://")
        done = roomkit_process(
            "rooms", "--log", f"nats://auditor:wrong-pass@{address}", "--timeout", "2"
        )
        assert done.returncode == EXIT_UNREACHABLE
        assert done.stderr.startswith(
            f"roomkit rooms: cannot connect to NATS at nats://auditor:***@{address}: "
        )
        assert done.stderr.count("\n") == 1 and "wrong-pass" not in done.stderr

    def test_a_port_that_is_not_nats(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]

            def answer() -> None:  # what a web server says to a stranger
                with contextlib.suppress(OSError):
                    connection, _ = listener.accept()
                    with connection:
                        connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

            threading.Thread(target=answer, daemon=True).start()
            done = roomkit_process(
                "rooms", "--log", f"nats://u:pw@127.0.0.1:{port}", "--timeout", "2"
            )
        assert done.returncode == EXIT_UNREACHABLE
        assert done.stderr.startswith(
            f"roomkit rooms: cannot connect to NATS at nats://u:***@127.0.0.1:{port}: "
        )
        assert done.stderr.count("\n") == 1

    def test_warnings_about_the_log_hide_the_password(self, secured_server: NatsServer) -> None:
        address = secured_server.url.removeprefix("nats://")
        url = f"nats://auditor:s3cret@{address}"
        done = roomkit_process("rooms", "--log", url)
        assert done.returncode == EXIT_OK
        assert f"no JetStream stream ROOMKIT at nats://auditor:***@{address}" in done.stderr
        assert "s3cret" not in done.stderr
        with subprocess.Popen(
            [sys.executable, "-m", "roomkit", "tail", "--log", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        ) as tail:
            assert tail.stderr is not None
            try:
                line = tail.stderr.readline()
            finally:
                tail.kill()
        assert line.startswith(f"no RoomKit log at nats://auditor:***@{address} yet: waiting")

    @pytest.mark.parametrize(
        ("given", "shown"),
        [
            ("nats://u:p1@h:1,nats://v:p2@h:2", "nats://u:***@h:1, nats://v:***@h:2"),
            ("nats://alice:s3cr,et99@h:1", "nats://alice:***@h:1"),
            ("nats://u:s3c/re?t@h:1", "nats://u:***@h:1"),
            ("u:s3cret@h:1", "u:***@h:1"),
            ("nats://token@h:1", "nats://***@h:1"),
            ("tls://[::1]:4222", "tls://[::1]:4222"),
        ],
    )
    def test_urls_as_typed_hide_their_passwords(self, given: str, shown: str) -> None:
        # Several servers, a password with / or ?, no scheme: they were shown as given.
        assert redacted(given) == shown
        # In a list too (an Ingress given one string hands a list of it on): a list's
        # comma-separated string paired one user with another's host.
        assert redacted([given]) == shown

    def test_serve_hides_the_password(self, secured_server: NatsServer, tmp_path: Path) -> None:
        address = secured_server.url.removeprefix("nats://")
        app = tmp_path / "app.py"
        app.write_text("from roomkit import RoomKit\n\ndef make_kit():\n    return RoomKit()\n")
        done = subprocess.run(
            [sys.executable, "-m", "roomkit", "serve", "--app", "app:make_kit"]
            + ["--nats", f"nats://auditor:wrong@{address}", "--timeout", "1"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert done.returncode == EXIT_UNREACHABLE, done.stderr
        assert f"nats://auditor:***@{address}" in done.stderr and "wrong" not in done.stderr
        # With stdout closed, as a service manager may leave it: serve writes on stderr only,
        # and runs (it refused to, "no standard output to write to").
        closed = subprocess.run(
            [sys.executable, "-m", "roomkit", "serve", "--app", "app:make_kit"]
            + ["--nats", f"nats://auditor:wrong@{address}", "--timeout", "1"],
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            preexec_fn=lambda: os.close(1),
        )
        assert closed.returncode == EXIT_UNREACHABLE, closed.stderr


def gapped_room(url: str, deleted: int) -> None:
    """``remove_versions`` on the log at ``url``, JetStream message ``deleted`` removed."""

    async def write() -> None:
        from eventlog.nats import NatsEventLog

        async with NatsEventLog(url) as log:
            await remove_versions(log, url, deleted)

    anyio.run(write)


class TestMissingVersions:
    """Records removed from under the log: said plainly, never taken for the whole room."""

    def test_the_timeline_shows_what_is_there_and_what_is_missing(
        self, capsys: pytest.CaptureFixture[str], nats_server: Any
    ) -> None:
        # It ran from v3 to v6 without a word.
        gapped_room(nats_server.url, deleted=3)
        code, out, err = run(capsys, "replay", "room-1", "--log", nats_server.url)
        assert (code, err) == (EXIT_OK, "")
        lines = [line.split() for line in out.splitlines()[2:]]
        assert [(line[0], line[2]) for line in lines] == [
            ("v1", "room.created"),
            ("v2", "channel.attached"),
            ("v3", "message.recorded"),
            ("v4", "versions.missing"),
            ("v6", "channel.updated"),
            ("v7", "message.recorded"),
        ]
        assert " ".join(lines[3][4:]).startswith("versions 4-5 are missing from the log")
        code, out, _ = run(
            capsys, "replay", "room-1", "--log", nats_server.url, "--format", "json"
        )
        entries = [json.loads(line) for line in out.splitlines()]
        gap = entries[3]
        assert (gap["kind"], gap["version"], gap["missing"]) == (
            "versions.missing",
            4,
            {"first": 4, "last": 5},
        )
        assert set(gap) == set(entries[0]) and entries[0]["missing"] is None
        assert gap["position"] is None and gap["time"] is None

    def test_a_state_past_the_gap_and_an_export_are_refused(
        self, capsys: pytest.CaptureFixture[str], nats_server: Any
    ) -> None:
        # --at gave a state lacking what v4-v5 did (--at 5 gave v3's, as of "v3"), and export
        # wrote a file that import and replay --file then refused.
        url = nats_server.url
        gapped_room(url, deleted=3)
        for at in ("7", "5", datetime.now(UTC).isoformat()):
            code, out, err = run(capsys, "replay", "room-1", "--log", url, "--at", at)
            assert (code, out) == (EXIT_BAD_INPUT, "")
            assert err.startswith("roomkit replay: cannot rebuild the room as of ")
            assert err.endswith(
                "versions 4-5 are missing from the log of room 'room-1' (removed from it: a "
                "retention limit, a deleted message)\n"
            )
            assert err.count("\n") == 1
        code, out, _ = run(capsys, "replay", "room-1", "--log", url, "--at", "3")
        assert (code, out.splitlines()[0].split()[:4]) == (EXIT_OK, ["room", "room-1", "as", "of"])
        assert "as of v3 " in out
        code, out, err = run(capsys, "export", "room-1", "--log", url)
        assert (code, out) == (EXIT_BAD_INPUT, "")  # not even the lines before the gap
        assert err == (
            "roomkit export: cannot export the room: versions 4-5 are missing from the log of "
            "room 'room-1' (removed from it: a retention limit, a deleted message)\n"
        )

    def test_a_missing_first_version(
        self, capsys: pytest.CaptureFixture[str], nats_server: Any
    ) -> None:
        url = nats_server.url
        gapped_room(url, deleted=1)
        code, out, _ = run(capsys, "replay", "room-1", "--log", url)
        assert code == EXIT_OK
        first = out.splitlines()[1].split()
        assert first[:3] == ["v1", "??:??:??", "versions.missing"]
        assert "version 1 is missing from the log" in out
        for argv in (["replay", "room-1", "--at", "1"], ["export", "room-1"]):
            code, out, err = run(capsys, *argv, "--log", url)
            assert (code, out) == (EXIT_BAD_INPUT, "")
            assert "version 1 is missing from the log of room 'room-1'" in err


class TestForeignMessages:
    """Another app's message on a room's subject (``roomkit.ev.<room>``)."""

    LONG_ID = "x" * 100  # its stream's name does not tell it: rooms reads its first record

    @pytest.fixture
    def url(self, nats_server: Any) -> str:
        url: str = nats_server.url
        create_room(url, "room-1")
        create_room(url, self.LONG_ID)

        async def publish() -> None:
            import nats

            from roomkit.core._room_ids import room_stream

            nc = await nats.connect(url)
            try:
                for room_id in ("room-1", self.LONG_ID):
                    subject = f"roomkit.ev.{room_stream(room_id)}"
                    await nc.jetstream().publish(subject, b"\x93not a roomkit batch")
            finally:
                await nc.close()

        anyio.run(publish)
        return url

    def test_the_room_is_listed(self, capsys: pytest.CaptureFixture[str], url: str) -> None:
        # rooms left it out: it took each subject's last message, another app's. One on a
        # subject that is not UTF-8 (a raw client's) is passed over: asking for its
        # messages by name failed with a traceback.
        publish_raw(url, b"roomkit.ev.bad\xffname", [], b"not a batch")
        code, out, _ = run(capsys, "rooms", "--log", url, "--format", "json")
        rooms = [json.loads(line) for line in out.splitlines()]
        assert code == EXIT_OK and len(rooms) == 2
        assert [(r["room_id"], r["version"]) for r in rooms if r["room_id"] == "room-1"] == [
            ("room-1", 1)
        ]

    def test_reading_the_room_says_why_it_cannot(
        self, capsys: pytest.CaptureFixture[str], url: str
    ) -> None:
        # replay, export, --at and tail ROOM ended with an EventLogError traceback, exit 1.
        for argv in (
            ["replay", "room-1"],
            ["replay", "room-1", "--at", "1"],
            ["export", "room-1"],
            ["tail", "room-1"],
        ):
            code, out, err = run(capsys, *argv, "--log", url)
            assert (code, out) == (EXIT_BAD_INPUT, "")
            assert err == (
                f"roomkit {argv[0]}: message 3 on roomkit.ev.room-1 is not a RoomKit event batch "
                "(someone else published on the log's subjects); the room cannot be read past it\n"
            )
