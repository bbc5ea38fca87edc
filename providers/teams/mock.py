"""A Microsoft Teams provider that records what it is asked to send."""

from __future__ import annotations

from providers._base import RecordingProvider
from providers.teams.base import TeamsProvider

__all__ = ["MockTeamsProvider"]


class MockTeamsProvider(RecordingProvider, TeamsProvider):
    """Records every send in ``sent``; no network (see
    :class:`~providers._base.RecordingProvider` for ``simulate_failure``)."""
