"""Anthropic: Claude models through the Messages API (httpx, imported when a provider is made)."""

from __future__ import annotations

from providers.anthropic.ai import AnthropicAIProvider
from providers.anthropic.config import AnthropicConfig

__all__ = ["AnthropicAIProvider", "AnthropicConfig"]
