"""Broadcast one committed event to the other channels of its room (reference §6).

`EventRouter.broadcast` is pure routing: it reads bindings from the `RoomContext` it is given,
calls channels, and returns everything they produced in a `BroadcastResult`. It never writes:
the caller (the delivery projection) records the delivery outcomes, re-enters the responses,
stores the blocked ones and the side effects.

Steps, per RoomKit 0.3.0:

1. Source gate: a source binding that cannot write (READ_ONLY, NONE) or is muted reaches nobody.
2. Visibility stamping: an event with visibility ``"all"`` takes its source binding's visibility.
3. Targets: every other binding that can read (not WRITE_ONLY/NONE), is not OUTBOUND-only and is
   visible under the *source binding's* visibility (``all``, ``none``, ``transport``,
   ``intelligence``, ``"a,b"`` = those channel ids, anything else = that one channel id).
   Muted targets are included: muting silences a channel's voice, not its ears.
4. Per target, concurrently: transcode, truncate to ``max_length``, ``on_event``; for TRANSPORT
   bindings also deliver through the circuit breaker, the rate limit and the retry policy.
   A muted target's responses are dropped; other responses are re-entered below
   ``max_chain_depth`` or come back as BLOCKED copies with an Observation. A response counts
   at least one level deeper than the event it answers, whatever depth its channel gave it
   (0.3.0 took the channel's word: two channels keeping the default 0 never reached the limit).

Fixed quirks: provider failures returned as ``ProviderResult(success=False)`` count as failures
for retries and the breaker (QUIRK 12); breakers and the rate limiter are injected so their
state outlives the router (QUIRK 14); `EventRouter.deliver_to` sends injected events out through
``deliver`` (QUIRK 5); content a target cannot show is transcoded even when the binding media
sets alone would not ask for it (QUIRK 11).
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from actors import check_seconds, error_text
from roomkit.channels.base import Channel
from roomkit.core._bounded import (
    TimedOut,
    bounded,
    called_apart,
    started_here,
)
from roomkit.core._cancel import raised_uncancelled
from roomkit.core._concurrently import concurrently
from roomkit.core._failed_attempt import Health, channel_health, retry_after, retryable
from roomkit.core._text_cut import cut_point
from roomkit.core.circuit_breaker import CircuitBreaker
from roomkit.core.rate_limiter import TokenBucketRateLimiter
from roomkit.core.retry import backoff_delay
from roomkit.core.router import (
    ContentTranscoder,
    DefaultContentTranscoder,
    check_transcoder,
    required_media_type,
    transcode_with,
)
from roomkit.models.channel import ChannelOutput
from roomkit.models.delivery import DeliveryResult, ProviderResult
from roomkit.models.enums import (
    Access,
    ChannelCategory,
    ChannelDirection,
    ChannelMediaType,
    EventStatus,
)
from roomkit.models.event import CompositeContent, SystemContent, TemplateContent, TextContent
from roomkit.models.task import Observation

if TYPE_CHECKING:
    from roomkit.models.channel import ChannelBinding
    from roomkit.models.context import RoomContext
    from roomkit.models.event import EventContent, RoomEvent
    from roomkit.models.task import Task

__all__ = [
    "CHAIN_DEPTH_BLOCKED_BY",
    "CHAIN_TIMEOUT_BLOCKED_BY",
    "CHANNEL_DETACHED",
    "BroadcastResult",
    "EventRouter",
    "ProviderDeliveryError",
    "stamp_visibility",
    "visible_to",
]

logger = logging.getLogger("roomkit.event_router")

CHAIN_DEPTH_BLOCKED_BY = "event_chain_depth_limit"
"""``blocked_by`` of a response that would exceed ``max_chain_depth``."""

CHANNEL_DETACHED = "channel_detached"
"""``error`` of a delivery stopped before a retry (or before, during or after a wait for a
rate-limit token) because its channel was detached from the room meanwhile, or its binding
is no longer one a delivery goes to (see `EventRouter`'s ``still_bound``)."""

CHAIN_TIMEOUT_BLOCKED_BY = "event_chain_process_timeout"
"""``blocked_by`` of a response that would continue a chain past its message's
``process_timeout`` (or whose caller is gone); also its Observation's category."""

_CANNOT_WRITE = frozenset({Access.READ_ONLY, Access.NONE})
_CANNOT_READ = frozenset({Access.WRITE_ONLY, Access.NONE})
# Enum members read per message, as module globals: a class attribute of an enum goes through
# EnumType.__getattr__'s slot hook (Python 3.11: ~500 instructions a read).
_OUTBOUND = ChannelDirection.OUTBOUND
_TRANSPORT = ChannelCategory.TRANSPORT
# Likewise a pydantic model's class attribute (pydantic's metaclass has a __getattr__ too): the
# output of a target whose on_event is the base one, made for every such target of a message.
_empty_output = ChannelOutput.empty


_BASE_ON_EVENT = Channel.on_event

# A wait of a delivery (a retry's backoff, a rate-limit token) longer than this asks again,
# after this long, whether its channel is still bound, then after twice as long each time, up
# to _WATCH_MAX: a detach ended the delivery only when its wait did (a backlog of a
# 1/min channel held its room's other deliveries for a minute a message); a read model asked
# every second by each waiting delivery of a busy kit would be asked too much.
_WATCH_FIRST = 1.0
_WATCH_MAX = 30.0


class ProviderDeliveryError(Exception):
    """A channel's provider answered ``success=False``: a failure, not a silent success.

    Raised inside the retried delivery so retries and the circuit breaker see it (QUIRK 12).
    """

    def __init__(self, provider_result: ProviderResult) -> None:
        super().__init__(provider_result.error or "provider_failure")
        self.provider_result = provider_result


@dataclass(slots=True)
class BroadcastResult:
    """Everything a broadcast produced, keyed by target channel id where it applies.

    Attributes:
        outputs: each reached target's ``on_event`` output.
        delivery_outputs: each TRANSPORT target's ``deliver`` output, on success.
        reentry_events: responses to commit and broadcast in turn (chain depth allowing).
        responders: the target that gave each of ``reentry_events``, by the response's id (a
            response may name another channel as its source).
        tasks: tasks from every ``on_event`` output.
        observations: observations from every ``on_event`` output, plus one per response
            blocked by the chain depth limit.
        metadata_updates: merged ``metadata_updates`` of every ``on_event`` output.
        blocked_events: BLOCKED copies of responses over the chain depth limit.
        errors: why a target was not served (``transcoding_failed``, ``circuit_breaker_open``,
            a provider error, an exception text).
        delivery_results: one `DeliveryResult` per TRANSPORT target, success or not.
    """

    outputs: dict[str, ChannelOutput] = field(default_factory=dict)
    delivery_outputs: dict[str, ChannelOutput] = field(default_factory=dict)
    reentry_events: list[RoomEvent] = field(default_factory=list)
    responders: dict[str, str] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    metadata_updates: dict[str, Any] = field(default_factory=dict)
    blocked_events: list[RoomEvent] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    delivery_results: dict[str, DeliveryResult] = field(default_factory=dict)


@dataclass(slots=True)
class _Outcome:
    """What happened at one target, merged into the BroadcastResult in target order."""

    binding: ChannelBinding
    output: ChannelOutput | None = None
    delivery: DeliveryResult | None = None
    delivery_output: ChannelOutput | None = None
    error: str | None = None


def stamp_visibility(event: RoomEvent, source_binding: ChannelBinding) -> RoomEvent:
    """``event`` with its source binding's visibility if its own is ``"all"`` (step 2).

    Public so the caller can stamp before committing; `EventRouter.broadcast` applies it too
    (idempotent). Returns ``event`` itself when nothing changes.
    """
    if event.visibility == "all" and source_binding.visibility != "all":
        return event.model_copy(update={"visibility": source_binding.visibility})
    return event


@functools.lru_cache(maxsize=1024)
def _channel_id_set(visibility: str) -> frozenset[str]:
    return frozenset(part for part in (p.strip() for p in visibility.split(",")) if part)


def visible_to(visibility: str, target: ChannelBinding) -> bool:
    """Whether a target binding may see events under ``visibility`` (step 3).

    ``"all"``: everyone; ``"none"``: nobody; ``"transport"`` / ``"intelligence"``: bindings of
    that category; ``"a, b"``: those channel ids; any other value: that one channel id.
    """
    if visibility == "all":
        return True
    if visibility == "none":
        return False
    if visibility == "transport":
        return target.category == ChannelCategory.TRANSPORT
    if visibility == "intelligence":
        return target.category == ChannelCategory.INTELLIGENCE
    if "," in visibility:
        return target.channel_id in _channel_id_set(visibility)
    return target.channel_id == visibility


def _receives(visibility: str, binding: ChannelBinding) -> bool:
    """Whether ``binding`` is a target of a broadcast from a source binding of ``visibility``
    (step 3; the source itself aside): it may read the room, is not OUTBOUND-only and is
    visible. The rule of `EventRouter.targets` (inlined there, a call per binding of every
    broadcast: the two must say the same) and of a retry asking again (a target attached
    again OUTBOUND-only still got the retries)."""
    return (
        binding.access not in _CANNOT_READ
        and binding.direction != _OUTBOUND
        and visible_to(visibility, binding)
    )


def _broadcast_delivery(visibility: str, binding: ChannelBinding) -> bool:
    """Whether a broadcast from a source binding of ``visibility`` delivers to ``binding``:
    a target (`_receives`) that is a TRANSPORT (step 4e: others only see ``on_event``)."""
    return binding.category == _TRANSPORT and _receives(visibility, binding)


def _injected_delivery(binding: ChannelBinding) -> bool:
    """Whether an injected event is delivered to ``binding`` (its caller chose it: no
    visibility nor direction check): a TRANSPORT that may read the room."""
    return binding.category == _TRANSPORT and binding.access not in _CANNOT_READ


def _is_subset(source: Sequence[ChannelMediaType], target: Sequence[ChannelMediaType]) -> bool:
    # Lists of at most 7 items: a loop beats building two sets on every target.
    return all(media_type in target for media_type in source)


def _fits(content: EventContent, target: Sequence[ChannelMediaType]) -> bool:
    """Whether ``target`` can show ``content`` as is (text and notices always fit)."""
    if isinstance(content, TextContent | SystemContent | TemplateContent):
        return True
    if isinstance(content, CompositeContent):
        return all(_fits(part, target) for part in content.parts)
    needed = required_media_type(content)
    return needed is None or needed in target


def _with_content(event: RoomEvent, content: EventContent, target: ChannelBinding) -> RoomEvent:
    """``event`` with ``content``, cut to what ``target`` takes (``event`` itself if that
    changes nothing)."""
    content = _truncated(content, target.capabilities.max_length)
    if content is event.content:
        return event
    return event.model_copy(update={"content": content})


def _truncated(content: EventContent, max_length: int | None) -> EventContent:
    if max_length is None or not isinstance(content, TextContent):
        return content
    body = content.body
    if len(body) <= max_length:
        return content
    # Room for the ellipsis only when the limit allows it (a limit of 1-3 keeps a bare prefix),
    # cut between whole characters (see _text_cut); at code points when not even the first
    # fits (an empty text went out).
    kept = max_length - 3 if max_length > 3 else max_length
    body = body[: cut_point(body, kept) or kept] + ("..." if max_length > 3 else "")
    return content.model_copy(update={"body": body})


def _deeper(response: RoomEvent, parent_depth: int) -> RoomEvent:
    """``response`` at least one level deeper than the event it answers (``parent_depth``).

    A response re-enters the room, and ``max_chain_depth`` can bound a chain only if each
    answer counts deeper than what it answers. AIChannel sets ``chain_depth`` to its
    parent's + 1 (then ``response`` itself is returned); a channel of the app's that leaves
    the default 0 made two such channels answer each other for ever under any
    ``max_chain_depth`` (0.3.0 stopped them only at ``process_timeout``). A depth that is not
    an int (a ``model_copy`` that skipped validation) is left as it is: the room leaves such
    a response out when it records it.
    """
    depth = response.chain_depth
    if isinstance(depth, int) and depth <= parent_depth:
        return response.model_copy(update={"chain_depth": parent_depth + 1})
    return response


def _blocked(response: RoomEvent, blocked_by: str) -> RoomEvent:
    return response.model_copy(update={"status": EventStatus.BLOCKED, "blocked_by": blocked_by})


class EventRouter:
    """Routes committed events to the channels bound in their room.

    Args:
        channels: registered channels by id. Read live, so a mapping the kit keeps updating
            needs no new router.
        transcoder: content adaptation (`DefaultContentTranscoder` if ``None``).
        max_chain_depth: responses with ``chain_depth`` at or above this are blocked.
        rate_limiter: shared limiter (a private one if ``None``). The kit should own one for
            its lifetime so limits survive router re-creation.
        breakers: shared circuit breakers by channel id, filled on demand (private if ``None``).
        breaker_factory: builds the breaker of a channel seen for the first time.
        sleep: async sleep between delivery retries (inject a fake one in tests).
        call_timeout: seconds a target's ``on_event``, and each ``deliver`` attempt, may take;
            one that takes longer is cancelled and fails with the error ``"timeout"`` (a
            failure for the breaker and retries). ``None``: no bound. The kit passes its
            ``process_timeout``, which bounded 0.3.0's whole pipeline: a hung channel must not
            hold its room's deliveries for ever.
        still_bound: ``await still_bound(room_id, binding)``: the channel's binding in the
            room as it is now (``binding``, the one the delivery used, if it cannot say), or
            None if it is no longer bound there; asked before a delivery's retry, before
            and after a wait for a rate-limit token, and every so often during a wait
            longer than a second. A channel detached meanwhile, or whose binding is no
            longer one its delivery would go to (access ``WRITE_ONLY`` or ``NONE``, not a
            TRANSPORT, a broadcast's target made OUTBOUND-only: as a broadcast would choose
            now), gets no further attempt: its delivery fails with the error
            ``"channel_detached"``; the breaker counts the last attempt made, if any (a cut
            probe that failed re-opens the circuit). Changed or attached again meanwhile,
            the next attempt takes its binding as it is: its recipient and metadata, its
            retry policy (no more attempts than it allows, its backoff), its rate limit, its
            capabilities (the event is transcoded and truncated again for it), through the
            channel registered under its id now. ``None``: not asked (every attempt goes out
            with the binding it began with).
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        transcoder: ContentTranscoder | None = None,
        max_chain_depth: int = 5,
        rate_limiter: TokenBucketRateLimiter | None = None,
        breakers: dict[str, CircuitBreaker] | None = None,
        *,
        breaker_factory: Callable[[], CircuitBreaker] = CircuitBreaker,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        call_timeout: float | None = None,
        still_bound: Callable[[str, ChannelBinding], Awaitable[ChannelBinding | None]]
        | None = None,
    ) -> None:
        self._channels = channels
        self._unregistered: set[str] = set()  # bound channels found unregistered: warned of
        # Public: the bound of all the work the room's delivery worker waits for, its async
        # hooks too (see RoomDelivery._hook_ceiling).
        self.call_timeout = check_seconds("call_timeout", call_timeout, none=True)
        if self.call_timeout is not None and not self.call_timeout > 0:
            raise ValueError(f"call_timeout must be positive or None, got {call_timeout!r}")
        check_transcoder("transcoder", transcoder)
        self._transcoder = transcoder if transcoder is not None else DefaultContentTranscoder()
        self.max_chain_depth = max_chain_depth
        self._limiter = rate_limiter if rate_limiter is not None else TokenBucketRateLimiter()
        self._breakers: dict[str, CircuitBreaker] = breakers if breakers is not None else {}
        self._breaker_factory = breaker_factory
        self._sleep = sleep
        self._still_bound = still_bound

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """The circuit breakers by channel id (the injected dict itself)."""
        return self._breakers

    @property
    def rate_limiter(self) -> TokenBucketRateLimiter:
        """The rate limiter in use."""
        return self._limiter

    def breaker(self, channel_id: str) -> CircuitBreaker:
        """The circuit breaker of ``channel_id``, created on first use."""
        breaker = self._breakers.get(channel_id)
        if breaker is None:
            breaker = self._breakers[channel_id] = self._breaker_factory()
        return breaker

    # -- broadcast ------------------------------------------------------------------------

    def targets(
        self, source_binding: ChannelBinding, context: RoomContext
    ) -> list[ChannelBinding]:
        """The bindings a broadcast from ``source_binding`` reaches (step 3), in binding order.

        Empty when the source gate closes (step 1).
        """
        if source_binding.muted or source_binding.access in _CANNOT_WRITE:
            return []
        source_id = source_binding.channel_id
        visibility = source_binding.visibility
        # _receives, inlined: a call per binding of every broadcast (~350 instructions each).
        return [
            b
            for b in context.bindings
            if b.channel_id != source_id
            and b.access not in _CANNOT_READ
            and b.direction != _OUTBOUND
            and visible_to(visibility, b)
        ]

    async def broadcast(
        self, event: RoomEvent, source_binding: ChannelBinding, context: RoomContext
    ) -> BroadcastResult:
        """Send ``event`` to every target of its room and collect what they produced.

        Never raises for a target's failure: each one ends up in ``errors`` (and, for
        TRANSPORT targets, in ``delivery_results``). Cancellation propagates.

        Args:
            event: the committed event.
            source_binding: the binding of the channel the event came from.
            context: the room as of the event (bindings are read from it).

        Returns:
            Outputs, responses to re-enter, blocked responses, side effects and errors.
        """
        result = BroadcastResult()
        targets = self.targets(source_binding, context)
        if not targets:
            return result
        event = stamp_visibility(event, source_binding)
        outcomes = await concurrently(
            [
                functools.partial(self._process_target, event, source_binding, t, context)
                for t in targets
            ]
        )
        for outcome in outcomes:
            if outcome is not None:
                self._merge(result, outcome, event.chain_depth)
        return result

    async def _process_target(
        self,
        event: RoomEvent,
        source_binding: ChannelBinding,
        target: ChannelBinding,
        context: RoomContext,
    ) -> _Outcome | None:
        channel_id = target.channel_id
        channel = self._channels.get(channel_id)
        if channel is None:
            # Once per channel (at every message, a room bound to a channel this process
            # does not register filled the log), then at DEBUG.
            first = channel_id not in self._unregistered
            self._unregistered.add(channel_id)
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "room %s: channel %r is bound but not registered, skipped%s",
                event.room_id,
                channel_id,
                " (said once per channel; register it, or detach it from its rooms)"
                if first
                else "",
            )
            return None
        outcome = _Outcome(target)
        is_transport = target.category == _TRANSPORT
        try:
            prepared = self._untranscoded(event, source_binding, target)
            if prepared is None:  # to be transcoded
                prepared = await self._prepare(event, source_binding, target)
            if prepared is None:
                outcome.error = "transcoding_failed"
                if is_transport:
                    outcome.delivery = DeliveryResult(
                        channel_id=channel_id, success=False, error="transcoding_failed"
                    )
                return outcome
            if type(channel).on_event is _BASE_ON_EVENT and "on_event" not in vars(channel):
                # The base on_event does nothing but answer an empty output: not even called
                # (nor bounded) on every target of every message.
                outcome.output = _empty_output()
            else:
                output: Any = channel.on_event(prepared, target, context)
                if _awaitable(output):  # bounded, its first step taken here (_deliver_once)
                    done, output = started_here(output, self.call_timeout)
                    if not done:
                        output = await output
                if output is not None and not isinstance(output, ChannelOutput):
                    output = taken_as_output(output, channel_id, "on_event")
                outcome.output = output
                if output is not None:
                    outcome.error = output.failure
            if is_transport and outcome.error is not None:
                # Its on_event answered ChannelOutput.failed(...): the target failed, as
                # had it raised (deliver is not called); it was reported as failed and
                # delivered both.
                outcome.delivery = DeliveryResult(
                    channel_id=channel_id, success=False, error=outcome.error
                )
            elif is_transport:
                outcome.delivery, outcome.delivery_output = await self._deliver(
                    channel, prepared, target, context, event, source_binding
                )
        except Exception as exc:
            self._target_failed(outcome, event, exc)
        except BaseException as exc:
            # The channel's own CancelledError (its on_event's: deliver's are converted in
            # _deliver), or another BaseException, not a cancellation of this broadcast:
            # propagated, it would cancel the other targets and lose their results.
            failure = raised_uncancelled(exc, f"channel {channel_id!r}")
            self._target_failed(outcome, event, failure)
        return outcome

    @staticmethod
    def _target_failed(outcome: _Outcome, event: RoomEvent, error: Exception) -> None:
        channel_id = outcome.binding.channel_id
        text = _error_text(error)
        logger.warning(
            "room %s: target %r failed on event %s: %s",
            event.room_id,
            channel_id,
            event.id,
            text,
            exc_info=error,
        )
        outcome.error = text
        if outcome.binding.category == _TRANSPORT and outcome.delivery is None:
            outcome.delivery = DeliveryResult(channel_id=channel_id, success=False, error=text)

    def _merge(self, result: BroadcastResult, outcome: _Outcome, parent_depth: int) -> None:
        binding = outcome.binding
        channel_id = binding.channel_id
        if outcome.error is not None:
            result.errors[channel_id] = outcome.error
        delivery = outcome.delivery
        if delivery is not None:
            result.delivery_results[channel_id] = delivery
            if delivery.success:
                if outcome.delivery_output is not None:
                    result.delivery_outputs[channel_id] = outcome.delivery_output
            else:
                result.errors[channel_id] = delivery.error or "delivery_failed"
        output = outcome.output
        if output is None:
            return
        result.outputs[channel_id] = output
        result.observations.extend(output.observations)
        result.tasks.extend(output.tasks)
        if output.metadata_updates:
            result.metadata_updates.update(output.metadata_updates)
        if binding.muted or not output.responded:
            # Muting silences the voice, not the brain: the target saw the event, its
            # responses go nowhere.
            return
        for response in output.response_events:
            response = _deeper(response, parent_depth)
            if response.chain_depth < self.max_chain_depth:
                result.reentry_events.append(response)
                result.responders[response.id] = channel_id
            else:
                self._block_response(result, response)

    def _block_response(self, result: BroadcastResult, response: RoomEvent) -> None:
        depth = response.chain_depth
        source_channel = response.source.channel_id
        logger.info(
            "room %s: response %s from %r blocked at chain depth %d (max %d)",
            response.room_id,
            response.id,
            source_channel,
            depth,
            self.max_chain_depth,
        )
        result.blocked_events.append(_blocked(response, CHAIN_DEPTH_BLOCKED_BY))
        result.observations.append(
            Observation(
                id=f"obs_{response.id}",
                room_id=response.room_id,
                channel_id=source_channel,
                content=f"Event chain depth {depth} exceeded limit {self.max_chain_depth}",
                category="event_chain_depth_exceeded",
                metadata={
                    "chain_depth": depth,
                    "max_chain_depth": self.max_chain_depth,
                    "source_channel": source_channel,
                },
            )
        )

    def cut_chain(self, result: BroadcastResult) -> list[RoomEvent]:
        """Block the responses of ``result`` that would re-enter the room: the message whose
        chain they continue is past its ``process_timeout``, or its caller is gone.

        0.3.0 ran a message's whole chain under ``asyncio.wait_for(process_timeout)``: past
        it, nothing more of the chain was stored or sent. Here the chain runs after the
        commit, in the room's delivery worker; left to go on, two channels answering each
        other (``max_chain_depth=math.inf``) did so for good, and the room's later messages
        waited behind them. Each response is recorded as a BLOCKED copy with an Observation,
        as one over ``max_chain_depth`` is, so that the log says where the chain stopped.

        Returns:
            The BLOCKED copies, also appended to ``result.blocked_events``.
        """
        cut: list[RoomEvent] = []
        for response in result.reentry_events:
            depth = response.chain_depth
            source_channel = response.source.channel_id
            logger.info(
                "room %s: response %s from %r blocked at chain depth %d: the message it "
                "answers is past its process_timeout (%s s) or its caller is gone",
                response.room_id,
                response.id,
                source_channel,
                depth,
                self.call_timeout,
            )
            blocked = _blocked(response, CHAIN_TIMEOUT_BLOCKED_BY)
            cut.append(blocked)
            result.observations.append(
                Observation(
                    id=f"obs_{response.id}",
                    room_id=response.room_id,
                    channel_id=source_channel,
                    content=(
                        f"Event chain stopped at depth {depth}: its message's process_timeout "
                        "ran out, or its caller is gone"
                    ),
                    category=CHAIN_TIMEOUT_BLOCKED_BY,
                    metadata={
                        "chain_depth": depth,
                        "process_timeout": self.call_timeout,
                        "source_channel": source_channel,
                    },
                )
            )
        result.blocked_events.extend(cut)
        result.reentry_events.clear()
        result.responders.clear()
        return cut

    # -- delivery -------------------------------------------------------------------------

    async def deliver_to(
        self, event: RoomEvent, target_binding: ChannelBinding, context: RoomContext
    ) -> DeliveryResult | None:
        """Give ``event`` to one target chosen for it (an injected event).

        As in 0.3.0, the target's ``on_event`` sees it (an AI channel learns of it; what it
        answers is not recorded, as then); a TRANSPORT target also sends it out through
        ``deliver`` (QUIRK 5 fixed: 0.3.0 called only ``on_event``, which a transport channel
        does nothing in), on a broadcast's delivery path: transcoding (against the event's
        source binding in ``context`` when there is one), truncation, circuit breaker, rate
        limit and retries. No visibility or mute check: the caller chose the target
        explicitly. But a target whose access does not let it read the room (``WRITE_ONLY``,
        ``NONE``) sends nothing, as for a broadcast: with QUIRK 5 fixed, a channel the app
        shut off sent injected events out again. Never raises for a target's failure;
        cancellation propagates.

        Returns:
            A TRANSPORT target's delivery (``error``: ``channel_not_registered``,
            ``transcoding_failed``, ``circuit_breaker_open``, the provider's error or an
            exception text on failure); None for any other target, or one that may not read
            (`deliver_injected` also says how such a target failed).
        """
        delivery, _ = await self.deliver_injected(event, target_binding, context)
        return delivery

    async def deliver_injected(
        self, event: RoomEvent, target_binding: ChannelBinding, context: RoomContext
    ) -> tuple[DeliveryResult | None, str | None]:
        """`deliver_to`, with the failure of a target that sends nothing out (an AI channel,
        a transport that may not read the room).

        Such a target's failure was only logged, or not even that: an injected event an AI
        never saw (its transcoding refused, its ``on_event`` raised) fired no ON_ERROR, where
        the same failure on a broadcast did (quirk 9 fixed: ON_ERROR fires for delivery
        failures).

        Returns:
            ``(delivery, error)``: ``delivery`` as `deliver_to` returns it; ``error``, when
            ``delivery`` is None, why the target was not served, as a broadcast's
            ``BroadcastResult.errors`` says it (``transcoding_failed``, the transcoder's or
            ``on_event``'s exception text, ``"timeout"``, the failure of a
            ``ChannelOutput.failed``), else None.
        """
        is_transport = _injected_delivery(target_binding)
        channel_id = target_binding.channel_id
        channel = self._channels.get(channel_id)
        if channel is None:
            if not is_transport:
                return None, None  # skipped, as a broadcast skips it
            return (
                DeliveryResult(
                    channel_id=channel_id, success=False, error="channel_not_registered"
                ),
                None,
            )
        source_binding = context.get_binding(event.source.channel_id)
        try:
            prepared = await self._prepare(event, source_binding, target_binding)
        except Exception as exc:
            logger.warning("transcoding for %r failed: %s", channel_id, exc, exc_info=True)
            if not is_transport:
                return None, _error_text(exc)
            failed = DeliveryResult(channel_id=channel_id, success=False, error=error_text(exc))
            return failed, None
        if prepared is None:
            if not is_transport:
                return None, "transcoding_failed"
            return (
                DeliveryResult(channel_id=channel_id, success=False, error="transcoding_failed"),
                None,
            )
        failure = await self._tell_injected(channel, prepared, target_binding, context)
        if not is_transport:
            return None, failure
        if failure is not None:
            # Failed as a broadcast target that failed on_event does: deliver is not called
            # (it was, and the failure was only logged).
            return DeliveryResult(channel_id=channel_id, success=False, error=failure), None
        # ``bounded`` without a limit: the channel's deliver runs in a copy of the context, as
        # a broadcast target's does (the caller is the room's long-lived delivery worker).
        delivery, _ = await bounded(
            self._deliver(
                channel, prepared, target_binding, context, event, source_binding, injected=True
            ),
            None,
        )
        return delivery, None

    async def _tell_injected(
        self, channel: Channel, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> str | None:
        """The target's ``on_event`` for an injected event; returns its failure (logged), as
        a broadcast's ``errors`` would say it, or None."""
        if type(channel).on_event is _BASE_ON_EVENT and "on_event" not in vars(channel):
            return None  # does nothing
        try:
            # In a copy of the context, as a broadcast target's call (the caller is the room's
            # long-lived delivery worker).
            reaction, own = called_apart(channel.on_event, event, binding, context)
            output = (
                await bounded(reaction, self.call_timeout, own)
                if _awaitable(reaction)
                else reaction
            )
        except Exception as exc:
            failure = _error_text(exc)
            logger.warning(
                "room %s: target %r failed on injected event %s: %s",
                event.room_id,
                binding.channel_id,
                event.id,
                failure,
                exc_info=exc,
            )
            return failure
        except BaseException as exc:  # its own CancelledError: see _target
            failure = _error_text(raised_uncancelled(exc, f"channel {binding.channel_id!r}"))
            logger.warning(
                "room %s: target %r failed on injected event %s: %s",
                event.room_id,
                binding.channel_id,
                event.id,
                failure,
            )
            return failure
        if not isinstance(output, ChannelOutput):
            return None
        if output.failure is not None:
            # ChannelOutput.failed(...): a failure, as on a broadcast.
            logger.warning(
                "room %s: target %r failed on injected event %s: %s",
                event.room_id,
                binding.channel_id,
                event.id,
                output.failure,
            )
            return output.failure
        if output.responded:
            logger.debug(
                "room %s: %r answered injected event %s: not recorded (as in 0.3.0)",
                event.room_id,
                binding.channel_id,
                event.id,
            )
        return None

    @staticmethod
    def _untranscoded(
        event: RoomEvent, source_binding: ChannelBinding | None, target: ChannelBinding
    ) -> RoomEvent | None:
        """``event`` as ``target`` should receive it (truncated) when it needs no
        transcoding; ``None`` when it does (`_prepare`). Not a coroutine: most targets need
        none, and this runs for every target of every message."""
        content = event.content
        target_types = target.capabilities.media_types
        if not _fits(content, target_types) or (
            source_binding is not None
            and not _is_subset(source_binding.capabilities.media_types, target_types)
        ):
            # Reference rule: transcode when the source binding's media types are not a subset
            # of the target's. QUIRK 11 fix: also when the content itself does not fit.
            return None
        return _with_content(event, content, target)

    async def _prepare(
        self, event: RoomEvent, source_binding: ChannelBinding | None, target: ChannelBinding
    ) -> RoomEvent | None:
        """``event`` as ``target`` should receive it (transcoded, truncated), or ``None``."""
        prepared = self._untranscoded(event, source_binding, target)
        if prepared is not None:
            return prepared
        content = await transcode_with(
            self._transcoder,
            event.content,
            source_binding if source_binding is not None else target,
            target,
        )
        if content is None:
            return None
        return _with_content(event, content, target)

    async def _deliver(
        self,
        channel: Channel,
        event: RoomEvent,
        binding: ChannelBinding,
        context: RoomContext,
        original: RoomEvent,
        source_binding: ChannelBinding | None,
        *,
        injected: bool = False,
    ) -> tuple[DeliveryResult, ChannelOutput | None]:
        """Deliver ``event`` (``original`` prepared for ``binding``) through breaker, rate
        limit and retries; never raises an ``Exception``.

        ``original``, ``source_binding`` and ``injected`` (an injected event's delivery, not
        a broadcast's) let a retry prepare the event again for its binding as it is then."""
        channel_id = binding.channel_id
        breaker = self.breaker(channel_id)
        if not breaker.allow_request():
            logger.debug("circuit open for %r, event %s not delivered", channel_id, event.id)
            return (
                DeliveryResult(channel_id=channel_id, success=False, error="circuit_breaker_open"),
                None,
            )
        probe = breaker.probe  # this delivery is the breaker's probe if not None
        try:
            if binding.retry_policy is None and binding.rate_limit is None:
                # One attempt, no token: the usual binding, without a frame more per target
                # (_deliver_once, inlined).
                answer: Any = channel.deliver(event, binding, context)
                if _awaitable(answer):
                    done, answer = started_here(answer, self.call_timeout)
                    if not done:
                        answer = await answer
                output = _delivered(answer, binding)
            else:
                origin = _Origin(
                    original,
                    source_binding,
                    _injected_delivery
                    if injected or source_binding is None
                    else functools.partial(_broadcast_delivery, source_binding.visibility),
                )
                output = await self._attempts(_Target(channel, event, binding), context, origin)
        except _Cut as cut:
            # The operator's fix for a failing channel (detach it) took effect, or the retry
            # has nowhere to go. The attempt made before the cut still says how the channel
            # is: abandoning the probe of one that failed left the circuit half-open for the
            # next delivery of any room, and a closed breaker never counted such failures.
            # No attempt made: nothing to count.
            _count(breaker, probe, cut.last)
            logger.info(
                "delivery of %s to %r in room %s stopped: %s",
                event.id,
                channel_id,
                event.room_id,
                cut.reason,
            )
            return DeliveryResult(channel_id=channel_id, success=False, error=cut.error), None
        except (ProviderDeliveryError, _OutputFailed) as exc:
            _count(breaker, probe, channel_health(exc))
            logger.warning("delivery of %s to %r failed: %s", event.id, channel_id, exc)
            return (
                DeliveryResult(
                    channel_id=channel_id,
                    success=False,
                    provider_result=exc.provider_result,
                    error=str(exc),
                ),
                None,
            )
        except Exception as exc:
            breaker.record_failure()
            text = _error_text(exc)
            logger.warning(
                "delivery of %s to %r failed: %s", event.id, channel_id, text, exc_info=True
            )
            return DeliveryResult(channel_id=channel_id, success=False, error=text), None
        except BaseException as exc:
            # The channel's own CancelledError (or another BaseException), not a cancellation
            # of this delivery: a failure the breaker sees (not retried: retries take
            # Exceptions). Propagated, it would cancel the other targets, or stop the room's
            # delivery worker (an injected event's target).
            try:
                text = str(raised_uncancelled(exc, f"channel {channel_id!r}"))
            except BaseException:
                # This delivery is cancelled: neither a success nor a failure of the channel.
                # Were it the breaker's probe, the channel stayed shut until the probe expired.
                if probe is not None:
                    breaker.abandon_probe(probe)
                raise
            breaker.record_failure()
            logger.warning("delivery of %s to %r failed: %s", event.id, channel_id, text)
            return DeliveryResult(channel_id=channel_id, success=False, error=text), None
        breaker.record_success()
        return (
            DeliveryResult(
                channel_id=channel_id, success=True, provider_result=output.provider_result
            ),
            output,
        )

    async def _attempts(
        self, target: _Target, context: RoomContext, origin: _Origin
    ) -> ChannelOutput:
        """``deliver``, tried again as the binding's retry policy says, each attempt after a
        rate-limit token; raises the last attempt's failure.

        A failure the provider says will not change (a 400 for a bad number, a message of
        several parts some of which went out) is not tried again: it was, up to
        ``max_retries`` times, the parts sent again with it. A wait the vendor asked for (a
        429's ``Retry-After``) is kept if longer than the backoff, and ends the retries if
        longer than the policy's ``max_delay_seconds``. A retry is a call like the first:
        it waits for its token too (retries went out past the binding's rate limit).

        Each retry takes the binding as it is then (see ``still_bound``), its retry policy
        included: the attempts stop once those made reach what it allows, and its backoff is
        the next wait's (a channel attached again without retries was tried the first
        policy's every time).
        """
        made = 0  # attempts made
        last: Health | None = None  # what the last attempt said of the channel (None: none)
        failure: Exception | None = None  # the last attempt's
        while True:
            if made:
                target = await self._current(target, last, origin)
                allowed = _allowed(target.binding)
                if made >= allowed:
                    logger.info(
                        "delivery of %s to %r: its binding now allows %d attempt(s), %d made: "
                        "not retried",
                        target.event.id,
                        target.binding.channel_id,
                        allowed,
                        made,
                    )
                    assert failure is not None  # an attempt was made, and failed
                    raise failure
            target = await self._token(target, last, origin, checked=made > 0)
            try:
                return await _deliver_once(
                    target.channel, target.event, target.binding, context, self.call_timeout
                )
            except Exception as exc:
                made += 1
                delay = _retry_delay(exc, target, made)
                if delay is None:
                    raise
                last = _health_of(exc)
                failure = exc
            # Outside the except block: a failure (a cut) during the wait is not chained
            # to this one.
            await self._waited(functools.partial(self._sleep, delay), delay, target, last, origin)

    async def _token(
        self, target: _Target, last: Health | None, origin: _Origin, *, checked: bool
    ) -> _Target:
        """``target`` once it has a rate-limit token (as it is after a wait for one);
        ``checked``: the binding was just asked for (a retry's). Queues rather than drops:
        the message waits for its token.

        A delivery that must wait asks first whether its channel is still bound: a detached
        channel's backlog waited for a token of it a message, holding the room's later
        deliveries as long (a token each 2 s: 8 s for 4 queued). One with its token at hand
        asks nothing (the usual delivery reads no store)."""
        limit = target.binding.rate_limit
        channel_id = target.binding.channel_id
        if limit is None or self._limiter.acquire(channel_id, limit):
            return target
        if not checked and self._still_bound is not None:
            target = await self._current(target, last, origin)
            limit = target.binding.rate_limit
            if limit is None or self._limiter.acquire(channel_id, limit):
                return target
        await self._waited(
            functools.partial(self._limiter.wait, channel_id, limit), None, target, last, origin
        )
        return await self._current(target, last, origin)

    async def _waited(
        self,
        wait: Callable[[], Awaitable[object]],
        delay: float | None,
        target: _Target,
        last: Health | None,
        origin: _Origin,
    ) -> None:
        """``await wait()`` (a backoff of ``delay`` seconds, a token: ``None``, its length
        unknown), ended early by a `_Cut` if the channel is detached meanwhile: past
        ``_WATCH_FIRST`` seconds, its binding is asked for every so often (a token's wait
        cut is given back to the limiter)."""
        if self._still_bound is None or (delay is not None and delay <= _WATCH_FIRST):
            await wait()
            return
        cut: list[_Cut] = []
        failed: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, target.binding, last, origin, cut, group.cancel_scope)
            try:
                await wait()
            except Exception as exc:
                # Raised after the group, as it is: raised in it, it came out wrapped in an
                # ExceptionGroup, the delivery's error its text.
                failed = exc
            group.cancel_scope.cancel()
        if cut:
            raise cut[0]
        if failed is not None:
            raise failed

    async def _watch(
        self,
        binding: ChannelBinding,
        last: Health | None,
        origin: _Origin,
        cut: list[_Cut],
        scope: anyio.CancelScope,
    ) -> None:
        """Ask for ``binding`` after _WATCH_FIRST seconds, then twice as long each time (at
        most _WATCH_MAX); once it is no longer one the delivery goes to, note the `_Cut`
        in ``cut`` and end the wait (``scope``). Other changes are taken after the wait."""
        pause = _WATCH_FIRST
        while True:
            await anyio.sleep(pause)  # the clock's: an injected sleep may not wait at all
            pause = min(pause * 2, _WATCH_MAX)
            try:
                await self._bound_now(binding, last, origin)
            except _Cut as stopped:
                cut.append(stopped)
                scope.cancel()
                return
            except Exception as exc:
                # The check after the wait decides (and reports) as without this one.
                logger.debug("room %s: still_bound failed: %s", origin.event.room_id, exc)

    async def _bound_now(
        self, binding: ChannelBinding, last: Health | None, origin: _Origin
    ) -> ChannelBinding:
        """The channel's binding in the room as it is now (see ``still_bound``); raise a
        `_Cut` (carrying ``last``, what the attempt before said of the channel) if it has
        none, or one the delivery would not go to now (``origin.chosen``: the rule that chose
        the target: it may not read the room, it is not a TRANSPORT, a broadcast's target
        became OUTBOUND-only) -- as a broadcast now would not.

        Asked only around a wait (a retry's backoff, a rate-limit token): detaching a failing
        channel is the operator's fix, and its retries went on calling it for the whole
        policy (two minutes with a process_timeout of 30 s), holding the room's later
        deliveries as long."""
        still_bound = self._still_bound
        if still_bound is None:
            return binding
        now = await still_bound(origin.event.room_id, binding)
        if now is None or not origin.chosen(now):
            reason = (
                "the channel was detached meanwhile"
                if now is None
                else "its binding no longer takes the room's deliveries"
            )
            raise _Cut(CHANNEL_DETACHED, reason, last)
        return now

    async def _current(self, target: _Target, last: Health | None, origin: _Origin) -> _Target:
        """``target`` as the next attempt should use it: the binding as it is now
        (`_bound_now`), through the channel registered now (``register_channel`` replaces a
        channel under its id), the event prepared for that binding (transcoded, truncated)
        if it changed. A retry went to the replaced object, with content prepared for the
        binding of before (not cut to the new ``max_length``)."""
        used = target.binding
        now = await self._bound_now(used, last, origin)
        channel = self._channels.get(used.channel_id)
        if channel is None:
            raise _Cut("channel_not_registered", "the channel is no longer registered", last)
        if now is used or now == used:
            if channel is target.channel and now is used:
                return target
            return _Target(channel, target.event, now)
        try:
            prepared = await self._prepare(origin.event, origin.source_binding, now)
        except Exception as exc:
            text = _error_text(exc)
            logger.warning("transcoding for %r failed: %s", used.channel_id, text, exc_info=exc)
            raise _Cut(
                text, f"transcoding for its binding as it is now failed: {text}", last
            ) from exc
        if prepared is None:
            raise _Cut(
                "transcoding_failed", "its binding as it is now cannot take the event", last
            )
        return _Target(channel, prepared, now)


