"""What the kit reports for a ``BaseException`` that user code raised of its own (see
``actors.is_cancellation`` for telling it from a cancellation)."""

from __future__ import annotations

import asyncio

from actors import described, is_cancellation

__all__ = ["raised_uncancelled"]


def raised_uncancelled(error: BaseException, who: str) -> RuntimeError:
    """The failure to report for ``error``, a ``BaseException`` that is not an ``Exception``
    raised by user code (``who``): its own ``CancelledError``, a ``GeneratorExit``, a subclass
    of ``BaseException``. Such an error fails that call only, like any other.

    Raises:
        BaseException: ``error`` itself when it is not the code's own: the task is being
            cancelled, or the process asked to exit.
    """
    if isinstance(error, KeyboardInterrupt | SystemExit) or is_cancellation(error):
        raise error
    if isinstance(error, asyncio.CancelledError):
        return RuntimeError(f"{who} raised CancelledError uncancelled")
    return RuntimeError(f"{who} raised {described(error)}")
