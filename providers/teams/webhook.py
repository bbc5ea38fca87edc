"""RoomKit 0.3.0's module path ``roomkit.providers.teams.webhook``; its names live in
``providers.teams.activity``."""

from __future__ import annotations

from providers.teams.activity import is_bot_added, parse_teams_activity, parse_teams_webhook

__all__ = ["is_bot_added", "parse_teams_activity", "parse_teams_webhook"]
