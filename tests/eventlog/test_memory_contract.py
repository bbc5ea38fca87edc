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
