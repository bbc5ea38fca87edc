"""A channel that answers room messages with an AI provider."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from actors import check_count, error_text, is_cancellation
from providers.ai.base import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AIResponse,
    AITextPart,
    AITool,
)
from providers.errors import ProviderError
from roomkit.channels._ai_content import content_parts, content_text
from roomkit.channels._shaped_provider import as_ai_provider
from roomkit.channels.base import Channel
from roomkit.core._recent import RECENT_EVENTS
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import (
    ChannelCategory,
    ChannelMediaType,
    ChannelType,
    EventStatus,
)
from roomkit.models.event import EventSource, RoomEvent, SystemContent, TextContent

__all__ = ["AIChannel"]

logger = logging.getLogger("roomkit.channels.ai")

# (room id, hash of an image URL): images a vendor refused in a room's history. Bounded, and
# hashes rather than URLs, which may be megabyte-long data: URLs. Python's own str hash: a
# string caches it, so the history's URLs are hashed once, not at every message (a collision
# only shows one more image as text).
_UnusableKey = tuple[str, int]
_UNUSABLE_IMAGES_MAX = 4096

# Finish reasons (lower-cased) by which vendors say the model declined or was stopped by a
# safety filter: Anthropic "refusal", OpenAI "content_filter", Gemini's finishReason and
# promptFeedback.blockReason values.
_REFUSAL_REASONS = frozenset(
    {
        "refusal",
        "content_filter",
        "safety",
        "recitation",
        "blocklist",
        "prohibited_content",
        "spii",
        "image_safety",
    }
)


def _always(url: str) -> bool:
    return True


def _never(url: str) -> bool:
    return False


def _hidden_from_history(event: RoomEvent) -> bool:
    """Whether a past event stays out of the model's history: blocked, or a system notice.

    Blocked events were never delivered to the room's channels; system notices (the kit's
    audit events such as a channel attached: ``SystemContent``) are bookkeeping, not
    conversation. An event of type ``SYSTEM`` with text (``send_event(...,
    event_type=SYSTEM)``) is answered, as in 0.3.0, and so it stays in the history: left out,
    the model saw its own answer to a question it was not shown.
    """
    return event.status == EventStatus.BLOCKED or isinstance(event.content, SystemContent)


class _Conversation:
    """The messages for one request and what they carry."""

    __slots__ = ("has_current", "history_images", "messages")

    def __init__(self) -> None:
        self.messages: list[AIMessage] = []
        self.has_current = False
        # URLs of the images sent from past events (not from the current one).
        self.history_images: list[str] = []


class AIChannel(Channel):
    """An intelligence channel: each event of the room gets a reply from ``provider``.

    The reply re-enters the room as a new event from this channel (``chain_depth`` one more
    than the event it answers). Per room, the binding's metadata may override ``system_prompt``,
    ``temperature``, ``max_tokens`` and give ``tools`` (a list of :class:`AITool` or of dicts
    with its fields). A key that is present wins even when its value is None, as in RoomKit
    0.3.0: ``{"system_prompt": None}`` sends no system prompt in that room, while None for
    ``temperature``, ``max_tokens`` or ``tools`` is an invalid setting (logged, no reply).

    The model sees the room's latest events of every type it answers (messages, edits,
    reactions, ...), except blocked events and the kit's system notices (``SystemContent``),
    so that it never sees its own replies to events missing from its history. Past
    events are rendered as the kit's
    ``DefaultContentTranscoder`` renders them for a text-only target (``"[Media: report.pdf]"``,
    ``"[Location: Office (48.85, 2.35)]"``, ...). A provider that supports vision also gets
    images as image parts, those of past events included, as in RoomKit 0.3.0. An image the
    vendor cannot use (an expired or authenticated URL, a malformed ``data:`` URL) must not
    silence the room for the next ``max_context_events`` events: when a request carrying
    images of past events fails with a non-retryable :class:`ProviderError`, it is retried
    once with those images as text placeholders, and if that succeeds they stay text in that
    room from then on (the channel remembers them, boundedly, for its lifetime). An image of
    the event being answered is always sent as an image.

    Args:
        channel_id: Unique id of this channel in the kit.
        provider: The model that generates replies.
        system_prompt: Default system prompt.
        temperature: Default sampling temperature.
        max_tokens: Default reply length limit.
        max_context_events: How many of the room's most recent events the model sees, of
            those it is shown (system events are not); at most the
            ``roomkit.core._recent.RECENT_EVENTS`` (50) a room hands its channels.
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
        # Checked here, by the rules they meet at each message (see ShapedProvider for a
        # provider without the base class; AIContext takes the defaults as pydantic does, "0.5"
        # and Decimal alike): a wrong one failed every message, each logged as an invalid
        # setting in the room's binding metadata (or as the target failing, for the window).
        self._provider: AIProvider = as_ai_provider(provider)
        self._given = provider
        AIContext(system_prompt=system_prompt, temperature=temperature, max_tokens=max_tokens)
        self._system_prompt = system_prompt
        self._temperature = temperature
        self._max_tokens = max_tokens
        # Sliced with: an integer (numpy's included).
        self._max_context_events = check_count("max_context_events", max_context_events)
        if self._max_context_events > RECENT_EVENTS:
            logger.warning(
                "channel %s: max_context_events=%d, but a room hands its channels its %d most "
                "recent events: the model sees at most those",
                channel_id,
                self._max_context_events,
                RECENT_EVENTS,
            )
        self._unusable_images: OrderedDict[_UnusableKey, None] = OrderedDict()

    @property
    def provider(self) -> AIProvider:
        """The model that generates replies, as given."""
        return self._given

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
        return ChannelCapabilities(
            media_types=media_types, supports_rich_text=True, supports_media=vision
        )

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        """AI channels receive nothing from outside the room.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("AI channel does not accept inbound messages")  # 0.3.0's

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

        Events from this channel itself are ignored (an AI never answers itself), and so is an
        event with nothing the model could read (the provider is not called). A provider
        failure (a ``CancelledError`` it raises while nothing cancelled the room included) or
        invalid per-room settings are logged and yield an empty output; so does an empty
        reply.

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
        turns = self._turns(event, context.recent_events)
        conversation = self._conversation(turns, event.room_id, history_images=True)
        if not conversation.has_current:
            logger.info(
                "channel %s: event %s of room %s has nothing the model can read (%s content), "
                "not answered",
                self.channel_id,
                event.id,
                event.room_id,
                event.content.type,
            )
            return ChannelOutput.empty()
        try:
            ai_context = self._build_context(conversation.messages, binding, context)
        except ValueError as exc:  # pydantic's ValidationError included
            logger.exception(
                "channel %s: invalid AI settings in the binding metadata of room %s",
                self.channel_id,
                binding.room_id,
            )
            # Nothing answered; reported as a provider's failure is (ON_ERROR,
            # delivery_failed), as 0.3.0's error out of on_event was: a room misconfigured
            # showed only in the log.
            return ChannelOutput.failed(
                f"invalid AI settings in the binding metadata of room {binding.room_id}: "
                f"{error_text(exc)}"
            )
        outcome = await self._generate(ai_context)
        if (
            isinstance(outcome, ProviderError)
            and not outcome.retryable
            and conversation.history_images
        ):
            outcome = await self._retry_without_history_images(
                outcome, turns, event.room_id, ai_context, conversation.history_images
            )
        if isinstance(outcome, BaseException):
            self._log_failure(outcome)
            # Nothing answered, as in 0.3.0; the kit reports it (ON_ERROR, delivery_failed):
            # an invalid API key showed only in the log.
            return ChannelOutput.failed(
                f"provider {self._provider.name} failed: {error_text(outcome)}"
            )
        response = self._response_of(outcome)
        if not response.content:
            self._log_empty_reply(response, event)
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

    def _response_of(self, result: object) -> AIResponse:
        """The provider's result as an ``AIResponse``: one of its own, or (as 0.3.0 took any
        object with a ``content``) one read from its ``content`` and ``usage``.

        Raises:
            TypeError: a result without a ``content`` (``None``, a dict): the provider is
                broken, which fails this target (its framework events and ON_ERROR hooks
                report it), as 0.3.0's reading of ``result.content`` did.
        """
        if isinstance(result, AIResponse):
            return result
        if not hasattr(result, "content"):
            raise TypeError(
                f"AI provider {self._provider.name} returned {type(result).__name__}, "
                "expected an AIResponse"
            )
        # Taken as it is (0.3.0 put any usage in the reply's metadata): a usage with costs
        # (floats) or a content of None must not turn a reply into an error.
        usage = getattr(result, "usage", None)
        return AIResponse.model_construct(
            content=result.content, usage=dict(usage) if isinstance(usage, Mapping) else {}
        )

    async def _generate(self, ai_context: AIContext) -> AIResponse | BaseException:
        """The provider's reply, or what it raised (a real cancellation propagates)."""
        try:
            return await self._provider.generate(ai_context)
        except Exception as exc:
            return exc
        except asyncio.CancelledError as exc:
            if is_cancellation(exc):
                raise
            # The provider's own (an inner operation's, let through): nothing cancelled the
            # room, so it is a provider failure like any other.
            return exc

    async def _retry_without_history_images(
        self,
        failure: ProviderError,
        turns: list[tuple[RoomEvent, bool]],
        room_id: str,
        ai_context: AIContext,
        history_images: list[str],
    ) -> AIResponse | BaseException:
        """Ask again with the past events' images as text; remember them if that works."""
        logger.warning(
            "channel %s: provider %s failed on a request carrying %d image(s) of past events "
            "of room %s (status=%s: %s); retrying once with them as text",
            self.channel_id,
            failure.provider or self._provider.name,
            len(history_images),
            room_id,
            failure.status_code,
            failure.message,
        )
        conversation = self._conversation(turns, room_id, history_images=False)
        outcome = await self._generate(
            ai_context.model_copy(update={"messages": conversation.messages})
        )
        if not isinstance(outcome, BaseException):  # a reply (of any type, see _response_of)
            for url in history_images:
                self._unusable_images[(room_id, hash(url))] = None
            while len(self._unusable_images) > _UNUSABLE_IMAGES_MAX:
                self._unusable_images.popitem(last=False)
        return outcome

    def _log_failure(self, exc: BaseException) -> None:
        if isinstance(exc, ProviderError):
            logger.warning(
                "channel %s: provider %s failed (retryable=%s, status=%s): %s",
                self.channel_id,
                exc.provider or self._provider.name,
                exc.retryable,
                exc.status_code,
                exc.message,
            )
        elif isinstance(exc, asyncio.CancelledError):
            logger.error(
                "channel %s: provider %s raised CancelledError while nothing cancelled it",
                self.channel_id,
                self._provider.name,
                exc_info=exc,
            )
        else:
            logger.error(
                "channel %s: provider %s failed",
                self.channel_id,
                self._provider.name,
                exc_info=exc,
            )

    def _log_empty_reply(self, response: AIResponse, event: RoomEvent) -> None:
        reason = response.finish_reason
        refused = (reason is not None and reason.lower() in _REFUSAL_REASONS) or any(
            response.metadata.get(key) for key in ("refusal", "block_reason")
        )
        if refused:
            logger.warning(
                "channel %s: provider %s declined to answer event %s of room %s "
                "(finish_reason=%s%s), nothing sent",
                self.channel_id,
                self._provider.name,
                event.id,
                event.room_id,
                reason,
                "".join(
                    f", {key}={response.metadata[key]!r}"
                    for key in ("refusal", "block_reason")
                    if response.metadata.get(key)
                ),
            )
        else:
            logger.debug(
                "channel %s: empty reply to %s (finish_reason=%s), nothing sent",
                self.channel_id,
                event.id,
                reason,
            )

    def _build_context(
        self, messages: list[AIMessage], binding: ChannelBinding, context: RoomContext
    ) -> AIContext:
        """The generation context: settings (per-room overrides first), messages, target.

        Raises:
            ValueError: The binding's metadata holds an invalid setting.
        """
        meta = binding.metadata

        # A key present in the metadata wins even when it holds None, as in 0.3.0: None is how
        # a room asks for no system prompt, and for a setting that needs a value it fails
        # validation below rather than silently falling back to the channel's default.
        tools = meta.get("tools", [])
        if not isinstance(tools, list | tuple):
            raise ValueError(f"'tools' must be a list of tools, not {type(tools).__name__}")
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
            messages=messages,
            system_prompt=meta.get("system_prompt", self._system_prompt),
            temperature=meta.get("temperature", self._temperature),
            max_tokens=meta.get("max_tokens", self._max_tokens),
            tools=[
                tool if isinstance(tool, AITool) else AITool.model_validate(tool) for tool in tools
            ],
            room=context,
            target_capabilities=target_capabilities,
            target_media_types=(
                list(target_capabilities.media_types) if target_capabilities is not None else []
            ),
        )

    def _turns(
        self, event: RoomEvent, recent: Sequence[RoomEvent]
    ) -> list[tuple[RoomEvent, bool]]:
        """The events to show, in order, each with whether it is the one answered.

        The current event is usually already among ``recent`` (it is committed before the
        broadcast); it is then shown at its place, in the version passed to :meth:`on_event`
        (which may be transcoded), and not appended again. Past events of every type are
        shown (the channel answers edits, reactions, ... as it answers messages, so its replies
        to them are in the history too), except blocked events and system notices (the kit's
        audit events, ``SystemContent``, which read as nothing); an event of type ``SYSTEM``
        with text is answered, and shown.
        """
        # The window counts the events shown: system events (a channel attached) took its
        # places and pushed the conversation out.
        shown = [past for past in recent if past.id == event.id or not _hidden_from_history(past)]
        # Reordered, then cut: cut first, the replies recorded after the messages that came
        # while the AI answered took the window, and the model saw answers without questions.
        shown = self._replies_after_their_messages(shown)
        window = shown[-self._max_context_events :] if self._max_context_events > 0 else []
        # The event answered comes last: what was recorded after it in the same decision (an
        # event a BEFORE_BROADCAST hook injected for this channel, "customer is VIP") is
        # shown before it, or the model answered the note (0.3.0 appended the event last).
        turns = [(past, False) for past in window if past.id != event.id]
        turns.append((event, True))
        return turns

    def _replies_after_their_messages(self, window: list[RoomEvent]) -> list[RoomEvent]:
        """``window`` with each of this channel's replies right after the event it answers
        (its ``parent_event_id``), when that event is in it. Messages that came while the AI
        answered are recorded before its replies, so the model saw two questions and then two
        answers, and could not tell which answered which."""
        ids = {past.id for past in window}
        answers: dict[str, list[RoomEvent]] = {}
        asked: list[RoomEvent] = []
        for past in window:
            parent = past.parent_event_id
            if parent in ids and past.source.channel_id == self.channel_id:
                answers.setdefault(parent, []).append(past)
            else:
                asked.append(past)
        if not answers:
            return window
        ordered: list[RoomEvent] = []
        for past in asked:
            # Each event, then its replies, each followed by the replies to it in turn (a
            # reply to one of the channel's own events was left out).
            stack = [past]
            while stack:
                shown = stack.pop()
                ordered.append(shown)
                stack.extend(reversed(answers.pop(shown.id, ())))
        if answers:  # parents that answer each other (in no room's log): as they came
            kept = {id(e) for e in ordered}
            ordered.extend(e for e in window if id(e) not in kept)
        return ordered

    def _conversation(
        self, turns: list[tuple[RoomEvent, bool]], room_id: str, *, history_images: bool
    ) -> _Conversation:
        """The messages for ``turns``; past events' images as images only if ``history_images``.

        Even then, images this channel saw refused in the room are shown as text.
        """
        conversation = _Conversation()

        unusable = self._unusable_images

        def past_image(url: str) -> bool:
            if unusable and (room_id, hash(url)) in unusable:  # nothing to hash when empty
                return False
            conversation.history_images.append(url)
            return True

        for shown, current in turns:
            show_image = _always if current else past_image if history_images else _never
            message = self._to_message(shown, show_image)
            if message is not None:
                conversation.messages.append(message)
                conversation.has_current = conversation.has_current or current
        return conversation

    def _to_message(self, event: RoomEvent, show_image: Callable[[str], bool]) -> AIMessage | None:
        """``event`` as a model message, or None when it has nothing to show."""
        role: Literal["user", "assistant"] = (
            "assistant" if event.source.channel_id == self.channel_id else "user"
        )
        if self._provider.supports_vision:
            parts = content_parts(event.content, show_image)
            if not parts:
                return None
            if any(isinstance(part, AIImagePart) for part in parts):
                return AIMessage(role=role, content=parts)
            text = "\n".join(part.text for part in parts if isinstance(part, AITextPart))
            return AIMessage(role=role, content=text)
        text = content_text(event.content)
        return AIMessage(role=role, content=text) if text else None
