"""The Channel ABC's defaults, TransportChannel and the eight transport factories."""

from __future__ import annotations

import re
from typing import Any

import pytest

import roomkit.channels as channels
from providers import (
    MockEmailProvider,
    MockHTTPProvider,
    MockMessengerProvider,
    MockRCSProvider,
    MockSMSProvider,
    MockTeamsProvider,
    MockWhatsAppProvider,
    RCSDeliveryResult,
)
from roomkit.channels import (
    EMAIL_CAPABILITIES,
    HTTP_CAPABILITIES,
    MESSENGER_CAPABILITIES,
    RCS_CAPABILITIES,
    SMS_CAPABILITIES,
    TEAMS_CAPABILITIES,
    WHATSAPP_CAPABILITIES,
    WHATSAPP_PERSONAL_CAPABILITIES,
    Channel,
    EmailChannel,
    HTTPChannel,
    MessengerChannel,
    RCSChannel,
    SMSChannel,
    TeamsChannel,
    TransportChannel,
    WhatsAppChannel,
    WhatsAppPersonalChannel,
)
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage, ProviderResult
from roomkit.models.enums import (
    ChannelCategory,
    ChannelDirection,
    ChannelMediaType,
    ChannelType,
)
from roomkit.models.event import (
    AudioContent,
    CompositeContent,
    EventSource,
    MediaContent,
    RoomEvent,
    SystemContent,
    TextContent,
    VideoContent,
)
from roomkit.models.room import Room

T = ChannelMediaType.TEXT
R = ChannelMediaType.RICH
M = ChannelMediaType.MEDIA


def _context(room_id: str = "r1") -> RoomContext:
    return RoomContext(room=Room(id=room_id))


def _binding(channel: Channel, **metadata: Any) -> ChannelBinding:
    return ChannelBinding(
        channel_id=channel.channel_id,
        room_id="r1",
        channel_type=channel.channel_type,
        metadata=metadata,
    )


def _event(body: str = "hello") -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="ws-1", channel_type=ChannelType.WEBSOCKET),
        content=TextContent(body=body),
    )


class TestExports:
    def test_all_names_importable(self) -> None:
        assert len(channels.__all__) == len(set(channels.__all__))
        for name in channels.__all__:
            assert getattr(channels, name) is not None
        for name in ("Channel", "TransportChannel", "AIChannel", "WebSocketChannel"):
            assert name in channels.__all__


class _Minimal(Channel):
    channel_type = ChannelType.WEBHOOK

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        raise NotImplementedError

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        return ChannelOutput.empty()


class _ClosingProvider:
    def __init__(self) -> None:
        self.closed = False

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        return ProviderResult(success=True)  # a provider sends: one that cannot is refused

    async def close(self) -> None:
        self.closed = True


class TestChannelDefaults:
    async def test_class_attributes_and_defaults(self) -> None:
        channel = _Minimal("c1")
        assert channel.channel_id == "c1"
        assert channel.category == ChannelCategory.TRANSPORT
        assert channel.direction == ChannelDirection.BIDIRECTIONAL
        assert channel.capabilities().media_types == [T]
        assert channel.info == {}
        assert await channel.on_event(_event(), _binding(channel), _context()) == (
            ChannelOutput.empty()
        )
        await channel.close()  # no provider: nothing to close

    async def test_close_closes_the_provider(self) -> None:
        provider = _ClosingProvider()
        channel = TransportChannel("t", ChannelType.SMS, provider=provider)
        await channel.close()
        assert provider.closed

    async def test_close_takes_a_provider_shaped_like_one(self) -> None:
        # One without close (a send coroutine is all TransportChannel needs), or with a plain
        # def close: closing the kit logged an error for each (AttributeError, TypeError).
        class SendOnly:
            async def send(self, event: RoomEvent, to: str) -> ProviderResult:
                return ProviderResult(success=True)

        class PlainClose(SendOnly):
            closed = False

            def close(self) -> None:
                self.closed = True

        await TransportChannel("t", ChannelType.SMS, provider=SendOnly()).close()
        plain = PlainClose()
        await TransportChannel("t", ChannelType.SMS, provider=plain).close()
        assert plain.closed

    def test_extract_text(self) -> None:
        assert Channel.extract_text(_event("x")) == "x"
        system = _event().model_copy(update={"content": SystemContent(body="sys")})
        assert Channel.extract_text(system) == ""


