"""What an error raised by user code says, for the kit's reports."""

from __future__ import annotations

__all__ = ["error_text"]


def error_text(error: BaseException) -> str:
    """``error``'s text for a report (``hook_error``, ``delivery_failed``, ON_ERROR): its
    ``str``, or its type's name when that is empty or fails. A hook or channel may raise
    anything, an exception whose ``__str__`` raises included; reporting it must not fail the
    fail-open path it is reported from."""
    try:
        text = str(error)
    except Exception:
        return type(error).__name__
    return text or type(error).__name__
