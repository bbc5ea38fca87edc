"""The stored batch format and the sequence <-> position mapping of NatsEventLog (no server)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eventlog import Headers, NewEvent
from eventlog._nats_codec import (
    MAX_EVENTS,
    StoredBatch,
    StoredEvent,
    decode_batch,
    decode_pub_ack,
    encode_batch,
    first_seq_after,
    last_position_of,
    records_of,
)

texts = st.text(max_size=20)
headers = st.builds(
    Headers,
    message_id=st.none() | texts,
    causation_id=st.none() | texts,
    correlation_id=st.none() | texts,
    extra=st.none() | st.dictionaries(texts, texts, max_size=3),
)
new_events = st.builds(
    NewEvent,
    type=texts,
    data=st.binary(max_size=64),
    headers=headers,
    timestamp=st.none() | st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@given(
    version=st.integers(1, 2**40),
    events=st.lists(new_events, min_size=1, max_size=20),
    prev_seq=st.integers(0, 2**40),
)
def test_a_batch_round_trips(version: int, events: list[NewEvent], prev_seq: int) -> None:
    payload, batch = encode_batch(version, events, 1234.5, prev_seq)
    assert decode_batch(payload) == batch
    assert [e.data for e in batch.events] == [e.data for e in events]
    assert [e.headers for e in batch.events] == [e.headers for e in events]
    assert all(
        stored.timestamp == (1234.5 if given.timestamp is None else given.timestamp)
        for stored, given in zip(batch.events, events, strict=True)
    )


def test_the_stored_format_is_stable() -> None:
    # An array tagged "rk1": renaming the classes must not change a byte of stored messages.
    payload, _ = encode_batch(7, [NewEvent(type="t", data=b"d", timestamp=1.5)], 0.0, 3)
    assert (
        payload
        == b"\x94\xa3rk1\x07\x91\x94\xa1t\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x01d\x80\x03"
    )


@given(st.lists(st.integers(1, MAX_EVENTS), min_size=1, max_size=30))
def test_positions_strictly_increase_and_map_back_to_their_message(sizes: list[int]) -> None:
    positions: list[int] = []
    for seq, size in enumerate(sizes, start=1):
        batch = StoredBatch(
            version=1, events=[StoredEvent(type="t", timestamp=0.0, data=b"")] * size
        )
        records = records_of("s", seq, batch)
        assert records[-1].position == last_position_of(seq)
        for record in records:
            # The first message that can hold an event after the one before is this one.
            assert first_seq_after(record.position - 1) == seq
        positions.extend(r.position for r in records)
    assert positions == sorted(set(positions))
    assert positions[0] >= 1
    assert first_seq_after(0) == 1


def test_pub_acks_and_errors_decode() -> None:
    ack = decode_pub_ack(b'{"stream":"T","seq":1,"duplicate": true}')
    assert (ack.seq, ack.duplicate, ack.error) == (1, True, None)
    refused = decode_pub_ack(
        b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"},'
        b'"stream":"T","seq":0}'
    )
    assert refused.error is not None
    assert (refused.error.code, refused.error.err_code) == (400, 10071)
