"""Bounded mailboxes: a full mailbox makes ``tell`` wait and ``tell_nowait`` raise."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorSystem, AskTimeout, MailboxFull
from tests.actors.models import Block, Journal, probes

CAPACITY = 4


async def blocked_actor(system: ActorSystem, gate: anyio.Event) -> None:
    """Make probe/a busy in a handler, so that what it is told stays in the mailbox."""
    block = Block(gate)
    await system.ref("probe", "a").tell(block)
    with anyio.fail_after(5):
        await block.entered.wait()


def make_system(journal: Journal) -> ActorSystem:
    system = ActorSystem()
    system.register("probe", probes(journal), mailbox_size=CAPACITY)
    return system


def depth(system: ActorSystem) -> int:
    return system.stats().mailbox_depths[("probe", "a")]


async def test_a_full_mailbox_blocks_tell_until_there_is_room() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await blocked_actor(system, gate)
        for n in range(CAPACITY):
            await ref.tell(n)
        assert depth(system) == CAPACITY

        delivered = anyio.Event()

        async def one_more() -> None:
            await ref.tell("overflow")
            delivered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one_more)
            await anyio.wait_all_tasks_blocked()
            assert not delivered.is_set()  # the sender waits: back-pressure
            with pytest.raises(MailboxFull):
                ref.tell_nowait("refused")
            gate.set()
        assert delivered.is_set()
        await ref.ask("end")
    assert journal.handled("a") == ["block", *range(CAPACITY), "overflow", "end"]


async def test_a_flood_never_grows_the_mailbox_past_its_capacity() -> None:
    journal = Journal()
    gate = anyio.Event()
    sent = 0
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await blocked_actor(system, gate)
        accepted = 0
        for n in range(10_000):
            try:
                ref.tell_nowait(n)
            except MailboxFull:
                continue
            accepted += 1
        assert accepted == CAPACITY

        async def flood() -> None:
            nonlocal sent
            for n in range(10_000):
                await ref.tell(n)
                sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await anyio.wait_all_tasks_blocked()
            # The producer is parked on its first message; the mailbox holds only CAPACITY.
            assert sent == 0
            assert depth(system) == CAPACITY + 1  # the queue, plus the one waiting sender
            tg.cancel_scope.cancel()
        gate.set()
        await ref.ask("end")
    assert journal.handled("a") == ["block", *range(CAPACITY), "end"]


async def test_waiting_senders_get_in_first_come_first_served() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await blocked_actor(system, gate)
        for n in range(CAPACITY):
            ref.tell_nowait(n)
        async with anyio.create_task_group() as tg:
            for name in ("first", "second", "third"):
                tg.start_soon(ref.tell, name)
                await anyio.wait_all_tasks_blocked()
            # A newcomer does not overtake the waiting senders, even once there is room.
            gate.set()
            with pytest.raises(MailboxFull):
                ref.tell_nowait("newcomer")
        await ref.ask("end")
    assert journal.handled("a") == ["block", *range(CAPACITY), "first", "second", "third", "end"]


async def test_a_cancelled_waiting_sender_delivers_nothing() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await blocked_actor(system, gate)
        for n in range(CAPACITY):
            ref.tell_nowait(n)
        with anyio.move_on_after(0.01):
            await ref.tell("abandoned")
        assert depth(system) == CAPACITY
        gate.set()
        await ref.ask("end")
    assert journal.handled("a") == ["block", *range(CAPACITY), "end"]


async def test_an_ask_waiting_for_room_is_bounded_by_its_timeout() -> None:
    journal = Journal()
    gate = anyio.Event()
    async with make_system(journal) as system:
        ref = system.ref("probe", "a")
        await blocked_actor(system, gate)
        for n in range(CAPACITY):
            ref.tell_nowait(n)
        with pytest.raises(AskTimeout, match="full"):
            await ref.ask("no room", timeout=0.01)
        assert depth(system) == CAPACITY
        gate.set()
        assert await ref.ask("room now") == "room now"
    assert "no room" not in journal.handled("a")
