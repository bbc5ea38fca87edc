"""The fixed defaults of the models the log holds are part of its stored format.

A model is logged as its compact JSON (``roomkit.core._domain.dump``): a field equal to its
fixed default is left out, and reading the record back fills the default in. So changing a
default changes what every old record that left the field out means: ac98731 changed
``Task.description`` and ``Observation.category`` from ``""`` to ``None``, and the logs written
before it read ``None`` where they had ``""`` (found by reading old logs with newer code).

This test pins every such default. If it fails, keep the old default, or say in the commit
and in docs/quirks.md what old logs now read, then update ``stored_defaults.json`` (run this
module with ``ROOMKIT_WRITE_STORED_DEFAULTS=1``).
"""

from __future__ import annotations

import json
import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from roomkit.models._json import _UNFIXED, _fixed_default
from roomkit.models.channel import ChannelBinding
from roomkit.models.delivery import DeliveryResult
from roomkit.models.event import RoomEvent
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task

PINNED = Path(__file__).with_name("stored_defaults.json")

# Every model a domain event carries (see roomkit/core/_domain.py), and the room snapshot's.
LOGGED = (Room, ChannelBinding, Participant, RoomEvent, Task, Observation, DeliveryResult)


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation mentions (through unions, lists, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(models_in(arg))
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            found.extend(models_in(arg))
    return found


def fixed_defaults() -> dict[str, Any]:
    """``{"Class.field": default}`` for every field compact JSON may leave out."""
    seen: set[type[BaseModel]] = set()
    todo = list(LOGGED)
    defaults: dict[str, Any] = {}
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for name, field in cls.model_fields.items():
            todo.extend(models_in(field.annotation))
            default = _fixed_default(field)
            if default is not _UNFIXED:
                key = f"{cls.__module__}.{cls.__qualname__}.{name}"
                defaults[key] = to_jsonable_python(default)
    return dict(sorted(defaults.items()))


def test_the_defaults_old_records_rely_on_are_unchanged() -> None:
    now = fixed_defaults()
    if os.environ.get("ROOMKIT_WRITE_STORED_DEFAULTS"):
        PINNED.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    changed = {
        key: (pinned.get(key, "<no fixed default>"), now.get(key, "<no fixed default>"))
        for key in pinned.keys() | now.keys()
        if pinned.get(key, _UNFIXED) != now.get(key, _UNFIXED)
    }
    assert not changed, (
        "fixed defaults of logged models changed (old -> new); old records that left these "
        f"fields out now read the new value: {changed}"
    )


def test_the_pinned_defaults_cover_the_logged_models() -> None:
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    for cls in LOGGED:
        assert any(key.startswith(f"{cls.__module__}.{cls.__qualname__}.") for key in pinned)