async def _deliver_once(
    channel: Channel,
    event: RoomEvent,
    binding: ChannelBinding,
    context: RoomContext,
    limit: float | None,
) -> ChannelOutput:
    # Awaited within ``limit`` if it is awaitable, as it is otherwise: a plain ``def deliver``
    # that sent and returned its output was counted as failed ("can't be used in 'await'
    # expression"); retried, it sent the message again at every attempt, then opened the
    # breaker. The bound's first step is taken here (started_here): a deliver that never
    # suspends (most) costs no coroutine of the bound's.
    answer: Any = channel.deliver(event, binding, context)
    if _awaitable(answer):
        done, answer = started_here(answer, limit)
        if not done:
            answer = await answer
    return _delivered(answer, binding)


def _delivered(answer: Any, binding: ChannelBinding) -> ChannelOutput:
    """What a ``deliver`` answered, as its `ChannelOutput`; raises if it says it failed."""
    output = (
        answer
        if isinstance(answer, ChannelOutput)
        else taken_as_output(answer, binding.channel_id, "deliver")
    )
    provider_result = output.provider_result
    if provider_result is not None and provider_result.success is False:
        raise ProviderDeliveryError(provider_result)
    if output.failure is not None:
        raise _OutputFailed(output)
    return output


def _awaitable(value: object) -> bool:
    return type(value) is types.CoroutineType or inspect.isawaitable(value)


