"""RoomKit 0.3.0's module path ``roomkit.providers.messenger.config``; its names live in
``providers.messenger.facebook``."""

from __future__ import annotations

from providers.messenger.facebook import MessengerConfig

__all__ = ["MessengerConfig"]
