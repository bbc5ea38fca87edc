"""Which room's decision is running this code (its channel's ``handle_inbound``, its
BEFORE_BROADCAST hooks): a command to that very room would wait for the decision it is part of,
which waits for it, until a timeout fails the message."""

from __future__ import annotations

from contextvars import ContextVar
from typing import ClassVar

from roomkit.core._context_mark import ContextMark

__all__ = ["InDecision", "deciding_room"]


class InDecision(ContextMark):
    """``with InDecision(room_id):`` marks the code run inside as that room's decision."""

    __slots__ = ("room_id",)
    _var: ClassVar[ContextVar[InDecision | None]] = ContextVar("roomkit_in_decision", default=None)

    def __init__(self, room_id: str) -> None:
        super().__init__()
        self.room_id = room_id


def deciding_room() -> str | None:
    """The room whose decision runs this code, if any (see `InDecision`)."""
    mark = InDecision._var.get()
    return mark.room_id if mark is not None and mark.active else None
