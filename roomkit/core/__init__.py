"""RoomKit core: the kit, the room actor, hooks, routing and resilience helpers."""

from __future__ import annotations
