"""Settings of a vLLM server reached through its OpenAI-compatible API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SecretStr

from providers._positional import as_keywords
from providers.ai._config import DEFAULT_TIMEOUT, AITimeout

__all__ = ["VLLMConfig"]

# RoomKit 0.3.0's field order (a dataclass then).
_ORDER_0_3_0 = ("model", "base_url", "api_key", "max_tokens", "temperature")


class VLLMConfig(BaseModel):
    """Where a vLLM server (``vllm serve <model>``) listens and which model it serves.

    Args:
        model: The served model's name, as the server knows it.
        base_url: The server's OpenAI-compatible root.
        api_key: The key given to ``vllm serve --api-key``; None when the server has none.
            RoomKit 0.3.0's default was the string ``"none"``, which it sent as
            ``Authorization: Bearer none`` to every server; None sends no such header.
        max_tokens: Reply length limit used when the context asks for 0.
        timeout: Seconds allowed for each request; 0 or less gives the default, 120 s, as
            in the other AI configs.
        vision: Whether the served model reads images (vLLM serves any model, so its name
            tells nothing reliable).
        temperature: Kept for RoomKit 0.3.0 code, which set it here; as then, each request
            sends its ``AIContext.temperature``.

    As in 0.3.0 (a dataclass then), it is also made positionally: ``model, base_url, api_key,
    max_tokens, temperature``.
    """

    model: str
    base_url: str = "http://localhost:8000/v1"
    api_key: SecretStr | None = None
    max_tokens: int = Field(default=1024, gt=0)
    timeout: AITimeout = DEFAULT_TIMEOUT
    vision: bool = False
    temperature: float = 0.7

    def __init__(self, *args: Any, **data: Any) -> None:
        super().__init__(**as_keywords("VLLMConfig", _ORDER_0_3_0, args, data))
