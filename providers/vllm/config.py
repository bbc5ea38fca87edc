"""Settings of a vLLM server reached through its OpenAI-compatible API."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["VLLMConfig"]


class VLLMConfig(BaseModel):
    """Where a vLLM server (``vllm serve <model>``) listens and which model it serves.

    Args:
        model: The served model's name, as the server knows it.
        base_url: The server's OpenAI-compatible root.
        api_key: The key given to ``vllm serve --api-key``; None when the server has none.
        max_tokens: Reply length limit used when the context asks for 0.
        timeout: Seconds allowed for each request.
        vision: Whether the served model reads images (vLLM serves any model, so its name
            tells nothing reliable).
    """

    model: str
    base_url: str = "http://localhost:8000/v1"
    api_key: SecretStr | None = None
    max_tokens: int = Field(default=1024, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    vision: bool = False
