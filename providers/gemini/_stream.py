"""Folding ``streamGenerateContent?alt=sse`` chunks into deltas and a final :class:`AIResponse`.

Each event's data is a whole ``GenerateContentResponse`` holding the next piece of the first
candidate: text parts (deltas), complete ``functionCall`` parts, and on the last chunk the
``finishReason`` and the final ``usageMetadata``. The stream has no end marker: the HTTP body
ends. A chunk with an ``error`` object fails the stream (see
:func:`~providers.gemini._mapping.response_error`); a prompt blocked before any candidate ends it
with the ``blockReason``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.ai._text import StreamedText, text_field
from providers.ai.base import AIResponse, AIToolCall
from providers.gemini._mapping import call_from_part, response_metadata, usage_from

__all__ = ["StreamState"]


@dataclass
class StreamState:
    """What has been received so far; :meth:`apply` one chunk at a time."""

    text: StreamedText = field(default_factory=StreamedText)
    calls: list[AIToolCall] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None
    """The configured model: ``metadata["model"]`` when no chunk gives a ``modelVersion``."""

    @property
    def finished(self) -> bool:
        """Whether a chunk said why generation stopped (the sign of a complete stream)."""
        return self.finish_reason is not None

    def apply(self, chunk: dict[str, Any]) -> str | None:
        """Record one chunk; return the text it adds to the reply, if any.

        Raises:
            KeyError, TypeError, ValueError, AttributeError: The chunk does not have the
                documented shape (a field of the wrong type included).
        """
        self.metadata.update(response_metadata(chunk))
        if chunk.get("usageMetadata"):
            # Each chunk's counts are totals so far: keep the latest.
            self.usage = usage_from(chunk["usageMetadata"])
        candidates = chunk.get("candidates") or []
        if not candidates:
            feedback = chunk.get("promptFeedback") or {}
            if block_reason := text_field(feedback.get("blockReason"), "blockReason"):
                self.metadata["block_reason"] = block_reason
                self.finish_reason = block_reason
            return None
        candidate = candidates[0]
        texts: list[str] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                self.calls.append(call_from_part(part))
            elif isinstance(part.get("text"), str) and part["text"] and not part.get("thought"):
                texts.append(part["text"])
        if finish_reason := text_field(candidate.get("finishReason"), "finishReason"):
            self.finish_reason = finish_reason
        return self.text.add("".join(texts)) or None

    def response(self) -> AIResponse:
        """The complete reply (call :meth:`StreamedText.flush` on :attr:`text` first)."""
        metadata = dict(self.metadata)
        if self.model is not None:
            metadata.setdefault("model", self.model)
        return AIResponse(
            content=self.text.text,
            finish_reason=self.finish_reason,
            usage=dict(self.usage),
            metadata=metadata,
            tool_calls=list(self.calls),
        )
