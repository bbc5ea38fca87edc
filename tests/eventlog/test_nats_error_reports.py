"""What a NATS connection of the log reports from nats-py's own tasks (real nats-server)."""

from __future__ import annotations

import logging

import anyio
import nats.errors
import pytest
from nats.aio.msg import Msg

from eventlog._nats_setup import ErrorReporter, open_client
from eventlog.testing_nats import NatsServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_consumer_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "roomkit.eventlog.nats" and r.levelno == logging.WARNING
    ]


class CountingReporter(ErrorReporter):
    """Counts the drops reported to it."""

    drops = 0

    def _slow_consumer(self, exc: nats.errors.SlowConsumerError) -> None:
        self.drops += 1
        super()._slow_consumer(exc)


async def flood(nats_server: NatsServer, reporter: CountingReporter, messages: int) -> int:
    """Publish ``messages`` to a subscription that holds 2 and does not read: most drop."""
    nc = await open_client(
        [nats_server.url],
        connect_timeout=5,
        request_timeout=5,
        options={"error_cb": reporter.report},
    )
    release = anyio.Event()
    received = 0

    async def stuck(msg: Msg) -> None:
        nonlocal received
        received += 1
        await release.wait()

    try:
        await nc.subscribe("flood", cb=stuck, pending_msgs_limit=2)
        for n in range(messages):
            await nc.publish("flood", b"%d" % n)
        await nc.flush()
        # nats-py calls the error callback in tasks of its own: wait for the drops it reports.
        with anyio.move_on_after(10):
            while reporter.drops < messages - 10:
                await anyio.sleep(0.01)
    finally:
        release.set()
        await nc.close()
    return received


async def test_a_flood_into_a_slow_consumer_is_one_warning_with_its_count(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    reporter = CountingReporter(every=10.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="roomkit.eventlog.nats"):
        received = await flood(nats_server, reporter, 200)
    warnings = slow_consumer_warnings(caplog)
    # nats-py reported a drop per message: one warning, the rest at DEBUG level.
    assert len(warnings) == 1
    assert warnings[0].startswith("NATS: slow consumer on flood (subscription ")
    assert warnings[0].endswith(": 1 message dropped")
    dropped = sum(1 for r in caplog.records if "dropped a message" in r.getMessage())
    assert dropped > 100 and received <= 3


async def test_drops_after_the_interval_are_warned_with_the_count_since() -> None:
    clock = Clock()
    reporter = ErrorReporter(every=10.0, clock=clock)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING:
                records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("roomkit.eventlog.nats")
    logger.addHandler(handler)
    try:
        for at, sid in [(0.0, 7), (1.0, 7), (2.0, 7), (3.0, 8), (12.0, 7), (13.0, 7)]:
            clock.now = at
            await reporter.report(nats.errors.SlowConsumerError("s", "", sid, None))  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    assert records == [
        "NATS: slow consumer on s (subscription 7): 1 message dropped",
        "NATS: slow consumer on s (subscription 8): 1 message dropped",
        "NATS: slow consumer on s (subscription 7): 3 messages dropped in the last 12 s",
    ]
