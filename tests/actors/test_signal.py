"""The runtime's one-shot wake-up: set, wait, cancellation, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from actors._signal import signal


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_set_before_wait_returns_at_once() -> None:
    wake = signal()
    assert not wake.is_set()
    wake.set()
    wake.set()  # a second set is harmless
    assert wake.is_set()
    with anyio.fail_after(5):
        await wake.wait()


async def test_a_waiter_wakes_when_set() -> None:
    wake = signal()
    woken: list[bool] = []

    async def waiter() -> None:
        await wake.wait()
        woken.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        wake.set()
    assert woken == [True]


async def test_a_cancelled_waiter_leaves_the_signal_unset() -> None:
    wake = signal()
    with anyio.move_on_after(0.01) as scope:
        await wake.wait()
    assert scope.cancelled_caught
    assert not wake.is_set()
    wake.set()  # nobody waits any more: nothing happens, nothing raises
