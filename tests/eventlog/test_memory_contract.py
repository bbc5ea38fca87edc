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
