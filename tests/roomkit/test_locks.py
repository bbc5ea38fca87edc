"""RoomLockManager / InMemoryLockManager (kept for RoomKit 0.3.0 compatibility)."""

from __future__ import annotations

import anyio
import pytest

from roomkit.core.locks import InMemoryLockManager, RoomLockManager


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_same_room_is_mutually_exclusive() -> None:
    locks = InMemoryLockManager()
    order: list[str] = []
    first_inside = anyio.Event()
    release = anyio.Event()

    async def first() -> None:
        async with locks.locked("r1"):
            order.append("first in")
            first_inside.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with locks.locked("r1"):
            order.append("second in")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert order == ["first in"]  # second waits for the lock
        release.set()
    assert order == ["first in", "first out", "second in"]


async def test_different_rooms_do_not_block_each_other() -> None:
    locks = InMemoryLockManager()
    async with locks.locked("r1"):
        with anyio.fail_after(5):
            async with locks.locked("r2"):
                pass
    assert locks.size == 2


async def test_lru_eviction_keeps_at_most_max_locks() -> None:
    locks = InMemoryLockManager(max_locks=2)
    for room in ("a", "b", "c"):
        async with locks.locked(room):
            pass
    assert locks.size == 2
    assert list(locks._locks) == ["b", "c"]
    async with locks.locked("b"):  # refreshes "b"
        pass
    async with locks.locked("d"):
        pass
    assert list(locks._locks) == ["b", "d"]


async def test_eviction_stops_at_a_held_lock() -> None:
    locks = InMemoryLockManager(max_locks=1)
    async with locks.locked("held"):
        async with locks.locked("other"):
            assert locks.size == 2  # "held" is the oldest but in use
        async with locks.locked("third"):
            assert locks.size == 3
    async with locks.locked("last"):
        pass
    assert locks.size == 1


def test_the_abc_and_arguments() -> None:
    with pytest.raises(TypeError):
        RoomLockManager()  # type: ignore[abstract]
    with pytest.raises(ValueError):
        InMemoryLockManager(max_locks=0)
    assert InMemoryLockManager().size == 0
