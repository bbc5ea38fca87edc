"""Folding the Messages API's streaming events into deltas and a final :class:`AIResponse`.

The stream (``"stream": true``) sends ``message_start`` (id, model, input usage), then per
content block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or, for tool use,
``input_json_delta`` pieces of the arguments' JSON) / ``content_block_stop``, then
``message_delta`` (stop reason, output usage) and ``message_stop``. ``ping`` and event types this
mapping does not know are ignored, as Anthropic asks of clients; an ``error`` event fails the
stream (see :func:`~providers.anthropic._mapping.response_error`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from providers.ai._text import StreamedText, text_field
from providers.ai.base import AIResponse, AIToolCall
from providers.anthropic._mapping import response_metadata, usage_from

__all__ = ["StreamState"]


@dataclass
class _ToolBlock:
    id: str
    name: str
    json_parts: list[str] = field(default_factory=list)


@dataclass
class StreamState:
    """What has been received so far; :meth:`apply` one event's data at a time."""

    text: StreamedText = field(default_factory=StreamedText)
    tools: dict[int, _ToolBlock] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    done: bool = False

    def apply(self, data: dict[str, Any]) -> str | None:
        """Record one event; return the text it adds to the reply, if any.

        Raises:
            KeyError, TypeError, ValueError, AttributeError: The event does not have the
                documented shape (a field of the wrong type included).
        """
        kind = data.get("type")
        if kind == "message_start":
            message = data["message"]
            self.metadata.update(response_metadata(message))
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                self.tools[_index(data)] = _ToolBlock(
                    id=_required_str(block.get("id"), "tool_use id"),
                    name=_required_str(block.get("name"), "tool_use name"),
                )
            elif block.get("type") == "text":
                return self._text(text_field(block.get("text"), "text"))
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                return self._text(text_field(delta.get("text"), "text_delta"))
            if delta.get("type") == "input_json_delta":
                piece = text_field(delta.get("partial_json"), "partial_json")
                self.tools[_index(data)].json_parts.append(piece)
        elif kind == "message_delta":
            stop_reason = data.get("delta", {}).get("stop_reason")
            if stop_reason is not None:
                self.stop_reason = _required_str(stop_reason, "stop_reason")
            # Counts in message_delta are cumulative: they replace those of message_start.
            self.usage.update(data.get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        return None

    def _text(self, piece: str) -> str | None:
        return self.text.add(piece) or None

    def response(self) -> AIResponse:
        """The complete reply (call :meth:`StreamedText.flush` on :attr:`text` first).

        Raises:
            ValueError: A tool call's streamed arguments are not a JSON object.
        """
        calls = []
        for index in sorted(self.tools):
            block = self.tools[index]
            raw = "".join(block.json_parts)
            arguments = json.loads(raw) if raw else {}
            if not isinstance(arguments, dict):
                raise ValueError("tool_use input is not a JSON object")
            calls.append(AIToolCall(id=block.id, name=block.name, arguments=arguments))
        return AIResponse(
            content=self.text.text,
            finish_reason=self.stop_reason,
            usage=usage_from(self.usage),
            metadata=dict(self.metadata),
            tool_calls=calls,
        )


def _index(data: dict[str, Any]) -> int:
    index = data["index"]
    # bool is an int to Python, not to JSON; a "0" would sort apart from 0.
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError("content block index is not an integer")
    return index


def _required_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value
