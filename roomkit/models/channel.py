"""Channel bindings, capabilities, rate limits, retry policies and channel outputs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from roomkit.models._copy import constructed
from roomkit.models._defaults import utcnow
from roomkit.models.delivery import ProviderResult
from roomkit.models.enums import (
    Access,
    ChannelCategory,
    ChannelDirection,
    ChannelMediaType,
    ChannelType,
    DeliveryMode,
)
from roomkit.models.event import RoomEvent
from roomkit.models.task import Observation, Task

__all__ = [
    "ChannelBinding",
    "ChannelCapabilities",
    "ChannelOutput",
    "RateLimit",
    "RetryPolicy",
]


def _text_only() -> list[ChannelMediaType]:
    return [ChannelMediaType.TEXT]


class ChannelCapabilities(BaseModel):
    """What a channel can carry; the router transcodes and truncates from it."""

    media_types: list[ChannelMediaType] = Field(default_factory=_text_only)
    max_length: int | None = Field(default=None, gt=0)
    supports_threading: bool = False
    supports_reactions: bool = False
    supports_read_receipts: bool = False
    supports_typing: bool = False
    supports_templates: bool = False
    supports_rich_text: bool = False
    supports_buttons: bool = False
    max_buttons: int | None = Field(default=None, gt=0)
    supports_cards: bool = False
    supports_quick_replies: bool = False
    supports_media: bool = False
    supported_media_types: list[str] = Field(default_factory=list)
    max_media_size_bytes: int | None = None
    supports_audio: bool = False
    max_audio_duration_seconds: int | None = None
    supported_audio_formats: list[str] = Field(default_factory=list)
    supports_video: bool = False
    max_video_duration_seconds: int | None = None
    supported_video_formats: list[str] = Field(default_factory=list)
    delivery_mode: DeliveryMode = DeliveryMode.BROADCAST
    custom: dict[str, Any] = Field(default_factory=dict)


# An infinite limit or delay is valid: written as JSON's null it would come back as None or
# fail, and a binding goes through the log as JSON. As "Infinity" it comes back as it was.
_INFINITY_AS_A_STRING = ConfigDict(ser_json_inf_nan="strings")


class RateLimit(BaseModel):
    """Outbound rate limit of a binding; the first limit set wins (second, minute, hour)."""

    model_config = _INFINITY_AS_A_STRING

    max_per_second: float | None = Field(default=None, gt=0)
    max_per_minute: float | None = Field(default=None, gt=0)
    max_per_hour: float | None = Field(default=None, gt=0)


class RetryPolicy(BaseModel):
    """Retries of a failed delivery: ``min(base * exponential_base**attempt, max)`` apart."""

    model_config = _INFINITY_AS_A_STRING

    max_retries: int = Field(default=3, ge=0)
    base_delay_seconds: float = Field(default=1.0, gt=0)
    max_delay_seconds: float = Field(default=60.0, gt=0)
    exponential_base: float = Field(default=2.0, gt=0)


class ChannelBinding(BaseModel):
    """How one channel is attached to one room (access, visibility, mute, limits, metadata)."""

    channel_id: str
    room_id: str
    channel_type: ChannelType
    category: ChannelCategory = ChannelCategory.TRANSPORT
    direction: ChannelDirection = ChannelDirection.BIDIRECTIONAL
    access: Access = Access.READ_WRITE
    muted: bool = False
    visibility: str = "all"
    participant_id: str | None = None
    last_read_index: int | None = Field(default=None, ge=0)
    attached_at: datetime = Field(default_factory=utcnow)
    capabilities: ChannelCapabilities = Field(default_factory=ChannelCapabilities)
    rate_limit: RateLimit | None = None
    retry_policy: RetryPolicy | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ChannelOutput(BaseModel):
    """What a channel returns from ``on_event`` or ``deliver``.

    ``provider_result`` (an addition to RoomKit 0.3.0) carries the provider's answer, so that
    a ``ProviderResult(success=False)`` counts as a failure for the circuit breaker and retries.
    """

    responded: bool = False
    response_events: list[RoomEvent] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    observations: list[Observation] = Field(default_factory=list)
    metadata_updates: dict[str, Any] = Field(default_factory=dict)
    provider_result: ProviderResult | None = None
    # Why the channel could not do its part, for the kit to report (ON_ERROR, framework
    # events) while the output stays empty, as 0.3.0's AIChannel returned on a provider
    # failure: see ``failed``.
    _failure: str | None = PrivateAttr(default=None)

    @classmethod
    def empty(cls) -> ChannelOutput:
        """Return an output with no response and no side effects."""
        if cls is not ChannelOutput:
            return cls()  # a subclass may add fields, defaults or validators of its own
        # What ``cls()`` makes, without pydantic's generic path: validating the defaults,
        # four default factories and the private attributes' set-up cost ~8 times a plain
        # model's construction, and every message makes two (the base ``on_event`` of each
        # target, and most channels' ``deliver``). Nothing here needs validating.
        return constructed(
            cls,
            {
                "responded": False,
                "response_events": [],
                "tasks": [],
                "observations": [],
                "metadata_updates": {},
                "provider_result": None,
            },
            fields_set=(),
            private={"_failure": None},
        )

    @classmethod
    def failed(cls, error: str) -> ChannelOutput:
        """An empty output that the kit reports as the target's failure (``error``): an AI
        channel whose provider failed answers nothing, as in 0.3.0, and the failure reaches
        ON_ERROR hooks and the ``delivery_failed`` framework event, not only the log."""
        output = cls()
        output._failure = error
        return output

    @property
    def failure(self) -> str | None:
        """The failure ``failed`` gave it, or None."""
        # From the private attributes' dict: ``self._failure`` goes through pydantic's
        # __getattr__ (~2% of a message's instructions, read for each target's output).
        private = self.__pydantic_private__
        return private.get("_failure") if private else None

    def __eq__(self, other: object) -> bool:
        # Its fields, as before the failure was kept: that is the kit's report, not part of
        # what the channel answered (an AI channel's failed output equals ``empty()``).
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ChannelOutput)
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as pydantic's models
