"""SendGrid: :class:`SendGridProvider` over the v3 Web API (needs httpx)."""

from __future__ import annotations

from providers.sendgrid.provider import SendGridConfig, SendGridProvider

__all__ = ["SendGridConfig", "SendGridProvider"]
