"""RoomKit 0.3.0's module path ``roomkit.models.framework_event``; its names live in
``roomkit.models.framework``."""

from __future__ import annotations

from roomkit.models.framework import FrameworkEvent

__all__ = ["FrameworkEvent"]
