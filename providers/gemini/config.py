"""Settings of :class:`~providers.gemini.ai.GeminiAIProvider`."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from providers.ai._config import DEFAULT_TIMEOUT, AITimeout, MaxRetries

__all__ = ["GeminiConfig"]


class GeminiConfig(BaseModel):
    """How to reach the Gemini API (Google AI for developers).

    Args:
        api_key: Sent as the ``x-goog-api-key`` header (never in the URL, where it would end up
            in access logs).
        model: Model id, e.g. ``"gemini-2.0-flash"`` (a ``models/`` prefix is accepted).
        base_url: API root; the provider posts to ``{base_url}/models/{model}:generateContent``.
        max_tokens: Reply length limit used when the context asks for 0; otherwise
            ``AIContext.max_tokens`` is sent as ``maxOutputTokens``.
        timeout: Seconds allowed for each request; 0 or less gives the default, 120 s (0.3.0
            had no timeout here and ignored one given).
        max_retries: How many times a request that timed out, could not connect or was
            answered 408, 409, 429 or 5xx is sent again, after a backoff. 0 by default: 0.3.0's
            SDK (google-genai) made one attempt.
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.
    """

    api_key: SecretStr
    model: str = "gemini-2.0-flash"
    base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    max_tokens: int = Field(default=1024, gt=0)
    timeout: AITimeout = DEFAULT_TIMEOUT
    max_retries: MaxRetries = 0
    temperature: float = 1.0
