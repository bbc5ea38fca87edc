"""HTTP webhook providers: the :class:`HTTPProvider` contract and a mock."""

from __future__ import annotations

from providers.http.base import HTTPProvider
from providers.http.mock import MockHTTPProvider

__all__ = ["MockHTTPProvider", "HTTPProvider"]
