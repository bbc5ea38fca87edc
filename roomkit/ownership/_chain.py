"""The decisions a command waits on, carried from process to process.

A room's decision (its BEFORE_BROADCAST hooks) that sends a message waits for it; a command
from that message's own decision back to the first room would wait for the first decision,
which waits for it (see ``roomkit.core._in_decision``). One process refuses such a command at
once. Across processes, the chain of waiting decisions travels with each command, so that the
process holding the first room still recognises it; without it, the two decisions held each
other until the message's ``process_timeout``, and the message was dropped.

Each link names its process and a token for its wait there. A link that comes back to the
process it names is that process's wait itself (found by its token), live only while it
really waits: a decision that gave up on its message (a hook's timeout) no longer holds up a
late call back. A link of another process stands for its wait for as long as the command
that carried it runs (its sender waits for it).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from roomkit.core._in_decision import DecisionWait, InDecision, deciding
from roomkit.core._post_commit import PostCommitJob

__all__ = ["Elsewhere", "current_chain", "decode_chain", "encode_chain"]

_DECISION = "decision"
_JOB = "job"

# This process's waits that went out in a chain, by token: a wait ends up unreferenced (and
# gone from here) once its call is over and no chain holds it.
_SENT: weakref.WeakValueDictionary[str, DecisionWait] = weakref.WeakValueDictionary()
_TOKENS: weakref.WeakKeyDictionary[DecisionWait, str] = weakref.WeakKeyDictionary()
_NEXT = itertools.count()


class Elsewhere:
    """The kit of another process, in a link of a chain that came from there."""

    __slots__ = ("member", "token")

    def __init__(self, member: str, token: str) -> None:
        self.member = member
        self.token = token


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
    """The live links of ``waiting`` as ``[kind, process, room, token]``; the chain is cut at
    the first link no longer live, or of a kit no process can name (another kit of this
    one)."""
    links: list[list[str]] = []
    for wait in waiting:
        if not wait.live:
            break
        mark = wait.mark
        owner = mark.kit
        if owner is kit:
            member, token = me, _token_of(wait)
        elif isinstance(owner, Elsewhere):
            member, token = owner.member, owner.token
        else:
            break
        kind = _DECISION if isinstance(mark, InDecision) else _JOB
        links.append([kind, member, mark.room_id, token])
    return links


def decode_chain(links: Any, kit: object, me: str) -> tuple[DecisionWait, ...]:
    """The chain ``encode_chain`` wrote: this process's own waits where it names them (cut
    at one that is over), stand-ins for those of other processes."""
    if not isinstance(links, list):
        return ()
    chain: list[DecisionWait] = []
    for link in links:
        if not (
            isinstance(link, list) and len(link) == 4 and all(isinstance(x, str) for x in link)
        ):
            break
        kind, member, room_id, token = link
        if member == me:
            wait = _SENT.get(token)
            if wait is None or not wait.live:
                break  # over: what lies beyond it waits for something else
            chain.append(wait)
            continue
        owner = Elsewhere(member, token)
        mark: InDecision | PostCommitJob
        if kind == _DECISION:
            mark = InDecision(owner, room_id, 0, _never)
        else:
            mark = PostCommitJob(room_id, owner)
        chain.append(DecisionWait(mark))
    return tuple(chain)


def _token_of(wait: DecisionWait) -> str:
    token = _TOKENS.get(wait)
    if token is None:
        token = _TOKENS[wait] = str(next(_NEXT))
        _SENT[token] = wait
    return token


async def _never(command: object) -> Any:
    raise AssertionError("a decision of another process commits nothing here")