class _Cut(Exception):
    """A delivery stopped before an attempt: ``error`` is its `DeliveryResult`'s, ``reason``
    says why in the log, ``last`` what its last attempt said of the channel (None: no
    attempt was made)."""

    def __init__(self, error: str, reason: str, last: Health | None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.last = last


@dataclass(slots=True, frozen=True)
class _Target:
    """What a delivery's next attempt uses: the channel, the event prepared for the binding."""

    channel: Channel
    event: RoomEvent
    binding: ChannelBinding


@dataclass(slots=True, frozen=True)
class _Origin:
    """What a retried delivery began from, to prepare it again for a binding changed
    meanwhile: the event as committed, its source binding, and the rule its target was
    chosen by (``chosen(binding)``: a broadcast's, an injected event's)."""

    event: RoomEvent
    source_binding: ChannelBinding | None
    chosen: Callable[[ChannelBinding], bool]


def _allowed(binding: ChannelBinding) -> int:
    """How many attempts ``binding``'s retry policy allows a delivery."""
    policy = binding.retry_policy
    return 1 if policy is None else policy.max_retries + 1


def _retry_delay(error: Exception, target: _Target, made: int) -> float | None:
    """Seconds to wait before trying again after ``error``, the failure of attempt ``made``
    (the first is 1) under ``target``'s binding; None: not tried again."""
    policy = target.binding.retry_policy
    if policy is None or made > policy.max_retries or not retryable(error):
        return None
    delay = backoff_delay(policy, made - 1)
    asked = retry_after(error)
    if asked is not None and asked > delay:
        if asked > policy.max_delay_seconds:
            logger.info(
                "delivery of %s to %r: the vendor asks to wait %.3gs, more than the retry "
                "policy's max_delay_seconds: not retried",
                target.event.id,
                target.binding.channel_id,
                asked,
            )
            return None
        delay = asked
    logger.info(
        "delivery of %s to %r failed (attempt %d/%d), retrying in %.3fs: %s",
        target.event.id,
        target.binding.channel_id,
        made,
        policy.max_retries + 1,
        delay,
        _error_text(error),
    )
    return delay


def _health_of(error: Exception) -> Health:
    """What a failed attempt says of its channel, as `EventRouter._deliver` counts it."""
    if isinstance(error, (ProviderDeliveryError, _OutputFailed)):
        return channel_health(error)
    return Health.FAILING


def _count(breaker: CircuitBreaker, probe: float | None, health: Health | None) -> None:
    """Tell ``breaker`` what a delivery's last attempt said of its channel (``probe``: the
    delivery's probe, if it is the breaker's)."""
    if health is Health.FAILING:
        breaker.record_failure()
    elif health is Health.ANSWERING:
        breaker.record_success()  # its vendor answered: the channel works
    elif probe is not None:
        breaker.abandon_probe(probe)  # nothing was called: the next one probes


class _OutputFailed(Exception):
    """A channel's ``deliver`` answered ``ChannelOutput.failed(error)``: a failure, for its
    retries and breaker too (it was counted as delivered)."""

    def __init__(self, output: ChannelOutput) -> None:
        super().__init__(output.failure)
        self.provider_result = output.provider_result


_ODD_OUTPUTS: set[tuple[str, str, str]] = set()  # reported once each: (channel, method, type)


def taken_as_output(value: object, channel_id: str, method: str) -> ChannelOutput:
    """What a channel's ``deliver`` or ``on_event`` that returned ``value`` (not a
    ``ChannelOutput``) is taken to have returned.

    Nothing (``None``) is an output with nothing in it: a ``deliver`` that returned nothing
    sent the event, and counting it as failed sent it again at every retry, then opened the
    breaker. A bare ``ProviderResult`` is the provider's answer (``success=False``: a failure).
    Anything else is taken as nothing, with one warning per channel and type.
    """
    if value is None:
        return ChannelOutput()
    if isinstance(value, ProviderResult):
        return ChannelOutput(provider_result=value)
    kind = type(value).__name__
    if (channel_id, method, kind) not in _ODD_OUTPUTS:
        _ODD_OUTPUTS.add((channel_id, method, kind))
        logger.warning(
            "channel %r: %s returned a %s, not a ChannelOutput: taken as an empty output",
            channel_id,
            method,
            kind,
        )
    return ChannelOutput()


def _error_text(error: Exception) -> str:
    """What a failed target reports: ``"timeout"`` when its time ran out (`call_timeout`)."""
    if isinstance(error, TimedOut):
        return "timeout"
    return error_text(error)
