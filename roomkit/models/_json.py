"""Models as the kit stores them in JSON, outside pydantic's generic path.

``compact_json(model)``: the model's JSON without the fields equal to a fixed default; the log
(``roomkit.core._domain.dump``) and the in-memory read model both write models this way.

``EventFields``: the few fields of a stored event the kit reads without building the
``RoomEvent`` (the store's indexes, the room's counters, a room replaying its log), decoded by
msgspec from the event's JSON or from an envelope ``{"event": <the event's JSON>, ...}`` (the
log's ``message.recorded`` payload, which the in-memory store keeps as it is). Their defaults
are ``RoomEvent``'s, which ``compact_json`` leaves out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import msgspec
import pydantic_core
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from roomkit.models.channel import ChannelCapabilities
from roomkit.models.enums import EventStatus, EventType

__all__ = [
    "DEFAULT_VISIBILITY",
    "EventFields",
    "compact_json",
    "event_fields",
    "event_json",
    "event_json_view",
    "enveloped_event_activity",
    "enveloped_event_fields",
    "model_json",
]

DEFAULT_VISIBILITY = "all"
"""``RoomEvent.visibility``'s default, one object: decoding hands it out as it is."""


class EventFields(msgspec.Struct):
    """The fields of a stored event that the kit reads without validating the event."""

    id: str
    room_id: str
    created_at: datetime
    index: int = 0
    type: str = EventType.MESSAGE
    status: str = EventStatus.PENDING
    idempotency_key: str | None = None
    visibility: str = DEFAULT_VISIBILITY


class _Enveloped(msgspec.Struct):
    event: EventFields
    activity: bool | None = None  # the log's message.recorded: whether it is room activity


class _Envelope(msgspec.Struct):
    event: msgspec.Raw


_fields_decoder = msgspec.json.Decoder(EventFields)
_enveloped_decoder = msgspec.json.Decoder(_Enveloped)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def event_fields(event_json: bytes | msgspec.Raw) -> EventFields:
    """The ``EventFields`` of an event's JSON."""
    return _fields_decoder.decode(event_json)


# The last envelope decoded, and what it decoded to: the store projection hands a
# ``message.recorded`` payload to the store (``add_event_envelope``, which reads its fields) and
# then reads the same bytes object's fields and activity itself. ``bytes`` cannot change, so
# the same object decodes the same; one entry holds one payload alive at most.
# One tuple, replaced whole: a reader in another thread never sees half an update.
_last_envelope: tuple[object, _Enveloped | None] = (None, None)


def _enveloped(envelope: bytes) -> _Enveloped:
    global _last_envelope
    last = _last_envelope
    if last[0] is envelope:
        return cast(_Enveloped, last[1])
    enveloped = _enveloped_decoder.decode(envelope)
    if type(envelope) is bytes:
        _last_envelope = (envelope, enveloped)
    return enveloped


def enveloped_event_fields(envelope: bytes) -> EventFields:
    """The ``EventFields`` of the event in an envelope."""
    return _enveloped(envelope).event


def enveloped_event_activity(envelope: bytes) -> tuple[EventFields, bool | None]:
    """The ``EventFields`` of the event in a ``message.recorded`` envelope, and its
    ``activity`` flag (None when absent: see ``roomkit.core._domain.is_activity``)."""
    enveloped = _enveloped(envelope)
    return enveloped.event, enveloped.activity


def event_json(envelope: bytes) -> bytes:
    """The event's JSON in an envelope."""
    return bytes(_envelope_decoder.decode(envelope).event)


def event_json_view(envelope: bytes) -> msgspec.Raw:
    """The event's JSON in an envelope, as a view of the envelope's bytes (no copy)."""
    return _envelope_decoder.decode(envelope).event


def compact_json(
    model: BaseModel, exclude: Mapping[str, Any] | None = None, *, warnings: bool = True
) -> bytes:
    """The model's JSON without the fields equal to a *fixed* default (validation restores them).

    pydantic's ``exclude_defaults`` calls every default factory to compare: each id and clock
    field then costs a fresh id and a clock read per serialisation (a ``Room`` took 6 µs, 3.3
    here), and a timestamp that happens to equal "now" (coarse clock) is dropped and comes
    back as a new one. Here a field is left out only if it equals a default that every
    validation rebuilds the same: a value (None included), an empty ``dict``/``list``, or a
    nested model whose fields all have such defaults. A field from any other factory (ids,
    clocks) is always written; nested models are compared field by field.

    A field holding a discriminated union (an event's ``content``) is written whole but for
    its None fields: its discriminator (``type``) must stay although it equals its default.

    ``exclude``: more fields to leave out, in pydantic's form (``{"timers": {"a"}}``).
    ``warnings``: check values of another type than their field's (``model_copy(update=...)``
    and ``model_construct`` do not validate): the JSON is returned if it reads back as the
    model, and refused otherwise. False for a caller that reads the JSON back itself.

    Raises:
        pydantic_core.PydanticSerializationError: the model cannot be written as JSON, or,
            with ``warnings``, its JSON would not read back (a value its field refuses).
    """
    plan = _plan(type(model))
    left_out = _left_out(model, plan, plan.none_safe, exclude or _NOTHING)
    if not warnings:
        return model.__pydantic_serializer__.to_json(
            model, exclude=left_out or None, exclude_none=plan.none_safe, warnings=False
        )
    return model_json(model, exclude=left_out or None, exclude_none=plan.none_safe)


