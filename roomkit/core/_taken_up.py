"""``TakenUp``: a command the kit took up (``KitRuntime.admitted``), marked on the code its
``with`` block runs, for as long as it runs.

Closing lets the commands taken up before it finish (it waits for them as for its rooms'
asks), and refuses the others, but those of a command taken up already: its steps (a message's
identity steps, the room it makes) are its own. It does not wait for a command that waits for
the read model only: closing stops the read model, which ends that wait (``KitClosedError``),
and with a store away it waited out its whole bound. So a command is counted until it waits
for the read model for good (``settling``). A step of one waiting for the read model keeps it
counted: the command goes on after it, and uncounted meanwhile, closing could stop the rooms
under it (its next step refused); with the store away, closing waits for it up to its bound.

The mark is the task's that took the command up (its steps run there): a task started
meanwhile copies it with the context (a room's actor the command woke, a task a hook of that
room leaves running), and it passed for a step of the command while that one ran.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from roomkit.core._context_mark import ContextMark

if TYPE_CHECKING:
    from roomkit.core._runtime import KitRuntime

__all__ = ["TakenUp", "taken_up_by"]


class TakenUp(ContextMark):
    """A command taken up (``command`` is None), or a step of one (``command``: that one)."""

    __slots__ = ("_counted", "command", "runtime", "task")

    _var: ClassVar[ContextVar[TakenUp | None]] = ContextVar("roomkit_taken_up", default=None)

    def __init__(self, runtime: KitRuntime, command: TakenUp | None) -> None:
        super().__init__()
        self.runtime = runtime
        self.command = command
        self.task = running_task()
        self._counted = command is None  # a command is counted when taken up (admitted)

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)
        self.settling()

    def settling(self) -> None:
        """A command waits for the read model only from now on: no longer counted (a step
        stays counted: see the module docstring)."""
        if self._counted:
            self._counted = False
            self.runtime._asked()


def taken_up_by(runtime: KitRuntime) -> TakenUp | None:
    """The command of ``runtime`` the running code is part of, while it runs."""
    mark = TakenUp._var.get()
    if mark is None or not mark.active or mark.runtime is not runtime:
        return None
    return mark if mark.task is running_task() else None


def running_task() -> object:
    """The task running this code: asyncio's, or trio's (anyio's other backend)."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop runs: trio does
        import trio

        return trio.lowlevel.current_task()
