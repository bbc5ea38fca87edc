"""``roomkit serve``: run the NATS ingress for a kit that an application factory builds.

::

    roomkit serve --nats nats://127.0.0.1:4222 --app myapp.rooms:build_kit

``--app MODULE:NAME`` names (like uvicorn's ``--factory``) a function that returns a configured
``RoomKit`` (channels registered, hooks added); it may be ``async``. When it takes a ``log``
argument it gets a ``NatsEventLog`` on the same server (``--log`` for another one), so the
rooms survive restarts; a factory without one builds its kit as it likes. ``NAME`` may also be
a ``RoomKit`` instance. Ctrl-C or SIGTERM stops gracefully: no more fetches, the messages being
processed finish, the rest go back to JetStream.

``roomkit.cli`` wires this in (``add_serve_parser`` or ``configure_serve_parser`` +
``run_serve``); nats-py is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskStatus

from eventlog._redacted import redacted
from roomkit.errors import KitClosedError
from roomkit.ingress.errors import IngressError, IngressUnavailable

if TYPE_CHECKING:
    from eventlog import EventLog
    from eventlog.nats import NatsEventLog
    from roomkit.core.framework import RoomKit
    from roomkit.ingress._work import IngressStats
    from roomkit.ingress.ingress import Ingress

__all__ = ["SERVE_HELP", "add_serve_parser", "configure_serve_parser", "run_serve"]

logger = logging.getLogger("roomkit.ingress")

SERVE_HELP = "consume inbound messages from NATS subjects into a kit's rooms (Ctrl-C stops)"

_DEFAULT_URL = "nats://127.0.0.1:4222"


class Notes(Protocol):
    """Where ``run_serve`` writes its few lines (``roomkit.cli.Console`` fits)."""

    def note(self, line: str) -> None:
        """Write one line for the operator (stderr)."""


class _Stderr:
    def note(self, line: str) -> None:
        if sys.stderr is not None:  # closed (``2>&-``): serving goes on without its lines
            sys.stderr.write(line + "\n")


def configure_serve_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s arguments to ``parser``."""
    parser.add_argument(
        "--app",
        required=True,
        metavar="MODULE:NAME",
        help="a function returning a configured RoomKit (it gets log=NatsEventLog if it takes "
        "a `log` argument; it may be async), or a RoomKit instance",
    )
    parser.add_argument(
        "--nats",
        default=_DEFAULT_URL,
        metavar="URL",
        help=f"the NATS server (default {_DEFAULT_URL})",
    )
    parser.add_argument(
        "--prefix",
        default="roomkit",
        metavar="P",
        help="subject prefix: consume P.in.<channel>, dead letters on P.dlq.<channel>, and the "
        "log's events on P.ev.<room> (default roomkit)",
    )
    parser.add_argument(
        "--log",
        metavar="URL",
        help="the NATS server of the event log given to the factory (default: --nats)",
    )
    parser.add_argument(
        "--log-stream",
        default="ROOMKIT",
        metavar="NAME",
        help="the JetStream stream of the event log (default ROOMKIT)",
    )
    parser.add_argument(
        "--stream",
        default="ROOMKIT_IN",
        metavar="NAME",
        help="the JetStream stream of inbound messages (default ROOMKIT_IN)",
    )
    parser.add_argument(
        "--dlq-stream",
        default="ROOMKIT_DLQ",
        metavar="NAME",
        help="the JetStream stream keeping dead letters (default ROOMKIT_DLQ)",
    )
    parser.add_argument(
        "--durable",
        default="roomkit-ingress",
        metavar="NAME",
        help="the durable consumer (default roomkit-ingress)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        metavar="N",
        help="messages processed at a time, across rooms (default 64)",
    )
    parser.add_argument(
        "--lanes",
        type=int,
        default=None,
        metavar="N",
        help="rooms processed concurrently (default: --max-in-flight, at most 256)",
    )
    parser.add_argument(
        "--max-crashes",
        type=int,
        default=3,
        metavar="N",
        help="dead-letter a message the process died with in hand N more times "
        "(default 3; 0: never)",
    )
    parser.add_argument(
        "--allow-missing-key",
        action="store_true",
        help="accept messages without an idempotency_key (a redelivery may record them twice)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up connecting after this long (default 5)",
    )


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Its defaults set ``handler=run_serve``.

    Returns:
        The ``serve`` parser.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help=SERVE_HELP, description=SERVE_HELP
    )
    configure_serve_parser(parser)
    parser.set_defaults(handler=run_serve)
    return parser


