"""``Handover``: the bounded queue between nats-py's delivery task and a subscription reader."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from eventlog._handover import Handover, HandoverClosed


async def test_items_come_out_in_order_and_take_never_waits() -> None:
    handover: Handover[int] = Handover(4)
    assert handover.take() is None
    for n in range(3):
        assert handover.put_nowait(n)
    assert [handover.take(), handover.take(), handover.take(), handover.take()] == [0, 1, 2, None]


async def test_a_full_handover_refuses_then_makes_the_writer_wait_for_room() -> None:
    handover: Handover[int] = Handover(2)
    assert handover.put_nowait(0) and handover.put_nowait(1)
    assert not handover.put_nowait(2)
    writer = asyncio.ensure_future(handover.put(2))
    await asyncio.sleep(0)
    assert not writer.done() and len(handover) == 2
    assert not handover.put_nowait(3)  # a waiting writer goes first
    assert handover.take() == 0
    await writer
    assert [handover.take(), handover.take(), handover.take()] == [1, 2, None]


async def test_waiting_writers_go_in_the_order_they_came() -> None:
    handover: Handover[str] = Handover(1)
    handover.put_nowait("first")
    writers = [asyncio.ensure_future(handover.put(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    taken = []
    while len(taken) < 4:
        item = handover.take()
        if item is None:
            await asyncio.sleep(0)
        else:
            taken.append(item)
    assert taken == ["first", "a", "b", "c"]
    await asyncio.gather(*writers)


@pytest.mark.parametrize("reader_pace", [0, 1, 2, 3])
async def test_many_waiting_writers_stay_in_order_and_within_capacity(reader_pace: int) -> None:
    handover: Handover[str] = Handover(2)
    names = [f"w{n}" for n in range(8)]
    writers = [asyncio.ensure_future(handover.put(name)) for name in names]
    taken: list[str] = []
    with anyio.fail_after(5):
        while len(taken) < len(names):
            assert len(handover) <= 2
            item = handover.take()
            if item is None:
                await asyncio.sleep(0)
                continue
            taken.append(item)
            for _ in range(reader_pace):  # the reader works a while on each item
                await asyncio.sleep(0)
        await asyncio.gather(*writers)
    assert taken == names


async def test_a_slot_kept_for_a_woken_writer_is_not_given_to_put_nowait() -> None:
    handover: Handover[int] = Handover(1)
    handover.put_nowait(0)
    writer = asyncio.ensure_future(handover.put(1))
    await asyncio.sleep(0)
    assert handover.take() == 0  # frees the slot for the waiting writer, which has not run
    assert not handover.put_nowait(2)
    await writer
    assert [handover.take(), handover.take()] == [1, None]


async def test_a_writer_that_waited_goes_before_a_later_put_nowait() -> None:
    handover: Handover[str] = Handover(2)
    handover.put_nowait("a")
    handover.put_nowait("b")
    writer = asyncio.ensure_future(handover.put("early"))
    await asyncio.sleep(0)
    assert handover.take() == "a"  # a slot kept for "early", which has not run yet
    assert handover.take() == "b"  # a second free slot
    assert not handover.put_nowait("late")
    await writer
    assert handover.put_nowait("late")
    assert [handover.take(), handover.take()] == ["early", "late"]


async def test_a_cancelled_writer_passes_its_turn_on() -> None:
    handover: Handover[str] = Handover(1)
    handover.put_nowait("first")
    doomed = asyncio.ensure_future(handover.put("doomed"))
    patient = asyncio.ensure_future(handover.put("patient"))
    await asyncio.sleep(0)
    assert handover.take() == "first"  # wakes the first writer...
    doomed.cancel()  # ...which is cancelled before it runs
    await asyncio.sleep(0)
    await patient
    assert doomed.cancelled()
    assert handover.take() == "patient"


async def test_wait_returns_true_when_an_item_comes_and_false_at_the_timeout() -> None:
    handover: Handover[int] = Handover(2)
    assert not await handover.wait(0.01)
    reader = asyncio.ensure_future(handover.wait(30))
    await asyncio.sleep(0)
    handover.put_nowait(7)
    assert await reader
    assert await handover.wait(30)  # an item is queued: no wait at all
    assert handover.take() == 7


async def test_a_cancelled_reader_loses_nothing() -> None:
    handover: Handover[int] = Handover(2)
    reader = asyncio.ensure_future(handover.wait(30))
    await asyncio.sleep(0)
    reader.cancel()
    handover.put_nowait(1)  # lands while the cancellation is on its way
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert handover.take() == 1
    assert not await handover.wait(0.01)  # and the next wait works


async def test_closing_wakes_the_reader_and_the_writers_and_refuses_more() -> None:
    handover: Handover[int] = Handover(1)
    reader = asyncio.ensure_future(handover.wait(30))
    await asyncio.sleep(0)
    handover.close()
    assert await reader
    assert handover.closed

    handover = Handover(1)
    handover.put_nowait(0)
    writer = asyncio.ensure_future(handover.put(1))
    await asyncio.sleep(0)
    handover.close()
    with pytest.raises(HandoverClosed):
        await writer
    with pytest.raises(HandoverClosed):
        handover.put_nowait(2)


def test_capacity_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Handover(0)
