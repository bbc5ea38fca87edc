"""Text a room can record: no surrogate code points.

JSON may carry surrogates as ``\\uXXXX`` escapes: a lone one (half an emoji, a vendor cutting
UTF-16 text at a segment boundary) or the two halves of one character. Python decodes them into
surrogate code points, which UTF-8 cannot encode: the room's log refuses such text, so a webhook
or an AI reply holding one was lost (refused again at each of the vendor's retries). At the
provider boundary, halves that belong together are joined and every lone surrogate becomes
U+FFFD.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["clean_strings", "clean_text"]

T = TypeVar("T")


def clean_text(text: str) -> str:
    """``text`` with surrogate pairs joined into their character and lone surrogates as U+FFFD."""
    if text.isascii():  # the common case: nothing to do, nothing to copy
        return text
    # UTF-16 is the one codec where a pair of surrogate code points is one character.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_strings(value: T) -> T:
    """``value`` (a decoded webhook body) with every string in it, keys included, cleaned by
    :func:`clean_text`; ``value`` itself when it holds no surrogate (or cannot be walked: a
    parser then refuses it as it did). Mappings holding one come back as dicts, tuples as
    tuples, lists as lists."""
    if not _has_surrogates(value):
        return value
    try:
        cleaned: T = _cleaned(value)
    except RecursionError:
        return value
    return cleaned


def _has_surrogates(value: object) -> bool:
    """Whether ``value`` holds a string UTF-8 cannot encode (found by the C JSON encoder)."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (TypeError, ValueError, RecursionError):  # not JSON-like: left to the parser
        return False
    return False


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {_cleaned(key): _cleaned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_cleaned(item) for item in value)
    return value