async def run_serve(args: argparse.Namespace, console: Notes | None = None) -> int:
    """Build the kit, serve the ingress until Ctrl-C or SIGTERM; return the exit code (0).

    Args:
        args: parsed by a parser that ``configure_serve_parser`` configured.
        console: where the start and stop lines go (default: stderr).

    Returns:
        0 after a graceful stop; 130 after a stop at once (a second Ctrl-C or SIGTERM while
        the first one's graceful stop runs, or one before the ingress served). A signal that
        lands once it returned (as the caller's event loop ends) is Python's again: a
        ``KeyboardInterrupt`` out of ``anyio.run``, which the ``roomkit`` entry point turns
        into 130.

    Raises:
        roomkit.cli.CliError: a bad ``--app`` (usage), NATS unreachable or unusable; the
            ``roomkit`` entry point turns it into its exit code and message.
        LogUnavailable: the event log's server cannot be reached.
    """
    from roomkit.cli import EXIT_INTERRUPTED, EXIT_UNREACHABLE, EXIT_USAGE, CliError

    notes = console if console is not None else _Stderr()
    # Watched from the start to the end: the receiver closed after the first signal put
    # Python's own SIGINT handler back, and a second Ctrl-C during the graceful stop raised
    # KeyboardInterrupt wherever the stop was (a traceback, a hang, a cancel scope error).
    signals = _StopSignals()
    stats: IngressStats | None = None
    failure: BaseException | None = None
    async with anyio.create_task_group() as watching:
        await watching.start(signals.watch)
        try:
            with signals.scope:
                _check_args(args, CliError, EXIT_USAGE)
                target = _load_app(args.app, CliError, EXIT_USAGE)
                try:
                    for module in ("eventlog.nats", "roomkit.ingress.ingress"):  # nats-py
                        importlib.import_module(module)
                except ImportError as exc:
                    raise CliError(
                        EXIT_UNREACHABLE,
                        f"NATS support is not available ({exc}): install roomkit[nats]",
                    ) from exc
                wants_log = _check_app(target, CliError, EXIT_USAGE)
                stats = await _serve(args, notes, target, wants_log, signals)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # an app's SystemExit as it loads, too
            failure = exc  # raised below, not wrapped in the task group's ExceptionGroup
        finally:
            watching.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if signals.forced:
        notes.note("roomkit serve: stopped at once; messages in hand go back to JetStream")
        return EXIT_INTERRUPTED
    assert stats is not None
    notes.note(
        f"roomkit serve: stopped; {stats.recorded} recorded, {stats.blocked} blocked, "
        f"{stats.duplicates} duplicates, {stats.dead_lettered} dead letters"
    )
    return 0


