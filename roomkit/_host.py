"""Host tasks: a kit or backend used without ``async with`` (the RoomKit 0.3.0 style) runs
its long-lived work in a task of its own, started on first use and stopped by its ``close()``.

On asyncio it is a task on the running loop (held here: the loop keeps only weak references to
tasks); on trio, anyio's only other backend, a system task.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Awaitable, Callable

from roomkit.core._cancel import interrupt_in

__all__ = ["spawn_host"]

_HOSTS: set[asyncio.Task[None]] = set()


def spawn_host(
    fn: Callable[[], Awaitable[None]], name: str, *, fresh_context: bool = False
) -> None:
    """Start ``fn()`` as a host task on the running event loop; ``fresh_context``: in a new,
    empty ``contextvars.Context`` instead of a copy of the caller's."""
    context = contextvars.Context() if fresh_context else None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:

        async def host() -> None:
            await fn()

        task = loop.create_task(host(), name=name, context=context)
        _HOSTS.add(task)
        task.add_done_callback(_HOSTS.discard)
        return
    import trio

    trio.lowlevel.spawn_system_task(_passing_ctrl_c(fn), name=name, context=context)


def _passing_ctrl_c(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``fn`` for a trio system task: a ``KeyboardInterrupt`` it ends with goes to the run's
    main task. Trio raises a Ctrl-C in whatever code runs when it lands (a hook, a channel of
    a room of a kit used without ``async with``), and a system task ending with any exception
    ended the run with ``TrioInternalError`` ("please file a bug")."""

    async def host() -> None:
        try:
            await fn()
        except BaseException as exc:
            if not isinstance(interrupt_in(exc), KeyboardInterrupt) or not _trio_takes_ctrl_c():
                raise
            # Trio's SIGINT handler, run again, raises it in the main task.
            signal.raise_signal(signal.SIGINT)

    return host


def _trio_takes_ctrl_c() -> bool:
    """Whether trio's own SIGINT handler is installed, in this thread: another one (an
    app's, or SIG_IGN) may drop a Ctrl-C raised again, which must then end the run as any
    error of a system task does rather than be lost."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGINT)
    # Its KeyboardInterrupt handler, not an app's signal receiver (trio._signals).
    return getattr(handler, "__module__", "").startswith("trio._core")
