"""RoomKit 0.3.0's module path ``roomkit.providers.http.config``; its names live in
``providers.http.webhook``."""

from __future__ import annotations

from providers.http.webhook import HTTPProviderConfig

__all__ = ["HTTPProviderConfig"]
