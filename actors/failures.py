"""Telling what code run by the runtime raised: a cancellation of the task running it, or a
failure of the code's own; and what that failure says."""

from __future__ import annotations

import asyncio

import anyio

__all__ = ["described", "error_text", "is_cancellation"]


def is_cancellation(error: BaseException) -> bool:
    """Whether ``error``, raised by code the current task runs, is that task being cancelled.

    On asyncio: whether the task is being cancelled, so a ``CancelledError`` the code raised
    of its own (an inner operation's, let through) is not one. Off asyncio (trio): whether it
    is the backend's cancellation, which comes only from a scope. Anything else that is not
    an ``Exception`` (``GeneratorExit``, a ``BaseException`` subclass) is the code's failure.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:
        cancelled = anyio.get_cancelled_exc_class()
        if isinstance(error, BaseExceptionGroup):
            # A trio nursery the code ran hands on its children's cancellations grouped:
            # only cancellations in it, it is the task being cancelled all the same.
            return error.split(cancelled)[1] is None
        return isinstance(error, cancelled)
    return task is None or task.cancelling() > 0


def error_text(error: BaseException) -> str:
    """``error``'s text for a report: its ``str``, or its type's name when that is empty or
    fails. Code may raise anything, an exception whose ``__str__`` raises included, and
    reporting it must not fail the path it is reported from."""
    try:
        text = str(error)
    except Exception:
        return type(error).__name__
    return text or type(error).__name__


def described(error: BaseException) -> str:
    """``error`` as a report names it: its type, and its text when it has one of its own
    (``"ValueError: bad"``, ``"GeneratorExit"``)."""
    name, text = type(error).__name__, error_text(error)
    return name if text == name else f"{name}: {text}"
