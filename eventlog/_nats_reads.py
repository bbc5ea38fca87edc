"""The read algorithms of ``NatsEventLog``: one stream, the whole log, the list of streams.

Which transport for which read: a stream's tail usually sits in its last message (one direct
get); a few messages come from one batched direct get (no server state); many come from a pull
consumer (``_nats_replay``), about twice as fast per message.
"""

from __future__ import annotations

import contextlib

from eventlog._nats_codec import (
    StoredBatch,
    decode_batch,
    first_seq_after,
    last_position_of,
    records_of,
)
from eventlog._nats_io import (
    DIRECT_BATCH,
    JetStreamIO,
    Stored,
    decode_message,
    decode_or_skip,
)
from eventlog._nats_replay import pull_replay
from eventlog.record import Record, StreamInfo

__all__ = ["read_log", "read_stream", "seq_of_version", "list_streams"]


async def read_stream(
    io: JetStreamIO,
    stream: str,
    subject: str,
    last: Stored,
    *,
    after_version: int,
    limit: int | None,
) -> list[Record]:
    """The records of ``stream`` above ``after_version``, up to its ``last`` message."""
    last_version = last.last_version
    if after_version >= last_version:
        return []
    wanted = last_version - after_version
    if limit is not None:
        wanted = min(wanted, limit)
    if last.batch.version <= after_version + 1:
        # The usual case after a snapshot: the tail is in the last message.
        skip = after_version + 1 - last.batch.version
        return records_of(stream, last.seq, last.batch)[skip : skip + wanted]
    start = 1
    if after_version > 0:
        start = await seq_of_version(io, subject, after_version + 1, last.seq - 1)
    records: list[Record] = []

    def handle(_subject: str, seq: int, data: bytes) -> bool:
        batch = decode_message(data, seq, subject)
        if batch.version + len(batch.events) - 1 > after_version:
            skip = max(after_version + 1 - batch.version, 0)
            records.extend(records_of(stream, seq, batch)[skip:])
        # Stop at the last message read above, even if the stream grew since.
        return len(records) < wanted and seq < last.seq

    if wanted <= DIRECT_BATCH:
        await io.scan_direct(subject, start, handle, max_messages=wanted)
    else:
        await pull_replay(io, subject, start, handle)
    return records[:wanted]


async def seq_of_version(io: JetStreamIO, subject: str, version: int, high: int) -> int:
    """Binary search of the message of ``subject`` holding ``version`` (in ``1..high``).

    Each probe is one direct get of the subject's next message from a sequence, so finding
    the start of a tail costs log2(stream length) round trips instead of reading the
    stream's older messages.
    """
    low = 1
    while low <= high:
        middle = (low + high) // 2
        found = await io.next_of(subject, middle)
        if found is None or found.seq > high:
            high = middle - 1
        elif found.last_version < version:
            low = found.seq + 1
        elif found.batch.version > version:
            high = middle - 1
        else:
            return found.seq
    return low


async def read_log(
    io: JetStreamIO, subject_base: str, *, after_position: int, limit: int | None
) -> list[Record]:
    """Records of every stream above ``after_position``, in global order."""
    base = len(subject_base)
    records: list[Record] = []
    skipped = 0
    last_seq = 0

    def handle(subject: str, seq: int, data: bytes) -> bool:
        nonlocal skipped, last_seq
        last_seq = seq
        batch = decode_or_skip(data, seq, subject)
        if batch is None:
            skipped += 1
            return True
        batch_records = records_of(subject[base:], seq, batch)
        if batch_records[0].position <= after_position:
            batch_records = [r for r in batch_records if r.position > after_position]
        records.extend(batch_records)
        return limit is None or len(records) < limit

    start = first_seq_after(after_position)
    while True:
        skipped = 0
        wanted = None if limit is None else limit - len(records)
        # No subject filter: the JetStream stream holds only log subjects, and the server
        # serves "everything" much faster than the equivalent wildcard (no per-subject
        # accounting).
        if wanted is not None and wanted <= DIRECT_BATCH:
            await io.scan_direct(None, start, handle, max_messages=wanted)
        else:
            # Everything, or a large page: a consumer asked for exactly that many messages.
            await pull_replay(io, None, start, handle, max_messages=wanted)
        if limit is None or len(records) >= limit or not skipped:
            break
        # Messages not of the log took part of the page: a short page would read as the
        # log's end (a reader catching up would stop there). Read on past them.
        start = last_seq + 1
    return records if limit is None else records[:limit]


async def list_streams(io: JetStreamIO, subject_base: str) -> list[StreamInfo]:
    """Describe every stream from its last message, ordered by stream id.

    A stream whose last message is not one of the log's (someone else published there) is
    described from its last message that is: it is still there, with its records.
    """
    base = len(subject_base)
    found: dict[str, StreamInfo] = {}
    foreign: dict[str, int] = {}  # subject -> the sequence of its last message, not a batch

    def describe(subject: str, seq: int, batch: StoredBatch) -> None:
        stream = subject[base:]
        found[stream] = StreamInfo(
            stream=stream,
            version=batch.version + len(batch.events) - 1,
            last_position=last_position_of(seq),
            last_timestamp=batch.events[-1].timestamp,
        )

    def handle(subject: str, seq: int, data: bytes) -> bool:
        batch = decode_or_skip(data, seq, subject)
        if batch is None:
            foreign[subject] = seq
        else:
            foreign.pop(subject, None)  # a replay that started over: this one is the last
            describe(subject, seq, batch)
        return True

    # One consumer delivering each subject's last message.
    await pull_replay(io, subject_base + ">", 1, handle, last_per_subject=True)
    for subject, last_seq in foreign.items():
        if not subject.isascii() and not _encodable(subject):
            # Its bytes are not UTF-8 (the client keeps them escaped): no consumer can be
            # asked for it by name, and no room's stream has such a name.
            continue
        # Rare (another app's message), so the subject's messages are simply read in order.
        kept: tuple[int, StoredBatch] | None = None

        def keep(_subject: str, seq: int, data: bytes, end: int = last_seq) -> bool:
            nonlocal kept
            if seq >= end:
                return False
            with contextlib.suppress(Exception):  # another foreign message: passed over
                kept = (seq, decode_batch(data))
            return True

        await pull_replay(io, subject, 1, keep)
        if kept is not None:
            describe(subject, *kept)
    return [found[name] for name in sorted(found)]


def _encodable(subject: str) -> bool:
    try:
        subject.encode()
    except UnicodeEncodeError:
        return False
    return True
