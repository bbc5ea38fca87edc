"""Google Gemini: the Gemini API's generateContent (httpx, imported when a provider is made)."""

from __future__ import annotations

from providers.gemini.ai import GeminiAIProvider
from providers.gemini.config import GeminiConfig

__all__ = ["GeminiAIProvider", "GeminiConfig"]
