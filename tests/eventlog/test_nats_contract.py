"""NatsEventLog passes the shared contract against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventlog import EventLog
from eventlog.nats import NatsEventLog
from eventlog.testing import EventLogContract
from eventlog.testing_nats import NatsServer

pytestmark = pytest.mark.nats


class TestNatsEventLog(EventLogContract):
    # JetStream recognises a message id inside its duplicate window only; a stale expected
    # version recognises the stream's last append (see NatsEventLog.append).
    unbounded_dedup = False

    @pytest.fixture
    async def log(self, nats_server: NatsServer) -> AsyncIterator[EventLog]:
        async with NatsEventLog(nats_server.url, retry_timeout=5.0) as log:
            yield log
