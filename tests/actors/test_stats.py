"""Introspection: the counters operators and tests read."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorCrash, ActorSystem, SystemStats
from tests.actors.models import Block, Journal, Raise, probes


async def test_stats_count_lifecycle_and_messages() -> None:
    journal = Journal()
    gate = anyio.Event()
    system = ActorSystem(task_linger=None)
    system.register("probe", probes(journal))
    async with system:
        assert system.stats() == SystemStats(
            active_actors=0,
            running_actors=0,
            stopping_actors=0,
            activations=0,
            passivations=0,
            restarts=0,
            failures=0,
            messages_handled=0,
            pending_asks=0,
            mailbox_depths={},
        )
        for key in "abc":
            await system.ref("probe", key).ask("hi")
        await system.ref("probe", "a").tell(Raise(ValueError("counted too")))
        with pytest.raises(ActorCrash):  # a crash is handled too, if not successfully
            await system.ref("probe", "a").ask(Raise(ActorCrash("counted as well")))
        block = Block(gate)
        await system.ref("probe", "b").tell(block)
        with anyio.fail_after(5):
            await block.entered.wait()
        for n in range(3):
            await system.ref("probe", "b").tell(n)
        await system.passivate("probe", "c")
        await anyio.wait_all_tasks_blocked()
        stats = system.stats()
        gate.set()
    assert stats.active_actors == 2
    assert stats.running_actors == 2
    assert stats.activations == 3  # a's restart activates with its next message
    assert stats.restarts == 1
    assert stats.passivations == 1
    # 3 "hi", the failing one and the crash; the block is in progress.
    assert stats.messages_handled == 5
    assert stats.mailbox_depths == {("probe", "a"): 0, ("probe", "b"): 3}
