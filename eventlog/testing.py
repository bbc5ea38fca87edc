"""The contract suite every ``EventLog`` backend passes.

Subclass ``EventLogContract`` in a test module and provide a ``log`` fixture that yields a fresh,
empty log::

    class TestMyLog(EventLogContract):
        @pytest.fixture
        async def log(self) -> AsyncIterator[EventLog]:
            async with MyLog(...) as log:
                yield log

Capability flags switch optional parts on or off. The suite assumes only what the contract in
``eventlog.base`` promises: positions are strictly increasing but not necessarily contiguous.
"""

from __future__ import annotations

import enum
from typing import Any

import anyio
import pytest

from eventlog.base import ANY_VERSION, EventLog
from eventlog.errors import InvalidAppend, InvalidStreamId, WrongExpectedVersion
from eventlog.record import Headers, NewEvent, Record

__all__ = ["EventLogContract", "event"]

BAD_STREAM_IDS: list[Any] = ["", "a.b", "a*", "a>", "a b", "x" * 65, "é", 7, None]


def event(n: int | str, *, message_id: str | None = None, type: str = "happened") -> NewEvent:
    """A small test event whose payload identifies it."""
    return NewEvent(type=type, data=str(n).encode(), headers=Headers(message_id=message_id))


def payloads(records: list[Record]) -> list[bytes]:
    return [r.data for r in records]


