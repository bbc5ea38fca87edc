"""What the vendor providers' ``generate_stream`` yields.

``generate_stream(context)`` is an async iterator of :data:`AIStreamEvent`:

- zero or more :class:`AITextDelta`, each a non-empty piece of the reply's text, in order;
- then exactly one :class:`AIStreamEnd`, last, with the complete :class:`AIResponse`
  (``content`` equal to the deltas joined, plus tool calls, usage and finish reason).

Every delta is valid UTF-8 on its own: a character whose UTF-16 halves the vendor sent in two
events comes whole in one delta, and a lone half becomes U+FFFD (see :mod:`providers.ai._text`).

A failure, before or during the stream, raises :class:`~providers.errors.ProviderError` from the
iteration; a stream the vendor cut short raises it too (retryable) instead of ending quietly.
Leaving the loop early is fine, but close the iterator (``contextlib.aclosing``) so the HTTP
response is released at once::

    async with aclosing(provider.generate_stream(context)) as stream:
        async for event in stream:
            if isinstance(event, AITextDelta):
                await websocket.send(event.text)
            else:
                response = event.response
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from providers.ai.base import AIResponse

__all__ = ["AIStreamEnd", "AIStreamEvent", "AITextDelta"]


class AITextDelta(BaseModel):
    """A piece of the reply's text, as the model produced it."""

    model_config = ConfigDict(frozen=True)

    type: Literal["text_delta"] = "text_delta"
    text: str


class AIStreamEnd(BaseModel):
    """The end of a stream: the whole reply."""

    model_config = ConfigDict(frozen=True)

    type: Literal["end"] = "end"
    response: AIResponse


AIStreamEvent: TypeAlias = AITextDelta | AIStreamEnd
"""One item of ``generate_stream``: a text delta, or the final response."""