def model_json(model: BaseModel, **options: Any) -> bytes:
    """``model``'s JSON (pydantic's ``to_json`` with ``options``), checked to read back when
    some of its values are not of their field's type (``model_copy(update=...)`` and
    ``model_construct`` do not validate).

    Pydantic would warn of each (a ``UserWarning``, an exception where warnings are errors, as
    in 0.3.0's own tests), also of a str an app put in an enum field, whose JSON is right.

    Raises:
        pydantic_core.PydanticSerializationError: the model cannot be written as JSON, or its
            JSON would not read back (a value its field refuses).
    """
    serializer = model.__pydantic_serializer__
    try:
        return serializer.to_json(model, warnings="error", **options)
    except pydantic_core.PydanticSerializationError as exc:
        if not str(exc).startswith(_MISMATCH):
            raise
    _check_reads_back(model)
    return serializer.to_json(model, warnings=False, **options)


def _stored_class(cls: type[BaseModel]) -> type[BaseModel]:
    """The RoomKit model ``cls`` is or derives from (itself if none)."""
    for base in cls.__mro__:
        if base.__module__.startswith("roomkit.models.") and issubclass(base, BaseModel):
            return base
    return cls


# How pydantic's serializer reports values of another type than their field's.
_MISMATCH = "Pydantic serializer warnings"


def _check_reads_back(model: BaseModel) -> None:
    """Raise if ``model``, some of whose values are not of their field's type, would not
    read back from its JSON (``"closed"`` in a status field does; ``"bogus"`` does not), as
    the log and the stores read it: as the RoomKit model it is (an app's subclass of
    ``RoomEvent`` reads back as a ``RoomEvent``)."""
    cls = _stored_class(type(model))
    try:
        cls.model_validate_json(model.__pydantic_serializer__.to_json(model, warnings=False))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
    else:
        return
    # Raised outside the handler, neither chained nor in its context: pydantic's error quotes
    # the input (the model's JSON: a message's content), which a traceback logged of the
    # error the kit makes of this one would print.
    where = ".".join(str(part) for part in first["loc"])
    raise pydantic_core.PydanticSerializationError(
        f"{cls.__name__}.{where}: {first['msg']} (a value its field refuses, set without "
        "validation: model_copy(update=...) or model_construct)"
    )


class _Unfixed:
    """The marker of a field without a fixed default (required, or from another factory)."""


_UNFIXED = _Unfixed()

# Factories that return an equal value on every call. A model class qualifies by itself when
# its fields all have fixed defaults (see _plan). The default media types of a channel (a
# private function, reached through the field) are in every binding of a channel that keeps
# them: without them here every such binding would write ``{"media_types": ["text"]}``.
_FIXED_FACTORIES: frozenset[Any] = frozenset(
    {dict, list, ChannelCapabilities.model_fields["media_types"].default_factory}
)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How ``compact_json`` compares the fields of one model class to their defaults."""

    # Fields with a fixed default other than None or a model: left out when equal to it.
    values: tuple[tuple[str, Any], ...]
    # Fields whose default is None: left out when None (by ``exclude_none`` if ``none_safe``).
    nones: tuple[str, ...]
    # Fields that may hold a model directly: (name, the class of the model expected, if one,
    # and the fields of the fixed default, if any). Left out when equal to that default,
    # otherwise compared field by field.
    models: tuple[tuple[str, type[BaseModel] | None, dict[str, Any] | None], ...]
    # The fields of a default instance, if every field has a fixed default (else None).
    fixed: dict[str, Any] | None
    # Whether pydantic's ``exclude_none`` leaves out exactly the fields equal to a None default
    # in this model and every model it may contain: every field that may be None has a None
    # default. It then replaces the Python comparisons of ``nones`` (and keeps an event's
    # content as it always was written).
    none_safe: bool


_PLANS: dict[type[BaseModel], _Plan] = {}
_NOTHING: Mapping[str, Any] = {}


def _plan(cls: type[BaseModel]) -> _Plan:
    """The plan of ``cls``, built on first use."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _build_plan(cls)
    return plan


def _build_plan(cls: type[BaseModel]) -> _Plan:
    values: list[tuple[str, Any]] = []
    nones: list[str] = []
    models: list[tuple[str, type[BaseModel] | None, dict[str, Any] | None]] = []
    all_fixed = _plain(cls)
    for name, field in cls.model_fields.items():
        default = _fixed_default(field)
        if default is _UNFIXED:
            all_fixed = False
        elif default is None:
            nones.append(name)
        elif not isinstance(default, BaseModel):
            values.append((name, default))
        if field.discriminator is None and _may_hold_model(field.annotation):
            if isinstance(default, BaseModel):
                models.append((name, type(default), default.__dict__))
            else:
                models.append((name, _only_model(field.annotation), None))
    return _Plan(
        values=tuple(values),
        nones=tuple(nones),
        models=tuple(models),
        fixed=cls().__dict__ if all_fixed else None,
        none_safe=_none_safe(cls, set()),
    )


