"""Email providers: the :class:`EmailProvider` contract and a mock."""

from __future__ import annotations

from providers.email.base import EmailProvider
from providers.email.mock import MockEmailProvider

__all__ = ["EmailProvider", "MockEmailProvider"]
