"""One shared ``ChannelCapabilities`` instance per distinct value.

Every binding of a channel carries a snapshot of its capabilities (a 25-field model), so a kit
with thousands of rooms would hold thousands of equal copies. The kit (for the bindings its
rooms hold) and the in-memory store each keep one instance per value instead; models are handed
out as shallow copies, so nobody mutates a shared one in place.

A binding kept as JSON (in the in-memory store, in an idle room) keeps its capabilities apart, as
that shared instance: ``binding_json`` and ``binding_from_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from roomkit.models._json import compact_json
from roomkit.models.channel import ChannelBinding, ChannelCapabilities

__all__ = ["CapabilitiesInterner", "binding_from_json", "binding_json"]

_WITHOUT_CAPABILITIES: Mapping[str, bool] = {"capabilities": True}

_fields_decoder = msgspec.json.Decoder(dict[str, Any])


class CapabilitiesInterner:
    """Maps each distinct capabilities value to one instance."""

    def __init__(self) -> None:
        self._instances: dict[bytes, ChannelCapabilities] = {}

    def __len__(self) -> int:
        return len(self._instances)

    def capabilities(self, capabilities: ChannelCapabilities) -> ChannelCapabilities:
        """The shared instance equal to ``capabilities``.

        One changed in place since (through a binding handed to a hook) no longer has the
        value it is kept for: ``capabilities`` takes its place, so the change goes no further.
        """
        to_json = capabilities.__pydantic_serializer__.to_json
        key = to_json(capabilities)
        shared = self._instances.get(key)
        if shared is None or (shared is not capabilities and to_json(shared) != key):
            shared = self._instances[key] = _as_stored(capabilities, key)
        return shared


def _as_stored(capabilities: ChannelCapabilities, json: bytes) -> ChannelCapabilities:
    """``capabilities`` as JSON gives them back (a tuple in ``custom`` as a list): the shared
    instance is what every binding has once it went through the log, so that a room holds
    the same before and after it comes back from it."""
    back = ChannelCapabilities.model_validate_json(json)
    return capabilities if back == capabilities else back


def binding_json(binding: ChannelBinding) -> bytes:
    """The binding's ``compact_json`` without its capabilities (the caller keeps their
    instance). The in-memory store keeps more fields apart: it calls ``compact_json`` itself."""
    return compact_json(binding, _WITHOUT_CAPABILITIES)


def binding_from_json(
    json: bytes, capabilities: ChannelCapabilities, **apart: Any
) -> ChannelBinding:
    """A new ``ChannelBinding`` from JSON without its capabilities (and maybe other fields),
    the capabilities and those other fields.

    The JSON is decoded to builtins, completed, and validated in Python mode, which keeps the
    capabilities instance as it is. (Validating the JSON alone would build default
    capabilities, 25 fields, only to replace them: twice the cost.)
    """
    fields = _fields_decoder.decode(json)
    fields.update(apart)
    fields["capabilities"] = capabilities
    return ChannelBinding.model_validate(fields)
