"""Which room's decision is running this code (its channel's ``handle_inbound``, its
BEFORE_BROADCAST hooks), and how store writes made there for that room are committed.

A command to that very room would wait for the decision it is part of, which waits for it:
the kit refuses it. So it does for a command to a room whose own decision waits for this one
(a hook of room A sent room B a message, whose hook calls room A): each would wait for the
other until A's hook timed out.

A write made through that kit's ``kit.store`` is committed at once by the room itself, ahead
of the message it decides (as 0.3.0's store took it before the message was stored); reads
through ``kit.store`` from there wait for the read model to hold what the room committed, that
write included, so that a hook reads its own writes and those of the messages before (see
``_store_view``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ClassVar

from actors._ask import Ask
from roomkit.core._context_mark import ContextMark
from roomkit.core._post_commit import PostCommitJob

__all__ = [
    "DecisionWait",
    "InDecision",
    "deciding",
    "deliveries_held_up",
    "held_up",
    "message_waits",
    "waits_for",
]


class InDecision(ContextMark):
    """``with InDecision(kit, room_id, position, commit):`` marks the code run inside as that
    room's decision in that kit. ``position`` is the log position of the room's last commit
    (moved on by each write committed meanwhile); ``commit(command)`` commits a write;
    ``event_id`` is the message decided, once its channel made it; ``after`` holds the writes
    about that very message (a read marker), committed after it. ``waiting`` are the waits
    of the decisions that wait for this one: it decides a message one of their hooks sent
    (or one sent by a decision that such a message started, and so on)."""

    __slots__ = (
        "after",
        "asking",
        "commit",
        "event_id",
        "failed",
        "kit",
        "position",
        "room_id",
        "waiting",
        "wrote",
    )
    _var: ClassVar[ContextVar[InDecision | None]] = ContextVar("roomkit_in_decision", default=None)

    def __init__(
        self,
        kit: object,
        room_id: str,
        position: int,
        commit: Callable[[object], Awaitable[Any]],
        waiting: tuple[DecisionWait, ...] = (),
    ) -> None:
        self.active = True  # ContextMark's, set here: one call less, on every message
        self._token = None
        self.kit = kit
        self.room_id = room_id
        self.position = position
        self.commit = commit
        self.waiting = waiting
        self.event_id: str | None = None
        self.after: list[object] = []
        # A write that could not be committed for sure (the log away, another writer): the
        # decision fails with it, whatever the hook that made it did with the error.
        self.failed: Exception | None = None
        self.wrote = False  # a write was committed
        # The rooms its code sent a command to, each with the list its ask goes in (see
        # ``waits_for``): most decisions ask none, so made when first needed.
        self.asking: list[tuple[str, list[Ask]]] | None = None


def waits_for(deciding: dict[str, InDecision], room_id: str, target: str) -> bool:
    """Whether the decision ``room_id`` runs waits, through the commands its code (and that
    of the decisions those wait for) sent to other rooms, for room ``target``: a command from
    ``target``'s decision to ``room_id`` would close the circle. (Two messages at once, each
    room's hook sending to the other: each waited behind the other's decision until they
    timed out, and both were lost.)"""
    seen = {room_id}
    rooms = [room_id]
    while rooms:
        decision = deciding.get(rooms.pop())
        if decision is None or not decision.active or not decision.asking:
            continue
        for asked, asks in decision.asking:
            if asks and asks[0].done:
                # Answered: the decision no longer waits there, though its code may not
                # have resumed yet (the room went on to its next message at once).
                continue
            if asked == target:
                return True
            if asked not in seen:
                seen.add(asked)
                rooms.append(asked)
    return False


def deciding() -> InDecision | None:
    """The decision running this code, if any (see `InDecision`)."""
    mark = InDecision._var.get()
    return mark if mark is not None and mark.active else None


class DecisionWait:
    """A room's decision, or one of its delivery worker's jobs, waiting for a message it sent
    (``kit.process_inbound`` called from a hook or channel): ``active`` until that call ends
    (returned, failed, or given up at a timeout). It holds the room up only while both last:
    a task the hook left running may still wait for its message once the decision is over."""

    __slots__ = ("__weakref__", "active", "mark")  # weakly referenced: see ownership._chain

    def __init__(self, mark: InDecision | PostCommitJob) -> None:
        self.mark = mark
        self.active = True

    @property
    def live(self) -> bool:
        """Whether the decision or job still waits here."""
        return self.active and self.mark.active


def held_up(waiting: tuple[DecisionWait, ...], room_id: str, kit: object) -> bool:
    """Whether the decision of ``kit``'s room ``room_id`` waits, through the live ``waiting``
    chain, for the work it holds up."""
    return _waits_in_chain(waiting, InDecision, room_id, kit)


def deliveries_held_up(waiting: tuple[DecisionWait, ...], room_id: str, kit: object) -> bool:
    """Whether a delivery worker's job of ``kit``'s room ``room_id`` waits, through the live
    ``waiting`` chain, for the work it holds up: that room's later deliveries (its next turns)
    wait behind that job, so a command to the room must not wait for them."""
    return _waits_in_chain(waiting, PostCommitJob, room_id, kit)


def _waits_in_chain(
    waiting: tuple[DecisionWait, ...],
    kind: type[InDecision | PostCommitJob],
    room_id: str,
    kit: object,
) -> bool:
    """Whether a ``kind`` mark of ``kit``'s room ``room_id`` waits in the chain (the wait
    nearest first). A link no longer live breaks the chain: the marks beyond it wait for
    something else."""
    for wait in waiting:
        if not wait.live:
            return False
        mark = wait.mark
        if type(mark) is kind and mark.room_id == room_id and mark.kit is kit:
            return True
    return False


def message_waits() -> tuple[DecisionWait | None, tuple[DecisionWait, ...]]:
    """For a message sent from the running code (to any kit): the wait of the decision or
    delivery worker's job that runs it (None if none does), and every wait the message's own
    decision would hold up: that one, and those a decision holds up itself. The caller ends
    the first."""
    # The marks read here, not through functions: it runs for every message.
    decision = InDecision._var.get()
    if decision is None or not decision.active:
        job = PostCommitJob._var.get()
        if job is None or not job.active:
            return None, ()
        wait = DecisionWait(job)
        return wait, (wait,)
    wait = DecisionWait(decision)
    return wait, (wait, *decision.waiting)
