"""Folding Chat Completions stream chunks into deltas and a final :class:`AIResponse`.

With ``"stream": true`` the server sends ``data:`` lines, each a ``chat.completion.chunk`` whose
first choice has a ``delta`` (a piece of ``content``, or pieces of ``tool_calls`` addressed by
``index``: the id and name first, then the arguments' JSON in fragments) and, at the end, a
``finish_reason``; with ``stream_options.include_usage`` a last chunk with no choices carries the
usage; ``data: [DONE]`` ends the stream. A chunk with an ``error`` object fails it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.ai._usage import int_fields
from providers.ai.base import AIResponse, AIToolCall
from providers.openai._mapping import decode_arguments, response_metadata

__all__ = ["DONE", "StreamState"]

DONE = "[DONE]"


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamState:
    """What has been received so far; :meth:`apply` one chunk at a time."""

    texts: list[str] = field(default_factory=list)
    tools: dict[int, _ToolCallParts] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None

    def apply(self, chunk: dict[str, Any]) -> str | None:
        """Record one chunk; return the text it adds to the reply, if any.

        Raises:
            KeyError, TypeError: The chunk does not have the documented shape.
        """
        if not self.metadata:
            self.metadata = response_metadata(chunk)
        if chunk.get("usage"):
            self.usage = int_fields(chunk["usage"])
        choice = next((c for c in chunk.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            return None
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        for piece in delta.get("tool_calls") or []:
            parts = self.tools.setdefault(piece.get("index", 0), _ToolCallParts())
            parts.id = piece.get("id") or parts.id
            function = piece.get("function") or {}
            parts.name = function.get("name") or parts.name
            if function.get("arguments"):
                parts.arguments.append(function["arguments"])
        text = delta.get("content")
        if not text:
            return None
        self.texts.append(text)
        return str(text)

    def response(self) -> AIResponse:
        """The complete reply.

        Raises:
            ValueError: A tool call's arguments are not a JSON object.
        """
        calls = [
            AIToolCall(
                id=parts.id, name=parts.name, arguments=decode_arguments("".join(parts.arguments))
            )
            for _, parts in sorted(self.tools.items())
        ]
        return AIResponse(
            content="".join(self.texts),
            finish_reason=self.finish_reason,
            usage=dict(self.usage),
            metadata=dict(self.metadata),
            tool_calls=calls,
        )
