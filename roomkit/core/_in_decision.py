"""Which room's decision is running this code (its channel's ``handle_inbound``, its
BEFORE_BROADCAST hooks): a command to that very room would wait for the decision it is part of,
which waits for it, until a timeout fails the message.

The mark is the decision itself, ended on exit, as ``PostCommitJob``'s: a task a hook started
copies the context, but sees the mark only while the decision runs.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

__all__ = ["InDecision", "deciding_room"]


class InDecision:
    """``with InDecision(room_id):`` marks the code run inside as that room's decision."""

    __slots__ = ("_token", "active", "room_id")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.active = True
        self._token: Token[InDecision | None] | None = None

    def __enter__(self) -> InDecision:
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.active = False
        if self._token is not None:
            _current.reset(self._token)


_current: ContextVar[InDecision | None] = ContextVar("roomkit_in_decision", default=None)


def deciding_room() -> str | None:
    """The room whose decision runs this code, if any (see `InDecision`)."""
    mark = _current.get()
    return mark.room_id if mark is not None and mark.active else None
