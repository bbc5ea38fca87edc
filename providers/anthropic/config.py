"""Settings of :class:`~providers.anthropic.ai.AnthropicAIProvider`."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["ANTHROPIC_VERSION", "AnthropicConfig"]

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header value: the Messages API version this mapping follows."""


class AnthropicConfig(BaseModel):
    """How to reach the Anthropic Messages API.

    Args:
        api_key: The ``x-api-key`` credential (kept secret in reprs and logs).
        model: Model id, e.g. ``"claude-sonnet-4-20250514"``.
        base_url: API root; the provider posts to ``{base_url}/v1/messages``.
        max_tokens: Reply length limit used when the context asks for 0 (the Messages API
            requires one); otherwise ``AIContext.max_tokens`` is sent.
        timeout: Seconds allowed for each request.
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.
    """

    api_key: SecretStr
    model: str = "claude-sonnet-4-20250514"
    base_url: str = "https://api.anthropic.com"
    max_tokens: int = Field(default=1024, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    temperature: float = 0.7
