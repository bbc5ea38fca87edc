"""Opening a NATS JetStream log to audit it, without changing it.

``NatsEventLog.connect`` creates a missing stream and snapshot bucket, and turns an existing
stream's direct gets on: right for the process that owns the log, wrong for a tool that only
reads it. So the stream is looked up first (a server without it holds no rooms, and nothing is
created there unless asked: imports), and a reader opens the log ``read_only``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio

from eventlog import EventLog, EventLogError, LogUnavailable, MemoryEventLog, NewEvent
from eventlog._redacted import redacted

__all__ = ["DEFAULT_STREAM", "DEFAULT_SUBJECT_PREFIX", "open_nats_log"]

logger = logging.getLogger("roomkit.audit")

DEFAULT_STREAM = "ROOMKIT"
DEFAULT_SUBJECT_PREFIX = "roomkit"
_SCHEMES = ("nats", "tls")
_DEFAULT_PORT = 4222


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"{redacted(url)!r} is not a NATS URL: expected nats://HOST:PORT")
    try:
        return parts.hostname, parts.port or _DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"{redacted(url)!r}: bad port") from exc


async def _reachable(url: str, timeout: float) -> None:
    # A plain TCP connection first: a clear, quick answer when nothing listens there, whatever
    # the NATS client's reconnection policy is.
    host, port = _address(url)
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(host, port)
        await stream.aclose()
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise LogUnavailable(f"cannot reach the log at {redacted(url)}: {reason}") from exc


async def _connect_error(exc: Exception) -> None:
    # Without an error_cb nats-py logs each error with its traceback ("nats: encountered
    # error"), ahead of the one line the caller prints for the same failure (refused
    # credentials, a port that does not speak NATS).
    logger.debug("NATS: %r", exc)


class _NewStream(MemoryEventLog):
    """A stream not made yet, as ``NatsEventLog`` would make it on a server taking
    ``max_payload`` bytes per message: empty, with its limits (an import checked against it
    before its appends made the stream, and the snapshot bucket, for nothing)."""

    def __init__(self, max_payload: int) -> None:
        from eventlog.nats import NatsEventLog, append_bytes_limit

        super().__init__()
        self.max_append_events = NatsEventLog.max_append_events
        self._max_bytes = append_bytes_limit(max_payload)

    @property
    def max_append_bytes(self) -> int:
        return self._max_bytes

    def append_size(self, events: Sequence[NewEvent]) -> int:
        from eventlog._nats_codec import event_bytes

        return sum(event_bytes(event) for event in events)


async def _stream_exists(
    url: str, stream_name: str, subject_prefix: str, timeout: float
) -> tuple[bool, int]:
    """Whether the log's stream exists (a reading tool must not create one), and the
    server's max payload.

    Raises:
        ValueError: the stream holds other subjects (the wrong prefix was given).
    """
    import nats
    import nats.errors
    import nats.js.errors

    try:
        with anyio.fail_after(timeout):
            nc = await nats.connect(
                url,
                connect_timeout=max(1, round(timeout)),
                allow_reconnect=False,
                error_cb=_connect_error,
            )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise LogUnavailable(f"cannot connect to NATS at {redacted(url)}: {exc!r}") from exc
    try:
        with anyio.fail_after(timeout):
            info = await nc.jetstream(timeout=timeout).stream_info(stream_name)
    except nats.js.errors.NotFoundError:
        return False, nc.max_payload
    except nats.js.errors.ServiceUnavailableError as exc:
        raise LogUnavailable(
            f"JetStream is unavailable at {redacted(url)} (not enabled there, or its cluster "
            "has no leader yet)"
        ) from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise LogUnavailable(f"no JetStream answers at {redacted(url)}: {exc!r}") from exc
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()
    config = info.config
    subjects = f"{subject_prefix}.ev.>"
    if subjects not in (config.subjects or []):
        raise ValueError(
            f"JetStream stream {stream_name} at {redacted(url)} holds {config.subjects}, "
            f"not {subjects}: give the subject prefix its writers use"
        )
    return True, nc.max_payload


@asynccontextmanager
async def open_nats_log(
    url: str,
    *,
    stream_name: str = DEFAULT_STREAM,
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
    timeout: float = 5.0,
    create: bool = False,
    missing_ok: bool = False,
    check: Callable[[EventLog], Awaitable[None]] | None = None,
) -> AsyncIterator[EventLog]:
    """Open the RoomKit log on the NATS server at ``url``, leaving its stream as it is.

    Args:
        url: ``nats://HOST:PORT``.
        stream_name: the JetStream stream of the log.
        subject_prefix: the log's subject prefix (``<prefix>.ev.<room id>``).
        timeout: bound of connecting, and of each call's retries while the server is away.
        create: create the stream if it does not exist (imports); otherwise a server without
            it yields an empty log and is left untouched, with a warning unless
            ``missing_ok`` (a reader that waits for the stream to appear).
        check: with ``create``, awaited with a stand-in of a missing stream (empty, with the
            server's limits) before it is made: what it raises leaves the server untouched
            (an import the target would refuse: ``check_import``).

    Raises:
        ValueError: ``url`` is not a NATS URL, or the stream holds other subjects.
        LogUnavailable: nothing answers at ``url``, JetStream does not, or NATS support
            (nats-py) is not installed.
    """
    await _reachable(url, timeout)
    try:
        # Imported here: nats-py is an optional dependency that only this source needs.
        from eventlog.nats import NatsEventLog
    except ImportError as exc:
        raise LogUnavailable(
            f"cannot open {redacted(url)}: NATS support is not installed ({exc})"
        ) from exc
    # An existing stream is used as it is (NatsEventLog never reconfigures one).
    exists, max_payload = await _stream_exists(url, stream_name, subject_prefix, timeout)
    if not exists and create and check is not None:
        await check(_NewStream(max_payload))
    if not exists and not create:
        # A warning (on stderr from the CLI): a mistyped --stream read as an empty log.
        say = logger.info if missing_ok else logger.warning
        say(
            "no JetStream stream %s at %s: the log is empty (is the stream name right?)",
            stream_name,
            redacted(url),
        )
        yield MemoryEventLog()
        return
    log = NatsEventLog(
        url,
        stream_name=stream_name,
        subject_prefix=subject_prefix,
        connect_timeout=timeout,
        retry_timeout=timeout,
        # A reader changes nothing: no snapshot bucket made, no stream setting turned on (a
        # read-only account could not audit at all, told the log did not open in time).
        read_only=not create,
    )
    try:
        with anyio.fail_after(timeout):
            await log.connect()
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await log.aclose()
        if isinstance(exc, TimeoutError):
            failure = log.last_failure
            why = "" if failure is None else f" ({failure})"
            raise LogUnavailable(
                f"the log at {redacted(url)} did not open within {timeout:g}s{why}"
            ) from exc
        if type(exc) is EventLogError:  # the stream as it is cannot be read (direct gets off)
            raise LogUnavailable(f"cannot read the log at {redacted(url)}: {exc}") from exc
        raise
    try:
        yield log
    finally:
        with anyio.CancelScope(shield=True):
            await log.aclose()
