"""What travels between processes when a command is sent to its room's owner.

A command (one of the room actor's commands, or an inbound message with its room), its reply
and the error it raised are encoded as tagged JSON: pydantic models and commands as their
fields with their class, tuples, datetimes, enums and non-finite floats tagged so that they
come back as they left (a hook at the owner sees a message's metadata as one in the caller's
process would: a model's JSON dump turned its datetimes into str). A value of another type
JSON writes all the same (a ``Decimal``, a ``UUID``, ``bytes``, a ``set``) travels as the log
writes it: such a command ran in the caller's process, a second live actor of its room. Only
RoomKit's own classes are taken when decoding (models and enums from ``roomkit.*``, commands
from the room actor's command module): a request names no class to import beyond those.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import msgspec
import pydantic_core
from pydantic import BaseModel

from roomkit.core import _commands
from roomkit.errors import RoomKitError

__all__ = ["WireError", "decode", "decode_error", "encode", "encode_error"]

# The commands a room may be sent from another process: those a kit method sends with
# ``_command`` (an inbound message travels as the message itself). The delivery worker's own
# commands (outcomes, flushes) stay with the room's delivery worker, in its process.
_COMMANDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        _commands.CreateRoom,
        _commands.UpdateRoomMetadata,
        _commands.ReplaceRoom,
        _commands.PutBinding,
        _commands.RemoveBinding,
        _commands.PutParticipant,
        _commands.RecordObservation,
        _commands.ImportEvent,
        _commands.CloseRoom,
        _commands.CheckTimers,
        _commands.AttachChannel,
        _commands.DetachChannel,
        _commands.UpdateBinding,
        _commands.EnsureParticipant,
        _commands.ResolveParticipant,
        _commands.RecordInjected,
        _commands.SendEvent,
        _commands.UpdateTask,
        _commands.MarkRead,
        _commands.GetContext,
    )
}

# Exceptions of these builtin types come back as themselves; any other that is not a
# RoomKitError comes back as a RoomKitError naming it.
_BUILTIN_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (ValueError, TypeError, KeyError, LookupError)
}

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class WireError(RoomKitError):
    """What came from another process could not be read (or what is to go cannot be
    written): a version mismatch between processes, or a value no JSON holds."""


def encode(value: object) -> bytes:
    """``value`` as tagged JSON.

    Raises:
        WireError: it holds something that cannot travel (a callable, a set, a class of
            another library).
    """
    try:
        return _ENCODER.encode(_tagged(value))
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        raise WireError(f"cannot send {type(value).__name__} to another process: {exc}") from exc


def decode(data: bytes) -> Any:
    """The value ``encode`` wrote.

    Raises:
        WireError: ``data`` is not what ``encode`` writes, or names a class this process
            does not have.
    """
    try:
        return _untagged(_DECODER.decode(data))
    except WireError:
        raise
    except (msgspec.DecodeError, TypeError, ValueError, KeyError, RecursionError) as exc:
        raise WireError(f"cannot read what another process sent: {exc}") from exc


def encode_error(exc: BaseException) -> dict[str, str]:
    cls = type(exc)
    error = {"type": f"{cls.__module__}:{cls.__qualname__}", "message": str(exc)}
    # The builtin kind it is (pydantic's ValidationError is a ValueError): a caller's
    # ``except ValueError`` catches it there as it would here.
    for base in cls.__mro__:
        if base.__module__ == "builtins" and base.__name__ in _BUILTIN_ERRORS:
            error["builtin"] = base.__name__
            break
    return error


def decode_error(error: Any, owner: str) -> Exception:
    """The exception ``error`` (from ``encode_error``) describes: of the same class when it is
    a RoomKitError or a builtin ValueError/TypeError/LookupError; of that builtin kind when
    its class is another of them (pydantic's ValidationError: a ValueError); a RoomKitError
    otherwise."""
    if not isinstance(error, dict):
        return WireError(f"process {owner} answered with an error that cannot be read")
    name = str(error.get("type", ""))
    message = str(error.get("message", ""))
    module, _, qualname = name.partition(":")
    if module == "builtins" and qualname in _BUILTIN_ERRORS:
        return _BUILTIN_ERRORS[qualname](message)
    builtin = _BUILTIN_ERRORS.get(str(error.get("builtin", "")))
    cls = _roomkit_class(module, qualname)
    if isinstance(cls, type) and issubclass(cls, RoomKitError):
        try:
            made = cls(message)
        except Exception:  # a subclass with a constructor of its own
            made = None
        if isinstance(made, RoomKitError):
            return made
    text = f"process {owner} failed on the command: {qualname or name}: {message}"
    return builtin(text) if builtin is not None else RoomKitError(text)


def _roomkit_class(module: str, qualname: str) -> object:
    if not (module == "roomkit" or module.startswith("roomkit.")) or not qualname:
        return None
    try:
        found: object = importlib.import_module(module)
    except ImportError:
        return None
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _tagged(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    kind = type(value)
    own = _is_own(kind)
    if own and isinstance(value, BaseModel):
        fields = value.__dict__  # a model's field values, as validated or assigned
        return {
            "$model": _class_name(kind),
            "fields": {key: _tagged(fields[key]) for key in type(value).model_fields},
        }
    if own and isinstance(value, Enum):
        return {"$enum": _class_name(kind), "value": value.value}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [_tagged(item) for item in value]}
    if isinstance(value, dict):
        return {"$dict": {_json_key(key): _tagged(item) for key, item in value.items()}}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        # A sequence of RoomKit's own (a context's recent events, validated as read) as the
        # list a model's field takes.
        return [_tagged(item) for item in value]
    if dataclasses.is_dataclass(value) and _COMMANDS.get(kind.__name__) is kind:
        return {
            "$command": kind.__name__,
            "value": {
                field.name: _tagged(getattr(value, field.name))
                for field in dataclasses.fields(value)
            },
        }
    if isinstance(value, BaseModel) and any(_is_own(base) for base in kind.__mro__[1:]):
        # An app's subclass of RoomKit's model (a RoomEvent subclass, say) is not sent: the
        # owner could not make it, and as RoomKit's class it would lose what the app gave
        # it. The caller runs the command itself.
        raise TypeError(f"a {kind.__module__}.{kind.__qualname__}, not a RoomKit class")
    # Anything else JSON writes (an app's own enum or model in metadata, a Decimal): as the
    # log writes it.
    try:
        plain = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        raise TypeError(f"a {kind.__module__}.{kind.__qualname__}") from None
    return _tagged(plain)  # JSON's own types now: as the log writes it


def _json_key(key: object) -> str:
    """A dict's key as the log writes it: JSON keys are text (``1`` and ``(1, 2)`` are written
    ``"1"`` and ``"1,2"``), so a dict keyed otherwise reaches the owner as it would come back
    from the log."""
    if isinstance(key, str):
        return key
    try:
        written = pydantic_core.to_jsonable_python({key: None})
    except pydantic_core.PydanticSerializationError:
        raise TypeError(f"a dict key {type(key).__qualname__} JSON cannot write") from None
    return str(next(iter(written)))


def _is_own(kind: type) -> bool:
    return kind.__module__.startswith("roomkit.")


def _class_name(kind: type) -> str:
    return f"{kind.__module__}:{kind.__qualname__}"


def _untagged(data: Any) -> Any:
    if isinstance(data, list):
        return [_untagged(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "$dict" in data:
        return {key: _untagged(item) for key, item in data["$dict"].items()}
    if "$tuple" in data:
        return tuple(_untagged(item) for item in data["$tuple"])
    if "$datetime" in data:
        return datetime.fromisoformat(data["$datetime"])
    if "$float" in data:
        return float(data["$float"])
    if "$model" in data:
        cls = _roomkit_class(*str(data["$model"]).partition(":")[::2])
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise WireError(f"no RoomKit model {data['$model']!r} here")
        if "fields" in data:
            fields = data["fields"]
            if not isinstance(fields, dict):
                raise WireError(f"the fields of a {data['$model']!r} are not an object")
            return cls.model_validate({key: _untagged(item) for key, item in fields.items()})
        return cls.model_validate(data["value"])  # a model's JSON dump (an earlier version)
    if "$enum" in data:
        cls = _roomkit_class(*str(data["$enum"]).partition(":")[::2])
        if not (isinstance(cls, type) and issubclass(cls, Enum)):
            raise WireError(f"no RoomKit enum {data['$enum']!r} here")
        return cls(data["value"])
    if "$command" in data:
        command = _COMMANDS.get(str(data["$command"]))
        if command is None:
            raise WireError(f"no room command {data['$command']!r} here")
        return command(**{key: _untagged(item) for key, item in data["value"].items()})
    raise WireError(f"an untagged object {sorted(data)!r}")