# (factory, channel type, recipient key, defaults, capability constant)
FACTORIES = [
    (SMSChannel, ChannelType.SMS, "phone_number", {"from_": None}, SMS_CAPABILITIES),
    (
        EmailChannel,
        ChannelType.EMAIL,
        "email_address",
        {"from_": None, "subject": None},
        EMAIL_CAPABILITIES,
    ),
    (RCSChannel, ChannelType.RCS, "phone_number", {"fallback": True}, RCS_CAPABILITIES),
    (WhatsAppChannel, ChannelType.WHATSAPP, "phone_number", {}, WHATSAPP_CAPABILITIES),
    (
        WhatsAppPersonalChannel,
        ChannelType.WHATSAPP_PERSONAL,
        "phone_number",
        {},
        WHATSAPP_PERSONAL_CAPABILITIES,
    ),
    (MessengerChannel, ChannelType.MESSENGER, "facebook_user_id", {}, MESSENGER_CAPABILITIES),
    (TeamsChannel, ChannelType.TEAMS, "teams_conversation_id", {}, TEAMS_CAPABILITIES),
    (HTTPChannel, ChannelType.WEBHOOK, "recipient_id", {}, HTTP_CAPABILITIES),
]


class TestFactories:
    @pytest.mark.parametrize(
        ("factory", "channel_type", "recipient_key", "defaults", "caps"), FACTORIES
    )
    def test_configuration(
        self,
        factory: Any,
        channel_type: ChannelType,
        recipient_key: str,
        defaults: dict[str, Any],
        caps: ChannelCapabilities,
    ) -> None:
        channel = factory("c1")
        assert isinstance(channel, TransportChannel)
        assert channel.channel_id == "c1"
        assert channel.channel_type == channel_type
        assert channel.category == ChannelCategory.TRANSPORT
        assert channel.recipient_key == recipient_key
        assert channel.defaults == defaults
        assert channel.capabilities() == caps
        assert channel.provider is None

    def test_capability_table(self) -> None:
        sms = SMS_CAPABILITIES
        assert sms.media_types == [T, M] and sms.max_length == 1600
        assert sms.supports_read_receipts and sms.supports_media

        email = EMAIL_CAPABILITIES
        assert email.media_types == [T, R, M] and email.max_length is None
        assert email.supports_threading and email.supports_rich_text and email.supports_media

        wa = WHATSAPP_CAPABILITIES
        assert wa.media_types == [T, R, M, ChannelMediaType.LOCATION, ChannelMediaType.TEMPLATE]
        assert wa.max_length == 4096 and wa.max_buttons == 3
        assert all(
            [
                wa.supports_read_receipts,
                wa.supports_reactions,
                wa.supports_templates,
                wa.supports_rich_text,
                wa.supports_buttons,
                wa.supports_quick_replies,
                wa.supports_media,
            ]
        )

        wap = WHATSAPP_PERSONAL_CAPABILITIES
        assert wap.media_types == [
            T,
            R,
            M,
            ChannelMediaType.AUDIO,
            ChannelMediaType.VIDEO,
            ChannelMediaType.LOCATION,
        ]
        assert wap.max_length == 4096
        assert wap.supports_read_receipts and wap.supports_reactions and wap.supports_typing
        assert wap.supported_media_types == ["image/jpeg", "image/png", "image/webp"]
        assert wap.supports_audio and wap.supported_audio_formats == ["audio/ogg", "audio/mp4"]
        assert wap.supports_video and wap.supported_video_formats == ["video/mp4"]

        fb = MESSENGER_CAPABILITIES
        assert fb.media_types == [T, R, M, ChannelMediaType.TEMPLATE] and fb.max_length == 2000
        assert fb.supports_read_receipts and fb.supports_buttons and fb.max_buttons == 3
        assert fb.supports_quick_replies and fb.supports_media

        teams = TEAMS_CAPABILITIES
        assert teams.media_types == [T, R] and teams.max_length == 28000
        assert teams.supports_threading and teams.supports_reactions
        assert teams.supports_read_receipts and teams.supports_rich_text

        assert HTTP_CAPABILITIES.media_types == [T, R]

        rcs = RCS_CAPABILITIES
        assert rcs.media_types == [T, R, M] and rcs.max_length == 8000
        assert all(
            [
                rcs.supports_read_receipts,
                rcs.supports_typing,
                rcs.supports_rich_text,
                rcs.supports_buttons,
                rcs.supports_quick_replies,
                rcs.supports_cards,
                rcs.supports_media,
            ]
        )

    def test_capabilities_are_copies(self) -> None:
        channel = SMSChannel("s")
        channel.capabilities().media_types.append(R)
        assert channel.capabilities() == SMS_CAPABILITIES
        assert SMS_CAPABILITIES.media_types == [T, M]

    def test_factory_options(self) -> None:
        assert SMSChannel("s", from_number="+1").defaults == {"from_": "+1"}
        assert EmailChannel("e", from_address="a@x.test").defaults == {
            "from_": "a@x.test",
            "subject": None,
        }
        assert RCSChannel("r", fallback=False).defaults == {"fallback": False}

    @pytest.mark.parametrize("factory", [row[0] for row in FACTORIES])
    @pytest.mark.parametrize(
        ("channel_id", "error", "said"),
        [
            (None, TypeError, "^channel_id must be a string, got None$"),
            (123, TypeError, "^channel_id must be a string, got 123$"),
            ("", ValueError, "^channel_id must not be empty$"),
        ],
    )
    def test_an_id_no_room_can_name_is_refused(
        self, factory: Any, channel_id: object, error: type[Exception], said: str
    ) -> None:
        # Each was made; "" was even registered, attached and routed to.
        with pytest.raises(error, match=said):
            factory(channel_id)

    @pytest.mark.parametrize("factory", [row[0] for row in FACTORIES])
    @pytest.mark.parametrize(
        ("provider", "got"),
        [("notaprovider", "str"), (5, "int"), (MockSMSProvider, "the class MockSMSProvider")],
    )
    def test_a_provider_that_cannot_send_is_refused(
        self, factory: Any, provider: object, got: str
    ) -> None:
        # Each was taken, and every delivery failed: "'str' object has no attribute 'send'"
        # (AIChannel refuses a provider that cannot generate).
        said = f"provider must be a provider (with a send() method) or None, got {got}"
        with pytest.raises(TypeError, match=f"^{re.escape(said)}$"):
            factory("c1", provider=provider)

    @pytest.mark.parametrize(
        ("make", "said"),
        [
            (lambda: SMSChannel("s", from_number=5), "^from_number must be a string or None"),
            (lambda: EmailChannel("e", from_address=b"a@x"), "^from_address must be a string"),
            (lambda: RCSChannel("r", fallback="no"), "^fallback must be a bool or None, got 'no'"),
            (lambda: RCSChannel("r", fallback=2), "^fallback must be a bool or None, got 2$"),
        ],
    )
    def test_an_option_of_the_wrong_type_is_refused(self, make: Any, said: str) -> None:
        # Each was passed to the provider's send at every delivery (fallback="no" is true).
        with pytest.raises(TypeError, match=said):
            make()

    def test_info_lists_fixed_defaults(self) -> None:
        assert SMSChannel("s").info == {}
        assert SMSChannel("s", from_number="+1").info == {"from_": "+1"}
        assert EmailChannel("e", from_address="a@x.test").info == {"from_": "a@x.test"}
        assert RCSChannel("r").info == {"fallback": True}


