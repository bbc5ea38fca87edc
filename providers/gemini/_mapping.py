"""AIContext → ``generateContent`` request, and its response → AIResponse.

Request: ``contents`` with roles ``user`` and ``model`` (the assistant), consecutive turns of
one role merged into one (Gemini expects turns to alternate); the system prompt and ``system``
messages go to ``systemInstruction``; images become ``inlineData`` (base64 from ``data:`` URLs)
or ``fileData`` (any other URL); assistant tool calls become ``functionCall`` parts and ``tool``
messages ``functionResponse`` parts in a ``user`` turn (a JSON-object result is sent as it is,
any other text as ``{"output": text}``); tools are ``functionDeclarations`` whose JSON Schema goes
in ``parametersJsonSchema`` (the ``parameters`` field takes only an OpenAPI subset and rejects
keys such as ``title`` that pydantic schemas carry); ``generationConfig`` holds
``temperature`` and ``maxOutputTokens``. Field names are the API's canonical camelCase.

Response: the first candidate's text parts joined (thought summaries left out), its
``functionCall`` parts as :class:`AIToolCall` (when Gemini sends no id, the function's name
is the id, as in 0.3.0), ``finishReason`` as Gemini names it (``STOP``, ``MAX_TOKENS``,
``SAFETY``, ...), and ``usageMetadata``; metadata ``model`` is the ``modelVersion``, else the
configured model (0.3.0 always gave the configured one). A prompt blocked before any candidate
gives an empty reply whose finish reason is the ``blockReason``. An ``error`` object, in a
stream chunk or in a 2xx answer as some gateways send it, is a
:class:`~providers.errors.ProviderError` (see :func:`response_error`).
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from providers._http import is_retryable_status
from providers.ai._data_url import parse_data_url
from providers.ai._error_answer import error_answer
from providers.ai._messages import (
    TOOL_NAME_KEY,
    iter_parts,
    message_text,
    tool_call_id,
    tool_calls,
)
from providers.ai._text import text_field
from providers.ai._usage import int_fields
from providers.ai.base import AIContext, AIImagePart, AIMessage, AIResponse, AITool, AIToolCall
from providers.errors import ProviderError

__all__ = [
    "build_request",
    "call_from_part",
    "parse_response",
    "response_error",
    "response_metadata",
    "retry_delay",
    "usage_from",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def build_request(context: AIContext, *, default_max_tokens: int) -> dict[str, Any]:
    """The JSON body for ``context`` (the same for ``generateContent`` and its stream); an
    image with a malformed ``data:`` URL is sent as a text placeholder (see
    :func:`~providers.ai._messages.iter_parts`).

    Raises:
        ValueError: A message breaks the tool-turn conventions.
    """
    system = [context.system_prompt] if context.system_prompt else []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in context.messages:
        if message.role == "system":
            if text := message_text(message):
                system.append(text)
        elif message.role == "tool":
            _append(contents, "user", [_function_response(message, call_names)])
        elif message.role == "assistant":
            calls = tool_calls(message)
            call_names.update((call.id, call.name) for call in calls)
            parts = _parts(message) + [
                {"functionCall": {"name": call.name, "args": call.arguments}} for call in calls
            ]
            _append(contents, "model", parts)
        else:
            _append(contents, "user", _parts(message))
    max_tokens = context.max_tokens if context.max_tokens > 0 else default_max_tokens
    body: dict[str, Any] = {
        "contents": contents,
        "generationConfig": {"temperature": context.temperature, "maxOutputTokens": max_tokens},
    }
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if context.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in context.tools]}]
    return body


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _parts(message: AIMessage) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in iter_parts(message):
        if isinstance(part, AIImagePart):
            parts.append(_image(part))
        elif part.text:
            parts.append({"text": part.text})
    return parts


def _image(part: AIImagePart) -> dict[str, Any]:
    inline = parse_data_url(part.url)
    if inline is not None:
        mime_type = inline.mime_type or part.mime_type or "image/png"
        return {"inlineData": {"mimeType": mime_type, "data": inline.data}}
    mime_type = part.mime_type or mimetypes.guess_type(urlsplit(part.url).path)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime_type, "fileUri": part.url}}


def _function_response(message: AIMessage, call_names: dict[str, str]) -> dict[str, Any]:
    name = message.metadata.get(TOOL_NAME_KEY)
    if not isinstance(name, str) or not name:
        call_id = tool_call_id(message)
        if call_id not in call_names:
            raise ValueError(f"tool message answers an unknown call {call_id!r}; set its name")
        name = call_names[call_id]
    text = message_text(message)
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    response = result if isinstance(result, dict) else {"output": text}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: AITool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name, "description": tool.description or ""}
    if tool.parameters:
        declaration["parametersJsonSchema"] = tool.parameters
    return declaration


def call_from_part(part: dict[str, Any]) -> AIToolCall:
    """The tool call of a ``functionCall`` part.

    Gemini's ``generateContent`` gives calls no id: the function's name is the id, as 0.3.0
    made it (applications keyed tool results on it); an id Gemini does send is kept.
    """
    call = part["functionCall"]
    name = call["name"]
    return AIToolCall(id=call.get("id") or name, name=name, arguments=call.get("args") or {})


def usage_from(raw: Any) -> dict[str, int]:
    """Gemini's usage counters plus ``prompt_tokens``/``completion_tokens``/``total_tokens``.

    ``completion_tokens`` includes thinking tokens, as OpenAI counts reasoning tokens.
    """
    if not isinstance(raw, dict):
        return {}
    usage = int_fields(raw)
    prompt = usage.get("promptTokenCount", 0)
    completion = usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
    usage.update(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=usage.get("totalTokenCount", prompt + completion),
    )
    return usage


def response_metadata(data: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The response's id and model version, when present; without a model version, ``model``
    (the configured one, 0.3.0's ``metadata["model"]``) when given."""
    names = {"responseId": "id", "modelVersion": "model"}
    metadata = {
        ours: data[theirs] for theirs, ours in names.items() if data.get(theirs) is not None
    }
    if model is not None:
        metadata.setdefault("model", model)
    return metadata