class EventLogContract:
    """Tests of the ``EventLog`` contract; subclass with a ``log`` fixture."""

    #: The backend re-recognises message ids for ever (not only inside a window).
    unbounded_dedup: bool = False

    @pytest.fixture
    def log(self) -> EventLog:  # pragma: no cover - always overridden
        raise NotImplementedError("subclasses provide a fresh, empty log")

    # -- append and read ---------------------------------------------------------------------

    async def test_append_returns_committed_records(self, log: EventLog) -> None:
        records = await log.append("s1", [event(1), event(2)], expected_version=0)
        assert [r.version for r in records] == [1, 2]
        assert [r.stream for r in records] == ["s1", "s1"]
        assert payloads(records) == [b"1", b"2"]
        assert records[0].position < records[1].position
        assert await log.read("s1") == records

    async def test_versions_are_gap_free_across_appends(self, log: EventLog) -> None:
        for n in range(5):
            await log.append("s1", [event(n)], expected_version=n)
        await log.append("s1", [event(5), event(6), event(7)], expected_version=5)
        assert [r.version for r in await log.read("s1")] == list(range(1, 9))
        assert await log.last_version("s1") == 8

    async def test_unknown_stream_reads_empty(self, log: EventLog) -> None:
        assert await log.read("nobody") == []
        assert await log.last_version("nobody") == 0
        assert await log.load_snapshot("nobody") is None

    async def test_read_after_version_and_limit(self, log: EventLog) -> None:
        await log.append("s1", [event(n) for n in range(1, 11)], expected_version=0)
        assert payloads(await log.read("s1", after_version=7)) == [b"8", b"9", b"10"]
        assert payloads(await log.read("s1", after_version=2, limit=3)) == [b"3", b"4", b"5"]
        assert await log.read("s1", after_version=10) == []

    async def test_headers_and_timestamps_are_kept(self, log: EventLog) -> None:
        headers = Headers(
            message_id="m-1", causation_id="c-1", correlation_id="k-1", extra={"who": "me"}
        )
        given = NewEvent(type="t", data=b"x", headers=headers, timestamp=1234.5)
        stamped = NewEvent(type="t", data=b"y")
        first, second = await log.append("s1", [given, stamped], expected_version=0)
        assert first.headers == headers
        assert first.timestamp == 1234.5
        assert second.timestamp > 1_000_000_000
        assert (await log.read("s1"))[0].headers == headers

    async def test_empty_append_is_rejected(self, log: EventLog) -> None:
        with pytest.raises(InvalidAppend):
            await log.append("s1", [], expected_version=0)
        assert await log.last_version("s1") == 0

    async def test_too_large_append_is_rejected(self, log: EventLog) -> None:
        too_many = [event(n) for n in range(log.max_append_events + 1)]
        with pytest.raises(InvalidAppend):
            await log.append("s1", too_many, expected_version=0)
        assert await log.read("s1") == []

    @pytest.mark.parametrize("bad", BAD_STREAM_IDS)
    async def test_invalid_stream_ids_are_rejected(self, log: EventLog, bad: Any) -> None:
        with pytest.raises(InvalidStreamId):
            await log.append(bad, [event(1)], expected_version=0)
        with pytest.raises(InvalidStreamId):
            await log.read(bad)
        with pytest.raises(InvalidStreamId):
            await log.last_version(bad)
        with pytest.raises(InvalidStreamId):
            await log.save_snapshot(bad, 1, b"")
        with pytest.raises(InvalidStreamId):
            await log.load_snapshot(bad)

    # -- optimistic concurrency --------------------------------------------------------------

    async def test_wrong_expected_version_is_rejected_with_the_actual_version(
        self, log: EventLog
    ) -> None:
        await log.append("s1", [event(1), event(2)], expected_version=0)
        with pytest.raises(WrongExpectedVersion) as caught:
            await log.append("s1", [event(3)], expected_version=1)
        assert caught.value.actual == 2
        assert caught.value.expected == 1
        with pytest.raises(WrongExpectedVersion):
            await log.append("fresh", [event(1)], expected_version=3)
        assert payloads(await log.read("s1")) == [b"1", b"2"]

    async def test_rejected_multi_event_append_writes_nothing(self, log: EventLog) -> None:
        await log.append("s1", [event(1)], expected_version=0)
        with pytest.raises(WrongExpectedVersion):
            await log.append("s1", [event(2), event(3), event(4)], expected_version=0)
        assert payloads(await log.read("s1")) == [b"1"]

    @pytest.mark.parametrize(
        "bad",
        [
            NewEvent(type="x", data="text"),  # type: ignore[arg-type]
            NewEvent(type=5, data=b"x"),  # type: ignore[arg-type]
            NewEvent(type="", data=b"x"),
            NewEvent(type="x", timestamp=float("nan")),
            NewEvent(type="x", timestamp=1e20),
            NewEvent(type="x", timestamp="2026-01-01"),  # type: ignore[arg-type]
            NewEvent(type="x", headers=Headers(message_id=5)),  # type: ignore[arg-type]
            NewEvent(type="x", headers=Headers(extra={"k": 1})),  # type: ignore[dict-item]
            # Text UTF-8 cannot hold (a lone surrogate, as json.loads('"\\ud800"') gives).
            NewEvent(type="t\ud800", data=b"x"),
            NewEvent(type="x", headers=Headers(message_id="m\udc00")),
            NewEvent(type="x", headers=Headers(causation_id="\ud83d")),
            NewEvent(type="x", headers=Headers(extra={"k\ud800": "v"})),
            NewEvent(type="x", headers=Headers(extra={"k": "v\ud800"})),
            None,
            b"x",
        ],
    )
    async def test_an_event_the_envelope_cannot_hold_is_refused(
        self, log: EventLog, bad: Any
    ) -> None:
        # Written, it could not be read back: on JetStream the whole log became unreadable.
        await log.append("s1", [event(1)], expected_version=0)
        with pytest.raises(InvalidAppend):
            await log.append("s1", [event(2), bad], expected_version=1)
        with pytest.raises(InvalidAppend):
            await log.append("s2", [bad], expected_version=0)
        assert payloads(await log.read("s1")) == [b"1"]
        assert [s.stream for s in await log.streams()] == ["s1"]  # no empty "s2" left behind
        assert payloads(await log.read_all()) == [b"1"]

    async def test_str_and_int_enums_are_taken(self, log: EventLog) -> None:
        class Tag(enum.StrEnum):
            HAPPENED = "happened"

        class Version(enum.IntEnum):
            ZERO = 0

        records = await log.append(
            "s1",
            [NewEvent(type=Tag.HAPPENED, data=b"1", timestamp=1_700_000_000)],
            expected_version=Version.ZERO,
        )
        assert records[0].type == "happened"
        assert payloads(await log.read("s1", after_version=Version.ZERO)) == [b"1"]

    @pytest.mark.parametrize("bad", ["0", 0.0, -1, True])
    async def test_expected_version_is_an_int_or_none(self, log: EventLog, bad: Any) -> None:
        with pytest.raises(InvalidAppend, match="expected_version"):
            await log.append("s1", [event(1)], expected_version=bad)
        assert await log.last_version("s1") == 0

    async def test_read_arguments_are_checked_alike(self, log: EventLog) -> None:
        # A negative limit read all but the last records from memory, and nothing from NATS.
        await log.append("s1", [event(1), event(2), event(3)], expected_version=0)
        for bad_limit in (-1, -2):
            with pytest.raises(ValueError, match="limit"):
                await log.read("s1", limit=bad_limit)
            with pytest.raises(ValueError, match="limit"):
                await log.read_all(limit=bad_limit)
        for wrong in ({"limit": 1.5}, {"after_version": None}, {"after_version": "1"}):
            with pytest.raises(TypeError):
                await log.read("s1", **wrong)
        with pytest.raises(TypeError):
            await log.read_all(after_position=None)  # type: ignore[arg-type]
        for wrong_position in (None, "3", 1.5, True):
            # At the call, as read_all: the first record read failed with the backend's
            # own words (a list index from memory, the server's JSON from NATS).
            with pytest.raises(TypeError, match="after_position"):
                log.subscribe(after_position=wrong_position)  # type: ignore[arg-type]
        assert await log.read("s1", after_version=10**30) == []
        assert await log.read_all(after_position=10**30) == []
        assert payloads(await log.read("s1", after_version=-5, limit=0)) == []
        assert payloads(await log.read("s1", after_version=-5)) == [b"1", b"2", b"3"]

    async def test_any_version_skips_the_check(self, log: EventLog) -> None:
        await log.append("s1", [event(1)], expected_version=ANY_VERSION)
        records = await log.append("s1", [event(2)], expected_version=ANY_VERSION)
        assert records[0].version == 2

    async def test_concurrent_writers_exactly_one_wins(self, log: EventLog) -> None:
        outcomes: list[str] = []

        async def writer(n: int) -> None:
            try:
                await log.append("contested", [event(n)], expected_version=0)
                outcomes.append("won")
            except WrongExpectedVersion:
                outcomes.append("lost")

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(writer, n)
        assert outcomes.count("won") == 1
        assert outcomes.count("lost") == 7
        assert len(await log.read("contested")) == 1

    # -- de-duplication ----------------------------------------------------------------------

    async def test_duplicate_message_id_returns_the_original_records(self, log: EventLog) -> None:
        original = await log.append("s1", [event(1, message_id="m-1")], expected_version=0)
        again = await log.append("s1", [event(1, message_id="m-1")], expected_version=1)
        assert again == original
        assert await log.last_version("s1") == 1

    async def test_retry_after_a_lost_ack_returns_the_original_records(
        self, log: EventLog
    ) -> None:
        # The caller appended, never saw the ack and retries with the same stale version.
        batch = [event(1, message_id="m-1"), event(2)]
        original = await log.append("s1", batch, expected_version=0)
        retried = await log.append("s1", batch, expected_version=0)
        assert retried == original
        assert payloads(await log.read("s1")) == [b"1", b"2"]

    async def test_message_ids_are_scoped_to_their_stream(self, log: EventLog) -> None:
        await log.append("s1", [event(1, message_id="m-1")], expected_version=0)
        other = await log.append("s2", [event(1, message_id="m-1")], expected_version=0)
        assert other[0].stream == "s2"
        assert await log.last_version("s2") == 1

    async def test_events_without_message_id_are_never_deduplicated(self, log: EventLog) -> None:
        await log.append("s1", [event(1)], expected_version=0)
        await log.append("s1", [event(1)], expected_version=1)
        assert await log.last_version("s1") == 2

    async def test_a_retry_behind_newer_appends_with_its_first_version_is_recognised(
        self, log: EventLog
    ) -> None:
        # A writer whose acknowledgement was lost retries with the version it named, after
        # others (or itself, through another path) appended behind it.
        first = await log.append("s1", [event(1, message_id="m-1"), event(2)], expected_version=0)
        await log.append("s1", [event(3, message_id="m-3")], expected_version=2)
        await log.append("s1", [event(4)], expected_version=3)
        retried = await log.append(
            "s1", [event(1, message_id="m-1"), event(2)], expected_version=0
        )
        assert retried == first
        assert await log.last_version("s1") == 4
        # Another append at that version is still refused.
        with pytest.raises(WrongExpectedVersion):
            await log.append("s1", [event(5, message_id="m-5")], expected_version=0)
        with pytest.raises(WrongExpectedVersion):
            await log.append("s1", [event(5, message_id="m-5")], expected_version=3)

    async def test_old_duplicate_behind_newer_events_is_recognised(self, log: EventLog) -> None:
        if not self.unbounded_dedup:
            pytest.skip("backend de-duplicates only its most recent append per stream")
        first = await log.append("s1", [event(1, message_id="m-1")], expected_version=0)
        await log.append("s1", [event(2, message_id="m-2")], expected_version=1)
        assert await log.append("s1", [event(1, message_id="m-1")], expected_version=2) == first
        assert await log.last_version("s1") == 2

    # -- global order ------------------------------------------------------------------------

    async def test_read_all_is_in_global_order(self, log: EventLog) -> None:
        await log.append("a", [event("a1")], expected_version=0)
        await log.append("b", [event("b1"), event("b2")], expected_version=0)
        await log.append("a", [event("a2")], expected_version=1)
        records = await log.read_all()
        assert payloads(records) == [b"a1", b"b1", b"b2", b"a2"]
        positions = [r.position for r in records]
        assert positions == sorted(set(positions))
        assert await log.last_position() == positions[-1]

    async def test_read_all_after_position_and_limit(self, log: EventLog) -> None:
        await log.append("a", [event(n) for n in range(6)], expected_version=0)
        records = await log.read_all()
        after = await log.read_all(after_position=records[2].position)
        assert payloads(after) == payloads(records[3:])
        assert payloads(await log.read_all(after_position=records[0].position, limit=2)) == [
            b"1",
            b"2",
        ]
        assert await log.read_all(after_position=records[-1].position) == []

    async def test_empty_log(self, log: EventLog) -> None:
        assert await log.read_all() == []
        assert await log.last_position() == 0
        assert await log.streams() == []

    async def test_streams_describes_every_stream(self, log: EventLog) -> None:
        await log.append("b", [event(1), event(2)], expected_version=0)
        last = await log.append("a", [NewEvent(type="t", timestamp=99.0)], expected_version=0)
        infos = await log.streams()
        assert [(i.stream, i.version) for i in infos] == [("a", 1), ("b", 2)]
        assert infos[0].last_position == last[0].position
        assert infos[0].last_timestamp == 99.0

    # -- subscriptions -----------------------------------------------------------------------

    async def test_subscribe_catches_up_then_follows_live(self, log: EventLog) -> None:
        await log.append("a", [event(1), event(2)], expected_version=0)
        seen: list[Record] = []
        caught_up = anyio.Event()
        with anyio.fail_after(10):
            async with log.subscribe(after_position=0) as subscription:
                async for record in subscription:
                    seen.append(record)
                    if len(seen) == 2:
                        caught_up.set()
                        await log.append("b", [event(3)], expected_version=0)
                        await log.append("a", [event(4), event(5)], expected_version=2)
                    if len(seen) == 5:
                        break
        assert payloads(seen) == [b"1", b"2", b"3", b"4", b"5"]
        assert seen == await log.read_all()

    async def test_subscribe_from_a_position_skips_what_came_before(self, log: EventLog) -> None:
        records = await log.append("a", [event(n) for n in range(5)], expected_version=0)
        seen: list[bytes] = []
        with anyio.fail_after(10):
            async with log.subscribe(after_position=records[2].position) as subscription:
                async for record in subscription:
                    seen.append(record.data)
                    if len(seen) == 2:
                        break
        assert seen == [b"3", b"4"]

    async def test_a_subscription_past_every_position_waits(self, log: EventLog) -> None:
        # As a read past the end is empty: JetStream refused a start past its 64 bits.
        await log.append("a", [event(1)], expected_version=0)
        with anyio.move_on_after(0.3) as scope, anyio.fail_after(10):
            async with log.subscribe(after_position=10**30) as subscription:
                async for _ in subscription:
                    pass  # pragma: no cover - nothing is past there
        assert scope.cancelled_caught

    async def test_subscribe_waits_for_appends_from_another_task(self, log: EventLog) -> None:
        seen: list[bytes] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def follow() -> None:
                    async with log.subscribe() as subscription:
                        async for record in subscription:
                            seen.append(record.data)
                            if len(seen) == 20:
                                return

                tg.start_soon(follow)
                for n in range(20):
                    await log.append(f"s{n % 3}", [event(n)], expected_version=ANY_VERSION)
        assert seen == [str(n).encode() for n in range(20)]

    async def test_subscription_can_be_cancelled(self, log: EventLog) -> None:
        with anyio.move_on_after(0.2) as scope, anyio.fail_after(10):
            async with log.subscribe() as subscription:
                async for _ in subscription:
                    pass  # pragma: no cover - the log stays empty
        assert scope.cancelled_caught

    # -- snapshots ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("version", "data"), [(-1, b"x"), (1.5, b"x"), (2**70, b"x"), (1, "text"), (1, None)]
    )
    async def test_a_snapshot_the_log_cannot_hold_is_refused(
        self, log: EventLog, version: Any, data: Any
    ) -> None:
        with pytest.raises(InvalidAppend, match="snapshot"):
            await log.save_snapshot("s1", version, data)
        assert await log.load_snapshot("s1") is None

    async def test_latest_snapshot_wins(self, log: EventLog) -> None:
        await log.save_snapshot("s1", 3, b"three")
        await log.save_snapshot("s1", 7, b"seven")
        await log.save_snapshot("s2", 1, b"other")
        snapshot = await log.load_snapshot("s1")
        assert snapshot is not None
        assert (snapshot.stream, snapshot.version, snapshot.data) == ("s1", 7, b"seven")
