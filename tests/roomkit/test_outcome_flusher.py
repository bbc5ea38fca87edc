"""``OutcomeFlusher``: each room's delivery outcomes wait ``delay`` from when they started
waiting, whatever the other rooms do (on a clock the test moves)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from actors import MailboxFull
from roomkit.core import _outcome_flusher as outcome_flusher
from roomkit.core._commands import RecordOutcome
from roomkit.core._outcome_flusher import FLUSH, OutcomeFlusher

DELAY = 0.05  # seconds on the test's clock; the flusher's real sleeps are as long
RETELL = 1.0  # a told room that did not append is told again after max(delay, 1 s)


class _Rooms:
    """Records which room was told to flush, and when (on the test's clock)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.told: list[tuple[str, float]] = []
        self.busy: set[str] = set()
        self.running: set[str] = set()  # rooms whose actor runs (a FLUSH waits in its mailbox)

    def clock(self) -> float:
        return self.now

    def tell(self, room_id: str, message: object) -> None:
        assert message is FLUSH
        if room_id in self.busy:
            raise MailboxFull(f"room {room_id} is full")
        self.told.append((room_id, self.now))

    def flusher(self, delay: float = DELAY) -> OutcomeFlusher:
        return OutcomeFlusher(self.tell, delay, clock=self.clock, runs=self.running.__contains__)

    async def until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not done():
                await anyio.sleep(0.005)


@asynccontextmanager
async def running(flusher: OutcomeFlusher) -> AsyncIterator[None]:
    """``flusher.run`` in a task of its own for the block."""
    async with anyio.create_task_group() as tg:
        await tg.start(flusher.run)
        yield
        tg.cancel_scope.cancel()


def _outcome(event_id: str) -> RecordOutcome:
    return RecordOutcome(event_id, event_id)


@pytest.fixture
def rooms() -> _Rooms:
    return _Rooms()


async def test_a_room_is_told_when_its_own_outcomes_have_waited_the_delay(
    rooms: _Rooms,
) -> None:
    flusher = rooms.flusher()
    flusher.add("early", _outcome("e1"))
    rooms.now = 0.04
    flusher.add("late", _outcome("e2"))  # has waited 0.01 when "early" is due
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        await anyio.sleep(3 * DELAY)  # real time: "late" is still not due on the test's clock
        assert rooms.told == [("early", DELAY)]
        rooms.now = 0.09
        await rooms.until(lambda: len(rooms.told) == 2)
        assert rooms.told[1] == ("late", 0.09)


async def test_a_room_that_took_its_outcomes_is_not_told(rooms: _Rooms) -> None:
    flusher = rooms.flusher()
    flusher.add("busy", _outcome("e1"))
    flusher.add("quiet", _outcome("e2"))
    flusher.add("busy", _outcome("e3"))
    assert [o.event_id for o in flusher.take("busy")] == ["e1", "e3"]  # its next append
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        assert rooms.told == [("quiet", DELAY)]


@pytest.mark.parametrize("delay", [DELAY, 0.0])
async def test_a_room_that_does_not_take_them_is_told_again_only_a_while_later(
    rooms: _Rooms, delay: float
) -> None:
    flusher = rooms.flusher(delay)
    flusher.add("slow", _outcome("e1"))
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        await anyio.sleep(3 * DELAY)
        assert len(rooms.told) == 1  # its FLUSH waits in its mailbox: no flood of them
        rooms.now = DELAY + RETELL
        await rooms.until(lambda: len(rooms.told) == 2)
        assert rooms.told == [("slow", DELAY), ("slow", DELAY + RETELL)]
        assert flusher.holds("slow")


async def test_a_busy_room_does_not_hold_up_the_others(rooms: _Rooms) -> None:
    flusher = rooms.flusher()
    rooms.busy.add("full")
    flusher.add("full", _outcome("e1"))
    flusher.add("free", _outcome("e2"))
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        assert rooms.told == [("free", DELAY)]
        assert flusher.holds("full")  # its next command appends them
        rooms.busy.clear()
        rooms.now = DELAY + RETELL
        await rooms.until(lambda: len(rooms.told) == 3)  # both told again, in the same order
        assert rooms.told[1:] == [("full", DELAY + RETELL), ("free", DELAY + RETELL)]


async def test_a_room_told_ten_times_in_vain_drops_its_outcomes(
    rooms: _Rooms, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome_flusher, "_RETELL_AFTER", 0.0)  # told again after DELAY
    flusher = rooms.flusher()  # its actor cannot start: it never takes them
    flusher.add("broken", _outcome("e1"))
    async with running(flusher):
        for tell in range(1, 11):
            rooms.now = tell * DELAY
            await rooms.until(lambda: len(rooms.told) == tell)  # noqa: B023 - awaited now
            assert flusher.holds("broken")
        rooms.now = 11 * DELAY
        await rooms.until(lambda: not flusher.holds("broken"))
    assert "did not append 1 delivery outcomes in 10 tries" in caplog.text


async def test_a_room_whose_actor_runs_is_not_told_again_nor_given_up_on(
    rooms: _Rooms, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its FLUSH waits in its mailbox behind a long decision (a 12-second hook): told every
    # second, it was taken after ten tells for a room whose actor cannot start, and its
    # outcomes were dropped.
    monkeypatch.setattr(outcome_flusher, "_RETELL_AFTER", 0.0)  # looked at after DELAY
    flusher = rooms.flusher()
    flusher.add("busy", _outcome("e1"))
    rooms.running.add("busy")
    async with running(flusher):
        rooms.now = DELAY
        await rooms.until(lambda: len(rooms.told) == 1)
        for look in range(2, 30):
            rooms.now = look * DELAY
            await anyio.sleep(DELAY / 5)  # real time: the flusher looks
        assert rooms.told == [("busy", DELAY)] and flusher.holds("busy")
        # Its actor stopped without taking them (its start failed): told again.
        rooms.running.clear()
        # A whole DELAY past the last look (29 * DELAY), not just one: a look at 29 * DELAY
        # came due at 1.5000000000000002, after 30 * DELAY (1.5), and the clock stopped there.
        rooms.now = 31 * DELAY
        await rooms.until(lambda: len(rooms.told) == 2)
    assert flusher.holds("busy") and "dropped" not in caplog.text


async def test_a_running_room_whose_mailbox_was_full_is_told_again(
    rooms: _Rooms, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its FLUSH never went in: taken for one waiting in its mailbox, it was never told
    # again while its actor ran, and its outcomes waited for its next append.
    monkeypatch.setattr(outcome_flusher, "_RETELL_AFTER", 0.0)  # looked at after DELAY
    flusher = rooms.flusher()
    flusher.add("full", _outcome("e1"))
    rooms.running.add("full")
    rooms.busy.add("full")
    async with running(flusher):
        rooms.now = DELAY
        await anyio.sleep(3 * DELAY)  # real time: the flusher tried
        assert rooms.told == []
        rooms.busy.clear()
        rooms.now = 2 * DELAY
        await rooms.until(lambda: rooms.told == [("full", 2 * DELAY)])


async def test_a_room_that_took_its_outcomes_after_being_told_is_not_told_again(
    rooms: _Rooms,
) -> None:
    flusher = rooms.flusher()
    flusher.add("r1", _outcome("e1"))
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        assert [o.event_id for o in flusher.take("r1")] == ["e1"]  # its FLUSH appended them
        rooms.now = DELAY + 2 * RETELL
        await anyio.sleep(3 * DELAY)
        assert rooms.told == [("r1", DELAY)]


async def test_a_room_due_before_the_flusher_looks_again_wakes_it(
    rooms: _Rooms, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flusher sleeps towards a told room's next turn (60 s here, real seconds too); a room
    # whose outcomes come meanwhile is due long before that.
    monkeypatch.setattr(outcome_flusher, "_RETELL_AFTER", 60.0)
    flusher = rooms.flusher()
    flusher.add("told", _outcome("e1"))
    rooms.now = DELAY
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)
        await anyio.sleep(3 * DELAY)  # real time: the flusher went to sleep
        rooms.now = 0.10
        flusher.add("new", _outcome("e2"))
        rooms.now = 0.10 + DELAY
        await rooms.until(lambda: len(rooms.told) == 2)
        assert rooms.told[1] == ("new", 0.10 + DELAY)


async def test_outcomes_adopted_from_an_ended_runtime_are_due_at_once(rooms: _Rooms) -> None:
    old = rooms.flusher()
    old.add("r1", _outcome("e1"))
    flusher = rooms.flusher()
    flusher.adopt(old)
    assert not old.holds("r1")
    async with running(flusher):
        await rooms.until(lambda: len(rooms.told) == 1)  # the test's clock has not moved
        assert rooms.told == [("r1", 0.0)]
    assert [o.event_id for o in flusher.take("r1")] == ["e1"]
