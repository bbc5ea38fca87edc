"""Settings for running a PydanticAI agent (configuration only, as in RoomKit 0.3.0)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["PydanticAIConfig"]


class PydanticAIConfig(BaseModel):
    """Which model a PydanticAI agent uses and how it generates.

    RoomKit ships no provider for it: the model is kept for applications that build their own
    agent from it.

    Args:
        model: A PydanticAI model name, ``"<vendor>:<model>"`` (e.g. ``"openai:gpt-4o"``).
        api_key: The vendor's API key, as in 0.3.0 (kept secret in reprs and logs); None to
            let PydanticAI read it from the vendor's environment variable.
        system_prompt: The agent's instructions.
        temperature: Sampling temperature.
        max_tokens: Reply length limit.
    """

    model: str = "openai:gpt-4o"
    api_key: SecretStr | None = None
    system_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = Field(default=1024, gt=0)