class TestHandleInbound:
    async def test_builds_event(self) -> None:
        channel = SMSChannel("sms-1", provider=MockSMSProvider())
        message = InboundMessage(
            channel_id="sms-1",
            sender_id="+15551112222",
            content=TextContent(body="hi"),
            external_id="SM123",
            thread_id="th-1",
            idempotency_key="SM123",
            metadata={"carrier": "x"},
        )
        event = await channel.handle_inbound(message, _context("room-9"))
        assert event.room_id == "room-9"
        assert event.content == TextContent(body="hi")
        assert event.source.channel_id == "sms-1"
        assert event.source.channel_type == ChannelType.SMS
        assert event.source.direction == ChannelDirection.INBOUND
        assert event.source.participant_id == "+15551112222"
        assert event.source.external_id == "SM123"
        assert event.source.provider_message_id == "SM123"
        assert event.source.provider == "MockSMSProvider"
        assert event.channel_data.thread_id == "th-1"
        assert event.idempotency_key == "SM123"
        assert event.metadata == {"carrier": "x"}
        assert event.metadata is not message.metadata

    async def test_empty_sender_means_no_participant(self) -> None:
        channel = HTTPChannel("http-1")
        message = InboundMessage(channel_id="http-1", sender_id="", content=TextContent(body="x"))
        event = await channel.handle_inbound(message, _context())
        assert event.source.participant_id is None
        assert event.source.provider is None
        assert event.idempotency_key is None

    @pytest.mark.parametrize(
        "content",
        [
            MediaContent(url="https://x.test/a.jpg", mime_type="image/jpeg"),
            CompositeContent(
                parts=[
                    TextContent(body="look"),
                    MediaContent(url="https://x.test/a.jpg", mime_type="image/jpeg"),
                ]
            ),
        ],
    )
    async def test_sms_with_media_becomes_mms(self, content: Any) -> None:
        channel = SMSChannel("sms-1")
        message = InboundMessage(channel_id="sms-1", sender_id="+1", content=content)
        event = await channel.handle_inbound(message, _context())
        assert event.source.channel_type == ChannelType.MMS
        assert channel.channel_type == ChannelType.SMS

    @pytest.mark.parametrize(
        "content",
        [
            AudioContent(url="https://x.test/a.mp3"),
            VideoContent(url="https://x.test/a.mp4"),
            CompositeContent(
                parts=[
                    TextContent(body="look"),
                    CompositeContent(
                        parts=[MediaContent(url="https://x.test/a.jpg", mime_type="image/jpeg")]
                    ),
                ]
            ),
        ],
    )
    async def test_sms_with_other_attachments_stays_sms_as_in_0_3_0(self, content: Any) -> None:
        # 0.3.0 relabelled only a MediaContent, alone or among a composite's own parts; hooks
        # filtering on ChannelType.SMS saw the rest as SMS.
        message = InboundMessage(channel_id="sms-1", sender_id="+1", content=content)
        event = await SMSChannel("sms-1").handle_inbound(message, _context())
        assert event.source.channel_type == ChannelType.SMS

    async def test_text_sms_stays_sms_and_other_media_channels_keep_their_type(self) -> None:
        message = InboundMessage(channel_id="c", sender_id="+1", content=TextContent(body="x"))
        event = await SMSChannel("c").handle_inbound(message, _context())
        assert event.source.channel_type == ChannelType.SMS
        media = InboundMessage(
            channel_id="c",
            sender_id="+1",
            content=MediaContent(url="https://x.test/a.jpg", mime_type="image/jpeg"),
        )
        event = await WhatsAppChannel("c").handle_inbound(media, _context())
        assert event.source.channel_type == ChannelType.WHATSAPP


