"""Microsoft Teams providers: the :class:`TeamsProvider` contract and a mock."""

from __future__ import annotations

from providers.teams.base import TeamsProvider
from providers.teams.mock import MockTeamsProvider

__all__ = ["MockTeamsProvider", "TeamsProvider"]
