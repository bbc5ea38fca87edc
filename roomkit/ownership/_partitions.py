"""Which partition holds a room, and how many partitions each live process should hold.

A room's partition is a pure function of its id, the same in every process and every Python
version (``hash()`` is salted per process, so CRC-32 of the id's UTF-8 bytes). Processes hold
partitions, never single rooms: the lease table stays as small as the partition count however
many rooms there are.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Set
from dataclasses import dataclass

__all__ = ["Rebalance", "partition_of", "rebalance"]


def partition_of(room_id: str, partitions: int) -> int:
    """The partition (``0 <= p < partitions``) that holds room ``room_id``."""
    return zlib.crc32(room_id.encode("utf-8", "surrogatepass")) % partitions


@dataclass(frozen=True, slots=True)
class Rebalance:
    """What one process should do to reach its fair share: partitions to try to claim (free
    ones; another process may get there first) and partitions to give back."""

    claim: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def rebalance(
    me: str,
    held: Set[int],
    owners: Mapping[int, str],
    members: Set[str],
    partitions: int,
) -> Rebalance:
    """Move this process towards its share of the partitions.

    With ``n`` live processes, each holds ``partitions // n``, and the first
    ``partitions % n`` of them by name one more: the shares add up to every partition, and
    every process computes the same ones. A process holding more than its share gives its
    highest partitions back (a process that just joined finds them free), one holding fewer
    claims free ones, lowest first. Nobody takes a partition another live process holds; a
    dead process's leases expire first.

    Args:
        me: this process.
        held: the partitions this process holds.
        owners: the holder of every partition with a live lease (this process's included).
        members: the processes alive (this one may be missing: it counts anyway).
        partitions: how many partitions there are.
    """
    ranked = sorted(members | {me})
    share, extra = divmod(partitions, len(ranked))
    if ranked.index(me) < extra:
        share += 1
    if len(held) > share:
        return Rebalance(release=tuple(sorted(held)[share:]))
    wanted = share - len(held)
    if not wanted:
        return Rebalance()
    free = (p for p in range(partitions) if p not in owners and p not in held)
    claim: list[int] = []
    for partition in free:
        claim.append(partition)
        if len(claim) == wanted:
            break
    return Rebalance(claim=tuple(claim))