async def _serve(
    args: argparse.Namespace, notes: Notes, target: Any, wants_log: bool, signals: _StopSignals
) -> IngressStats | None:
    """``run_serve``'s kit, log and ingress, served until stopped; the ingress's stats."""
    from eventlog.nats import NatsEventLog
    from roomkit.cli import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, CliError
    from roomkit.ingress.ingress import Ingress

    async with AsyncExitStack() as stack:
        log: EventLog | None = None
        if wants_log:
            log = NatsEventLog(
                args.log or args.nats,
                stream_name=args.log_stream,
                subject_prefix=args.prefix,
                connect_timeout=args.timeout,
            )
            await _open(log, args.timeout, stack)
        kit = await _build_kit(target, log, CliError, EXIT_USAGE)
        _warn_if_volatile(kit, notes)
        if log is None and isinstance(kit.log, NatsEventLog):
            # A kit the app made on a log of its own (``kit = RoomKit(log=NatsEventLog(url))``
            # at import): nothing could connect that log before serve ran, and the kit could
            # not start ("NatsEventLog is not connected", a traceback). Connecting twice is
            # harmless, for a factory that connected it.
            await _open(kit.log, args.timeout, stack)
        try:
            await stack.enter_async_context(kit)
        except KitClosedError as exc:
            # A kit runs once: one the app closed (or left ``async with`` of) cannot serve.
            raise CliError(
                EXIT_USAGE, f"--app: the kit it gives is closed ({exc}): give a new RoomKit"
            ) from exc
        ingress = Ingress(
            kit,
            args.nats,
            subject_prefix=args.prefix,
            stream_name=args.stream,
            dlq_stream=args.dlq_stream,
            durable=args.durable,
            max_in_flight=args.max_in_flight,
            lanes=args.lanes,
            max_crashes=args.max_crashes or None,
            require_idempotency_key=not args.allow_missing_key,
            connect_timeout=args.timeout,
        )
        try:
            await stack.enter_async_context(ingress)
        except IngressUnavailable as exc:
            raise CliError(EXIT_UNREACHABLE, str(exc)) from exc
        except IngressError as exc:
            raise CliError(EXIT_ERROR, str(exc)) from exc
        notes.note(
            f"roomkit serve: consuming {ingress.subject} on {redacted(args.nats)} (stream "
            f"{args.stream}, durable {args.durable}); dead letters on {args.prefix}.dlq.>; "
            "Ctrl-C stops"
        )
        signals.serving(ingress)
        try:
            await ingress.wait()  # until a signal stops it, or it stops by itself
        except (IngressError, KitClosedError) as exc:
            raise CliError(EXIT_ERROR, str(exc)) from exc
        return ingress.stats
    return None  # pragma: no cover - the block returns or raises


async def _open(log: NatsEventLog, timeout: float, stack: AsyncExitStack) -> None:
    """Connect ``log`` within ``timeout`` (``--timeout``, which bounds the audit commands'
    too: a server without JetStream was retried for the log's own ``retry_timeout``, 10 s
    and more); ``stack`` closes it."""
    from eventlog.errors import StreamConflict
    from roomkit.cli import EXIT_ERROR, EXIT_UNREACHABLE, CliError

    stack.push_async_callback(log.aclose)
    try:
        with anyio.fail_after(timeout):
            await log.connect()
    except StreamConflict as exc:
        # The log's stream set up for other subjects (another --prefix): said as the
        # ingress's own stream conflict is, not as a traceback.
        raise CliError(EXIT_ERROR, str(exc)) from exc
    except TimeoutError as exc:
        where = ", ".join(redacted(server) for server in log.servers)
        failure = log.last_failure
        why = "" if failure is None else f" ({failure})"
        raise CliError(
            EXIT_UNREACHABLE, f"the log at {where} did not open within {timeout:g}s{why}"
        ) from exc


class _StopSignals:
    """SIGINT and SIGTERM for the whole of ``roomkit serve``: the first stops the ingress
    gracefully (it hands back what it holds); a second one, or one before it served, stops
    at once (``scope`` is cancelled): what was in hand goes back to JetStream unacknowledged
    (redelivered after ``ack_wait``, or re-read at the next start)."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.forced = False
        self._ingress: Ingress | None = None
        self._stopping = False

    def serving(self, ingress: Ingress) -> None:
        """From now on a first signal stops ``ingress`` gracefully (before, it stops at once:
        there is nothing to hand back yet)."""
        self._ingress = ingress

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch for the signals until cancelled; started once they are watched."""
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                task_status.started()
                async for signum in received:
                    name = signal.Signals(signum).name
                    if not self._stopping and self._ingress is not None:
                        self._stopping = True
                        logger.info("ingress: %s received, stopping", name)
                        self._ingress.stop()
                        continue
                    logger.warning("ingress: %s received, stopping at once", name)
                    self.forced = True
                    self.scope.cancel()
        except NotImplementedError:  # no signal receivers on this platform (Windows)
            task_status.started()
            await anyio.sleep_forever()


