"""A HTTP webhook provider that records what it is asked to send."""

from __future__ import annotations

from providers._base import RecordingProvider
from providers.http.base import HTTPProvider

__all__ = ["MockHTTPProvider"]


class MockHTTPProvider(RecordingProvider, HTTPProvider):
    """Records every send in ``sent``; no network (see
    :class:`~providers._base.RecordingProvider` for ``simulate_failure``)."""