class _Recorder:
    """A provider that records keyword arguments and returns a configurable result."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    async def send(self, event: RoomEvent, **kwargs: Any) -> Any:
        self.calls.append({"event": event, **kwargs})
        return self.result


class TestDeliver:
    async def test_sms_recipient_and_provider_result(self) -> None:
        provider = MockSMSProvider()
        channel = SMSChannel("sms-1", provider=provider)
        event = _event()
        output = await channel.deliver(
            event, _binding(channel, phone_number="+15551112222"), _context()
        )
        # No from_ given (the channel has no from_number): the mock records "" (0.3.0's).
        assert provider.sent == [{"event": event, "to": "+15551112222", "from": ""}]
        assert isinstance(output.provider_result, ProviderResult)
        assert output.provider_result.success
        assert not output.responded and output.response_events == []

    async def test_failed_send_is_returned(self) -> None:
        channel = SMSChannel("sms-1", provider=MockSMSProvider(simulate_failure=True))
        output = await channel.deliver(_event(), _binding(channel, phone_number="+1"), _context())
        assert output.provider_result is not None
        assert output.provider_result.success is False
        assert output.provider_result.error == "simulated_failure"

    async def test_missing_recipient_is_empty_string(self) -> None:
        provider = _Recorder()
        channel = TransportChannel("t", ChannelType.WEBHOOK, provider=provider)
        await channel.deliver(_event(), _binding(channel), _context())
        assert provider.calls[0]["to"] == ""

    async def test_none_default_reads_binding_metadata(self) -> None:
        provider = _Recorder()
        channel = TransportChannel(
            "t",
            ChannelType.EMAIL,
            provider=provider,
            recipient_key="email_address",
            defaults={"from_": "fixed@x.test", "subject": None, "cc": None},
        )
        binding = _binding(channel, email_address="a@x.test", subject="Re: hi", from_="ignored")
        await channel.deliver(_event(), binding, _context())
        call = provider.calls[0]
        assert call["to"] == "a@x.test"
        assert call["from_"] == "fixed@x.test"  # a fixed default wins over metadata
        assert call["subject"] == "Re: hi"
        assert call["cc"] is None  # absent from metadata

    async def test_email_factory_end_to_end(self) -> None:
        provider = MockEmailProvider()
        channel = EmailChannel("e", provider=provider, from_address="me@x.test")
        binding = _binding(channel, email_address="you@x.test", subject="Hello")
        await channel.deliver(_event(), binding, _context())
        assert provider.sent[0]["to"] == "you@x.test"
        assert provider.sent[0]["from"] == "me@x.test"
        assert provider.sent[0]["subject"] == "Hello"

    async def test_sms_from_number_from_binding_metadata(self) -> None:
        provider = MockSMSProvider()
        channel = SMSChannel("s", provider=provider)
        binding = _binding(channel, phone_number="+1", from_="+15550009999")
        await channel.deliver(_event(), binding, _context())
        assert provider.sent[0]["from"] == "+15550009999"

    async def test_rcs_fallback_none_is_read_from_the_binding(self) -> None:
        # A setting per room, as any None default: refused for a while, where 0.3.0 took it.
        provider = MockRCSProvider()
        channel = RCSChannel("r", provider=provider, fallback=None)
        binding = _binding(channel, phone_number="+1", fallback=False)
        await channel.deliver(_event(), binding, _context())
        assert provider.calls[0]["fallback"] is False

    async def test_a_provider_class_whose_send_is_static_sends(self) -> None:
        # Refused for a while as a class where an instance is due, though it sends.
        sent: list[str] = []

        class StaticSMS:
            @staticmethod
            async def send(event: RoomEvent, to: str, **kwargs: Any) -> ProviderResult:
                sent.append(to)
                return ProviderResult(success=True)

        channel = SMSChannel("s", provider=StaticSMS)  # type: ignore[arg-type]
        await channel.deliver(_event(), _binding(channel, phone_number="+1"), _context())
        assert sent == ["+1"]

    async def test_rcs_fallback_passed_through(self) -> None:
        provider = MockRCSProvider(simulate_fallback=True)
        channel = RCSChannel("r", provider=provider, fallback=False)
        output = await channel.deliver(_event(), _binding(channel, phone_number="+1"), _context())
        assert provider.calls[0]["fallback"] is False
        result = output.provider_result
        assert isinstance(result, RCSDeliveryResult)
        assert result.success and result.channel_used == "rcs" and not result.fallback

    @pytest.mark.parametrize(
        ("factory", "mock_cls", "key"),
        [
            (WhatsAppChannel, MockWhatsAppProvider, "phone_number"),
            (WhatsAppPersonalChannel, MockWhatsAppProvider, "phone_number"),
            (MessengerChannel, MockMessengerProvider, "facebook_user_id"),
            (TeamsChannel, MockTeamsProvider, "teams_conversation_id"),
            (HTTPChannel, MockHTTPProvider, "recipient_id"),
        ],
    )
    async def test_event_to_factories(self, factory: Any, mock_cls: Any, key: str) -> None:
        provider = mock_cls()
        channel = factory("c", provider=provider)
        event = _event()
        output = await channel.deliver(event, _binding(channel, **{key: "dest"}), _context())
        assert provider.sent == [{"event": event, "to": "dest"}]
        assert output.provider_result is not None and output.provider_result.success

    async def test_no_provider_is_empty(self) -> None:
        channel = SMSChannel("s")
        output = await channel.deliver(_event(), _binding(channel, phone_number="+1"), _context())
        assert output == ChannelOutput.empty()

    async def test_provider_returning_none_is_empty(self) -> None:
        channel = TransportChannel("t", ChannelType.WEBHOOK, provider=_Recorder(result=None))
        output = await channel.deliver(_event(), _binding(channel), _context())
        assert output == ChannelOutput.empty()

    async def test_provider_exception_propagates(self) -> None:
        class Exploding:
            async def send(self, event: RoomEvent, **kwargs: Any) -> ProviderResult:
                raise ConnectionError("down")

        channel = TransportChannel("t", ChannelType.WEBHOOK, provider=Exploding())
        with pytest.raises(ConnectionError):
            await channel.deliver(_event(), _binding(channel), _context())
