"""An incremental decoder for ``text/event-stream`` (server-sent events).

It follows the WHATWG HTML "event stream interpretation" rules: UTF-8 with replacement of
invalid bytes, a leading byte-order mark dropped, lines ending in CRLF, LF or CR, ``:`` comments,
one optional space after the field's colon, ``data`` lines joined with ``\\n``, an event dispatched
on each blank line (only when it has data), and an unterminated event at the end of the stream
discarded. Bytes may arrive split anywhere (inside a UTF-8 sequence, between CR and LF).

The decoder knows nothing of HTTP: feed it the body's chunks (``response.aiter_bytes()``).
The only error it raises is :class:`SSEError`, when a line or an event grows past
``max_event_size`` characters (a server that never ends a line must not exhaust memory).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from providers.errors import ProviderError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "SSEError", "SSEEvent", "aiter_sse"]

DEFAULT_MAX_EVENT_SIZE = 4 * 1024 * 1024
"""Default limit, in characters, on one line and on one event's accumulated data."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEError(ProviderError):
    """An event stream exceeded the decoder's size limit."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event.

    Attributes:
        event: The event type (``"message"`` when the server sent no ``event:`` field).
        data: The ``data:`` lines of the event, joined with ``\\n``.
        id: The last event id seen on the stream so far (``""`` if none).
        retry: The reconnection time in milliseconds, if this event set one.
    """

    event: str
    data: str
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Turns chunks of an event stream into :class:`SSEEvent` objects.

    Args:
        max_event_size: Limit, in characters, on a single line and on one event's data.
    """

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max = max_event_size
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True
        self._partial = ""
        # A chunk that ended with CR: an LF at the start of the next chunk belongs to it.
        self._skip_lf = False
        self._event_type = ""
        self._data: list[str] = []
        self._data_size = 0
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk`` and return the events it completes, in order.

        Raises:
            SSEError: A line or an event's data exceeds ``max_event_size`` characters.
        """
        text = self._utf8.decode(chunk)
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = False
        if not text:
            return []
        buffered = self._partial + text
        lines = _LINE_BREAK.split(buffered)
        self._partial = lines.pop()
        self._skip_lf = buffered.endswith("\r")
        if len(self._partial) > self._max:
            raise SSEError(f"event stream line longer than {self._max} characters")
        events: list[SSEEvent] = []
        for line in lines:
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise SSEError(f"event stream event larger than {self._max} characters")
            self._data.append(value)
        elif field == "event":
            self._event_type = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type, retry = self._data, self._event_type, self._retry
        self._data, self._data_size, self._event_type, self._retry = [], 0, "", None
        if not data:
            return None
        return SSEEvent(
            event=event_type or "message", data="\n".join(data), id=self._last_id, retry=retry
        )


async def aiter_sse(
    chunks: AsyncIterable[bytes], *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE
) -> AsyncIterator[SSEEvent]:
    """Yield the events of an event stream given as byte chunks.

    Raises:
        SSEError: A line or an event exceeds ``max_event_size`` characters.
    """
    decoder = SSEDecoder(max_event_size)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
