"""Which room's decision is running this code (its channel's ``handle_inbound``, its
BEFORE_BROADCAST hooks), and the store writes made there for that room.

A command to that very room would wait for the decision it is part of, which waits for it:
the kit refuses it. A write made through ``kit.store`` is collected instead, and the room
commits it with the message it decides, ahead of it (as 0.3.0's store took it before the
message was stored); reads through ``kit.store`` from there first wait for the read model to
hold what the room committed before, so that a hook reading and writing back sees the writes
of the messages before (see ``_store_view``).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import ClassVar

from roomkit.core._context_mark import ContextMark

__all__ = ["InDecision", "deciding", "deciding_room"]


class InDecision(ContextMark):
    """``with InDecision(room_id, position):`` marks the code run inside as that room's
    decision; ``position`` is the log position of the room's last commit."""

    __slots__ = ("position", "room_id", "writes")
    _var: ClassVar[ContextVar[InDecision | None]] = ContextVar("roomkit_in_decision", default=None)

    def __init__(self, room_id: str, position: int) -> None:
        super().__init__()
        self.room_id = room_id
        self.position = position
        self.writes: list[object] = []  # commands, in the order the writes were made


def deciding() -> InDecision | None:
    """The decision running this code, if any (see `InDecision`)."""
    mark = InDecision._var.get()
    return mark if mark is not None and mark.active else None


def deciding_room() -> str | None:
    """The room whose decision runs this code, if any."""
    mark = InDecision._var.get()
    return mark.room_id if mark is not None and mark.active else None
