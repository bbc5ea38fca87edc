"""Folding Chat Completions stream chunks into deltas and a final :class:`AIResponse`.

With ``"stream": true`` the server sends ``data:`` lines, each a ``chat.completion.chunk`` whose
first choice has a ``delta`` (a piece of ``content``, or pieces of ``tool_calls`` addressed by
``index``: the id and name first, then the arguments' JSON in fragments, or the whole arguments
object as some compatible servers send it) and, at the end, a ``finish_reason``; with
``stream_options.include_usage`` a last chunk with no choices carries the usage;
``data: [DONE]`` ends the stream. A chunk with an ``error`` object fails it (see
:func:`~providers.openai._mapping.response_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.ai._text import StreamedText, text_field
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
    # Set when a server sends the arguments as an object rather than JSON text.
    object_arguments: dict[str, Any] | None = None

    def add_arguments(self, raw: Any) -> None:
        if isinstance(raw, dict):
            if self.arguments or self.object_arguments is not None:
                raise ValueError("tool call arguments sent both as text and as an object")
            self.object_arguments = raw
        elif piece := text_field(raw, "tool call arguments"):
            if self.object_arguments is not None:
                raise ValueError("tool call arguments sent both as text and as an object")
            self.arguments.append(piece)

    def arguments_object(self) -> dict[str, Any]:
        if self.object_arguments is not None:
            return self.object_arguments
        return decode_arguments("".join(self.arguments))


@dataclass
class StreamState:
    """What has been received so far; :meth:`apply` one chunk at a time."""

    text: StreamedText = field(default_factory=StreamedText)
    tools: dict[int, _ToolCallParts] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None

    def apply(self, chunk: dict[str, Any]) -> str | None:
        """Record one chunk; return the text it adds to the reply, if any.

        Raises:
            KeyError, TypeError, ValueError, AttributeError: The chunk does not have the
                documented shape (a field of the wrong type included).
        """
        if not self.metadata:
            self.metadata = response_metadata(chunk)
        if chunk.get("usage"):
            self.usage = int_fields(chunk["usage"])
        choice = next((c for c in chunk.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            return None
        if finish_reason := text_field(choice.get("finish_reason"), "finish_reason"):
            self.finish_reason = finish_reason
        delta = choice.get("delta") or {}
        for piece in delta.get("tool_calls") or []:
            parts = self.tools.setdefault(_index(piece), _ToolCallParts())
            parts.id = text_field(piece.get("id"), "tool call id") or parts.id
            function = piece.get("function") or {}
            parts.name = text_field(function.get("name"), "tool call name") or parts.name
            parts.add_arguments(function.get("arguments"))
        return self.text.add(text_field(delta.get("content"), "content")) or None

    def response(self) -> AIResponse:
        """The complete reply (call :meth:`StreamedText.flush` on :attr:`text` first).

        Raises:
            ValueError: A tool call's arguments are not a JSON object.
        """
        calls = [
            AIToolCall(id=parts.id, name=parts.name, arguments=parts.arguments_object())
            for _, parts in sorted(self.tools.items())
        ]
        return AIResponse(
            content=self.text.text,
            finish_reason=self.finish_reason,
            usage=dict(self.usage),
            metadata=dict(self.metadata),
            tool_calls=calls,
        )


def _index(piece: dict[str, Any]) -> int:
    index = piece.get("index")
    if index is None:  # servers that send one call per response leave it out
        return 0
    # bool is an int to Python, not to JSON; a "0" would sort apart from 0.
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError("tool call index is not an integer")
    return index
