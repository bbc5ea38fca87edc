"""RoomKit 0.3.0's module path ``roomkit.providers.teams.bot_framework``; its names live in
``providers.teams.botframework``."""

from __future__ import annotations

from providers.teams.botframework import BotFrameworkTeamsProvider

__all__ = ["BotFrameworkTeamsProvider"]
