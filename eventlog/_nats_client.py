"""The nats-py client ``NatsEventLog`` creates for itself, with a cheaper header parser.

Every stored message carries two headers (``Nats-Msg-Id`` and
``Nats-Expected-Last-Subject-Sequence``) and a direct get adds six more, so replays parse headers
for every message. nats-py 2.16 checks each character of each header name with a Python-level
generator, which is about 60% of its per-message header cost; this parser gives the same result
with C-level string methods (+15% replay throughput). A client passed in by the application is
used as it is.

It also keeps a publisher's own ``Status`` header apart from the server's status. nats-py puts a
status line's code (``NATS/1.0 404``) under the ``Status`` key, and a header line named ``Status``
lands on that same key: a message published with ``Status: 503`` (a gateway copying an HTTP
response's headers, say) read as "no responders" for a request, made a JetStream fetch raise
and drop the rest of its batch, and one with ``Status: 404`` was dropped by the fetch as "no
messages", redelivered for ever. This parser keeps such a header as ``PUBLISHED_STATUS``.

And it takes a message whose subject or reply subject is not UTF-8, which a client speaking the
protocol with bytes can publish and a stream over a wildcard stores: nats-py's strict decoding
raised in its read loop, which stopped reading for good (the connection still said it was
connected; an ingress received nothing more, of any room). Such bytes are kept as lone
surrogates (``surrogateescape``), so the subscriber sees a subject no room or channel has.
A header block whose first line (``NATS/1.0 <status> <description>``) is not UTF-8 stopped it
the same way: that line is read with "?" in place of what is not ASCII (a status that is not
a number is no status, as nats-py takes it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

__all__ = ["PUBLISHED_STATUS", "RoomKitNatsClient", "parse_header_lines"]

logger = logging.getLogger("roomkit.eventlog.nats")

_CRLF = b"\r\n"

_STATUS = "Status"  # nats.js.api.Header.STATUS, where nats-py puts a status line's code
PUBLISHED_STATUS = "Status (published)"
"""Where a publisher's own ``Status`` header goes (a name no header line can have: it holds a
space)."""


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """Parse ``Name: Value`` lines like ``nats.aio.client.Client._parse_header_lines``, but
    with a ``Status`` line kept as ``PUBLISHED_STATUS`` (see the module's docstring)."""
    headers: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue  # not a token: nats-py skips it too
        if len(key.split()) > 1:
            continue  # white space inside a name: invalid, skipped like nats-py does
        if key == _STATUS:
            key = PUBLISHED_STATUS
        headers[key] = value.strip().decode("utf-8", "replace")
    return headers


class RoomKitNatsClient(Client):
    """nats-py's client, parsing message headers faster (same results), and telling its
    listeners when it has reconnected."""

    _parse_header_lines = staticmethod(parse_header_lines)

    def __init__(self) -> None:
        super().__init__()
        self._reconnect_listeners: set[Callable[[], None]] = set()

    async def _process_headers(self, headers: Any) -> dict[str, str] | None:
        try:
            return await super()._process_headers(headers)
        except UnicodeDecodeError:
            logger.warning(
                "NATS: a message whose status line is not UTF-8 (%r): read with '?' for it",
                bytes(headers[:200]),
            )
            # nats-py slices the status line by bytes: it must be ASCII to be cut anywhere.
            first, crlf, rest = bytes(headers).partition(_CRLF)
            line = first.decode("utf-8", "replace").encode("ascii", "replace")
            return await super()._process_headers(line + crlf + rest)

    def _build_message(
        self,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Any:
        try:
            return super()._build_message(sid, subject, reply, data, headers)
        except UnicodeDecodeError:
            logger.warning(
                "NATS: a message whose subject or reply subject is not UTF-8 (%r, reply %r): "
                "kept with its bytes escaped",
                subject[:200],
                reply[:200],
            )
            return self.msg_class(
                subject=subject.decode("utf-8", "surrogateescape"),
                reply=reply.decode("utf-8", "surrogateescape"),
                data=data,
                headers=headers,
                _client=self,
                _sid=sid,
            )

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (in the client's task; it must not block) after each reconnect;
        returns what stops that."""
        self._reconnect_listeners.add(listener)
        return lambda: self._reconnect_listeners.discard(listener)

    def reconnected(self) -> None:
        """Tell the listeners (the connection's ``reconnected_cb`` calls this)."""
        for listener in list(self._reconnect_listeners):
            try:
                listener()
            except Exception:
                logger.exception("a reconnect listener failed")
