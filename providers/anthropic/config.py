"""Settings of :class:`~providers.anthropic.ai.AnthropicAIProvider`."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from providers.ai._config import DEFAULT_TIMEOUT, AITimeout, MaxRetries

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
        timeout: Seconds allowed for each request; 0 or less gives the default, 120 s (0.3.0
            had no timeout here and ignored one given).
        max_retries: How many times a request that timed out, could not connect or was
            answered 408, 409, 429 or 5xx is sent again, after a backoff (0.3.0's SDK: 2).
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.
    """

    api_key: SecretStr
    model: str = "claude-sonnet-4-20250514"
    base_url: str = "https://api.anthropic.com"
    max_tokens: int = Field(default=1024, gt=0)
    timeout: AITimeout = DEFAULT_TIMEOUT
    max_retries: MaxRetries = 2
    temperature: float = 0.7
