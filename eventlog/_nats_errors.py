"""Translation of nats-py exceptions into ``EventLogError`` subclasses, at the boundary.

nats-py reports JetStream failures as ``APIError`` subclasses chosen by HTTP-like code, but the
meaning is in ``err_code`` (10052/10057/10110 arrive as 500 ServerError), so we branch on that.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors

from eventlog.errors import EventLogError, LogUnavailable

__all__ = [
    "ERR_MESSAGE_TOO_LARGE",
    "ERR_STORE_FAILED",
    "ERR_STREAM_NAME_IN_USE",
    "ERR_SUBJECTS_OVERLAP",
    "ERR_WRONG_LAST_SEQUENCE",
    "ServerBusy",
    "is_transient",
    "translate",
]

#: ``Nats-Expected-Last-Subject-Sequence`` did not match.
ERR_WRONG_LAST_SEQUENCE = 10071
#: ``add_stream`` with a name that exists with another configuration.
ERR_STREAM_NAME_IN_USE = 10058
#: ``add_stream`` with subjects that overlap those of another stream.
ERR_SUBJECTS_OVERLAP = 10065
#: A publish larger than the stream's ``max_msg_size``.
ERR_MESSAGE_TOO_LARGE = 10054
#: The stream could not store a publish: among others, a limit with ``discard=new`` reached
#: ("maximum messages exceeded", "maximum bytes exceeded", "maximum messages per subject
#: exceeded"), which only a change of the stream's limits cures.
ERR_STORE_FAILED = 10077


class ServerBusy(Exception):
    """The server answered a direct get with 503 or 408: worth retrying."""


# Failures that go away once the server is back (restart, leader election, reconnect).
_TRANSIENT: tuple[type[BaseException], ...] = (
    ServerBusy,
    TimeoutError,  # nats.errors.TimeoutError and asyncio's are subclasses of the built-in
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    ConnectionError,
)


def limit_reached(exc: BaseException) -> bool:
    """Whether JetStream refused a write for a limit of its stream or bucket reached with
    ``discard=new`` (a 503, answered at once; only a change of the limits cures it)."""
    return (
        isinstance(exc, nats.js.errors.APIError)
        and exc.err_code == ERR_STORE_FAILED
        and (exc.description or "").startswith("maximum ")
    )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` later may succeed (the server or the connection is away)."""
    if limit_reached(exc):
        # A 503 like an outage's, but it lasts: a snapshot bucket at its max_bytes held each
        # save for the whole retry_timeout, and with it the command that took the snapshot.
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.code == 503


def translate(exc: BaseException, doing: str) -> EventLogError:
    """Return the ``EventLogError`` to raise ``from exc`` for a failure while ``doing``."""
    if isinstance(exc, EventLogError):
        return exc
    if isinstance(exc, nats.errors.ConnectionClosedError):
        # Closed for good: by its owner (an app's own client), as the log's own reconnects
        # for ever. Not an outage to wait out: callers that retry those (the ingress) would
        # retry for ever.
        return EventLogError(f"{doing}: the NATS connection is closed")
    if isinstance(exc, nats.errors.NoRespondersError):
        # The server answered: no stream takes the subject (for now: a cluster electing a
        # leader; for good: the stream deleted, or a server restarted without its store).
        return LogUnavailable(
            f"{doing}: no JetStream stream answered (the stream is missing: deleted, or its "
            "server lost its store; processes that hold its state are to be restarted once "
            "it is made again)"
        )
    if isinstance(exc, nats.js.errors.APIError) and limit_reached(exc):
        return EventLogError(
            f"{doing}: refused, a limit of the JetStream stream or bucket is reached "
            f"({exc.description}, with discard=new): raise its limits, or remove what it no "
            "longer needs to hold"
        )
    if isinstance(exc, nats.js.errors.ServiceUnavailableError) or (
        isinstance(exc, nats.js.errors.APIError) and exc.code == 503
    ):
        # The server answered: its JetStream cannot serve (off on that server, or a cluster
        # without a leader for now). "Did not answer" sent users looking at the network.
        said = f": {exc.description}" if exc.description else ""
        return LogUnavailable(
            f"{doing}: the server's JetStream is unavailable (not enabled there, or its "
            f"cluster has no leader yet{said})"
        )
    if is_transient(exc):
        return LogUnavailable(f"{doing}: NATS did not answer ({exc!r})")
    return EventLogError(f"{doing}: {exc}")
