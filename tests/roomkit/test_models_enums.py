"""Enums: exact members, values and counts of RoomKit 0.3.0 (spec section 2)."""

from __future__ import annotations

from enum import StrEnum

import pytest

from roomkit.models import enums
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

EXPECTED: dict[type[StrEnum], list[str]] = {
    ChannelType: [
        "SMS",
        "MMS",
        "RCS",
        "EMAIL",
        "WHATSAPP",
        "WHATSAPP_PERSONAL",
        "WEBSOCKET",
        "AI",
        "VOICE",
        "REALTIME_VOICE",
        "PUSH",
        "MESSENGER",
        "TEAMS",
        "WEBHOOK",
        "SYSTEM",
    ],
    ChannelCategory: ["TRANSPORT", "INTELLIGENCE"],
    ChannelDirection: ["INBOUND", "OUTBOUND", "BIDIRECTIONAL"],
    ChannelMediaType: ["TEXT", "RICH", "MEDIA", "AUDIO", "VIDEO", "LOCATION", "TEMPLATE"],
    EventType: [
        "MESSAGE",
        "SYSTEM",
        "TYPING",
        "READ_RECEIPT",
        "DELIVERY_RECEIPT",
        "PRESENCE",
        "REACTION",
        "EDIT",
        "DELETE",
        "PARTICIPANT_JOINED",
        "PARTICIPANT_LEFT",
        "PARTICIPANT_IDENTIFIED",
        "CHANNEL_ATTACHED",
        "CHANNEL_DETACHED",
        "CHANNEL_MUTED",
        "CHANNEL_UNMUTED",
        "CHANNEL_UPDATED",
        "TASK_CREATED",
        "OBSERVATION",
    ],
    EventStatus: ["PENDING", "DELIVERED", "READ", "FAILED", "BLOCKED"],
    Access: ["READ_WRITE", "READ_ONLY", "WRITE_ONLY", "NONE"],
    IdentificationStatus: [
        "IDENTIFIED",
        "PENDING",
        "AMBIGUOUS",
        "UNKNOWN",
        "CHALLENGE_SENT",
        "REJECTED",
    ],
    ParticipantRole: ["OWNER", "AGENT", "MEMBER", "OBSERVER", "BOT"],
    ParticipantStatus: ["ACTIVE", "INACTIVE", "LEFT", "BANNED"],
    TaskStatus: ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"],
    RoomStatus: ["ACTIVE", "PAUSED", "CLOSED", "ARCHIVED"],
    DeliveryMode: ["BROADCAST", "DIRECT", "ROUND_ROBIN"],
    HookExecution: ["SYNC", "ASYNC"],
    HookTrigger: [
        "BEFORE_BROADCAST",
        "AFTER_BROADCAST",
        "ON_CHANNEL_ATTACHED",
        "ON_CHANNEL_DETACHED",
        "ON_CHANNEL_MUTED",
        "ON_CHANNEL_UNMUTED",
        "ON_ROOM_CREATED",
        "ON_ROOM_PAUSED",
        "ON_ROOM_CLOSED",
        "ON_IDENTITY_AMBIGUOUS",
        "ON_IDENTITY_UNKNOWN",
        "ON_PARTICIPANT_IDENTIFIED",
        "ON_TASK_CREATED",
        "ON_ERROR",
        "ON_DELIVERY_STATUS",
        "ON_SPEECH_START",
        "ON_SPEECH_END",
        "ON_TRANSCRIPTION",
        "BEFORE_TTS",
        "AFTER_TTS",
        "ON_BARGE_IN",
        "ON_TTS_CANCELLED",
        "ON_PARTIAL_TRANSCRIPTION",
        "ON_VAD_SILENCE",
        "ON_VAD_AUDIO_LEVEL",
        "ON_REALTIME_TOOL_CALL",
        "ON_REALTIME_TEXT_INJECTED",
    ],
}

COUNTS = {
    ChannelType: 15,
    ChannelCategory: 2,
    ChannelDirection: 3,
    ChannelMediaType: 7,
    EventType: 19,
    EventStatus: 5,
    Access: 4,
    IdentificationStatus: 6,
    ParticipantRole: 5,
    ParticipantStatus: 4,
    TaskStatus: 5,
    RoomStatus: 4,
    DeliveryMode: 3,
    HookExecution: 2,
    HookTrigger: 27,
}


@pytest.mark.parametrize("enum_cls", list(EXPECTED), ids=lambda e: e.__name__)
def test_members_in_order_with_lowercase_values(enum_cls: type[StrEnum]) -> None:
    assert [m.name for m in enum_cls] == EXPECTED[enum_cls]
    assert [m.value for m in enum_cls] == [name.lower() for name in EXPECTED[enum_cls]]
    assert len(enum_cls) == COUNTS[enum_cls]


@pytest.mark.parametrize("enum_cls", list(EXPECTED), ids=lambda e: e.__name__)
def test_str_enum_compares_and_formats_as_its_value(enum_cls: type[StrEnum]) -> None:
    member = next(iter(enum_cls))
    assert issubclass(enum_cls, StrEnum)
    assert member == member.value
    assert str(member) == member.value
    assert f"{member}" == member.value
    assert enum_cls(member.value) is member


def test_module_exports_every_enum_and_nothing_else() -> None:
    assert sorted(enums.__all__) == sorted(cls.__name__ for cls in EXPECTED)
