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
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventlog import LogUnavailable, Record
from eventlog.nats import NatsEventLog
from eventlog.testing import event
from eventlog.testing_nats import NatsServer
from tests.eventlog.link import Link

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
async def test_a_subscription_closed_while_its_server_is_away_ends_and_starts_nothing(
    restartable_nats_server: NatsServer,
) -> None:
    # Its reader went on retrying while the server was away, then started a consumer that
    # nothing stopped: the server pushed every record to it for good. (A start it sent as the
    # server went away may still be carried out once it is back, as nats-py sends what it
    # held: see the closing note, left alone.)
    server = restartable_nats_server
    async with NatsEventLog(server.url, retry_timeout=3, idle_heartbeat=0.5) as log:
        await log.append("s", [event("before")], expected_version=0)
        subscription = log.subscribe()
        read: list[object] = []
        with anyio.fail_after(30):

            async def reader() -> None:
                async for record in subscription:
                    read.append(record.data)
                read.append("ended")

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                while not read:
                    await anyio.sleep(0.01)
                server.stop()
                await anyio.sleep(2)  # the reader is starting a consumer again and again
                await subscription.aclose()
                while read[-1] != "ended":
                    await anyio.sleep(0.01)
                server.restart()
            assert read == [b"before", "ended"]
            await log.append("s", [event("after")], expected_version=1)  # connected again
            await anyio.sleep(1)  # what the reader would have started by now
        assert subscription._consumer is None and subscription._starting is None


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


@pytest.mark.nats
async def test_an_append_whose_reply_was_lost_is_its_own_with_another_writer_behind_it(
    nats_server: NatsServer,
) -> None:
    # A's append is stored, its reply lost with its connection; B appends after it; A sends
    # it again: JetStream refuses the resend (the subject moved on), and A took B's record for
    # the reason, raising WrongExpectedVersion for an append that was stored.
    assert nats_server.port is not None
    async with (
        Link(nats_server.port) as link,
        NatsEventLog(link.url, request_timeout=60, retry_timeout=120) as a,
        NatsEventLog(nats_server.url) as b,
    ):
        await a.append("s", [event("first")], expected_version=0)
        appended: list[Record] = []

        async def append_a() -> None:
            appended.extend(await a.append("s", [event("A")], expected_version=1))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                link.holding = True  # A's append reaches the server, its reply does not
                tg.start_soon(append_a)

                async def stored() -> bool:
                    return len(await b.read("s")) == 2

                while not await stored():
                    await anyio.sleep(0.01)
                await b.append("s", [event("B")], expected_version=2)
                link.cut()  # A reconnects and sends it again
        assert [(r.version, r.data) for r in appended] == [(2, b"A")]
        assert [r.data for r in await b.read("s")] == [b"first", b"A", b"B"]


@pytest.mark.nats
async def test_appends_are_retried_only_within_the_duplicate_window(
    restartable_nats_server: NatsServer,
) -> None:
    # A retry JetStream receives after its window is stored again: with a 1 s window and
    # 1 s requests, an append is not retried, where it was for retry_timeout (30 s here).
    server = restartable_nats_server
    async with NatsEventLog(
        server.url, duplicate_window=1, request_timeout=1, retry_timeout=30
    ) as log:
        await log.append("s", [event(1)], expected_version=0)
        server.stop()
        with anyio.fail_after(15), pytest.raises(LogUnavailable):
            await log.append("s", [event(2)], expected_version=1)


def test_forked_processes_give_appends_without_an_id_ids_of_their_own() -> None:
    # A forked child inherited the random prefix and the counter: two workers of a
    # pre-forking server sent the same id, and JetStream dropped one's append as a duplicate.
    script = (
        "import os\n"
        "from eventlog.nats import _msg_id\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(w, _msg_id('s', None).encode()); os._exit(0)\n"
        "os.wait()\n"
        "print(_msg_id('s', None), os.read(r, 200).decode())\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=True
    ).stdout.split()
    parent, child = out
    assert parent.split("~")[1][:16] != child.split("~")[1][:16]


async def test_a_reconnect_callback_that_is_not_a_coroutine_function_is_refused() -> None:
    def plain() -> None:
        return None

    log = NatsEventLog("nats://127.0.0.1:1", connect_options={"reconnected_cb": plain})
    with pytest.raises(TypeError, match="reconnected_cb must be a coroutine function"):
        await log.connect()


async def read_across_a_cut(
    server: NatsServer, limit: int | None, *, hold_after_consumer: bool
) -> list[Record]:
    """``read_all(limit=limit)`` of three records by a log whose connection loses what the
    server sends (from the start, or once a consumer is made) and is then cut; its timeouts
    (60 s) far longer than the test waits."""
    assert server.port is not None
    async with (
        Link(server.port) as link,
        NatsEventLog(link.url, request_timeout=60, retry_timeout=120) as log,
    ):
        await log.append("s", [event(n) for n in range(3)], expected_version=0)
        read: list[Record] = []
        js = log._connected().js
        made = js.add_consumer

        async def then_hold(*args: Any, **kwargs: Any) -> Any:
            info = await made(*args, **kwargs)
            link.holding = True  # what the consumer sends from now on is lost with the link
            return info

        if hold_after_consumer:
            js.add_consumer = then_hold  # type: ignore[method-assign]
        else:
            link.holding = True

        async def read_all() -> None:
            read.extend(await log.read_all(limit=limit))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                while not link.holding:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # asked; what the server sends is held
                js.add_consumer = made  # type: ignore[method-assign]
                link.cut()
        return read


@pytest.mark.nats
async def test_a_batched_read_in_flight_when_the_connection_is_replaced_is_sent_again(
    nats_server: NatsServer,
) -> None:
    # Its replies were lost with the connection, and it waited its whole request_timeout
    # before trying again. A page: batched direct gets.
    read = await read_across_a_cut(nats_server, 10, hold_after_consumer=False)
    assert [r.data for r in read] == [b"0", b"1", b"2"]


@pytest.mark.nats
async def test_a_replay_in_flight_when_the_connection_is_replaced_goes_on_at_once(
    nats_server: NatsServer,
) -> None:
    # Its consumer's messages were lost with the connection: it waited until the consumer
    # had been silent for request_timeout before starting another. The whole log: a replay.
    read = await read_across_a_cut(nats_server, None, hold_after_consumer=True)
    assert [r.data for r in read] == [b"0", b"1", b"2"]
