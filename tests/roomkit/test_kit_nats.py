"""A kit on JetStream survives a server crash and a process restart with the same rooms."""

from __future__ import annotations

import pytest

from eventlog.nats import NatsEventLog
from eventlog.testing_nats import NatsServer
from roomkit import RoomKit
from tests.roomkit.kit_helpers import SimpleChannel, text
from tests.roomkit.test_kit_replay import snapshot

pytestmark = pytest.mark.nats


def kit_on(log: NatsEventLog) -> RoomKit:
    kit = RoomKit(log=log)
    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    return kit


async def test_rooms_survive_a_server_kill_and_a_new_process(
    restartable_nats_server: NatsServer,
) -> None:
    server = restartable_nats_server
    async with NatsEventLog(server.url, retry_timeout=10.0) as log, kit_on(log) as kit:
        await kit.create_room(room_id="support-1")
        await kit.attach_channel("support-1", "sms")
        await kit.attach_channel("support-1", "ws")
        first = await kit.process_inbound(text("sms", "hello", idempotency_key="SM1"))
        await kit.process_inbound(text("ws", "hi, how can I help?"))
        before = await snapshot(kit)
    assert first.event is not None

    server.kill()  # SIGKILL: no clean shutdown
    server.restart()

    # A new process: a new connection, a new kit, nothing in memory.
    async with NatsEventLog(server.url, retry_timeout=10.0) as log, kit_on(log) as kit:
        assert await snapshot(kit) == before
        again = await kit.process_inbound(text("sms", "hello", idempotency_key="SM1"))
        assert again.blocked and again.reason == "duplicate"
        assert again.event is not None and again.event.id == first.event.id
        after = await kit.process_inbound(text("sms", "still there?"))
        assert after.event is not None
        assert after.event.index == before["support-1"]["room"]["event_count"]
