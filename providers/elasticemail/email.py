"""RoomKit 0.3.0's module path ``roomkit.providers.elasticemail.email``; its names live in
``providers.elasticemail.provider``."""

from __future__ import annotations

from providers.elasticemail.provider import ElasticEmailProvider

__all__ = ["ElasticEmailProvider"]
