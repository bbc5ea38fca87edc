"""``ContextMark``: a mark on the code a ``with`` block runs, for as long as it runs.

The mark is the block itself, ended on exit: a task started inside copies the context, so it
sees the mark too, but only while the block runs (a background task left running afterwards
does not). Each kind of mark is a subclass with a ContextVar of its own.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["ContextMark"]


class ContextMark:
    """Base of the marks: ``with Subclass(...):`` marks the code run inside; ``_var`` holds
    the mark of the running code (its ``active`` says whether its block still runs). A plain
    class, not ``@contextmanager``: some marks are entered for every message (~0.2 µs against
    ~1.5)."""

    __slots__ = ("_token", "active")
    _var: ClassVar[ContextVar[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        var = cls.__dict__.get("_var")
        if var is not None:  # the kit's own: not carried to a room with a caller's context
            from roomkit.core._caller_context import KIT_MARKS

            KIT_MARKS.append(var)

    def __init__(self) -> None:
        self.active = True
        self._token: Token[Any] | None = None

    def __enter__(self) -> Self:
        self._token = self._var.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.active = False
        if self._token is not None:
            self._var.reset(self._token)
