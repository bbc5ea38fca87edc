"""The decisions a command waits on, carried from process to process.

A room's decision (its BEFORE_BROADCAST hooks) that sends a message waits for it; a command
from that message's own decision back to the first room would wait for the first decision,
which waits for it (see ``roomkit.core._in_decision``). One process refuses such a command at
once. Across processes, the chain of waiting decisions travels with each command, each link
naming its process, so that the process holding the first room still recognises it; without
it, the two decisions held each other until the message's ``process_timeout``, and the
message was dropped.
"""

from __future__ import annotations

from typing import Any

from roomkit.core._in_decision import DecisionWait, InDecision, deciding
from roomkit.core._post_commit import PostCommitJob

__all__ = ["Elsewhere", "current_chain", "decode_chain", "encode_chain"]

_DECISION = "decision"
_JOB = "job"


class Elsewhere:
    """The kit of another process, in a link of a chain that came from there."""

    __slots__ = ("member",)

    def __init__(self, member: str) -> None:
        self.member = member


def current_chain() -> tuple[DecisionWait, ...]:
    """The decisions (or a delivery worker's job) the running code holds up: the one running
    it, and those that wait for that one."""
    decision = deciding()
    if decision is not None:
        return (DecisionWait(decision), *decision.waiting)
    job = PostCommitJob._var.get()
    if job is not None and job.active:
        return (DecisionWait(job),)
    return ()


def encode_chain(waiting: tuple[DecisionWait, ...], kit: object, me: str) -> list[list[str]]:
    """The live links of ``waiting`` as ``[kind, process, room]``; the chain is cut at the
    first link no longer live, or of a kit no process can name (another kit of this one)."""
    links: list[list[str]] = []
    for wait in waiting:
        if not wait.live:
            break
        mark = wait.mark
        owner = mark.kit
        if owner is kit:
            member = me
        elif isinstance(owner, Elsewhere):
            member = owner.member
        else:
            break
        links.append([_DECISION if isinstance(mark, InDecision) else _JOB, member, mark.room_id])
    return links


def decode_chain(links: Any, kit: object, me: str) -> tuple[DecisionWait, ...]:
    """The chain ``encode_chain`` wrote, with this process's links naming ``kit``."""
    if not isinstance(links, list):
        return ()
    chain: list[DecisionWait] = []
    for link in links:
        if not (
            isinstance(link, list) and len(link) == 3 and all(isinstance(x, str) for x in link)
        ):
            break
        kind, member, room_id = link
        owner: object = kit if member == me else Elsewhere(member)
        mark: InDecision | PostCommitJob
        if kind == _DECISION:
            mark = InDecision(owner, room_id, 0, _never)
        else:
            mark = PostCommitJob(room_id, owner)
        # Live for as long as the command that carried it runs: its sender waits for it.
        chain.append(DecisionWait(mark))
    return tuple(chain)


async def _never(command: object) -> Any:
    raise AssertionError("a decision of another process commits nothing here")
