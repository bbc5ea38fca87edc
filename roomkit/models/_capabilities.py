"""One shared ``ChannelCapabilities`` instance per distinct value.

Every binding of a channel carries a snapshot of its capabilities (a 25-field model), so a kit
with thousands of rooms would hold thousands of equal copies. The kit (for the bindings its
rooms hold) and the in-memory store each keep one instance per value instead; models are handed
out as shallow copies, so nobody mutates a shared one in place.
"""

from __future__ import annotations

from roomkit.models.channel import ChannelCapabilities

__all__ = ["CapabilitiesInterner"]


class CapabilitiesInterner:
    """Maps each distinct capabilities value to one instance."""

    def __init__(self) -> None:
        self._instances: dict[bytes, ChannelCapabilities] = {}

    def __len__(self) -> int:
        return len(self._instances)

    def capabilities(self, capabilities: ChannelCapabilities) -> ChannelCapabilities:
        """The shared instance equal to ``capabilities``."""
        key = capabilities.__pydantic_serializer__.to_json(capabilities)
        return self._instances.setdefault(key, capabilities)