def response_error(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = (), stream: bool = False
) -> ProviderError:
    """The :class:`ProviderError` for the ``error`` object of a stream chunk (``stream``) or a
    2xx answer: the vendor's detail, its ``code`` as ``status_code`` (retryable for 408, 429,
    5xx, ...) and the ``RetryInfo`` delay as ``retry_after``."""
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and not isinstance(code, bool) else None
    return error_answer(
        data,
        provider=provider,
        secrets=secrets,
        stream=stream,
        status=status,
        retryable=status is not None and is_retryable_status(status),
        retry_after=retry_delay(data),
    )


def parse_response(
    data: dict[str, Any], *, provider: str, secrets: Iterable[str] = (), model: str | None = None
) -> AIResponse:
    """The :class:`AIResponse` for a ``generateContent`` answer.

    Args:
        data: The decoded answer.
        provider: Provider name for the error of an error answer.
        secrets: Values masked in that error's message.
        model: The configured model, ``metadata["model"]`` when the answer has no
            ``modelVersion``.

    Raises:
        ProviderError: The answer carries an ``error`` object (see :func:`response_error`).
        KeyError, TypeError, ValueError: The answer does not have the documented shape.
    """
    if data.get("error"):
        raise response_error(data, provider=provider, secrets=secrets)
    metadata = response_metadata(data, model)
    candidates = data.get("candidates") or []
    if not candidates:
        block_reason = text_field(
            (data.get("promptFeedback") or {}).get("blockReason"), "blockReason"
        )
        if block_reason:
            metadata["block_reason"] = block_reason
        return AIResponse(
            content="",
            finish_reason=block_reason or None,
            usage=usage_from(data.get("usageMetadata")),
            metadata=metadata,
        )
    candidate = candidates[0]
    texts: list[str] = []
    calls: list[AIToolCall] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            calls.append(call_from_part(part))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    return AIResponse(
        content="".join(texts),
        finish_reason=text_field(candidate.get("finishReason"), "finishReason") or None,
        usage=usage_from(data.get("usageMetadata")),
        metadata=metadata,
        tool_calls=calls,
    )


def retry_delay(body: Any) -> float | None:
    """The ``retryDelay`` of a ``google.rpc.RetryInfo`` detail of an error body, in seconds.

    Gemini says how long to wait after a 429 there rather than in a ``retry-after`` header.
    """
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if (
            isinstance(detail, dict)
            and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo")
            and isinstance(detail.get("retryDelay"), str)
            and (match := _DURATION.match(detail["retryDelay"]))
        ):
            return float(match.group(1))
    return None
