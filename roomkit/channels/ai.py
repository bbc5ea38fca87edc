"""A channel that answers room messages with an AI provider."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from providers.ai.base import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AITextPart,
    AITool,
)
from providers.errors import ProviderError
from roomkit.channels.base import Channel
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import (
    ChannelCategory,
    ChannelMediaType,
    ChannelType,
    EventStatus,
    EventType,
)
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventContent,
    EventSource,
    MediaContent,
    RichContent,
    RoomEvent,
    TextContent,
)

__all__ = ["AIChannel"]

logger = logging.getLogger("roomkit.channels.ai")

_Parts = list[AITextPart | AIImagePart]


def _content_text(content: EventContent) -> str:
    """The text of ``content`` as a text-only model should read it (``""`` when none)."""
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, RichContent):
        return content.plain_text or content.body
    if isinstance(content, MediaContent):
        return content.caption or ""
    if isinstance(content, AudioContent):
        return content.transcript or ""
    if isinstance(content, CompositeContent):
        return "\n".join(text for part in content.parts if (text := _content_text(part)))
    return ""


def _content_parts(content: EventContent) -> _Parts:
    """``content`` as multimodal parts: text, and an image part per image attachment."""
    if isinstance(content, MediaContent) and content.mime_type.startswith("image/"):
        parts: _Parts = [AITextPart(text=content.caption)] if content.caption else []
        parts.append(AIImagePart(url=content.url, mime_type=content.mime_type))
        return parts
    if isinstance(content, CompositeContent):
        return [part for sub in content.parts for part in _content_parts(sub)]
    text = _content_text(content)
    return [AITextPart(text=text)] if text else []


class AIChannel(Channel):
    """An intelligence channel: each event of the room gets a reply from ``provider``.

    The reply re-enters the room as a new event from this channel (``chain_depth`` one more
    than the event it answers). Per room, the binding's metadata may override ``system_prompt``,
    ``temperature``, ``max_tokens`` and give ``tools`` (a list of :class:`AITool` or of dicts
    with its fields).

    Args:
        channel_id: Unique id of this channel in the kit.
        provider: The model that generates replies.
        system_prompt: Default system prompt.
        temperature: Default sampling temperature.
        max_tokens: Default reply length limit.
        max_context_events: How many of the room's most recent events the model sees.
    """

    channel_type = ChannelType.AI
    category = ChannelCategory.INTELLIGENCE

    def __init__(
        self,
        channel_id: str,
        provider: AIProvider,
        system_prompt: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        max_context_events: int = 50,
    ) -> None:
        super().__init__(channel_id)
        self._provider: AIProvider = provider
        self._system_prompt = system_prompt
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._max_context_events = max_context_events

    @property
    def provider(self) -> AIProvider:
        """The model that generates replies."""
        return self._provider

    @property
    def info(self) -> dict[str, Any]:
        """The provider and model names and the default generation settings."""
        return {
            "provider": self._provider.name,
            "model": self._provider.model_name,
            "system_prompt": self._system_prompt,
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
            "max_context_events": self._max_context_events,
        }

    def capabilities(self) -> ChannelCapabilities:
        """Text and rich text; media too when the provider supports vision."""
        media_types = [ChannelMediaType.TEXT, ChannelMediaType.RICH]
        vision = self._provider.supports_vision
        if vision:
            media_types.append(ChannelMediaType.MEDIA)
        return ChannelCapabilities(media_types=media_types, supports_media=vision)

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        """AI channels receive nothing from outside the room.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("AIChannel does not receive inbound messages")

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """Nothing to send out: replies come from :meth:`on_event`.

        Returns:
            An empty output.
        """
        return ChannelOutput.empty()

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """Generate a reply to ``event``.

        Events from this channel itself are ignored (an AI never answers itself). A provider
        failure or invalid per-room settings are logged and yield an empty output; so does an
        empty reply.

        Args:
            event: The event to answer, already transcoded for this channel.
            binding: This channel's binding in the room (per-room overrides in its metadata).
            context: The room; ``recent_events`` are its latest events, possibly including
                ``event`` itself.

        Returns:
            ``responded=True`` with one response event, or an empty output.
        """
        if event.source.channel_id == self.channel_id:
            return ChannelOutput.empty()
        try:
            ai_context = self._build_context(event, binding, context)
        except ValidationError:
            logger.exception(
                "channel %s: invalid AI settings in the binding metadata of room %s",
                self.channel_id,
                binding.room_id,
            )
            return ChannelOutput.empty()
        try:
            response = await self._provider.generate(ai_context)
        except ProviderError as exc:
            logger.warning(
                "channel %s: provider %s failed (retryable=%s, status=%s): %s",
                self.channel_id,
                exc.provider or self._provider.name,
                exc.retryable,
                exc.status_code,
                exc.message,
            )
            return ChannelOutput.empty()
        except Exception:
            logger.exception(
                "channel %s: provider %s failed", self.channel_id, self._provider.name
            )
            return ChannelOutput.empty()
        if not response.content:
            logger.debug("channel %s: empty reply to %s, nothing sent", self.channel_id, event.id)
            return ChannelOutput.empty()
        reply = RoomEvent(
            room_id=event.room_id,
            source=EventSource(channel_id=self.channel_id, channel_type=ChannelType.AI),
            content=TextContent(body=response.content),
            chain_depth=event.chain_depth + 1,
            parent_event_id=event.id,
            correlation_id=event.correlation_id,
            metadata={"ai_usage": dict(response.usage)},
        )
        return ChannelOutput(responded=True, response_events=[reply])

    def _build_context(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> AIContext:
        """The generation context: settings (per-room overrides first), history, target."""
        meta = binding.metadata

        def setting(key: str, default: Any) -> Any:
            value = meta.get(key)
            return default if value is None else value

        target = next(
            (
                other
                for other in context.bindings
                if other.category == ChannelCategory.TRANSPORT
                and other.channel_id != self.channel_id
            ),
            None,
        )
        target_capabilities = target.capabilities if target is not None else None
        return AIContext(
            messages=self._build_messages(event, context.recent_events),
            system_prompt=setting("system_prompt", self._system_prompt),
            temperature=setting("temperature", self._temperature),
            max_tokens=setting("max_tokens", self._max_tokens),
            tools=[
                tool if isinstance(tool, AITool) else AITool.model_validate(tool)
                for tool in meta.get("tools") or []
            ],
            room=context,
            target_capabilities=target_capabilities,
            target_media_types=(
                list(target_capabilities.media_types) if target_capabilities is not None else []
            ),
        )

    def _build_messages(self, event: RoomEvent, recent: Sequence[RoomEvent]) -> list[AIMessage]:
        """The conversation: the latest events in order, the current one exactly once.

        The current event is usually already among ``recent`` (it is committed before the
        broadcast); it is then shown at its place, in the version passed to :meth:`on_event`
        (which may be transcoded), and not appended again. Blocked events and non-messages
        are not shown.
        """
        window = list(recent[-self._max_context_events :]) if self._max_context_events > 0 else []
        messages: list[AIMessage] = []
        seen_current = False
        for past in window:
            if past.id == event.id:
                seen_current = True
                message = self._to_message(event)
            elif past.type != EventType.MESSAGE or past.status == EventStatus.BLOCKED:
                continue
            else:
                message = self._to_message(past)
            if message is not None:
                messages.append(message)
        if not seen_current:
            message = self._to_message(event)
            if message is not None:
                messages.append(message)
        return messages

    def _to_message(self, event: RoomEvent) -> AIMessage | None:
        """``event`` as a model message, or None when it has nothing to show."""
        role: Literal["user", "assistant"] = (
            "assistant" if event.source.channel_id == self.channel_id else "user"
        )
        if self._provider.supports_vision:
            parts = _content_parts(event.content)
            if not parts:
                return None
            if any(isinstance(part, AIImagePart) for part in parts):
                return AIMessage(role=role, content=parts)
            text = "\n".join(part.text for part in parts if isinstance(part, AITextPart))
            return AIMessage(role=role, content=text)
        text = _content_text(event.content)
        return AIMessage(role=role, content=text) if text else None
