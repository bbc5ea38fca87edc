"""Folding the Messages API's streaming events into deltas and a final :class:`AIResponse`.

The stream (``"stream": true``) sends ``message_start`` (id, model, input usage), then per
content block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or, for tool use,
``input_json_delta`` pieces of the arguments' JSON) / ``content_block_stop``, then
``message_delta`` (stop reason, output usage) and ``message_stop``. ``ping`` and event types this
mapping does not know are ignored, as Anthropic asks of clients; an ``error`` event fails the
stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from providers._http import vendor_error_message
from providers.ai.base import AIResponse, AIToolCall
from providers.anthropic._mapping import response_metadata, usage_from
from providers.errors import ProviderError

__all__ = ["StreamState", "stream_error"]

# Error types of the Messages API worth retrying, with the HTTP status they stand for.
_RETRYABLE_ERRORS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429}


@dataclass
class _ToolBlock:
    id: str
    name: str
    json_parts: list[str] = field(default_factory=list)


@dataclass
class StreamState:
    """What has been received so far; :meth:`apply` one event's data at a time."""

    texts: list[str] = field(default_factory=list)
    tools: dict[int, _ToolBlock] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    done: bool = False

    def apply(self, data: dict[str, Any]) -> str | None:
        """Record one event; return the text it adds to the reply, if any.

        Raises:
            ValueError: The event does not have the documented shape.
        """
        kind = data.get("type")
        if kind == "message_start":
            message = data["message"]
            self.metadata.update(response_metadata(message))
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                self.tools[data["index"]] = _ToolBlock(id=block["id"], name=block["name"])
            elif block.get("type") == "text" and block.get("text"):
                return self._text(block["text"])
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                return self._text(delta.get("text", ""))
            if delta.get("type") == "input_json_delta":
                self.tools[data["index"]].json_parts.append(delta.get("partial_json", ""))
        elif kind == "message_delta":
            self.stop_reason = data.get("delta", {}).get("stop_reason") or self.stop_reason
            # Counts in message_delta are cumulative: they replace those of message_start.
            self.usage.update(data.get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        return None

    def _text(self, text: str) -> str | None:
        if not text:
            return None
        self.texts.append(text)
        return text

    def response(self) -> AIResponse:
        """The complete reply.

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
            content="".join(self.texts),
            finish_reason=self.stop_reason,
            usage=usage_from(self.usage),
            metadata=dict(self.metadata),
            tool_calls=calls,
        )


def stream_error(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = ()
) -> ProviderError:
    """The :class:`ProviderError` for an ``error`` event of the stream."""
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = _RETRYABLE_ERRORS.get(kind) if isinstance(kind, str) else None
    detail = vendor_error_message(data, secrets) or "unknown error"
    return ProviderError(
        f"stream error: {detail}",
        retryable=status is not None,
        provider=provider,
        status_code=status,
    )
