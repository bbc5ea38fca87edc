"""Settings of :class:`~providers.openai.ai.OpenAIAIProvider`."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

from providers.ai._config import DEFAULT_TIMEOUT, AITimeout, MaxRetries

__all__ = ["OPENAI_BASE_URL", "OpenAIConfig"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""The API root used when ``OpenAIConfig.base_url`` is None."""


class OpenAIConfig(BaseModel):
    """How to reach an OpenAI Chat Completions endpoint (OpenAI's or a compatible server's).

    Args:
        api_key: Sent as ``Authorization: Bearer <key>``; an empty key sends no
            ``Authorization`` header (local OpenAI-compatible servers need none).
        model: Model id, e.g. ``"gpt-4o"``.
        base_url: API root; the provider posts to ``{base_url}/chat/completions``. None (the
            default, as in 0.3.0) is OpenAI's, :data:`OPENAI_BASE_URL`.
        organization: Sent as the ``OpenAI-Organization`` header when set.
        max_tokens: Reply length limit used when the context asks for 0; otherwise
            ``AIContext.max_tokens`` is sent. 0 or less sets no limit of ours: when the
            context asks for 0 too, no limit is sent and the server applies its own (0.3.0
            took any value and used it only then).
        timeout: Seconds allowed for each request; 0 or less gives the default, 120 s (0.3.0
            had no timeout here and ignored one given).
        max_retries: How many times a request that timed out, could not connect or was
            answered 408, 409, 429 or 5xx is sent again, after a backoff (0.3.0's SDK: 2).
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.
        vision: Whether the model reads images; None decides by the model's name (``gpt-4o``,
            ``gpt-4.1``, ``gpt-5``, ``o1``, ``o3``, ...). Set it for models the name rule does not
            know, such as those served by vLLM.
    """

    api_key: SecretStr
    model: str = "gpt-4o"
    base_url: str | None = None
    organization: str | None = None
    max_tokens: int = 1024
    timeout: AITimeout = DEFAULT_TIMEOUT
    max_retries: MaxRetries = 2
    temperature: float = 0.7
    vision: bool | None = None
