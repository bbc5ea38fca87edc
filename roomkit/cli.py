"""``roomkit``: audit, replay and move rooms from the command line.

A thin shell over ``roomkit.audit``: it parses arguments, opens the log (a NATS JetStream
server with ``--log``, or an export file with ``--file``), runs one command and turns errors into
exit codes that scripts can rely on (see ``EXIT_CODES``). Each command is one entry of
``COMMANDS``; ``roomkit serve`` (the NATS ingress) is one of them. Commands raise
``CliError(code, message)`` to end with a chosen exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import sys
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO, TypeVar

import anyio

from eventlog import EventLog, InvalidAppend, InvalidStreamId, LogUnavailable, MemoryEventLog
from eventlog._redacted import redacted
from eventlog.codec import encode_json
from eventlog.errors import EventLogError, ForeignMessage
from roomkit.audit import (
    DEFAULT_STREAM,
    DEFAULT_SUBJECT_PREFIX,
    AuditError,
    BadExport,
    CheckedExport,
    CorruptRecord,
    ForeignRecord,
    ImportConflict,
    MissingRecords,
    Progress,
    Until,
    Write,
    export_room,
    follow,
    import_room,
    open_nats_log,
    printable,
    read_export,
    write_replay,
    write_rooms,
)
from roomkit.audit._transfer import check_import
from roomkit.core._room_ids import check_room_id, room_stream
from roomkit.errors import InvalidRoomIdError, RoomNotFoundError
from roomkit.ingress.cli import SERVE_HELP, configure_serve_parser, run_serve

__all__ = [
    "COMMANDS",
    "CliError",
    "Command",
    "Console",
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNKNOWN_ROOM",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

logger = logging.getLogger("roomkit.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNKNOWN_ROOM = 4
EXIT_BAD_INPUT = 5
EXIT_CONFLICT = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success (also: tail stopped with Ctrl-C)",
    EXIT_ERROR: "unexpected error, or the output could not be written (a full disk)",
    EXIT_USAGE: "usage error (bad arguments, invalid room id)",
    EXIT_UNREACHABLE: "the log cannot be reached (server down, NATS support missing)",
    EXIT_UNKNOWN_ROOM: "unknown room",
    EXIT_BAD_INPUT: "bad input: unreadable export file, a line that is not a record, "
    "a record that does not decode, a record the target log refuses, versions missing from "
    "a room's log (replay --at past them, export), a message on a room's subject that is not "
    "RoomKit's",
    EXIT_CONFLICT: "import refused: the target holds different records for the room",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C) before the command finished",
}

PROGRESS_THRESHOLD = 1000
"""Replays of rooms with more records than this show a progress bar (on a terminal)."""

DEFAULT_CONNECT_TIMEOUT = 5.0

_EXPORT_SPOOL = 16 * 1024 * 1024  # bytes of an export held in memory before a temporary file

T = TypeVar("T")

_LOG_POLL = 1.0  # seconds between looks for a log that does not exist yet (tail)


class CliError(Exception):
    """Ends the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class _OutputError(CliError):
    """Writing to stdout failed (a full disk, a device error): the output is incomplete."""

    def __init__(self, error: OSError) -> None:
        super().__init__(EXIT_ERROR, f"cannot write the output: {error}")


@dataclass(frozen=True, slots=True)
class Console:
    """Where a command writes: lines for the user on ``out``, notes and errors on ``err``.

    What the stream's encoding cannot hold (a terminal or pipe that is not UTF-8) is written
    as an escape rather than ending the command (see ``encodable``).
    """

    out: TextIO
    err: TextIO

    def write(self, line: str) -> None:
        with _writing():
            self.out.write(self.encodable(line) + "\n")

    def write_now(self, line: str) -> None:
        """``write``, flushed: a line a reader waits for (a live event ``tail`` follows)."""
        self.write(line)
        self.flush()

    def flush(self) -> None:
        """Flush ``out``: a write error held in its buffer shows here."""
        with _writing():
            self.out.flush()

    def note(self, line: str) -> None:
        _note(self.err, line)

    def encodable(self, line: str) -> str:
        """``line`` as ``out``'s encoding can hold it."""
        return _encodable(line, self.out)


