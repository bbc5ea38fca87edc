"""MemoryEventLog passes the shared contract, on asyncio and trio."""

from __future__ import annotations

import pytest

from eventlog import EventLog, MemoryEventLog
from eventlog.testing import EventLogContract


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestMemoryEventLog(EventLogContract):
    unbounded_dedup = True

    @pytest.fixture
    def log(self) -> EventLog:
        return MemoryEventLog()


class TestMemoryEventLogPastItsNarrowColumns(EventLogContract):
    """The contract again, with the 4-byte and 1-byte columns' limits at 3 and 1: what a log
    past 4 billion positions or 256 event types does (its columns go on in 8 bytes)."""

    unbounded_dedup = True

    @pytest.fixture
    def log(self, monkeypatch: pytest.MonkeyPatch) -> EventLog:
        import eventlog.memory

        monkeypatch.setattr(eventlog.memory, "_NARROW_TOP", 3)
        monkeypatch.setattr(eventlog.memory, "_BYTE_TOP", 1)
        return MemoryEventLog()


async def test_a_cancelled_subscriber_does_not_stop_another_from_waking() -> None:
    import anyio

    from eventlog import NewEvent

    log = MemoryEventLog()
    received: list[int] = []

    async def follow() -> None:
        async with log.subscribe() as records:
            async for record in records:
                received.append(record.version)
                return

    async def abandon() -> None:
        with anyio.move_on_after(0.01):
            async with log.subscribe() as records:
                async for _ in records:
                    pass  # pragma: no cover - nothing is appended before it gives up

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await abandon()  # waits too, then is cancelled while waiting
            await log.append("s1", [NewEvent(type="t")], expected_version=0)
    assert received == [1]


async def test_more_event_types_than_a_byte_numbers() -> None:
    # The type column holds a byte per record until a 257th type comes.
    from eventlog import NewEvent

    log = MemoryEventLog()
    for n in range(300):
        await log.append("s", [NewEvent(type=f"type-{n}", data=b"x")], expected_version=None)
    assert [record.type for record in await log.read("s")] == [f"type-{n}" for n in range(300)]
