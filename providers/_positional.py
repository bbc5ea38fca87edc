"""Positional construction of a pydantic model, for models RoomKit 0.3.0 had as dataclasses.

A dataclass takes its fields positionally, in declaration order; a pydantic model takes keywords
only. ``WebhookMeta`` and ``VLLMConfig`` were dataclasses in 0.3.0, so their ``__init__`` maps
positional arguments onto 0.3.0's field order with :func:`as_keywords`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["as_keywords"]


def as_keywords(
    model: str, order: Sequence[str], args: Sequence[Any], keywords: dict[str, Any]
) -> dict[str, Any]:
    """``keywords`` with ``args`` added under the names of ``order``, as a dataclass would.

    Raises:
        TypeError: more arguments than ``order`` names, or one given both ways.
    """
    if len(args) > len(order):
        raise TypeError(f"{model} takes at most {len(order)} positional arguments")
    for name, value in zip(order, args, strict=False):
        if name in keywords:
            raise TypeError(f"{model} got multiple values for {name!r}")
        keywords[name] = value
    return keywords
