"""A store that cannot be reached for a while (its database restarting) loses no record: the
store projection applies the record again until the store takes it, where a record that fails
otherwise is logged and skipped (a rebuild repairs it)."""

from __future__ import annotations

import logging

import pytest

from roomkit import RoomKit, StoreUnavailableError
from roomkit.store import InMemoryStore
from tests.roomkit.kit_helpers import SimpleChannel, room_with, text


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FlakyStore(InMemoryStore):
    """Fails the next ``failures`` event writes with ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.error: Exception = StoreUnavailableError("database restarting")
        self.attempts = 0

    async def add_event_envelope(self, data: bytes) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        await super().add_event_envelope(data)


async def test_a_record_waits_for_a_store_that_is_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with RoomKit(store=store) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        store.failures = 3
        store.attempts = 0
        with caplog.at_level(logging.WARNING, logger="roomkit.projection.store"):
            result = await kit.process_inbound(text("sms", "hello"))
        assert result.event is not None
        # Returned once the read model had it (read-your-writes), after three refusals.
        assert store.attempts == 4
        timeline = await kit.get_timeline("r1")
        assert [e.id for e in timeline][-1] == result.event.id
        room = await kit.get_room("r1")
        assert room.event_count == len(timeline)  # counted once
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the store is unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1


async def test_a_record_the_store_fails_otherwise_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with RoomKit(store=store) as kit:
        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        store.failures = 1
        store.error = RuntimeError("a bug in the store")
        store.attempts = 0
        with caplog.at_level(logging.ERROR, logger="roomkit.projection.store"):
            result = await kit.process_inbound(text("sms", "hello"))
            after = await kit.process_inbound(text("sms", "again"))
        assert store.attempts == 2  # tried once: not again
        ids = [e.id for e in await kit.get_timeline("r1")]
        assert result.event is not None and result.event.id not in ids
        assert after.event is not None and after.event.id in ids
    assert any("store projection failed" in r.getMessage() for r in caplog.records)
