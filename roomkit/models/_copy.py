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

# The four slots of every pydantic model, set through their descriptors' own setters (the
# descriptors ``BaseModel`` holds, which its subclasses inherit): ``object.__setattr__(model,
# name, value)`` looks the name up on the model's class at every call, ~350 instructions more
# a slot, and a copy or a construction sets all four. (Not for a ``RootModel``, whose class
# hides two of these slots behind class attributes; no model the kit copies is one.)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__

# Per model class: whether it takes extra fields, its ``__new__``, and whether it has private
# attributes. Reading these from the class goes through pydantic's metaclass ``__getattr__``
# hook (~500 instructions a read, and a copy read them all); a class's configuration is fixed
# once it is built. A model of a class that takes no extra fields holds None as its extra
# fields, and one of a class without private attributes None as its private values (what
# pydantic's constructors, ``model_construct`` and validation all set): a copy of such a model
# sets None without reading the model's.
_CLASSES: dict[type[BaseModel], tuple[bool, Any, bool]] = {}


def _class(cls: type[BaseModel]) -> tuple[bool, Any, bool]:
    known = _CLASSES.get(cls)
    if known is None:
        known = _CLASSES[cls] = (
            cls.model_config.get("extra") == "allow",
            cls.__new__,
            bool(cls.__private_attributes__),
        )
    return known


def updated(model: M, changes: Mapping[str, Any]) -> M:
    """A shallow copy of ``model`` with ``changes`` applied (same as ``model_copy(update=)``)."""
    cls = type(model)
    extra_allowed, new, has_private = _CLASSES.get(cls) or _class(cls)
    if extra_allowed:
        return model.model_copy(update=dict(changes))  # changes may go to the extra fields
    copy: M = new(cls)
    values = model.__dict__.copy()
    values.update(changes)
    _set_dict(copy, values)
    _set_extra(copy, None)
    _set_fields_set(copy, model.__pydantic_fields_set__.union(changes))
    private = None
    if has_private:
        private = model.__pydantic_private__
        if private is not None:
            private = {k: v for k, v in private.items() if v is not PydanticUndefined}
    _set_private(copy, private)
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
    _set_dict(model, values)
    _set_fields_set(model, set(values if fields_set is None else fields_set))
    _set_extra(model, None)
    _set_private(model, private)
    return model
