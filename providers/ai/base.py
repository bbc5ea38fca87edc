"""The AI provider contract and the models exchanged with it.

An :class:`AIProvider` turns an :class:`AIContext` (conversation so far, system prompt, sampling
settings, tools, what the reply's target channel can render) into an :class:`AIResponse`. The
``AIChannel`` builds the context from the room; vendor providers translate it to their API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.errors import ProviderError
from roomkit.models.channel import ChannelCapabilities
from roomkit.models.context import RoomContext
from roomkit.models.enums import ChannelMediaType
from roomkit.models.task import Observation, Task

__all__ = [
    "AIContext",
    "AIImagePart",
    "AIMessage",
    "AIProvider",
    "AIResponse",
    "AITextPart",
    "AITool",
    "AIToolCall",
    "ProviderError",
]


class AITextPart(BaseModel):
    """A text part of a multimodal message."""

    type: Literal["text"] = "text"
    text: str


class AIImagePart(BaseModel):
    """An image part of a multimodal message, given by URL (``http(s)://`` or ``data:``)."""

    type: Literal["image"] = "image"
    url: str
    mime_type: str | None = None


# Told apart by their fields, as 0.3.0 did: a part written without its "type" (``{"text":
# ...}``, ``{"url": ...}``) is still read.
AIContentPart = AITextPart | AIImagePart


class AITool(BaseModel):
    """A function the model may call.

    ``parameters`` is a JSON Schema object describing the arguments.
    """

    name: str
    description: str = ""  # 0.3.0 required it; "" when a tool dict gives none
    parameters: dict[str, Any] = Field(default_factory=dict)


class AIToolCall(BaseModel):
    """A call of an :class:`AITool` requested by the model."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class AIMessage(BaseModel):
    """One message of the conversation shown to the model.

    ``content`` is plain text, or a list of parts for providers that support vision.
    ``role`` is ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``, which every provider
    maps; any other (OpenAI's ``"developer"``, say) is passed on as it is, as in 0.3.0.
    """

    role: str
    content: str | list[AIContentPart]
    metadata: dict[str, Any] = Field(default_factory=dict)


class AIContext(BaseModel):
    """Everything a provider needs to generate one reply."""

    # As 0.3.0's: a subclass may add fields of any type.
    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[AIMessage] = Field(default_factory=list)
    system_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    tools: list[AITool] = Field(default_factory=list)
    room: RoomContext | None = None
    target_capabilities: ChannelCapabilities | None = None
    target_media_types: list[ChannelMediaType] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AIResponse(BaseModel):
    """A generated reply.

    ``usage`` carries token counts (``prompt_tokens``, ``completion_tokens``, ...).
    """

    content: str
    finish_reason: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tasks: list[Task] = Field(default_factory=list)
    observations: list[Observation] = Field(default_factory=list)
    tool_calls: list[AIToolCall] = Field(default_factory=list)


class AIProvider(ABC):
    """A language model that generates replies.

    Implementations translate vendor failures into :class:`ProviderError` (``retryable`` set for
    rate limits and transient server errors) and never let foreign exceptions escape.
    """

    @property
    def name(self) -> str:
        """Provider name, for logs and error reports (the class name by default)."""
        return type(self).__name__

    @property
    def supports_vision(self) -> bool:
        """Whether messages may carry :class:`AIImagePart` parts."""
        return False

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model identifier used for generation."""

    @abstractmethod
    async def generate(self, context: AIContext) -> AIResponse:
        """Generate one reply for ``context``.

        Args:
            context: The conversation and generation settings.

        Returns:
            The model's reply.

        Raises:
            ProviderError: The vendor call failed.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, intentionally empty
        """Release clients and connections (nothing to release by default)."""
