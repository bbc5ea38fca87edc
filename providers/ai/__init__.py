"""AI providers: the :class:`AIProvider` contract, its models and a mock."""

from __future__ import annotations

from providers.ai.base import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AIResponse,
    AITextPart,
    AITool,
    AIToolCall,
)
from providers.ai.mock import MockAIProvider
from providers.errors import ProviderError

__all__ = [
    "AIContext",
    "AIImagePart",
    "AIMessage",
    "AIProvider",
    "AIResponse",
    "AITextPart",
    "AITool",
    "AIToolCall",
    "MockAIProvider",
    "ProviderError",
]
