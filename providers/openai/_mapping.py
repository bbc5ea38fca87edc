"""AIContext → Chat Completions request, and Chat Completions response → AIResponse.

Request (``POST {base_url}/chat/completions``): the system prompt is the first ``system``
message; user images become ``image_url`` parts (``data:`` URLs are accepted as they are);
assistant turns carry their tool calls as ``tool_calls`` with JSON-encoded arguments (and text
only: the API takes no images from the assistant); ``tool`` messages answer a call by
``tool_call_id``; tools are ``function`` tools. Reasoning models (``o1``, ``o3``, ``o4``,
``gpt-5``) get ``max_completion_tokens`` and no ``temperature``, which they reject; other models
get ``max_tokens``, which every OpenAI-compatible server understands.

Response: the first choice's text, its tool calls with the arguments decoded from JSON, its
``finish_reason`` (``stop``, ``length``, ``tool_calls``, ...), and the integer usage counters.
An ``error`` object, in a stream chunk or in a 2xx answer as some gateways send it, is a
:class:`~providers.errors.ProviderError` (see :func:`response_error`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from providers._http import is_retryable_status
from providers.ai._error_answer import error_answer
from providers.ai._messages import iter_parts, message_text, tool_call_id, tool_calls
from providers.ai._text import text_field
from providers.ai._usage import int_fields
from providers.ai.base import AIContext, AIImagePart, AIMessage, AIResponse, AITool, AIToolCall
from providers.errors import ProviderError

__all__ = [
    "build_request",
    "decode_arguments",
    "is_reasoning_model",
    "parse_response",
    "response_error",
    "response_metadata",
]

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` is a reasoning model (fixed temperature, ``max_completion_tokens``)."""
    return model.startswith(_REASONING_PREFIXES)


def build_request(
    context: AIContext, *, model: str, default_max_tokens: int, stream: bool = False
) -> dict[str, Any]:
    """The JSON body for ``context``.

    Raises:
        ValueError: A message breaks the tool-turn conventions, or tool arguments cannot be
            encoded as JSON.
    """
    messages: list[dict[str, Any]] = []
    if context.system_prompt:
        messages.append({"role": "system", "content": context.system_prompt})
    messages.extend(_message(message) for message in context.messages)
    max_tokens = context.max_tokens if context.max_tokens > 0 else default_max_tokens
    body: dict[str, Any] = {"model": model, "messages": messages}
    # No positive limit from the context or the config: send none, the server applies its own
    # (the field is optional; 0 would be refused).
    limit_key = "max_completion_tokens" if is_reasoning_model(model) else "max_tokens"
    if max_tokens > 0:
        body[limit_key] = max_tokens
    if not is_reasoning_model(model):
        body["temperature"] = context.temperature
    if context.tools:
        body["tools"] = [_tool(tool) for tool in context.tools]
    if stream:
        body["stream"] = True
        # Without this the stream carries no token counts.
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: AIMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": tool_call_id(message),
            "content": message_text(message),
        }
    if message.role == "assistant":
        calls = tool_calls(message)
        text = message_text(message)
        if not calls:
            return {"role": "assistant", "content": text}
        return {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [_tool_call(call) for call in calls],
        }
    if message.role == "system" or isinstance(message.content, str):
        return {"role": message.role, "content": message_text(message)}
    parts: list[dict[str, Any]] = []
    for part in iter_parts(message):
        if isinstance(part, AIImagePart):
            parts.append({"type": "image_url", "image_url": {"url": part.url}})
        else:
            parts.append({"type": "text", "text": part.text})
    return {"role": message.role, "content": parts}


def _tool_call(call: AIToolCall) -> dict[str, Any]:
    try:
        arguments = json.dumps(call.arguments, ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"arguments of tool call {call.id!r} are not JSON") from exc
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _tool(tool: AITool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters or _EMPTY_SCHEMA}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def decode_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict (the API sends them as a JSON string).

    Raises:
        ValueError: They are not a JSON object.
    """
    if isinstance(raw, dict):  # some compatible servers send the object itself
        return raw
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise ValueError("tool call arguments are not a JSON string")
    arguments = json.loads(raw)
    if not isinstance(arguments, dict):
        raise ValueError("tool call arguments are not a JSON object")
    return arguments


def response_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The completion's ``id``, ``model`` and ``system_fingerprint``, when present."""
    keys = ("id", "model", "system_fingerprint")
    return {key: data[key] for key in keys if data.get(key) is not None}


def response_error(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = (), stream: bool = False
) -> ProviderError:
    """The :class:`ProviderError` for the ``error`` object of a stream chunk (``stream``) or a
    2xx answer: the vendor's detail; retryable for a ``server_error``, or for a retryable HTTP
    status in ``code`` (gateways such as OpenRouter put one there), kept as ``status_code``.
    """
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 100 <= code <= 599 else None
    return error_answer(
        data,
        provider=provider,
        secrets=secrets,
        stream=stream,
        status=status,
        retryable=kind == "server_error" or (status is not None and is_retryable_status(status)),
    )


def parse_response(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = ()
) -> AIResponse:
    """The :class:`AIResponse` for a chat completion.

    Args:
        data: The decoded answer.
        provider: Provider name for the error of an error answer.
        secrets: Values masked in that error's message.

    Raises:
        ProviderError: The answer carries an ``error`` object (see :func:`response_error`).
        ValueError: No choices, or tool-call arguments that are not a JSON object.
        KeyError, TypeError: The answer does not have the documented shape.
    """
    if data.get("error"):
        raise response_error(data, provider=provider, secrets=secrets)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("response has no choices")
    choice = choices[0]
    message = choice["message"]
    calls = [
        AIToolCall(
            id=call["id"],
            name=call["function"]["name"],
            arguments=decode_arguments(call["function"].get("arguments")),
        )
        for call in message.get("tool_calls") or []
        if call.get("type", "function") == "function"
    ]
    metadata = response_metadata(data)
    if message.get("refusal"):
        metadata["refusal"] = message["refusal"]
    return AIResponse(
        content=text_field(message.get("content"), "content"),
        finish_reason=choice.get("finish_reason"),
        usage=int_fields(data.get("usage")),
        metadata=metadata,
        tool_calls=calls,
    )
