"""Elastic Email: :class:`ElasticEmailProvider` over the v2 HTTP API (needs httpx)."""

from __future__ import annotations

from providers.elasticemail.provider import ElasticEmailConfig, ElasticEmailProvider

__all__ = ["ElasticEmailConfig", "ElasticEmailProvider"]