def _check_args(args: argparse.Namespace, error: Any, code: int) -> None:
    """Refuse bad settings as usage errors, before anything connects (the ingress and the log
    would refuse them too, but later and with a traceback)."""
    from actors import check_finite_seconds
    from roomkit.ingress.wire import check_jetstream_name, check_subject_prefix

    for option in ("nats", "log"):
        url = getattr(args, option)
        if url is not None and not _is_nats_url(url):
            # Refused here: connecting to it said the server was unreachable (exit 3) for
            # what is a usage error. A bare host is a host nats-py tries, as it would.
            raise error(
                code, f"--{option} {redacted(url)!r} is not a NATS URL: expected nats://HOST:PORT"
            )
    if args.max_in_flight < 1:
        raise error(code, "--max-in-flight must be at least 1")
    if args.lanes is not None and args.lanes < 1:
        raise error(code, "--lanes must be at least 1")
    if args.max_crashes < 0:
        raise error(code, "--max-crashes must be at least 0 (0: never)")
    try:
        check_finite_seconds("--timeout", args.timeout)
        check_subject_prefix(args.prefix)
        for option in ("stream", "dlq_stream", "durable", "log_stream"):
            check_jetstream_name(getattr(args, option), f"--{option.replace('_', '-')}")
    except (TypeError, ValueError) as exc:
        raise error(code, str(exc)) from exc
    if args.dlq_stream == args.stream:
        raise error(code, f"--dlq-stream and --stream are both {args.stream!r}")
    if (args.log is None or args.log == args.nats) and args.log_stream in (
        args.stream,
        args.dlq_stream,
    ):
        # One server, one stream name: the log's stream does not capture the ingress's subjects.
        raise error(code, f"--log-stream {args.log_stream!r} is also an ingress stream")


def _is_nats_url(url: str) -> bool:
    """Whether ``url`` is one nats-py takes: a scheme it knows (none: ``nats://``, as
    nats-py reads ``127.0.0.1:4222``), a host, a numeric port."""
    if "://" not in url:
        url = f"nats://{url}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("nats", "tls", "ws", "wss") and bool(parts.hostname)


def _load_app(spec: str, error: Any, code: int) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise error(code, f"--app {spec!r}: expected MODULE:NAME (e.g. myapp.rooms:build_kit)")
    # The current directory is importable, as with `python -m` (and uvicorn): `roomkit serve
    # --app myservice.rooms:make_kit` run from the project that holds `myservice/`.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(code, f"--app {spec!r}: cannot import {module_name}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise error(code, f"--app {spec!r}: {module_name} has no {attribute}") from exc
    return target


def _check_app(target: Any, error: Any, code: int) -> bool:
    """Check that ``target`` is a kit or a factory we can call; return whether it takes a log.

    Done before connecting anything, so that a wrong ``--app`` is a usage error.
    """
    if _is_kit(target):
        return False
    if not callable(target):
        raise error(code, f"--app: {target!r} is neither a RoomKit nor a function")
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or C callable: call it without arguments
        return False
    wants_log = any(
        p.name == "log" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in signature.parameters.values()
    )
    try:
        signature.bind(**({"log": None} if wants_log else {}))
    except TypeError as exc:
        raise error(code, f"--app: the factory cannot be called that way: {exc}") from exc
    return wants_log


async def _build_kit(target: Any, log: EventLog | None, error: Any, code: int) -> RoomKit:
    from roomkit.core.framework import RoomKit

    if _is_kit(target):
        kit: Any = target
    else:
        kit = target(log=log) if log is not None else target()
        if inspect.isawaitable(kit):
            kit = await kit
    if not isinstance(kit, RoomKit):
        raise error(code, f"--app: the factory returned {type(kit).__name__}, not a RoomKit")
    return kit


def _is_kit(target: Any) -> bool:
    from roomkit.core.framework import RoomKit

    return isinstance(target, RoomKit)


def _warn_if_volatile(kit: RoomKit, notes: Notes) -> None:
    from eventlog import MemoryEventLog

    if isinstance(kit.log, MemoryEventLog):
        notes.note(
            "roomkit serve: warning: the kit keeps its log in memory; rooms do not survive a "
            "restart (give the factory a `log` argument to get a NatsEventLog)"
        )
