"""Fixtures of the kit's tests: the same suites run on the memory log and on JetStream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from eventlog import EventLog, MemoryEventLog
from roomkit import RoomKit


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def event_log(request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    """An empty event log: ``MemoryEventLog``, or ``NatsEventLog`` on a real nats-server."""
    if request.param == "memory":
        yield MemoryEventLog()
        return
    from eventlog.nats import NatsEventLog

    server = request.getfixturevalue("nats_server")
    async with NatsEventLog(server.url, request_timeout=5.0, retry_timeout=10.0) as log:
        yield log


@pytest.fixture
def make_kit(event_log: EventLog) -> Callable[..., RoomKit]:
    """Build kits on the test's event log (enter them with ``async with``)."""

    def make(**kwargs: Any) -> RoomKit:
        return RoomKit(log=event_log, **kwargs)

    return make


@pytest.fixture
async def kit(make_kit: Callable[..., RoomKit]) -> AsyncIterator[RoomKit]:
    """A running kit. Afterwards (every scenario checks it): the room actors' state equals a
    fresh fold of the log and the store; a second kit rebuilt from the same log holds the same
    rooms, bindings, participants, timeline and read markers."""
    from tests.roomkit.test_kit_replay import assert_consistent, snapshot

    async with make_kit() as kit:
        yield kit
        await assert_consistent(kit)
        live = await snapshot(kit)
    async with make_kit() as rebuilt:
        assert await snapshot(rebuilt) == live, "state rebuilt from the log differs"