@contextmanager
def _writing() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:  # the reader left (``| head``): not an error, see ``main``
        raise
    except OSError as exc:
        raise _OutputError(exc) from exc


def _note(err: TextIO, line: str) -> None:
    """Write ``line`` to ``err``: a note that cannot be written (stderr a closed pipe) is lost,
    not the exit code (an unknown room's 4 became 1; and 120 once Python failed to flush it at
    exit)."""
    try:
        err.write(_encodable(line, err) + "\n")
        err.flush()
    except (OSError, ValueError):
        _silence(err)


def _encodable(line: str, stream: TextIO) -> str:
    """``line``, with each character ``stream``'s encoding cannot hold written ``\\uXXXX``.

    A backslash escape, but JSON's: the JSON output stays valid and means the same (Python's
    ``backslashreplace`` writes ``\\xe9`` and ``\\U0001f600``, which JSON does not read).
    """
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        line.encode(encoding)
    except UnicodeEncodeError:
        return "".join(_held(char, encoding) for char in line)
    return line


def _held(char: str, encoding: str) -> str:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        code = ord(char)
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        high, low = divmod(code - 0x10000, 0x400)  # JSON writes the UTF-16 surrogate pair
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return char


Handler = Callable[[argparse.Namespace, Console], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, help, arguments and the coroutine that runs it.

    ``run(args, console)`` returns the exit code or raises (``CliError`` for a chosen code).
    ``stops_with_ctrl_c``: Ctrl-C is how the command ends (``tail``), so it exits with 0.
    ``writes_output``: it writes its result to stdout (``serve`` writes notes on stderr only,
    and runs with stdout closed, as a service may).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Handler
    stops_with_ctrl_c: bool = False
    writes_output: bool = True


# -- sources -----------------------------------------------------------------------------------


@asynccontextmanager
async def _nats_log(
    args: argparse.Namespace,
    *,
    create: bool,
    missing_ok: bool = False,
    check: Callable[[EventLog], Awaitable[None]] | None = None,
) -> AsyncIterator[EventLog]:
    opened = open_nats_log(
        args.log,
        stream_name=args.stream,
        subject_prefix=args.subject_prefix,
        timeout=args.timeout,
        create=create,
        missing_ok=missing_ok,
        check=check,
    )
    async with AsyncExitStack() as stack:
        try:
            log = await stack.enter_async_context(opened)
        except AuditError:  # what ``check`` refused (a BadExport is a ValueError too)
            raise
        except ValueError as exc:  # a bad URL, or a stream of other subjects: fix the arguments
            raise CliError(EXIT_USAGE, f"--log: {exc}") from exc
        yield log


async def _lines_of(path: str) -> AsyncGenerator[str, None]:
    # No stdin at all (``sys.stdin`` is None when a service manager closes it) is the same
    # mistake as a terminal: nothing was piped in.
    if path == "-" and (sys.stdin is None or _isatty(sys.stdin)):
        raise CliError(EXIT_USAGE, "no export on stdin: pipe one in, or use --file EXPORT")
    try:
        if path == "-":
            _strict_utf8(sys.stdin)
            async for line in anyio.wrap_file(sys.stdin):
                yield line
            return
        async with await anyio.open_file(path, encoding="utf-8") as lines:
            async for line in lines:
                yield line
    except (OSError, UnicodeDecodeError) as exc:
        where = "stdin" if path == "-" else path
        raise CliError(EXIT_BAD_INPUT, f"cannot read {where}: {exc}") from exc


def _strict_utf8(stream: TextIO) -> None:
    """Have ``stream`` (stdin) decode UTF-8 strictly, as a file is read: under the C locale
    Python reads stdin with surrogateescape, and bytes that are not UTF-8 came out as a
    traceback. A stream that cannot be set so (one a host already read from) is left as
    it is."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(io.UnsupportedOperation):
            reconfigure(encoding="utf-8", errors="strict")


async def _read_file(path: str) -> CheckedExport:
    """An export file, read and checked.

    Records whose payload does not decode are kept: auditing a damaged export shows them.
    """
    lines = _lines_of(path)
    try:
        return await read_export(lines, keep_undecodable=True)
    finally:
        await lines.aclose()


async def _file_log(path: str) -> EventLog:
    """An export file loaded into a memory log: the offline source of every command."""
    log = MemoryEventLog()
    await import_room(log, await _read_file(path))
    return log


def _not_in_file(room_id: str, path: str) -> RoomNotFoundError:
    # The room is missing from this file (a typo, or another export): say which.
    where = "the export on stdin" if path == "-" else path
    return RoomNotFoundError(f"Room {room_id} not found in {where}")


@asynccontextmanager
async def _source(
    args: argparse.Namespace, *, missing_ok: bool = False
) -> AsyncIterator[EventLog]:
    if args.log is not None:
        # Reading commands never create the log's stream on the server.
        async with _nats_log(args, create=False, missing_ok=missing_ok) as log:
            yield log
    elif args.file is not None:
        log = await _file_log(args.file)
        try:
            yield log
        except RoomNotFoundError as exc:
            raise _not_in_file(args.room, args.file) from exc
    else:
        raise CliError(EXIT_USAGE, "no log given: use --log nats://HOST:PORT or --file EXPORT")


def _until(text: str | None) -> Until:
    if text is None:
        return None
    if text.isascii() and text.isdigit():  # "²" is a digit to isdigit, not to int
        return int(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(
            EXIT_USAGE, f"--at {text!r}: expected a version (e.g. 12) or an ISO time"
        ) from exc


def _seconds(text: str) -> float:
    """``--timeout``'s value: a positive, finite number of seconds (argparse says so if not)."""
    seconds = float(text)  # a ValueError is argparse's "invalid _seconds value"
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _lines(text: str) -> int:
    """``tail -n``'s value: a count of events, 0 or more (argparse says so if not)."""
    try:
        count = int(text)
    except ValueError:
        count = -1  # said below, not as argparse's "invalid _lines value"
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a number of events (0 or more), got {text!r}")
    return count


@contextmanager
def _progress_bar(total: int, console: Console) -> Iterator[Any]:
    """A tqdm bar on stderr for long replays on a terminal; ``None`` otherwise."""
    if total <= PROGRESS_THRESHOLD or not _isatty(console.err):
        yield None
        return
    try:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # an optional nicety: the replay works the same without it
        logger.debug("tqdm is not installed: no progress bar")
        yield None
        return
    with tqdm(total=total, file=console.err, unit="ev", desc="replay", leave=False) as bar:
        yield bar


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# -- commands ----------------------------------------------------------------------------------


def _add_nats_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on --log after this long (default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    group.add_argument(
        "--stream",
        default=DEFAULT_STREAM,
        metavar="NAME",
        help=f"the log's JetStream stream (default {DEFAULT_STREAM})",
    )
    group.add_argument(
        "--subject-prefix",
        default=DEFAULT_SUBJECT_PREFIX,
        metavar="PREFIX",
        help=f"the log's subject prefix (default {DEFAULT_SUBJECT_PREFIX})",
    )


# Loaded into a memory log, an export's records are numbered anew: their log positions are in
# the export's lines.
_READ_INSTEAD = (
    "an export to read instead of a live log (its records' positions are then 1, 2, ... in "
    "the export's order; the log's own are in its lines)"
)


def _add_source(parser: argparse.ArgumentParser, *, file_help: str) -> None:
    group = parser.add_argument_group("log")
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument("--log", metavar="nats://HOST:PORT", help="a NATS JetStream log")
    exclusive.add_argument("--file", metavar="EXPORT.jsonl", help=file_help)
    _add_nats_options(group)


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people, json for scripts (one object per line)",
    )


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", metavar="ROOM", help="the room id")
    parser.add_argument(
        "--at",
        metavar="VERSION|TIME",
        help="print the room's state (status, bindings, participants) as of this version or "
        "ISO 8601 time (naive times are UTC) instead of the timeline",
    )
    _add_format(parser)
    _add_source(parser, file_help=_READ_INSTEAD)


async def _run_replay(args: argparse.Namespace, console: Console) -> int:
    at = _until(args.at)
    stream = room_stream(args.room)  # an invalid id is a usage error, before any connection
    async with _source(args) as log:
        total = await log.last_version(stream)
        if total == 0:
            raise RoomNotFoundError(f"Room {args.room} not found in the log")
        if isinstance(at, int) and at > total:
            # Shown as it is now, which the header says; said here, not taken for v{at}.
            console.note(f"roomkit replay: room {args.room} is at v{total}, not yet at v{at}")
        with _progress_bar(total, console) as bar:
            write: Write = console.write
            progress: Progress | None = None
            if bar is not None:
                progress = bar.update
                if _isatty(console.out):
                    write = _above_bar(bar, console)
            await write_replay(log, args.room, write, at=at, format=args.format, progress=progress)
    return EXIT_OK


def _above_bar(bar: Any, console: Console) -> Write:
    """Lines and the bar share the terminal: tqdm prints them above its bar."""

    def write(line: str) -> None:
        with _writing():
            bar.write(console.encodable(line), file=console.out)

    return write


def _configure_tail(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", metavar="ROOM", nargs="?", help="the room (default: all rooms)")
    parser.add_argument(
        "-n",
        "--lines",
        type=_lines,
        default=10,
        metavar="N",
        help="show the last N events first (default 10)",
    )
    _add_format(parser)
    _add_source(parser, file_help="an export (nothing live: prints its last events and exits)")


async def _run_tail(args: argparse.Namespace, console: Console) -> int:
    if args.room is not None:
        check_room_id(args.room)  # an invalid id is a usage error, before any connection
    waiting = False
    unreachable = False
    while True:
        # A log not there yet is waited for, and said so below.
        async with AsyncExitStack() as stack:
            try:
                log = await stack.enter_async_context(_source(args, missing_ok=True))
            except LogUnavailable as exc:
                if not waiting:
                    raise  # a wrong URL: said at once
                # Its server restarted while the tail waited for the log: a tail that
                # follows a log rides that out, and one waiting for it does too.
                if not unreachable:
                    console.note(f"cannot reach the log ({exc}): trying again")
                    unreachable = True
                await anyio.sleep(_LOG_POLL)
                continue
            unreachable = False
            if args.log is None or not isinstance(log, MemoryEventLog):
                in_file = args.file is not None and args.room is not None
                if in_file and not await _holds(log, args.room):
                    # Nothing live in a file: a room it lacks will never show (a typo).
                    raise RoomNotFoundError(f"Room {args.room} not found in the log")
                live = args.log is not None
                if live and args.room is not None and not await _holds(log, args.room):
                    # It may come, as a new room's first events do; a typo never shows: say it.
                    console.note(
                        f"room {args.room} has no events in the log yet: waiting for its "
                        "first (Ctrl-C to stop)"
                    )
                await follow(
                    log,
                    # Each line as its event comes: buffered (a pipe, a file), a live event
                    # reached `| grep` only at 8 KiB, or never once a SIGTERM stopped tail.
                    console.write_now if live else console.write,
                    room_id=args.room,
                    # A log that came while the tail waited holds nothing from before it
                    # started: all of it shows (its last lines alone lost the rest).
                    last=None if waiting else max(args.lines, 0),
                    live=live,
                    format=args.format,
                )
                return EXIT_OK
        # The server has no RoomKit stream yet (``open_nats_log`` stood in an empty log, and
        # reading never creates one): wait for the service that will write it, as `tail -F`
        # waits for its file.
        if not waiting:
            console.note(
                f"no RoomKit log at {redacted(args.log)} yet: waiting for it (Ctrl-C to stop)"
            )
            waiting = True
        await anyio.sleep(_LOG_POLL)


async def _holds(log: EventLog, room_id: str) -> bool:
    return await log.last_version(room_stream(room_id)) > 0


def _configure_rooms(parser: argparse.ArgumentParser) -> None:
    _add_format(parser)
    _add_source(parser, file_help=_READ_INSTEAD)


async def _run_rooms(args: argparse.Namespace, console: Console) -> int:
    async with _source(args) as log:
        await write_rooms(log, console.write, format=args.format)
    return EXIT_OK


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", metavar="ROOM", help="the room id")
    _add_source(
        parser, file_help="an export to take the room from (its lines are written as they are)"
    )


async def _run_export(args: argparse.Namespace, console: Console) -> int:
    stream = room_stream(args.room)  # an invalid id is a usage error, before any connection
    if args.log is None and args.file is not None:
        # Taken from the file as it is, not through a memory log that would number the
        # records anew: their positions are the source log's, the only order across rooms an
        # export keeps (an export of several rooms, split by room, can be merged back).
        export = await _read_file(args.file)
        if stream not in export.streams:
            raise _not_in_file(args.room, args.file)
        for record in export.streams[stream]:
            console.write(encode_json(record).decode())
        return EXIT_OK
    # Held until the whole room is read: a room whose log misses versions is refused at the
    # gap, and the lines before it, written, would make an export of a shorter room that
    # imports without a word. In memory up to _EXPORT_SPOOL bytes, on disk beyond.
    with tempfile.SpooledTemporaryFile(_EXPORT_SPOOL, mode="w+", encoding="utf-8") as held:
        async with _source(args) as log:
            async for line in export_room(log, args.room):
                _spooled(held.write, line)
        _spooled(held.seek, 0)
        while line := _spooled(held.readline):
            console.write(line.removesuffix("\n"))
    return EXIT_OK


def _spooled(operation: Callable[..., T], *args: object) -> T:
    """``operation(*args)`` on the temporary file an export is held in; its failure (no room
    left in the temporary directory) as one line, not a traceback."""
    try:
        return operation(*args)
    except OSError as exc:
        raise CliError(
            EXIT_ERROR,
            f"cannot hold the export in a temporary file: {exc} (set TMPDIR to a directory "
            "with room for it)",
        ) from exc


def _configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", metavar="EXPORT.jsonl", default="-", help="the export (default: stdin)"
    )
    group = parser.add_argument_group("log")
    group.add_argument(
        "--log",
        metavar="nats://HOST:PORT",
        required=True,
        help="the log to import into (its stream is created if missing)",
    )
    _add_nats_options(group)


async def _run_import(args: argparse.Namespace, console: Console) -> int:
    lines = _lines_of(args.file)
    try:
        # Read and checked first: a bad input must not create the stream on the server.
        export = await read_export(lines)
    finally:
        await lines.aclose()

    # Checked against a missing stream's limits before it is made: an export the target
    # refuses must not leave an empty stream and snapshot bucket behind.
    async def check(target: EventLog) -> None:
        await check_import(target, export)

    async with _nats_log(args, create=True, check=check) as log:
        report = await import_room(log, export)
    for stream in report.streams:
        console.write(
            f"{printable(stream.room_id)}: {stream.appended} records appended, "
            f"{stream.already_present} already present"
        )
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("replay", "print a room's history, or its state as of a point", _configure_replay,
            _run_replay),
    Command("tail", "follow new events as they are committed (Ctrl-C stops)", _configure_tail,
            _run_tail, stops_with_ctrl_c=True),
    Command("rooms", "list rooms with their version and last activity", _configure_rooms,
            _run_rooms),
    Command("export", "write a room's records to stdout as JSON lines", _configure_export,
            _run_export),
    Command("import", "append exported records to a log, keeping their versions",
            _configure_import, _run_import),
    Command("serve", SERVE_HELP, configure_serve_parser, run_serve, writes_output=False),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``roomkit`` argument parser, with one subcommand per entry of ``COMMANDS``."""
    codes = "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="roomkit",
        description="Audit and replay RoomKit rooms from their event log.",
        epilog=f"exit codes:\n{codes}\n\n"
        "examples:\n"
        "  roomkit rooms --log nats://127.0.0.1:4222\n"
        "  roomkit replay room-1 --log nats://127.0.0.1:4222 --at 42\n"
        "  roomkit export room-1 --log nats://127.0.0.1:4222 > room-1.jsonl\n"
        "  roomkit replay room-1 --file room-1.jsonl --format json\n"
        "  roomkit import --log nats://other:4222 --file room-1.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=f"exit codes:\n{codes}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
        sub.set_defaults(handler=command.run, command_spec=command)
    return parser


# -- entry point -------------------------------------------------------------------------------


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups that task groups add."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _exit_code(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and message for an error the CLI expects; ``None`` for a bug."""
    match exc:
        case CliError():
            return exc.code, str(exc)
        case RoomNotFoundError():
            return EXIT_UNKNOWN_ROOM, str(exc)
        case InvalidRoomIdError() | InvalidStreamId():
            return EXIT_USAGE, str(exc)
        case LogUnavailable():
            return EXIT_UNREACHABLE, str(exc)
        case BadExport() | CorruptRecord() | ForeignRecord() | MissingRecords() | InvalidAppend():
            return EXIT_BAD_INPUT, str(exc)  # ForeignRecord: says the room cannot be read
        case ForeignMessage():  # like a record that does not decode, but not even a record
            return EXIT_BAD_INPUT, f"{exc}; the room cannot be read past it"
        case ImportConflict():
            return EXIT_CONFLICT, str(exc)
        case AuditError():
            return EXIT_ERROR, str(exc)
        case EventLogError():
            # What the log refused otherwise (a full or sealed stream) or lost (a stream
            # deleted while tail follows it): said in one line, it printed a traceback.
            return EXIT_ERROR, str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``roomkit`` with ``argv`` (default: the process's arguments); return the exit code.

    Writes to ``sys.stdout`` and ``sys.stderr`` as they are at call time (tests capture them).
    """
    if sys.stderr is None:
        # Closed (``2>&-``): notes and errors are lost, the exit code still says what
        # happened. Each note raised AttributeError (exit 1), and argparse wrote a usage
        # error's usage to stdout, into the output a caller may be keeping. A sink, not a
        # StringIO: ``serve`` runs for days, and everything logged meanwhile was kept.
        with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stderr(sink):
            return _main(argv)
    code = _main(argv)
    # What is left in stderr's buffer (argparse's usage, which ignores a failed write) fails
    # Python's flush at exit, and the process exits with 120, when stderr is a closed pipe.
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        _silence(sys.stderr)
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    spec: Command = args.command_spec
    out = sys.stdout
    if out is None:
        # Closed (``>&-``), as a service manager may leave it: nothing can be written.
        if spec.writes_output:
            _note(sys.stderr, f"roomkit {args.command}: no standard output to write to")
            return EXIT_USAGE
        out = io.StringIO()  # nothing is written there
    console = Console(out=out, err=sys.stderr)
    handler: Handler = args.handler
    try:
        code = anyio.run(handler, args, console)
        console.flush()  # a closed pipe or a full disk shows here, not as a warning at exit
        return code
    except BaseException as exc:  # every way out maps to an exit code, or re-raises
        error = _leaf(exc)
        if isinstance(error, KeyboardInterrupt):
            # Stopping ``tail`` is how it ends; anything else interrupted is not a success.
            return EXIT_OK if spec.stops_with_ctrl_c else EXIT_INTERRUPTED
        if isinstance(error, BrokenPipeError):
            # The reader (``| head``) has what it wanted; keep Python from complaining at exit.
            _silence_stdout()
            return EXIT_OK
        if isinstance(error, _OutputError):
            # Said below in one line; the unwritten rest of the buffer would fail again (and
            # print a traceback) when Python flushes stdout at exit.
            _silence_stdout()
        known = _exit_code(error)
        if known is None:
            raise
        code, message = known
        # One line, whatever the error quotes (a room id, a decoder's multi-line report).
        console.note(f"roomkit {args.command}: {printable(message)}")
        return code


def _silence_stdout() -> None:
    _silence(sys.stdout)


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s file at /dev/null: what its buffer holds is flushed there at exit,
    where Python otherwise complains (and exits with 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):  # no real file behind it: nothing will complain
        pass


if __name__ == "__main__":  # pragma: no cover - ``python -m roomkit`` goes through __main__
    sys.exit(main())
