"""Public models: defaults, validators and JSON round-trips (spec section 8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import roomkit.models as models
from roomkit.models import (
    Access,
    AudioContent,
    ChannelBinding,
    ChannelCapabilities,
    ChannelCategory,
    ChannelData,
    ChannelDirection,
    ChannelMediaType,
    ChannelOutput,
    ChannelType,
    CompositeContent,
    DeliveryMode,
    DeliveryResult,
    DeliveryStatus,
    EventContent,
    EventSource,
    EventStatus,
    EventType,
    FrameworkEvent,
    IdentificationStatus,
    Identity,
    IdentityResult,
    InboundMessage,
    InboundResult,
    LocationContent,
    MediaContent,
    Observation,
    Participant,
    ParticipantRole,
    ParticipantStatus,
    ProviderResult,
    RateLimit,
    RetryPolicy,
    RichContent,
    Room,
    RoomContext,
    RoomEvent,
    RoomStatus,
    RoomTimers,
    SystemContent,
    Task,
    TaskStatus,
    TemplateContent,
    TextContent,
    VideoContent,
)

SOURCE = EventSource(channel_id="sms-1", channel_type=ChannelType.SMS)

ALL_CONTENTS: list[BaseModel] = [
    TextContent(body="hello", language="en"),
    RichContent(
        body="**hi**",
        plain_text="hi",
        buttons=[{"id": "b1", "label": "Yes"}],
        cards=[{"title": "card"}],
        quick_replies=["yes", "no"],
    ),
    MediaContent(
        url="https://example.com/a.png",
        mime_type="image/png",
        filename="a.png",
        size_bytes=12,
        caption="a picture",
    ),
    LocationContent(latitude=45.5, longitude=-73.6, label="office", address="1 Main St"),
    AudioContent(url="data:audio/ogg;base64,AAAA", duration_seconds=1.5, transcript="hi"),
    VideoContent(
        url="https://example.com/v.mp4",
        duration_seconds=3,
        thumbnail_url="http://example.com/t.jpg",
    ),
    CompositeContent(
        parts=[
            TextContent(body="see"),
            CompositeContent(parts=[MediaContent(url="http://x/y.png", mime_type="image/png")]),
        ]
    ),
    SystemContent(body="channel attached", code="channel_attached", data={"channel_id": "c"}),
    TemplateContent(template_id="welcome", parameters={"name": "Ada"}, body="Hi Ada"),
]


def nested(depth: int) -> dict[str, Any]:
    """A composite ``depth`` levels deep, as plain data."""
    content: dict[str, Any] = {"type": "text", "body": "leaf"}
    for _ in range(depth):
        content = {"type": "composite", "parts": [content]}
    return content


def make_event(**overrides: Any) -> RoomEvent:
    fields: dict[str, Any] = {"room_id": "r1", "source": SOURCE, "content": TextContent(body="x")}
    fields.update(overrides)
    return RoomEvent(**fields)


class TestContentUnion:
    def test_every_content_type_is_covered(self) -> None:
        assert sorted(type(c).__name__ for c in ALL_CONTENTS) == sorted(
            [
                "TextContent",
                "RichContent",
                "MediaContent",
                "LocationContent",
                "AudioContent",
                "VideoContent",
                "CompositeContent",
                "SystemContent",
                "TemplateContent",
            ]
        )

    @pytest.mark.parametrize("content", ALL_CONTENTS, ids=lambda c: type(c).__name__)
    def test_room_event_json_round_trip_keeps_the_content_class(self, content: BaseModel) -> None:
        event = make_event(content=content, metadata={"k": [1, 2]})
        restored = RoomEvent.model_validate_json(event.model_dump_json())
        assert restored == event
        assert type(restored.content) is type(content)

    @pytest.mark.parametrize("content", ALL_CONTENTS, ids=lambda c: type(c).__name__)
    def test_union_adapter_dispatches_on_type(self, content: BaseModel) -> None:
        adapter: TypeAdapter[EventContent] = TypeAdapter(EventContent)
        restored = adapter.validate_python(content.model_dump())
        assert type(restored) is type(content)
        assert restored == content

    def test_type_literals(self) -> None:
        assert [c.type for c in ALL_CONTENTS] == [  # type: ignore[attr-defined]
            "text",
            "rich",
            "media",
            "location",
            "audio",
            "video",
            "composite",
            "system",
            "template",
        ]

    def test_unknown_or_missing_type_is_rejected(self) -> None:
        adapter: TypeAdapter[EventContent] = TypeAdapter(EventContent)
        with pytest.raises(ValidationError):
            adapter.validate_python({"type": "sticker", "body": "x"})
        with pytest.raises(ValidationError):
            adapter.validate_python({"body": "x"})

    def test_content_defaults(self) -> None:
        rich = RichContent(body="b")
        assert (rich.format, rich.plain_text, rich.buttons, rich.cards, rich.quick_replies) == (
            "markdown",
            None,
            [],
            [],
            [],
        )
        assert AudioContent(url="https://a/b").mime_type == "audio/ogg"
        assert VideoContent(url="https://a/b").mime_type == "video/mp4"
        template = TemplateContent(template_id="t")
        assert (template.language, template.parameters, template.body) == ("en", {}, None)
        system = SystemContent(body="b")
        assert (system.code, system.data) == (None, {})
        assert TextContent(body="b").language is None

    def test_rich_format_is_html_or_markdown(self) -> None:
        assert RichContent(body="<b>x</b>", format="html").format == "html"
        with pytest.raises(ValidationError):
            RichContent(body="x", format="rtf")  # type: ignore[arg-type]


class TestContentValidators:
    @pytest.mark.parametrize("url", ["http://a/b", "https://a/b", "data:image/png;base64,AA"])
    def test_media_and_audio_accept_http_https_and_data(self, url: str) -> None:
        assert MediaContent(url=url, mime_type="image/png").url == url
        assert AudioContent(url=url).url == url

    @pytest.mark.parametrize("url", ["ftp://a/b", "file:///etc/passwd", "/local/path", ""])
    def test_media_and_audio_reject_other_schemes(self, url: str) -> None:
        said = "URL must start with http://, https://, or data: \\["  # 0.3.0's words
        with pytest.raises(ValidationError, match=said):
            MediaContent(url=url, mime_type="image/png")
        with pytest.raises(ValidationError, match=said):
            AudioContent(url=url)
        with pytest.raises(ValidationError, match="URL must start with http:// or https:// \\["):
            VideoContent(url=url)

    def test_an_empty_composite_is_refused_in_0_3_0_s_words(self) -> None:
        with pytest.raises(ValidationError, match="CompositeContent must have at least one part"):
            CompositeContent(parts=[])

    def test_video_accepts_only_http_and_https(self) -> None:
        assert VideoContent(url="http://a/b").url == "http://a/b"
        assert VideoContent(url="https://a/b").url == "https://a/b"
        with pytest.raises(ValidationError):
            VideoContent(url="data:video/mp4;base64,AA")
        with pytest.raises(ValidationError):
            VideoContent(url="ftp://a/b")

    def test_video_thumbnail_must_be_http(self) -> None:
        assert VideoContent(url="https://a/v").thumbnail_url is None
        with pytest.raises(ValidationError):
            VideoContent(url="https://a/v", thumbnail_url="data:image/png;base64,AA")

    def test_sizes_and_durations_are_non_negative(self) -> None:
        assert MediaContent(url="https://a", mime_type="x/y", size_bytes=0).size_bytes == 0
        with pytest.raises(ValidationError):
            MediaContent(url="https://a", mime_type="x/y", size_bytes=-1)
        with pytest.raises(ValidationError):
            AudioContent(url="https://a", duration_seconds=-0.1)
        with pytest.raises(ValidationError):
            VideoContent(url="https://a", duration_seconds=-1)

    @pytest.mark.parametrize(("lat", "lon"), [(-90, -180), (90, 180), (0, 0), (-89.999, 179.999)])
    def test_location_in_range(self, lat: float, lon: float) -> None:
        location = LocationContent(latitude=lat, longitude=lon)
        assert (location.latitude, location.longitude) == (lat, lon)

    @pytest.mark.parametrize(("lat", "lon"), [(-90.1, 0), (90.1, 0), (0, -180.1), (0, 180.1)])
    def test_location_out_of_range(self, lat: float, lon: float) -> None:
        with pytest.raises(ValidationError):
            LocationContent(latitude=lat, longitude=lon)

    def test_composite_must_not_be_empty(self) -> None:
        with pytest.raises(ValidationError, match="at least one part"):
            CompositeContent(parts=[])

    def test_composite_nesting_up_to_five_levels(self) -> None:
        content = CompositeContent.model_validate(nested(5))
        assert isinstance(content, CompositeContent)
        with pytest.raises(ValidationError, match="nesting depth"):
            CompositeContent.model_validate(nested(6))

    def test_composite_depth_is_checked_when_built_from_instances(self) -> None:
        five = CompositeContent.model_validate(nested(5))
        with pytest.raises(ValidationError, match="nesting depth"):
            CompositeContent(parts=[five])
        payload = make_event().model_dump(mode="json") | {"content": nested(6)}
        with pytest.raises(ValidationError, match="nesting depth"):
            RoomEvent.model_validate_json(json.dumps(payload))

    def test_composite_depth_counts_the_deepest_branch(self) -> None:
        deep = nested(4)  # composite depth 4
        content = CompositeContent.model_validate(
            {"type": "composite", "parts": [{"type": "text", "body": "a"}, deep]}
        )
        assert len(content.parts) == 2
        with pytest.raises(ValidationError):
            CompositeContent.model_validate(
                {"type": "composite", "parts": [{"type": "text", "body": "a"}, nested(5)]}
            )


class TestRoomEvent:
    def test_defaults(self) -> None:
        before = datetime.now(UTC)
        event = make_event()
        assert len(event.id) == 32
        int(event.id, 16)
        assert event.type is EventType.MESSAGE
        assert event.status is EventStatus.PENDING
        assert event.blocked_by is None
        assert event.visibility == "all"
        assert (event.index, event.chain_depth) == (0, 0)
        assert event.parent_event_id is None
        assert event.correlation_id is None
        assert event.idempotency_key is None
        assert event.created_at.tzinfo is not None
        assert before <= event.created_at <= datetime.now(UTC)
        assert event.metadata == {}
        assert event.channel_data == ChannelData()
        assert event.delivery_results == {}

    def test_ids_and_mutable_defaults_are_fresh(self) -> None:
        a, b = make_event(), make_event()
        assert a.id != b.id
        a.metadata["x"] = 1
        a.channel_data.extra["y"] = 2
        assert b.metadata == {}
        assert b.channel_data.extra == {}

    def test_source_defaults(self) -> None:
        assert SOURCE.direction is ChannelDirection.INBOUND
        assert SOURCE.participant_id is None
        assert SOURCE.external_id is None
        assert SOURCE.provider is None
        assert SOURCE.raw_payload == {}
        assert SOURCE.provider_message_id is None

    def test_channel_data_defaults(self) -> None:
        data = ChannelData()
        assert (data.provider, data.external_id, data.thread_id, data.extra) == (
            None,
            None,
            None,
            {},
        )

    def test_index_and_chain_depth_are_non_negative(self) -> None:
        assert make_event(index=7, chain_depth=2).index == 7
        with pytest.raises(ValidationError):
            make_event(index=-1)
        with pytest.raises(ValidationError):
            make_event(chain_depth=-1)

    def test_content_from_dict_and_enums_from_strings(self) -> None:
        event = RoomEvent.model_validate(
            {
                "room_id": "r",
                "type": "system",
                "status": "delivered",
                "source": {"channel_id": "c", "channel_type": "email", "direction": "outbound"},
                "content": {"type": "location", "latitude": 1, "longitude": 2},
            }
        )
        assert event.type is EventType.SYSTEM
        assert event.status is EventStatus.DELIVERED
        assert event.source.channel_type is ChannelType.EMAIL
        assert event.source.direction is ChannelDirection.OUTBOUND
        assert isinstance(event.content, LocationContent)

    def test_required_fields(self) -> None:
        with pytest.raises(ValidationError):
            RoomEvent(source=SOURCE, content=TextContent(body="x"))  # type: ignore[call-arg]
        with pytest.raises(ValidationError):
            RoomEvent(room_id="r", content=TextContent(body="x"))  # type: ignore[call-arg]
        with pytest.raises(ValidationError):
            EventSource(channel_id="c", channel_type="carrier-pigeon")  # type: ignore[arg-type]

    def test_model_copy_update_is_the_immutable_update_style(self) -> None:
        event = make_event()
        blocked = event.model_copy(update={"status": EventStatus.BLOCKED, "blocked_by": "h"})
        assert event.status is EventStatus.PENDING
        assert (blocked.status, blocked.blocked_by, blocked.id) == (
            EventStatus.BLOCKED,
            "h",
            event.id,
        )


class TestRoomAndParticipant:
    def test_room_defaults(self) -> None:
        room = Room()
        assert len(room.id) == 32
        assert room.organization_id is None
        assert room.status is RoomStatus.ACTIVE
        assert room.created_at.tzinfo is not None
        assert room.updated_at.tzinfo is not None
        assert room.closed_at is None
        assert room.timers == RoomTimers()
        assert room.metadata == {}
        assert (room.event_count, room.latest_index) == (0, 0)
        assert Room().id != room.id

    def test_room_counters_non_negative(self) -> None:
        with pytest.raises(ValidationError):
            Room(event_count=-1)
        with pytest.raises(ValidationError):
            Room(latest_index=-1)

    def test_timers(self) -> None:
        timers = RoomTimers()
        assert (timers.inactive_after_seconds, timers.closed_after_seconds) == (None, None)
        assert timers.last_activity_at is None
        assert (
            RoomTimers(inactive_after_seconds=0, closed_after_seconds=60).closed_after_seconds
            == 60
        )
        with pytest.raises(ValidationError):
            RoomTimers(inactive_after_seconds=-1)
        with pytest.raises(ValidationError):
            RoomTimers(closed_after_seconds=-1)

    def test_participant_defaults(self) -> None:
        participant = Participant(id="p1", room_id="r1", channel_id="sms-1")
        assert participant.display_name is None
        assert participant.role is ParticipantRole.MEMBER
        assert participant.status is ParticipantStatus.ACTIVE
        assert participant.identification is IdentificationStatus.PENDING
        assert participant.identity_id is None
        assert participant.candidates is None
        assert participant.connected_via == []
        assert participant.external_id is None
        assert (participant.resolved_at, participant.resolved_by) == (None, None)
        assert participant.joined_at.tzinfo is not None
        assert participant.metadata == {}


class TestIdentityModels:
    def test_identity_defaults(self) -> None:
        identity = Identity(display_name="Ada")
        assert len(identity.id) == 32
        assert identity.channel_addresses == {}
        assert identity.external_ids == {}
        assert (identity.organization_id, identity.email, identity.phone) == (None, None, None)

    def test_identity_result(self) -> None:
        result = IdentityResult(status=IdentificationStatus.AMBIGUOUS)
        assert result.identity is None
        assert result.candidates == []
        assert (result.address, result.channel_type, result.challenge_type, result.message) == (
            None,
            None,
            None,
            None,
        )
        with pytest.raises(ValidationError):
            IdentityResult()  # type: ignore[call-arg]


class TestTasks:
    def test_task_defaults(self) -> None:
        task = Task(room_id="r1", title="Call back")
        assert len(task.id) == 32
        assert task.status is TaskStatus.PENDING
        assert task.description is None  # as in 0.3.0, which took None too
        assert Task(room_id="r1", title="x", description=None).description is None
        assert task.assigned_to is None
        assert task.created_at.tzinfo is not None
        assert task.metadata == {}

    def test_observation_confidence_range(self) -> None:
        observation = Observation(room_id="r", channel_id="ai", content="happy")
        assert observation.confidence == 1.0
        assert observation.category is None  # as in 0.3.0
        assert Observation(room_id="r", channel_id="c", content="x", confidence=0).confidence == 0
        with pytest.raises(ValidationError):
            Observation(room_id="r", channel_id="c", content="x", confidence=1.01)
        with pytest.raises(ValidationError):
            Observation(room_id="r", channel_id="c", content="x", confidence=-0.01)


class TestChannelModels:
    def test_capabilities_defaults(self) -> None:
        caps = ChannelCapabilities()
        assert caps.media_types == [ChannelMediaType.TEXT]
        assert caps.max_length is None
        assert caps.max_buttons is None
        assert caps.delivery_mode is DeliveryMode.BROADCAST
        assert caps.custom == {}
        flags = [name for name, value in caps if name.startswith("supports_") and value]
        assert flags == []
        assert ChannelCapabilities().media_types is not caps.media_types

    def test_capabilities_limits_are_positive(self) -> None:
        assert ChannelCapabilities(max_length=1, max_buttons=1).max_length == 1
        with pytest.raises(ValidationError):
            ChannelCapabilities(max_length=0)
        with pytest.raises(ValidationError):
            ChannelCapabilities(max_buttons=0)

    @pytest.mark.parametrize(
        "limit",
        ["max_media_size_bytes", "max_audio_duration_seconds", "max_video_duration_seconds"],
    )
    def test_media_limits_take_0_as_logs_written_before_may_hold_it(self, limit: str) -> None:
        # Bindings are replayed from the log with their capabilities: refusing a value once
        # taken would leave a room that holds it unloadable.
        assert getattr(ChannelCapabilities(**{limit: 0}), limit) == 0

    def test_binding_defaults(self) -> None:
        binding = ChannelBinding(channel_id="c", room_id="r", channel_type=ChannelType.SMS)
        assert binding.category is ChannelCategory.TRANSPORT
        assert binding.direction is ChannelDirection.BIDIRECTIONAL
        assert binding.access is Access.READ_WRITE
        assert binding.muted is False
        assert binding.visibility == "all"
        assert binding.participant_id is None
        assert binding.last_read_index is None
        assert binding.attached_at.tzinfo is not None
        assert binding.capabilities == ChannelCapabilities()
        assert (binding.rate_limit, binding.retry_policy) == (None, None)
        assert binding.metadata == {}
        with pytest.raises(ValidationError):
            ChannelBinding(channel_id="c", room_id="r", channel_type="sms", last_read_index=-1)

    def test_rate_limit(self) -> None:
        assert RateLimit().model_dump() == {
            "max_per_second": None,
            "max_per_minute": None,
            "max_per_hour": None,
        }
        assert RateLimit(max_per_minute=0.5).max_per_minute == 0.5
        for name in ("max_per_second", "max_per_minute", "max_per_hour"):
            with pytest.raises(ValidationError):
                RateLimit(**{name: 0})

    def test_retry_policy(self) -> None:
        policy = RetryPolicy()
        assert (
            policy.max_retries,
            policy.base_delay_seconds,
            policy.max_delay_seconds,
            policy.exponential_base,
        ) == (3, 1.0, 60.0, 2.0)
        assert RetryPolicy(max_retries=0).max_retries == 0
        with pytest.raises(ValidationError):
            RetryPolicy(max_retries=-1)
        for name in ("base_delay_seconds", "max_delay_seconds", "exponential_base"):
            with pytest.raises(ValidationError):
                RetryPolicy(**{name: 0})

    def test_channel_output(self) -> None:
        empty = ChannelOutput.empty()
        assert empty == ChannelOutput()
        assert empty.responded is False
        assert (empty.response_events, empty.tasks, empty.observations) == ([], [], [])
        assert empty.metadata_updates == {}
        assert empty.provider_result is None
        assert ChannelOutput.empty() is not empty
        failed = ChannelOutput(provider_result=ProviderResult(success=False, error="timeout"))
        assert failed.provider_result is not None
        assert failed.provider_result.success is False


class TestRoomContext:
    def bindings(self) -> list[ChannelBinding]:
        return [
            ChannelBinding(channel_id="sms-1", room_id="r", channel_type=ChannelType.SMS),
            ChannelBinding(channel_id="sms-2", room_id="r", channel_type=ChannelType.SMS),
            ChannelBinding(
                channel_id="ai",
                room_id="r",
                channel_type=ChannelType.AI,
                category=ChannelCategory.INTELLIGENCE,
            ),
        ]

    def test_defaults(self) -> None:
        context = RoomContext(room=Room(id="r"))
        assert (context.bindings, context.participants, context.recent_events) == ([], [], [])

    def test_helpers(self) -> None:
        context = RoomContext(room=Room(id="r"), bindings=self.bindings())
        assert [b.channel_id for b in context.other_channels("sms-1")] == ["sms-2", "ai"]
        assert [b.channel_id for b in context.channels_by_type(ChannelType.SMS)] == [
            "sms-1",
            "sms-2",
        ]
        assert [b.channel_id for b in context.channels_by_type("ai")] == ["ai"]  # type: ignore[arg-type]
        assert context.channels_by_type(ChannelType.EMAIL) == []
        binding = context.get_binding("ai")
        assert binding is not None
        assert binding.category is ChannelCategory.INTELLIGENCE
        assert context.get_binding("nope") is None

    def test_models_passed_in_are_kept_not_copied(self) -> None:
        event = make_event()
        context = RoomContext(room=Room(id="r"), recent_events=[event])
        assert context.recent_events[0] is event


class TestDeliveryModels:
    def test_inbound_message(self) -> None:
        message = InboundMessage(
            channel_id="sms-1", sender_id="+1555", content={"type": "text", "body": "hi"}
        )
        assert isinstance(message.content, TextContent)
        assert (message.external_id, message.thread_id, message.idempotency_key) == (
            None,
            None,
            None,
        )
        assert message.metadata == {}
        restored = InboundMessage.model_validate_json(message.model_dump_json())
        assert restored == message

    def test_inbound_result(self) -> None:
        result = InboundResult()
        assert (result.event, result.blocked, result.reason) == (None, False, None)

    def test_provider_and_delivery_results(self) -> None:
        with pytest.raises(ValidationError):
            ProviderResult()  # type: ignore[call-arg]
        ok = ProviderResult(success=True, provider_message_id="SM1")
        assert (ok.error, ok.metadata) == (None, {})
        delivery = DeliveryResult(channel_id="sms-1", success=True, provider_result=ok)
        assert delivery.error is None
        assert DeliveryResult.model_validate_json(delivery.model_dump_json()) == delivery

    def test_delivery_status(self) -> None:
        status = DeliveryStatus(provider="twilio", message_id="SM1", status="delivered")
        assert (status.recipient, status.sender) == ("", "")
        assert (status.error_code, status.error_message, status.timestamp) == (None, None, None)
        assert status.raw == {}


def test_framework_event_defaults() -> None:
    event = FrameworkEvent(type="room_created", room_id="r1")
    assert (event.channel_id, event.event_id) == (None, None)
    assert event.timestamp.tzinfo is not None
    assert event.data == {}
    with pytest.raises(ValidationError):
        FrameworkEvent()  # type: ignore[call-arg]


def test_models_all_is_sorted_complete_and_importable() -> None:
    assert models.__all__ == sorted(models.__all__)
    assert len(set(models.__all__)) == len(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is not None
    assert "ChannelData" in models.__all__
    exported = {
        name
        for name, value in vars(models).items()
        if not name.startswith("_") and isinstance(value, type)
    }
    assert exported <= set(models.__all__)


def test_new_ids_are_random_uuid4_hex() -> None:
    import uuid

    from roomkit.models._defaults import new_id

    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in list(ids)[:50]:
        parsed = uuid.UUID(value)
        assert parsed.hex == value and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_updated_is_model_copy_with_update() -> None:
    from roomkit.models._copy import updated

    room = Room(id="r1", metadata={"a": 1})
    changed = updated(room, {"event_count": 3, "latest_index": 2})
    assert changed == room.model_copy(update={"event_count": 3, "latest_index": 2})
    assert changed.model_fields_set == room.model_copy(
        update={"event_count": 3}
    ).model_fields_set | {"latest_index"}
    assert room.event_count == 0  # the original is untouched
    assert changed.metadata is room.metadata  # shallow, like model_copy


def test_constructed_is_model_construct_with_every_field() -> None:
    from roomkit.models._copy import constructed
    from roomkit.models.context import RoomContext

    room = Room(id="r1")
    values: dict[str, Any] = {
        "room": room,
        "bindings": [],
        "participants": [],
        "recent_events": [],
    }
    built = constructed(RoomContext, dict(values))
    expected = RoomContext.model_construct(**values)
    assert built == expected
    assert built.model_fields_set == expected.model_fields_set
    assert built.model_dump() == expected.model_dump()
    assert set(RoomContext.model_fields) == set(values)  # the kit's context names every field


def test_a_url_scheme_is_taken_in_any_case_but_data_as_written() -> None:
    # "HTTPS://" was refused (a vendor's media dropped); "DATA:", taken, would be read as a
    # link by every reader that tells a data URL by its "data:".
    assert MediaContent(url="HTTPS://x.example/a.png", mime_type="image/png").url
    assert MediaContent(url="data:image/png;base64,AAAA", mime_type="image/png").url
    with pytest.raises(ValidationError, match="URL must start with"):
        MediaContent(url="DATA:image/png;base64,AAAA", mime_type="image/png")
