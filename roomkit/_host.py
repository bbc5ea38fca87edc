"""Host tasks: a kit or backend used without ``async with`` (the RoomKit 0.3.0 style) runs
its long-lived work in a task of its own, started on first use and stopped by its ``close()``.

On asyncio it is a task on the running loop (held here: the loop keeps only weak references to
tasks); on trio, anyio's only other backend, a system task.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

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

    trio.lowlevel.spawn_system_task(fn, name=name, context=context)
