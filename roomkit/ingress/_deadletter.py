"""What a dead letter carries, cut to what the server takes.

A dead letter is the raw payload, the original headers and RoomKit's own. A payload near the
server's max payload no longer fits once those headers are added, and NATS answers an
oversized publish by closing the connection: so what does not fit is cut, and
``RoomKit-Truncated`` says how large the payload was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from eventlog._nats_client import PUBLISHED_STATUS
from roomkit.ingress._work import Rejection, WorkItem
from roomkit.ingress.wire import (
    ERROR_DETAIL_HEADER,
    ERROR_HEADER,
    MSG_ID_HEADER,
    STREAM_SEQ_HEADER,
    SUBJECT_HEADER,
    TRUNCATED_HEADER,
)

__all__ = ["HEADER_SLACK", "dead_letter_id", "fit", "headers_size", "own_headers"]

#: Bytes kept free for the headers a publish adds on its way (JetStream's
#: ``Nats-Expected-Stream``) and for nats-py's rewriting of header values.
HEADER_SLACK = 256

_HEADER_BLOCK = len(b"NATS/1.0\r\n") + len(b"\r\n")

# A header name nats-py sends: an HTTP token (RFC 9110, section 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def headers_size(headers: Mapping[str, str]) -> int:
    """The bytes ``headers`` take in a NATS message (the ``NATS/1.0`` block nats-py sends)."""
    return _HEADER_BLOCK + sum(
        len(key.encode()) + len(value.encode()) + len(b": \r\n") for key, value in headers.items()
    )


def dead_letter_id(stream: str, seq: int, incarnation: str) -> str:
    """The dead letter's ``Nats-Msg-Id``: one per message of one incarnation of the stream.

    A message dead-lettered twice (recovery, then redelivery) is stored once; the stream's
    creation time keeps the messages of a stream made again (whose sequences restart at 1)
    from being taken for those of the old one.
    """
    return f"{stream}:{seq}@{incarnation}" if incarnation else f"{stream}:{seq}"


def own_headers(item: WorkItem, rejection: Rejection, stream: str) -> dict[str, str]:
    """RoomKit's headers of ``item``'s dead letter (see ``roomkit.ingress.wire``)."""
    headers = {
        ERROR_HEADER: str(rejection.code),
        ERROR_DETAIL_HEADER: rejection.detail,
        SUBJECT_HEADER: item.subject,
    }
    if item.seq is not None:
        headers[STREAM_SEQ_HEADER] = str(item.seq)
        headers[MSG_ID_HEADER] = dead_letter_id(stream, item.seq, item.incarnation)
    return headers


def fit(
    data: bytes, original: Mapping[str, str], own: Mapping[str, str], limit: int
) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of a dead letter within ``limit`` bytes (headers included).

    The original headers (but ``Nats-*`` ones, which belonged to the first publish) and
    ``own`` are kept, and the payload whole, if they fit. Otherwise the payload is cut and
    ``RoomKit-Truncated`` gives its original size; if the original headers alone are too
    large, they are dropped too. ``own`` is always kept. A publisher's own ``Status`` header,
    which the kit's client reads as ``PUBLISHED_STATUS`` (not a header name nats-py can
    send), is kept under its own name. A header whose name nats-py will not send (not an
    HTTP token: a raw client may publish ``X(1)``) is dropped.
    """
    kept = {
        ("Status" if k == PUBLISHED_STATUS else k): v
        for k, v in original.items()
        if not k.startswith("Nats-") and (k == PUBLISHED_STATUS or _TOKEN.fullmatch(k.strip()))
    }
    headers = {**kept, **own}
    if len(data) + headers_size(headers) <= limit:
        return data, headers
    headers[TRUNCATED_HEADER] = str(len(data))
    if headers_size(headers) > limit:
        headers = {**own, TRUNCATED_HEADER: str(len(data))}
    room = max(0, limit - headers_size(headers))
    return data[:room], headers
