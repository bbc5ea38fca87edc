"""Model copies and constructions for the room's hot path, without pydantic's generic path.

``updated(model, changes)`` is ``model.model_copy(update=changes)``: the room copies a few models
per message (an event taking its index and status, the room taking its counters), and
``model_copy`` goes through ``copy.copy`` for each of the model's parts and re-checks its
configuration every time. ``constructed(cls, values)`` is ``cls.model_construct(**values)`` for
values that are all given and already valid (a room's context, twice per message), at a third
of the cost. Neither validates anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["constructed", "handed_out", "updated"]

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__

# Per model class: whether it takes extra fields, and its ``__new__``. Reading either from the
# class goes through pydantic's metaclass ``__getattr__`` hook (~500 instructions a read, and
# a copy read both); a class's configuration is fixed once it is built.
_CLASSES: dict[type[BaseModel], tuple[bool, Any]] = {}


def _class(cls: type[BaseModel]) -> tuple[bool, Any]:
    known = _CLASSES.get(cls)
    if known is None:
        known = _CLASSES[cls] = (cls.model_config.get("extra") == "allow", cls.__new__)
    return known


def updated(model: M, changes: Mapping[str, Any]) -> M:
    """A shallow copy of ``model`` with ``changes`` applied (same as ``model_copy(update=)``)."""
    cls = type(model)
    extra_allowed, new = _CLASSES.get(cls) or _class(cls)
    if extra_allowed:
        return model.model_copy(update=dict(changes))  # changes may go to the extra fields
    copy: M = new(cls)
    values = model.__dict__.copy()
    values.update(changes)
    _set(copy, "__dict__", values)
    extra = model.__pydantic_extra__
    _set(copy, "__pydantic_extra__", None if extra is None else extra.copy())
    _set(copy, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    private = model.__pydantic_private__
    if private is not None:
        private = {k: v for k, v in private.items() if v is not PydanticUndefined}
    _set(copy, "__pydantic_private__", private)
    return copy


def handed_out(model: M) -> M:
    """A deep copy of a model a room holds, for its caller: the room, binding or participant a
    kit call answers with was the room's own, so that changing it in place (an app editing the
    room ``create_room`` gave it) changed the room unlogged, its timers and all.

    A copy, not a model made again from its values: that ran the app's validators again (a
    prefix they add, added twice) and marked every field as set.
    """
    return model.model_copy(deep=True)


def constructed(
    cls: type[M],
    values: dict[str, Any],
    *,
    fields_set: Iterable[str] | None = None,
    private: dict[str, Any] | None = None,
) -> M:
    """``cls.model_construct(**values)`` when ``values`` names every field (no defaults to fill)
    and the model allows no extra fields; ``values`` becomes the model's ``__dict__``.

    ``fields_set`` (default: every field) and ``private`` (the private attributes' values,
    for a model that has some) make it what a validating constructor given only some fields
    makes (``ChannelOutput.empty()``, ``HookResult.allow()``)."""
    model: M = (_CLASSES.get(cls) or _class(cls))[1](cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values if fields_set is None else fields_set))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", private)
    return model
