"""One shared ``ChannelCapabilities`` instance per distinct value.

Every binding of a channel carries a snapshot of its capabilities (a 25-field model), so a kit
with thousands of rooms would hold thousands of equal copies. The kit keeps one instance per
value instead; models are handed out as shallow copies, so nobody mutates a shared one in
place (as with every nested model of the store).
"""

from __future__ import annotations

from roomkit.models.channel import ChannelBinding, ChannelCapabilities

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

    def binding(self, binding: ChannelBinding) -> ChannelBinding:
        """``binding`` itself, its capabilities replaced by the shared instance."""
        shared = self.capabilities(binding.capabilities)
        if shared is not binding.capabilities:
            binding.capabilities = shared
        return binding
