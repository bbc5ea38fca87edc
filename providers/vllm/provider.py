"""vLLM as an :class:`~providers.openai.ai.OpenAIAIProvider` pointed at the local server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

from providers.openai.ai import OpenAIAIProvider
from providers.openai.config import OpenAIConfig
from providers.vllm.config import VLLMConfig

if TYPE_CHECKING:
    import httpx

__all__ = ["create_vllm_provider"]


def create_vllm_provider(
    config: VLLMConfig, *, client: httpx.AsyncClient | None = None
) -> OpenAIAIProvider:
    """An OpenAI-compatible provider for a vLLM server.

    Args:
        config: The server's address, model and key.
        client: An ``httpx.AsyncClient`` to use instead of a new one (left open by ``close``).

    Returns:
        An :class:`OpenAIAIProvider` posting to ``{config.base_url}/chat/completions``,
        with no ``Authorization`` header when ``config.api_key`` is None.

    Raises:
        ImportError: httpx is not installed.
    """
    api_key = config.api_key.get_secret_value() if config.api_key is not None else ""
    openai_config = OpenAIConfig(
        api_key=SecretStr(api_key),
        model=config.model,
        base_url=config.base_url,
        max_tokens=config.max_tokens,
        timeout=config.timeout,
        vision=config.vision,
    )
    return OpenAIAIProvider(openai_config, client=client)
