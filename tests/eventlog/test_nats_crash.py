"""Crash test: kill -9 the nats-server in the middle of appends, restart it, lose nothing.

Eight writers append continuously (each event with a message id). Twice mid-run the server
is killed with SIGKILL and restarted on the same port and store directory. A writer whose append
fails with ``LogUnavailable`` retries the same events, message id and expected version (the
contract's safe retry), so afterwards every stream must hold exactly the acknowledged records:
each once, versions gap-free, positions increasing, and appends resumed after the restart.
"""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from eventlog import LogUnavailable, Record
from eventlog.nats import NatsEventLog
from eventlog.testing import event
from eventlog.testing_nats import NatsServer

pytestmark = [pytest.mark.nats, pytest.mark.slow]

WRITERS = 8
#: Acknowledged appends between two crashes.
BETWEEN_CRASHES = 400
CRASHES = 2


class Progress:
    """Counts acknowledged appends; ``reach(n)`` waits (event-driven) until n were counted."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()

    def add(self) -> None:
        self.count += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def reach(self, target: int) -> None:
        while self.count < target:
            await self._changed.wait()


async def test_acknowledged_appends_survive_kill_9_and_appends_resume(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    acknowledged: dict[str, list[Record]] = {f"w{n}": [] for n in range(WRITERS)}
    progress = Progress()
    retries = 0
    stop = anyio.Event()

    async def writer(log: NatsEventLog, stream: str) -> None:
        nonlocal retries
        version = 0
        while not stop.is_set():
            batch = [event(f"{stream}.{version + 1}", message_id=f"{stream}.{version + 1}")]
            while True:
                try:
                    records = await log.append(stream, batch, expected_version=version)
                    break
                except LogUnavailable:
                    retries += 1  # outcome unknown: the same message id makes a retry safe
            acknowledged[stream].extend(records)
            version = records[-1].version
            progress.add()

    async with NatsEventLog(
        server.url, request_timeout=0.5, retry_timeout=2.0, idle_heartbeat=0.2
    ) as log:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for stream in acknowledged:
                    tg.start_soon(writer, log, stream)
                for _ in range(CRASHES):
                    await progress.reach(progress.count + BETWEEN_CRASHES)
                    server.kill()
                    at_kill = progress.count
                    await anyio.to_thread.run_sync(server.restart)
                await progress.reach(at_kill + BETWEEN_CRASHES)
                stop.set()

        with anyio.fail_after(30):
            everything = await log.read_all()
            for stream, records in acknowledged.items():
                stored = await log.read(stream)
                assert stored == records, f"{stream}: the log differs from what was acked"
                assert [r.version for r in stored] == list(range(1, len(stored) + 1))
                assert len({r.data for r in stored}) == len(stored)

    assert len(everything) == sum(len(r) for r in acknowledged.values()) == progress.count
    positions = [r.position for r in everything]
    assert positions == sorted(set(positions))
    assert progress.count >= at_kill + BETWEEN_CRASHES


@pytest.mark.nats
async def test_a_restart_holds_up_neither_an_append_in_flight_nor_a_subscriber(
    restartable_nats_server: NatsServer,
) -> None:
    # Timeouts far longer than the test waits: an append written to the connection just as
    # its server died got no reply and waited its whole request_timeout (2 s by default), and
    # a subscription found its lost consumer only after three idle heartbeats (3 s). Both now
    # start again when the connection does.
    server = restartable_nats_server
    reconnects: list[str] = []

    async def reconnected() -> None:  # the app's own callback runs too
        reconnects.append("app")

    async with NatsEventLog(
        server.url,
        request_timeout=60,
        retry_timeout=120,
        idle_heartbeat=30,
        connect_options={"reconnected_cb": reconnected},
    ) as log:
        await log.append("s", [event("before")], expected_version=0)
        subscription = log.subscribe()
        with anyio.fail_after(20):
            assert (await subscription.__anext__()).data == b"before"
            appended: list[Record] = []

            async def append_after() -> None:
                appended.extend(await log.append("s", [event("after")], expected_version=1))

            frozen = server._process
            assert frozen is not None
            os.kill(frozen.pid, signal.SIGSTOP)  # takes the append, never answers it
            async with anyio.create_task_group() as tg:
                tg.start_soon(append_after)
                await anyio.sleep(0.2)  # written to the frozen server's socket by now
                server.kill()
                server.restart()
            assert [r.version for r in appended] == [2]
            assert (await subscription.__anext__()).data == b"after"
        await subscription.aclose()
    assert reconnects == ["app"]
