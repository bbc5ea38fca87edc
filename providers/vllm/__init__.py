"""vLLM: self-hosted models through vLLM's OpenAI-compatible server."""

from __future__ import annotations

from providers.vllm.config import VLLMConfig
from providers.vllm.provider import create_vllm_provider

__all__ = ["VLLMConfig", "create_vllm_provider"]
