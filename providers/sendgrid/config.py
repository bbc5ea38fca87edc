"""RoomKit 0.3.0's module path ``roomkit.providers.sendgrid.config``; its names live in
``providers.sendgrid.provider``."""

from __future__ import annotations

from providers.sendgrid.provider import SendGridConfig

__all__ = ["SendGridConfig"]
