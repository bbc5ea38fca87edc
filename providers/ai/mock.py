"""An AI provider that answers from a fixed list and records what it was asked."""

from __future__ import annotations

import logging

from providers.ai.base import AIContext, AIProvider, AIResponse

__all__ = ["MockAIProvider"]

logger = logging.getLogger("roomkit.providers.ai.mock")

_DEFAULT_RESPONSES = ["Hello from AI"]


class MockAIProvider(AIProvider):
    """Replies with ``responses`` in round-robin order; no network.

    Args:
        responses: Reply texts, cycled through in order (one default reply when empty or None).
        vision: Value of :attr:`supports_vision`.

    Attributes:
        calls: Every :class:`AIContext` passed to :meth:`generate`, in order.
    """

    def __init__(self, responses: list[str] | None = None, *, vision: bool = False) -> None:
        # The caller's list itself, as 0.3.0 kept it: a test may add replies to it later.
        self.responses: list[str] = responses if responses else list(_DEFAULT_RESPONSES)
        self.calls: list[AIContext] = []
        self._vision = vision
        self._index = 0

    @property
    def model_name(self) -> str:
        """Always ``"mock"``."""
        return "mock"

    @property
    def supports_vision(self) -> bool:
        """Whether this mock claims vision support (the ``vision`` constructor argument)."""
        return self._vision

    async def generate(self, context: AIContext) -> AIResponse:
        """Record ``context`` and return the next reply of the round-robin.

        Args:
            context: The generation context.

        Returns:
            The next response, with fixed usage ``{prompt_tokens: 10, completion_tokens: 5}``.
        """
        self.calls.append(context)
        content = self.responses[self._index % len(self.responses)]
        self._index += 1
        logger.debug("mock AI reply %d: %r", self._index, content)
        return AIResponse(
            content=content,
            finish_reason="stop",
            usage={"prompt_tokens": 10, "completion_tokens": 5},
        )
