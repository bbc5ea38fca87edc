"""Settings of :class:`~providers.openai.ai.OpenAIAIProvider`."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["OpenAIConfig"]


class OpenAIConfig(BaseModel):
    """How to reach an OpenAI Chat Completions endpoint (OpenAI's or a compatible server's).

    Args:
        api_key: Sent as ``Authorization: Bearer <key>``; an empty key sends no
            ``Authorization`` header (local OpenAI-compatible servers need none).
        model: Model id, e.g. ``"gpt-4o"``.
        base_url: API root; the provider posts to ``{base_url}/chat/completions``.
        organization: Sent as the ``OpenAI-Organization`` header when set.
        max_tokens: Reply length limit used when the context asks for 0; otherwise
            ``AIContext.max_tokens`` is sent.
        timeout: Seconds allowed for each request.
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.
        vision: Whether the model reads images; None decides by the model's name (``gpt-4o``,
            ``gpt-4.1``, ``gpt-5``, ``o1``, ``o3``, ...). Set it for models the name rule does not
            know, such as those served by vLLM.
    """

    api_key: SecretStr
    model: str = "gpt-4o"
    base_url: str = "https://api.openai.com/v1"
    organization: str | None = None
    max_tokens: int = Field(default=1024, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    temperature: float = 0.7
    vision: bool | None = None
