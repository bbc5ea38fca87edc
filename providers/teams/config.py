"""RoomKit 0.3.0's module path ``roomkit.providers.teams.config``; its names live in
``providers.teams.botframework``."""

from __future__ import annotations

from providers.teams.botframework import TeamsConfig

__all__ = ["TeamsConfig"]
