"""The context variables of a command's caller, carried with it to the room and on to its turn.

RoomKit 0.3.0 ran a message's whole pipeline in its caller's task: every hook, channel and
handler saw the caller's context variables (a web request's id, a tracing span). A room's
actor and its delivery worker run in tasks of their own, so the kit carries a copy of the
caller's context with each command it asks a room (`captured`, in ``KitRuntime.ask_room``),
runs the command's decision in it, and the delivery turn it opens (``Turn.context``) too
(`in_context`). The user code called there copies it again (``called_apart``, ``bounded``,
``concurrently``), as before: nothing it sets leaks to other calls or other messages.

The kit's own marks (``ContextMark`` subclasses, the Postgres store's ``_applying``) are not
carried: they say what the *running* code is (a room's decision, post-commit work, a command
taken up by closing's count), and the room's code sets its own. They are reset in the copy.
Nothing is carried to another process (a command ``forward``ed to the room's owner runs in
the context of that process's handler) nor across a restart (replayed work has no caller).
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import Context, ContextVar, copy_context
from typing import Any, TypeVar

from roomkit.core._first_step import first_step

__all__ = ["KIT_MARKS", "Carried", "captured", "in_context", "within"]

T = TypeVar("T")

# The kit's own context variables, left out of a carried context (see the module docstring).
KIT_MARKS: list[ContextVar[Any]] = []


class Carried:
    """A command to a room with its caller's context (``RoomActor.receive`` unwraps it)."""

    __slots__ = ("command", "context")

    def __init__(self, command: object, context: Context) -> None:
        self.command = command
        self.context = context


def captured() -> Context:
    """A copy of the running code's context variables, the kit's own marks left out."""
    context = copy_context()
    for var in KIT_MARKS:
        if var.get(None) is not None:
            context.run(var.set, None)
    return context


def within(awaitable: Awaitable[T], context: Context | None) -> Awaitable[T]:
    """``awaitable`` to await in a copy of ``context`` (``in_context``), or as it is when
    there is none (work with no caller): one awaitable either way, no extra frame then."""
    return awaitable if context is None else in_context(awaitable, context)


async def in_context(awaitable: Awaitable[T], context: Context) -> T:
    """Await ``awaitable`` with every step run in a copy of ``context`` (this task's own
    context is left as it is, and so is ``context``: each stage of a command gets a copy)."""
    done, rest = first_step(awaitable, context.copy())
    if done:
        result: T = rest
        return result
    return await rest  # type: ignore[no-any-return]
