"""Public data models and enums of RoomKit (pydantic v2)."""

from __future__ import annotations

from roomkit.models.channel import (
    ChannelBinding,
    ChannelCapabilities,
    ChannelOutput,
    RateLimit,
    RetryPolicy,
)
from roomkit.models.context import RoomContext
from roomkit.models.delivery import (
    DeliveryResult,
    DeliveryStatus,
    InboundMessage,
    InboundResult,
    ProviderResult,
)
from roomkit.models.enums import (
    Access,
    ChannelCategory,
    ChannelDirection,
    ChannelMediaType,
    ChannelType,
    DeliveryMode,
    EventStatus,
    EventType,
    HookExecution,
    HookTrigger,
    IdentificationStatus,
    ParticipantRole,
    ParticipantStatus,
    RoomStatus,
    TaskStatus,
)
from roomkit.models.event import (
    AudioContent,
    ChannelData,
    CompositeContent,
    EventContent,
    EventSource,
    LocationContent,
    MediaContent,
    RichContent,
    RoomEvent,
    SystemContent,
    TemplateContent,
    TextContent,
    VideoContent,
)
from roomkit.models.framework import FrameworkEvent
from roomkit.models.hook import HookResult, InjectedEvent
from roomkit.models.identity import Identity, IdentityHookResult, IdentityResult
from roomkit.models.participant import Participant
from roomkit.models.room import Room, RoomTimers
from roomkit.models.task import Observation, Task

__all__ = [
    "Access",
    "AudioContent",
    "ChannelBinding",
    "ChannelCapabilities",
    "ChannelCategory",
    "ChannelData",
    "ChannelDirection",
    "ChannelMediaType",
    "ChannelOutput",
    "ChannelType",
    "CompositeContent",
    "DeliveryMode",
    "DeliveryResult",
    "DeliveryStatus",
    "EventContent",
    "EventSource",
    "EventStatus",
    "EventType",
    "FrameworkEvent",
    "HookExecution",
    "HookResult",
    "HookTrigger",
    "IdentificationStatus",
    "Identity",
    "IdentityHookResult",
    "IdentityResult",
    "InboundMessage",
    "InboundResult",
    "InjectedEvent",
    "LocationContent",
    "MediaContent",
    "Observation",
    "Participant",
    "ParticipantRole",
    "ParticipantStatus",
    "ProviderResult",
    "RateLimit",
    "RetryPolicy",
    "RichContent",
    "Room",
    "RoomContext",
    "RoomEvent",
    "RoomStatus",
    "RoomTimers",
    "SystemContent",
    "Task",
    "TaskStatus",
    "TemplateContent",
    "TextContent",
    "VideoContent",
]
