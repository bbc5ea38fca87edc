"""Reading :class:`AIMessage` the same way in every vendor mapping.

:class:`AIMessage` has no fields for tool turns, so the vendor providers agree on metadata keys:

- an ``assistant`` message that called tools lists them in ``metadata["tool_calls"]``
  (:class:`AIToolCall` objects or dicts with their fields: ``id``, ``name``, ``arguments``);
- a ``tool`` message answers one call: ``metadata["tool_call_id"]`` is the call's id, and
  ``metadata["name"]`` the tool's name (optional: looked up from the earlier call when absent);
  its content is the tool's result as text.

Functions here raise ``ValueError`` for a message that breaks these rules; the providers turn it
into a non-retryable :class:`~providers.errors.ProviderError`.

An image whose ``data:`` URL is malformed is different: the AI channel sends a room's recent
history with every call, so refusing the request for it would silence the AI in that room until
the image leaves the window. :func:`iter_parts` replaces such an image by the text
:data:`UNREADABLE_IMAGE` (with a warning) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from providers.ai._data_url import parse_data_url
from providers.ai.base import AIImagePart, AIMessage, AITextPart, AIToolCall

__all__ = [
    "TOOL_CALLS_KEY",
    "TOOL_CALL_ID_KEY",
    "TOOL_NAME_KEY",
    "UNREADABLE_IMAGE",
    "iter_parts",
    "message_text",
    "tool_call_id",
    "tool_calls",
]

TOOL_CALLS_KEY = "tool_calls"
TOOL_CALL_ID_KEY = "tool_call_id"
TOOL_NAME_KEY = "name"
UNREADABLE_IMAGE = "[Image: unreadable data URL]"

logger = logging.getLogger("roomkit.providers.ai")


def iter_parts(message: AIMessage) -> Iterator[AITextPart | AIImagePart]:
    """The message's parts; a plain-string content is one text part (none if empty).

    An image part with a malformed ``data:`` URL comes out as the text part
    :data:`UNREADABLE_IMAGE`, so the vendor mappings only meet images they can send.
    """
    if isinstance(message.content, str):
        if message.content:
            yield AITextPart(text=message.content)
        return
    for part in message.content:
        if isinstance(part, AIImagePart):
            try:
                parse_data_url(part.url)
            except ValueError as exc:
                # The URL itself is not logged: it may be megabytes of a user's picture.
                logger.warning("%s image sent as a placeholder: %s", message.role, exc)
                yield AITextPart(text=UNREADABLE_IMAGE)
                continue
        yield part


def message_text(message: AIMessage) -> str:
    """The message's text: the string content, or its text parts joined with newlines."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text for part in message.content if isinstance(part, AITextPart))


def tool_calls(message: AIMessage) -> list[AIToolCall]:
    """The tool calls recorded on an assistant message (empty when none).

    Raises:
        ValueError: ``metadata["tool_calls"]`` is not a list of tool calls.
    """
    raw = message.metadata.get(TOOL_CALLS_KEY)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"metadata[{TOOL_CALLS_KEY!r}] must be a list of tool calls")
    return [
        call if isinstance(call, AIToolCall) else AIToolCall.model_validate(call) for call in raw
    ]


def tool_call_id(message: AIMessage) -> str:
    """The id of the call a ``tool`` message answers.

    Raises:
        ValueError: The message has no ``metadata["tool_call_id"]`` string.
    """
    value = message.metadata.get(TOOL_CALL_ID_KEY)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a tool message needs metadata[{TOOL_CALL_ID_KEY!r}]")
    return value