def _plain(cls: type[BaseModel]) -> bool:
    """Whether a default instance of ``cls`` is all in its fields' defaults: no extra fields,
    and no hook that could change them after validation."""
    decorators = cls.__pydantic_decorators__
    return (
        cls.model_config.get("extra") != "allow"
        and cls.__pydantic_post_init__ is None
        and not decorators.model_validators
    )


def _fixed_default(field: FieldInfo) -> Any:
    """The field's default if every validation rebuilds it equal, else ``_UNFIXED``."""
    if field.is_required():
        return _UNFIXED
    factory = field.default_factory
    if factory is None:
        return field.default
    if factory in _FIXED_FACTORIES:
        return cast(Callable[[], Any], factory)()
    if isinstance(factory, type) and issubclass(factory, BaseModel):
        return factory() if _plan(factory).fixed is not None else _UNFIXED
    return _UNFIXED


def _left_out(
    model: BaseModel, plan: _Plan, none_safe: bool, exclude: Mapping[str, Any] = _NOTHING
) -> dict[str, Any]:
    """The fields of ``model`` equal to their fixed defaults, and ``exclude``, in pydantic's
    ``exclude`` form.

    ``exclude`` is the start: a field it leaves out whole is not compared (a store's bindings
    leave out their capabilities, 23 fields); a nested rule goes down to the nested model.
    """
    fields = model.__dict__
    left_out: dict[str, Any] = dict(exclude) if exclude else {}
    for name, default in plan.values:  # a plain loop: cheaper than a comprehension here
        if fields[name] == default:
            left_out[name] = True  # a whole field out covers any nested rule
    if not none_safe:
        for name in plan.nones:
            if fields[name] is None:
                left_out[name] = True
    for name, cls, fixed in plan.models:
        rule = exclude.get(name) if exclude else None
        if rule is True:
            continue
        value = fields[name]
        kind = type(value)
        # The declared class first: isinstance on a model class is slow (ABCMeta).
        if kind is not cls and (value is None or not isinstance(value, BaseModel)):
            continue
        # Comparing the fields is cheaper than the model's __eq__ (which also compares the
        # private attributes and the set fields, neither of which is serialised).
        if kind is cls and value.__dict__ == fixed:
            left_out[name] = True
            continue
        nested = _left_out(value, _plan(kind), none_safe, _as_mapping(rule))
        if nested:
            left_out[name] = nested
    return left_out


def _as_mapping(rule: Any) -> Mapping[str, Any]:
    """A nested ``exclude`` rule as a mapping (pydantic also takes a set of names)."""
    if not rule:
        return _NOTHING
    return rule if isinstance(rule, Mapping) else dict.fromkeys(rule, True)


def _none_safe(cls: type[BaseModel], seen: set[type[BaseModel]]) -> bool:
    """Whether every field that may be None, in ``cls`` and every model it may contain (in
    any container), has None as its default; see ``_Plan.none_safe``."""
    seen.add(cls)
    for field in cls.model_fields.values():
        none_default = not field.is_required() and field.default_factory is None
        if _may_be_none(field.annotation) and not (none_default and field.default is None):
            return False
        for inner in _models_in(field.annotation):
            if inner not in seen and not _none_safe(inner, seen):
                return False
    return True


_UNIONS = (Union, UnionType)


def _may_be_none(annotation: Any) -> bool:
    """Whether a value of this type may be None (true when unsure)."""
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in _UNIONS:
        return any(_may_be_none(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _may_be_none(get_args(annotation)[0])
    if origin is Literal:
        return None in get_args(annotation)
    if origin is not None:
        return not isinstance(origin, type)  # list[...], dict[...]: never None
    return not isinstance(annotation, type) or annotation is object


def _may_hold_model(annotation: Any) -> bool:
    """Whether a value of this type may be a model itself (not inside a container)."""
    return any(issubclass(arg, BaseModel) for arg in _direct_types(annotation))


def _only_model(annotation: Any) -> type[BaseModel] | None:
    """The one model class a value of this type may be (``X`` or ``X | None``), if one."""
    found = [arg for arg in _direct_types(annotation) if issubclass(arg, BaseModel)]
    return found[0] if len(found) == 1 else None


def _direct_types(annotation: Any) -> list[type]:
    """The classes a value of this type may be, through unions and ``Annotated``."""
    if isinstance(annotation, type):
        return [annotation]
    origin = get_origin(annotation)
    if origin in _UNIONS or origin is Annotated:
        return [found for arg in get_args(annotation) for found in _direct_types(arg)]
    return []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes a value of this type may contain, at any depth of its type."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for arg in get_args(annotation) for found in _models_in(arg)]
