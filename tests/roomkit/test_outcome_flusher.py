"""``OutcomeFlusher``: each room's delivery outcomes wait ``delay`` from when they started
waiting, whatever the other rooms do (on a clock the test moves)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from roomkit.core._commands import RecordOutcome
from roomkit.core._outcome_flusher import FLUSH, OutcomeFlusher

DELAY = 0.05  # seconds on the test's clock; the flusher's real sleeps are as long


class _Rooms:
    """Records which room was told to flush, and when (on the test's clock)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.told: list[tuple[str, float]] = []

    def clock(self) -> float:
        return self.now

    async def tell(self, room_id: str, message: object) -> None:
        assert message is FLUSH
        self.told.append((room_id, self.now))

    async def until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not done():
                await anyio.sleep(0.005)


def _outcome(event_id: str) -> RecordOutcome:
    return RecordOutcome(event_id, event_id)


@pytest.fixture
def rooms() -> _Rooms:
    return _Rooms()


async def test_a_room_is_told_when_its_own_outcomes_have_waited_the_delay(
    rooms: _Rooms,
) -> None:
    flusher = OutcomeFlusher(rooms.tell, DELAY, clock=rooms.clock)
    flusher.add("early", _outcome("e1"))
    rooms.now = 0.04
    flusher.add("late", _outcome("e2"))  # has waited 0.01 when "early" is due
    rooms.now = DELAY
    async with anyio.create_task_group() as tg:
        await tg.start(flusher.run)
        await rooms.until(lambda: len(rooms.told) == 1)
        await anyio.sleep(3 * DELAY)  # real time: "late" is still not due on the test's clock
        assert rooms.told == [("early", DELAY)]
        rooms.now = 0.09
        await rooms.until(lambda: len(rooms.told) == 2)
        assert rooms.told[1] == ("late", 0.09)
        tg.cancel_scope.cancel()


async def test_a_room_that_took_its_outcomes_is_not_told(rooms: _Rooms) -> None:
    flusher = OutcomeFlusher(rooms.tell, DELAY, clock=rooms.clock)
    flusher.add("busy", _outcome("e1"))
    flusher.add("quiet", _outcome("e2"))
    flusher.add("busy", _outcome("e3"))
    assert [o.event_id for o in flusher.take("busy")] == ["e1", "e3"]  # its next append
    rooms.now = DELAY
    async with anyio.create_task_group() as tg:
        await tg.start(flusher.run)
        await rooms.until(lambda: len(rooms.told) == 1)
        assert rooms.told == [("quiet", DELAY)]
        tg.cancel_scope.cancel()


async def test_a_room_that_does_not_take_them_is_told_again_a_delay_later(
    rooms: _Rooms,
) -> None:
    flusher = OutcomeFlusher(rooms.tell, DELAY, clock=rooms.clock)
    flusher.add("slow", _outcome("e1"))
    rooms.now = DELAY
    async with anyio.create_task_group() as tg:
        await tg.start(flusher.run)
        await rooms.until(lambda: len(rooms.told) == 1)
        await anyio.sleep(3 * DELAY)
        assert len(rooms.told) == 1  # not again before another delay on the test's clock
        rooms.now = 2 * DELAY
        await rooms.until(lambda: len(rooms.told) == 2)
        assert rooms.told == [("slow", DELAY), ("slow", 2 * DELAY)]
        assert flusher.holds("slow")
        tg.cancel_scope.cancel()
