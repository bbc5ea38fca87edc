"""``ShapedProvider``: an AI provider shaped like ``AIProvider`` (a ``generate`` coroutine and a
``model_name``) without deriving from it, which ``AIChannel`` takes as 0.3.0 did.

The channel also reads ``name`` and ``supports_vision`` and closes the provider: such a
provider may lack them, and each then failed (the channel's ``info``, attaching it to a room,
closing the kit). Here each is the provider's own where it has one, else ``AIProvider``'s
default (its class name, no vision, nothing to close).
"""

from __future__ import annotations

import inspect
from typing import Any

from providers.ai.base import AIContext, AIProvider, AIResponse

__all__ = ["ShapedProvider", "as_ai_provider"]


class ShapedProvider(AIProvider):
    """``shaped`` as an ``AIProvider``; see the module docstring."""

    def __init__(self, shaped: Any) -> None:
        self.shaped = shaped

    @property
    def name(self) -> str:
        name = getattr(self.shaped, "name", None)
        return name if isinstance(name, str) else type(self.shaped).__name__

    @property
    def supports_vision(self) -> bool:
        return bool(getattr(self.shaped, "supports_vision", False))

    @property
    def model_name(self) -> str:
        return str(self.shaped.model_name)

    async def generate(self, context: AIContext) -> AIResponse:
        response: AIResponse = await self.shaped.generate(context)
        return response

    async def close(self) -> None:
        close = getattr(self.shaped, "close", None)
        if close is not None:
            closed = close()
            if inspect.isawaitable(closed):  # a plain function has closed it already
                await closed

    def __repr__(self) -> str:
        return f"ShapedProvider({self.shaped!r})"


def as_ai_provider(provider: object) -> AIProvider:
    """``provider`` itself if it is an ``AIProvider``, else a ``ShapedProvider`` around it.

    Raises:
        TypeError: it has no ``generate`` method or no ``model_name``.
    """
    if isinstance(provider, AIProvider):
        return provider
    if not callable(getattr(provider, "generate", None)) or not hasattr(provider, "model_name"):
        raise TypeError(
            f"provider must be an AIProvider (generate() and model_name), got "
            f"{type(provider).__name__}"
        )
    return ShapedProvider(provider)
