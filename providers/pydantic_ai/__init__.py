"""PydanticAI: a configuration model only (no provider), as in RoomKit 0.3.0."""

from __future__ import annotations

from providers.pydantic_ai.config import PydanticAIConfig

__all__ = ["PydanticAIConfig"]
