"""AIContext → Messages API request, and Messages API response → AIResponse.

Request (``POST /v1/messages``): the system prompt and any ``system`` messages go to the
top-level ``system`` field (the API has no system role); ``tool`` messages become ``user`` turns
of ``tool_result`` blocks; images become ``image`` blocks with a ``url`` source, or a ``base64``
source for ``data:`` URLs; tools carry their JSON Schema as ``input_schema``.

Response: text blocks are joined (they are consecutive pieces of one reply), ``tool_use`` blocks
become :class:`AIToolCall`, ``stop_reason`` is the finish reason as Anthropic names it
(``end_turn``, ``max_tokens``, ``tool_use``, ...). An error object (``{"type": "error", "error":
{...}}``), in a stream event or in a 2xx answer as some gateways send it, is a
:class:`~providers.errors.ProviderError`, retryable when overloaded or rate limited.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers.ai._data_url import parse_data_url
from providers.ai._error_answer import error_answer
from providers.ai._messages import iter_parts, message_text, tool_call_id, tool_calls
from providers.ai._text import text_field
from providers.ai._usage import int_fields
from providers.ai.base import AIContext, AIImagePart, AIMessage, AIResponse, AITool, AIToolCall
from providers.errors import ProviderError

__all__ = [
    "build_request",
    "is_error",
    "parse_response",
    "response_error",
    "response_metadata",
    "usage_from",
]

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
# Error types of the Messages API worth retrying, with the HTTP status they stand for.
_RETRYABLE_ERRORS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429}


def build_request(
    context: AIContext, *, model: str, default_max_tokens: int, stream: bool = False
) -> dict[str, Any]:
    """The JSON body for ``context`` (an image with a malformed ``data:`` URL is sent as a
    text placeholder, see :func:`~providers.ai._messages.iter_parts`).

    Raises:
        ValueError: A message breaks the tool-turn conventions.
    """
    system = [context.system_prompt] if context.system_prompt else []
    messages: list[dict[str, Any]] = []
    for message in context.messages:
        if message.role == "system":
            if text := message_text(message):
                system.append(text)
        elif message.role == "tool":
            _append_tool_result(messages, message)
        else:
            messages.append({"role": message.role, "content": _content(message)})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": context.max_tokens if context.max_tokens > 0 else default_max_tokens,
        "messages": messages,
        "temperature": context.temperature,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if context.tools:
        body["tools"] = [_tool(tool) for tool in context.tools]
    if stream:
        body["stream"] = True
    return body


def _content(message: AIMessage) -> str | list[dict[str, Any]]:
    calls = tool_calls(message) if message.role == "assistant" else []
    if isinstance(message.content, str) and not calls:
        return message.content
    blocks: list[dict[str, Any]] = []
    for part in iter_parts(message):
        if isinstance(part, AIImagePart):
            blocks.append(_image_block(part))
        elif part.text:  # the API rejects empty text blocks
            blocks.append({"type": "text", "text": part.text})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in calls
    )
    return blocks


def _image_block(part: AIImagePart) -> dict[str, Any]:
    inline = parse_data_url(part.url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    media_type = inline.mime_type or part.mime_type or "image/png"
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": inline.data},
    }


def _append_tool_result(messages: list[dict[str, Any]], message: AIMessage) -> None:
    block = {
        "type": "tool_result",
        "tool_use_id": tool_call_id(message),
        "content": message_text(message),
    }
    # All results for one assistant turn must come in the next user turn: group them.
    last = messages[-1] if messages else None
    if (
        last is not None
        and last["role"] == "user"
        and isinstance(last["content"], list)
        and all(item.get("type") == "tool_result" for item in last["content"])
    ):
        last["content"].append(block)
    else:
        messages.append({"role": "user", "content": [block]})


def _tool(tool: AITool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or _EMPTY_SCHEMA}
    if tool.description:
        spec["description"] = tool.description
    return spec


def usage_from(raw: Any) -> dict[str, int]:
    """Anthropic's usage counters plus ``prompt_tokens``/``completion_tokens``/``total_tokens``.

    ``prompt_tokens`` counts every input token, cached ones included (Anthropic reports cache
    reads and writes apart from ``input_tokens``), to match what other vendors call a prompt.
    """
    usage = int_fields(raw)
    if "input_tokens" in usage or "output_tokens" in usage:
        prompt = (
            usage.get("input_tokens", 0)
            + usage.get("cache_creation_input_tokens", 0)
            + usage.get("cache_read_input_tokens", 0)
        )
        completion = usage.get("output_tokens", 0)
        usage.update(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
    return usage


def parse_response(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = ()
) -> AIResponse:
    """The :class:`AIResponse` for a Messages API answer.

    Args:
        data: The decoded answer.
        provider: Provider name for the error of an error answer.
        secrets: Values masked in that error's message.

    Raises:
        ProviderError: The answer is an error object (see :func:`response_error`).
        ValueError, KeyError, TypeError: The answer does not have the documented shape.
    """
    if is_error(data):
        raise response_error(data, provider=provider, secrets=secrets)
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise ValueError("response has no content list")
    texts: list[str] = []
    calls: list[AIToolCall] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise ValueError("content block is not an object")
        if block.get("type") == "text":
            texts.append(text_field(block.get("text"), "text"))
        elif block.get("type") == "tool_use":
            calls.append(
                AIToolCall(id=block["id"], name=block["name"], arguments=block.get("input") or {})
            )
    return AIResponse(
        content="".join(texts),
        finish_reason=data.get("stop_reason"),
        usage=usage_from(data.get("usage")),
        metadata=response_metadata(data),
        tool_calls=calls,
    )


def response_metadata(message: dict[str, Any]) -> dict[str, Any]:
    """The message's ``id`` and ``model``, when present."""
    return {key: message[key] for key in ("id", "model") if message.get(key) is not None}


def is_error(data: dict[str, Any]) -> bool:
    """Whether an answer or stream event is an error object rather than a message."""
    return data.get("type") == "error" or ("type" not in data and bool(data.get("error")))


def response_error(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = (), stream: bool = False
) -> ProviderError:
    """The :class:`ProviderError` for an error object, in a stream (``stream``) or a 2xx
    answer: the vendor's detail, retryable (with the status it stands for) when overloaded or
    rate limited."""
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = _RETRYABLE_ERRORS.get(kind) if isinstance(kind, str) else None
    return error_answer(
        data,
        provider=provider,
        secrets=secrets,
        stream=stream,
        status=status,
        retryable=status is not None,
    )
