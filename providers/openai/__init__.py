"""OpenAI: the Chat Completions API (httpx, imported when a provider is made)."""

from __future__ import annotations

from providers.openai.ai import OpenAIAIProvider
from providers.openai.config import OpenAIConfig

__all__ = ["OpenAIAIProvider", "OpenAIConfig"]
