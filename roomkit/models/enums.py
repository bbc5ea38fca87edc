"""Every enumeration of the public models (RoomKit 0.3.0 values and member counts)."""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = [
    "Access",
    "ChannelCategory",
    "ChannelDirection",
    "ChannelMediaType",
    "ChannelType",
    "DeliveryMode",
    "EventStatus",
    "EventType",
    "HookExecution",
    "HookTrigger",
    "IdentificationStatus",
    "ParticipantRole",
    "ParticipantStatus",
    "RoomStatus",
    "TaskStatus",
]


@unique
class ChannelType(StrEnum):
    """Kind of channel a binding, an event source or a channel class belongs to."""

    SMS = "sms"
    MMS = "mms"
    RCS = "rcs"
    EMAIL = "email"
    WHATSAPP = "whatsapp"
    WHATSAPP_PERSONAL = "whatsapp_personal"
    WEBSOCKET = "websocket"
    AI = "ai"
    VOICE = "voice"
    REALTIME_VOICE = "realtime_voice"
    PUSH = "push"
    MESSENGER = "messenger"
    TEAMS = "teams"
    WEBHOOK = "webhook"
    SYSTEM = "system"


@unique
class ChannelCategory(StrEnum):
    """Transport channels reach people; intelligence channels (AI) only think."""

    TRANSPORT = "transport"
    INTELLIGENCE = "intelligence"


@unique
class ChannelDirection(StrEnum):
    """Which way messages may flow through a channel."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    BIDIRECTIONAL = "bidirectional"


@unique
class ChannelMediaType(StrEnum):
    """Kind of content a channel can carry (drives transcoding)."""

    TEXT = "text"
    RICH = "rich"
    MEDIA = "media"
    AUDIO = "audio"
    VIDEO = "video"
    LOCATION = "location"
    TEMPLATE = "template"


@unique
class EventType(StrEnum):
    """Type of a room event."""

    MESSAGE = "message"
    SYSTEM = "system"
    TYPING = "typing"
    READ_RECEIPT = "read_receipt"
    DELIVERY_RECEIPT = "delivery_receipt"
    PRESENCE = "presence"
    REACTION = "reaction"
    EDIT = "edit"
    DELETE = "delete"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_LEFT = "participant_left"
    PARTICIPANT_IDENTIFIED = "participant_identified"
    CHANNEL_ATTACHED = "channel_attached"
    CHANNEL_DETACHED = "channel_detached"
    CHANNEL_MUTED = "channel_muted"
    CHANNEL_UNMUTED = "channel_unmuted"
    CHANNEL_UPDATED = "channel_updated"
    TASK_CREATED = "task_created"
    OBSERVATION = "observation"


@unique
class EventStatus(StrEnum):
    """Lifecycle status of a room event."""

    PENDING = "pending"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    BLOCKED = "blocked"


@unique
class Access(StrEnum):
    """What a bound channel may do in a room."""

    READ_WRITE = "read_write"
    READ_ONLY = "read_only"
    WRITE_ONLY = "write_only"
    NONE = "none"


@unique
class IdentificationStatus(StrEnum):
    """Outcome of resolving who sent a message."""

    IDENTIFIED = "identified"
    PENDING = "pending"
    AMBIGUOUS = "ambiguous"
    UNKNOWN = "unknown"
    CHALLENGE_SENT = "challenge_sent"
    REJECTED = "rejected"


@unique
class ParticipantRole(StrEnum):
    """Role of a participant in a room."""

    OWNER = "owner"
    AGENT = "agent"
    MEMBER = "member"
    OBSERVER = "observer"
    BOT = "bot"


@unique
class ParticipantStatus(StrEnum):
    """Membership status of a participant."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    LEFT = "left"
    BANNED = "banned"


@unique
class TaskStatus(StrEnum):
    """Progress of a task raised by a hook or a channel."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@unique
class RoomStatus(StrEnum):
    """Lifecycle status of a room."""

    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"
    ARCHIVED = "archived"


@unique
class DeliveryMode(StrEnum):
    """Declared delivery strategy of a channel (the router always broadcasts)."""

    BROADCAST = "broadcast"
    DIRECT = "direct"
    ROUND_ROBIN = "round_robin"


@unique
class HookExecution(StrEnum):
    """SYNC hooks run before commit and may block or modify; ASYNC hooks only observe."""

    SYNC = "sync"
    ASYNC = "async"


@unique
class HookTrigger(StrEnum):
    """Point in the pipeline or the room lifecycle where hooks run."""

    # Event pipeline
    BEFORE_BROADCAST = "before_broadcast"
    AFTER_BROADCAST = "after_broadcast"
    # Channel lifecycle
    ON_CHANNEL_ATTACHED = "on_channel_attached"
    ON_CHANNEL_DETACHED = "on_channel_detached"
    ON_CHANNEL_MUTED = "on_channel_muted"
    ON_CHANNEL_UNMUTED = "on_channel_unmuted"
    # Room lifecycle
    ON_ROOM_CREATED = "on_room_created"
    ON_ROOM_PAUSED = "on_room_paused"
    ON_ROOM_CLOSED = "on_room_closed"
    # Identity
    ON_IDENTITY_AMBIGUOUS = "on_identity_ambiguous"
    ON_IDENTITY_UNKNOWN = "on_identity_unknown"
    ON_PARTICIPANT_IDENTIFIED = "on_participant_identified"
    # Side effects
    ON_TASK_CREATED = "on_task_created"
    ON_ERROR = "on_error"
    ON_DELIVERY_STATUS = "on_delivery_status"
    # Voice
    ON_SPEECH_START = "on_speech_start"
    ON_SPEECH_END = "on_speech_end"
    ON_TRANSCRIPTION = "on_transcription"
    BEFORE_TTS = "before_tts"
    AFTER_TTS = "after_tts"
    ON_BARGE_IN = "on_barge_in"
    ON_TTS_CANCELLED = "on_tts_cancelled"
    ON_PARTIAL_TRANSCRIPTION = "on_partial_transcription"
    ON_VAD_SILENCE = "on_vad_silence"
    ON_VAD_AUDIO_LEVEL = "on_vad_audio_level"
    # Realtime voice
    ON_REALTIME_TOOL_CALL = "on_realtime_tool_call"
    ON_REALTIME_TEXT_INJECTED = "on_realtime_text_injected"
