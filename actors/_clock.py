"""The running event loop's clock as a plain function.

``anyio.current_time()`` looks the async backend up on every call; the runtime reads the clock a
few times per message (ask deadlines, idle bookkeeping), so a system resolves it once when it
starts. The values are the same as ``anyio.current_time()``'s: the asyncio loop's ``time()`` or
``trio.current_time()`` (which honours a trio test clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["loop_clock"]


def loop_clock() -> Callable[[], float]:
    """The clock of the event loop running now (asyncio's, or else trio's)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        import trio  # anyio runs on asyncio or trio; no asyncio loop here means trio

        return trio.current_time
