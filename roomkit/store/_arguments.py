"""Typed refusals of what a store method is given, read from the contract's annotations.

A read given an id that is not a string (``get_room(5)``) answered ``None`` from
``InMemoryStore`` and raised the driver's ``DataError`` from ``PostgresStore``; an identity
linked to the address ``None`` was kept, and no longer validated. ``kit.store`` checks the
arguments of every contract method it passes to its read model against the annotations of
``ConversationStore`` (``str``, ``str | None``, a dict, a model class), so that any store
behind it refuses them alike, with a ``TypeError`` naming the method and the argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from roomkit.models.identity import Identity

__all__ = ["ArgumentCheck", "argument_check", "check_identity", "check_link", "check_text"]

ArgumentCheck = Callable[[tuple[Any, ...], dict[str, Any]], None]
"""Raises ``TypeError`` for arguments (positional, keyword) the method cannot take."""


def check_text(method: str, name: str, value: object) -> None:
    """Refuse ``value`` for ``method``'s argument ``name`` unless it is a string."""
    if not isinstance(value, str):
        raise TypeError(f"{method}: {name} must be a string, got {value!r}")


def _expected(annotation: str, models: Mapping[str, type[BaseModel]]) -> tuple[type, ...] | None:
    """The types an annotation of the contract admits; None for one not checked here (the
    counts and pages are ``page_size``'s)."""
    optional = annotation.endswith(" | None")
    bare = annotation.removesuffix(" | None")
    kinds: tuple[type, ...]
    if bare == "str":
        kinds = (str,)
    elif bare.startswith("dict["):
        kinds = (Mapping,)
    elif bare in models:
        kinds = (models[bare],)
    else:
        return None
    return (*kinds, type(None)) if optional else kinds


def _said(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", Mapping: "a dict", type(None): "None"}
    return " or ".join(names.get(kind, _article(kind.__name__)) for kind in kinds)


def _article(name: str) -> str:
    return f"an {name}" if name[:1] in "AEIOU" else f"a {name}"


def argument_check(
    name: str, contract: Callable[..., Any], models: Mapping[str, type[BaseModel]]
) -> ArgumentCheck | None:
    """The check of the arguments of the contract method ``contract`` (named ``name``), or
    None when it has nothing to check. ``models``: the model classes its annotations name."""
    checked: list[tuple[int, str, tuple[type, ...]]] = []
    parameters = list(inspect.signature(contract).parameters.values())[1:]  # after self
    for position, parameter in enumerate(parameters):
        annotation = parameter.annotation
        kinds = _expected(annotation, models) if isinstance(annotation, str) else None
        if kinds is not None:
            checked.append((position, parameter.name, kinds))
    if not checked:
        return None

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for position, parameter, kinds in checked:
            if position < len(args):
                value = args[position]
            elif parameter in kwargs:
                value = kwargs[parameter]
            else:
                continue  # its default (or missing: the call itself says so)
            if not isinstance(value, kinds):
                raise TypeError(f"{name}: {parameter} must be {_said(kinds)}, got {value!r}")

    return check


def check_link(store: str, identity_id: object, channel_type: object, address: object) -> None:
    """Refuse a ``link_address`` of ``store`` that is not three strings (``InMemoryStore``
    kept an address ``None`` and a channel type ``"None"``, and the identity no longer
    validated)."""
    method = f"{store}.link_address"
    check_text(method, "identity_id", identity_id)
    check_text(method, "channel_type", channel_type)
    check_text(method, "address", address)


def check_identity(store: str, identity: object) -> None:
    """Refuse a ``create_identity`` of ``store`` given something other than an ``Identity``."""
    if not isinstance(identity, Identity):
        raise TypeError(
            f"{store}.create_identity takes an Identity, not {type(identity).__name__}"
        )
