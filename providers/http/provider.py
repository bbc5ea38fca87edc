"""RoomKit 0.3.0's module path ``roomkit.providers.http.provider``; its names live in
``providers.http.webhook``."""

from __future__ import annotations

from providers.http.webhook import WebhookHTTPProvider

__all__ = ["WebhookHTTPProvider"]
