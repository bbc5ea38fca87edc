"""The provider ABCs' defaults and the mocks' recording behaviour."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from typing import Any

import pytest

import providers
from providers import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AIResponse,
    AITextPart,
    AITool,
    AIToolCall,
    EmailProvider,
    HTTPProvider,
    MessengerProvider,
    MockAIProvider,
    MockEmailProvider,
    MockHTTPProvider,
    MockMessengerProvider,
    MockRCSProvider,
    MockSMSProvider,
    MockTeamsProvider,
    MockWhatsAppProvider,
    ProviderError,
    RCSDeliveryResult,
    RCSProvider,
    SMSProvider,
    TeamsProvider,
    WhatsAppProvider,
)
from roomkit.models.delivery import ProviderResult
from roomkit.models.enums import ChannelType
from roomkit.models.event import EventSource, RoomEvent, TextContent


def _event(body: str = "hi") -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms-1", channel_type=ChannelType.SMS),
        content=TextContent(body=body),
    )


class TestPublicNames:
    def test_all_names_unique_and_importable(self) -> None:
        assert len(providers.__all__) == len(set(providers.__all__))
        for name in providers.__all__:
            assert getattr(providers, name) is not None

    def test_subpackages_export_their_names(self) -> None:
        from providers import ai, email, http, messenger, rcs, sms, teams, whatsapp

        for package in (ai, email, http, messenger, rcs, sms, teams, whatsapp):
            # Vendor names are in __all__ too (as in 0.3.0) but only the package serves them.
            vendor = getattr(package, "_VENDOR_EXPORTS", {})
            for name in package.__all__:
                if name not in vendor:
                    assert getattr(providers, name) is getattr(package, name)

    @pytest.mark.parametrize(
        ("package", "names_0_3_0"),
        [
            (
                "messenger",
                {"FacebookMessengerProvider", "MessengerConfig", "MessengerProvider",
                 "MockMessengerProvider", "parse_messenger_webhook"},
            ),
            (
                "teams",
                {"BotFrameworkTeamsProvider", "ConversationReferenceStore",
                 "InMemoryConversationReferenceStore", "MockTeamsProvider", "TeamsConfig",
                 "TeamsProvider", "is_bot_added", "parse_teams_activity", "parse_teams_webhook"},
            ),
            (
                "http",
                {"HTTPProvider", "HTTPProviderConfig", "MockHTTPProvider", "WebhookHTTPProvider",
                 "parse_http_webhook"},
            ),
        ],
    )  # fmt: skip
    def test_star_import_brings_the_vendor_names_as_0_3_0(
        self, package: str, names_0_3_0: set[str]
    ) -> None:
        module = importlib.import_module(f"providers.{package}")
        assert set(module.__all__) >= set(module._VENDOR_EXPORTS)
        namespace: dict[str, Any] = {}
        exec(f"from roomkit.providers.{package} import *", namespace)
        assert names_0_3_0 <= set(namespace)
        for name in module.__all__:
            assert namespace[name] is getattr(module, name)

    def test_provider_error_is_reexported_from_ai_base(self) -> None:
        from providers.ai.base import ProviderError as FromAIBase

        assert FromAIBase is ProviderError


@pytest.mark.parametrize(
    "module", ["providers", "providers.sms.mock", "roomkit", "roomkit.channels.ai"]
)
def test_import_order_has_no_cycle(module: str) -> None:
    """``providers`` and ``roomkit`` import each other's modules; any entry point must work."""
    code = f"import {module}; import providers, roomkit.channels; providers.MockAIProvider"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


class TestProviderError:
    def test_fields_and_defaults(self) -> None:
        err = ProviderError("boom")
        assert str(err) == "boom"
        assert (err.message, err.retryable, err.provider) == ("boom", False, "")
        assert err.status_code is None and err.retry_after is None

    def test_keyword_fields(self) -> None:
        err = ProviderError(
            "slow down", retryable=True, provider="X", status_code=429, retry_after=2.5
        )
        assert (err.retryable, err.provider, err.status_code, err.retry_after) == (
            True,
            "X",
            429,
            2.5,
        )
        assert "retry_after=2.5" in repr(err)


class TestAIModels:
    def test_message_content_parts_are_discriminated(self) -> None:
        message = AIMessage.model_validate(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "url": "https://x.test/a.png", "mime_type": "image/png"},
                ],
            }
        )
        assert isinstance(message.content, list)
        assert isinstance(message.content[0], AITextPart)
        assert isinstance(message.content[1], AIImagePart)

    def test_content_parts_without_their_type_are_read_by_their_fields(self) -> None:
        # As 0.3.0 read them (conversations rebuilt from stored or hand-written dicts).
        message = AIMessage.model_validate(
            {"role": "user", "content": [{"text": "hi"}, {"url": "https://x.test/a.png"}]}
        )
        assert isinstance(message.content, list)
        assert [type(part) for part in message.content] == [AITextPart, AIImagePart]

    def test_a_tool_without_a_description_has_an_empty_one(self) -> None:
        assert AITool(name="t1").description == ""
        assert AITool.model_validate({"name": "t1"}).description == ""

    def test_a_context_subclass_may_hold_any_type(self) -> None:
        class Session:
            pass

        class MyContext(AIContext):
            session: Session | None = None

        assert MyContext(session=Session()).session is not None

    def test_context_defaults(self) -> None:
        context = AIContext()
        assert context.messages == [] and context.tools == []
        assert (context.temperature, context.max_tokens) == (0.7, 1024)
        assert context.room is None and context.target_capabilities is None

    def test_response_defaults(self) -> None:
        response = AIResponse(content="ok", tool_calls=[AIToolCall(id="1", name="f")])
        assert response.usage == {} and response.tasks == [] and response.observations == []
        assert response.tool_calls[0].arguments == {}


class TestMockAIProvider:
    async def test_round_robin_and_recording(self) -> None:
        provider = MockAIProvider(["a", "b"])
        contexts = [AIContext(system_prompt=str(i)) for i in range(3)]
        replies = [(await provider.generate(c)).content for c in contexts]
        assert replies == ["a", "b", "a"]
        assert provider.calls == contexts

    async def test_usage_and_defaults(self) -> None:
        provider = MockAIProvider()
        response = await provider.generate(AIContext())
        assert response.content == "Hello from AI"  # 0.3.0's default reply
        assert response.usage == {"prompt_tokens": 10, "completion_tokens": 5}
        assert isinstance(provider, AIProvider)
        assert provider.name == "MockAIProvider"
        assert provider.model_name == "mock"
        assert provider.supports_vision is False
        assert MockAIProvider(vision=True).supports_vision is True
        await provider.close()

    async def test_replies_added_to_the_given_list_later_are_used(self) -> None:
        replies = ["a"]
        provider = MockAIProvider(replies)
        replies.append("b")  # 0.3.0 kept the caller's list
        answers = [(await provider.generate(AIContext())).content for _ in range(3)]
        assert answers == ["a", "b", "a"]


class TestMockSMSProvider:
    async def test_records_sends(self) -> None:
        provider = MockSMSProvider()
        event = _event()
        result = await provider.send(event, to="+15551112222")
        result2 = await provider.send(event, to="+15553334444", from_="+15559990000")
        assert isinstance(provider, SMSProvider)
        assert provider.from_number == "+15550001234"
        assert provider.sent == [
            {"event": event, "to": "+15551112222", "from": ""},  # as passed: 0.3.0's record
            {"event": event, "to": "+15553334444", "from": "+15559990000"},
        ]
        assert result.success and result.provider_message_id
        assert result.provider_message_id != result2.provider_message_id
        assert re.fullmatch("[0-9a-f]{32}", result.provider_message_id)  # 0.3.0's ids

    async def test_simulated_failure_is_returned_not_raised(self) -> None:
        provider = MockSMSProvider(simulate_failure=True)
        result = await provider.send(_event(), to="+1")
        assert not result.success and result.error == "simulated_failure"
        assert len(provider.sent) == 1

    async def test_optional_methods_raise_not_implemented(self) -> None:
        provider = MockSMSProvider()
        with pytest.raises(NotImplementedError):
            await provider.parse_webhook({}, "sms-1")
        with pytest.raises(NotImplementedError):
            provider.verify_signature(b"", "sig")


class TestMockEmailProvider:
    async def test_records_sends_with_subject(self) -> None:
        provider = MockEmailProvider()
        event = _event()
        result = await provider.send(event, to="a@x.test", from_="b@x.test", subject="Hi")
        assert isinstance(provider, EmailProvider)
        await provider.send(event, to="c@x.test")
        assert provider.sent == [
            {"event": event, "to": "a@x.test", "from": "b@x.test", "subject": "Hi"},
            {"event": event, "to": "c@x.test", "from": "", "subject": ""},  # as 0.3.0's
        ]
        assert result.success
        with pytest.raises(NotImplementedError):
            await provider.parse_inbound({}, "email-1")


class TestMockRCSProvider:
    async def test_rcs_delivery(self) -> None:
        provider = MockRCSProvider("agent-1")
        event = _event()
        result = await provider.send(event, to="+1")
        assert isinstance(provider, RCSProvider)
        assert isinstance(result, RCSDeliveryResult) and isinstance(result, ProviderResult)
        assert result.success and result.channel_used == "rcs" and not result.fallback
        assert provider.sender_id == "agent-1"
        assert provider.supports_fallback is True
        assert provider.calls == [{"event": event, "to": "+1", "fallback": True}]
        assert await provider.check_capability("+1") is True

    async def test_simulated_fallback(self) -> None:
        provider = MockRCSProvider(simulate_fallback=True)
        result = await provider.send(_event(), to="+1")
        assert result.success and result.channel_used == "sms" and result.fallback
        assert result.provider_message_id == "mock_sms_1"  # 0.3.0's ids: counted sends
        # As 0.3.0's mock: a send that does not allow the fallback goes out as RCS.
        direct = await provider.send(_event(), to="+1", fallback=False)
        assert direct.success and direct.channel_used == "rcs" and not direct.fallback
        assert direct.provider_message_id == "mock_rcs_2"
        assert [c["fallback"] for c in provider.calls] == [True, False]
        assert await provider.check_capability("+1") is False

    async def test_simulated_failure(self) -> None:
        provider = MockRCSProvider(simulate_failure=True)
        result = await provider.send(_event(), to="+1")
        assert not result.success and result.error == "simulated_failure"
        assert len(provider.calls) == 1

    def test_delivery_result_defaults(self) -> None:
        result = RCSDeliveryResult(success=True)
        assert (result.channel_used, result.fallback) == ("rcs", False)


@pytest.mark.parametrize(
    ("mock_cls", "abc"),
    [
        (MockMessengerProvider, MessengerProvider),
        (MockTeamsProvider, TeamsProvider),
        (MockHTTPProvider, HTTPProvider),
        (MockWhatsAppProvider, WhatsAppProvider),
    ],
)
class TestEventToMocks:
    async def test_records_event_and_recipient(self, mock_cls: type, abc: type) -> None:
        provider = mock_cls()
        event = _event()
        result = await provider.send(event, to="someone")
        assert isinstance(provider, abc)
        assert provider.sent == [{"event": event, "to": "someone"}]
        assert result.success and result.provider_message_id
        assert provider.name == mock_cls.__name__
        await provider.close()

    async def test_simulated_failure(self, mock_cls: type, abc: type) -> None:
        provider = mock_cls(simulate_failure=True)
        result = await provider.send(_event(), to="someone")
        assert not result.success and result.error == "simulated_failure"


class TestWhatsAppOptionalMethods:
    async def test_raise_not_implemented(self) -> None:
        provider = MockWhatsAppProvider()
        with pytest.raises(NotImplementedError):
            await provider.parse_webhook({}, "wa")
        with pytest.raises(NotImplementedError):
            await provider.send_template("+1", "welcome", {"name": "Ann"})
        with pytest.raises(NotImplementedError):
            await provider.send_reaction("chat", "sender", "m1", "👍")


def test_abcs_cannot_be_instantiated() -> None:
    for abc in (
        AIProvider,
        SMSProvider,
        EmailProvider,
        RCSProvider,
        MessengerProvider,
        TeamsProvider,
        HTTPProvider,
        WhatsAppProvider,
    ):
        with pytest.raises(TypeError):
            abc()  # type: ignore[abstract]


class TestWebhookParsersAsIn030:
    """0.3.0's ABCs parse with ``(payload)`` alone, and raise NotImplementedError; the
    vendors' parsers need the channel id too. A required ``channel_id`` turned that
    NotImplementedError into a TypeError."""

    @pytest.mark.parametrize(
        ("provider", "method"),
        [
            (MockSMSProvider(), "parse_webhook"),
            (MockRCSProvider(), "parse_webhook"),
            (MockWhatsAppProvider(), "parse_webhook"),
            (MockEmailProvider(), "parse_inbound"),
        ],
    )
    async def test_the_abcs_parsers_take_the_payload_alone(
        self, provider: object, method: str
    ) -> None:
        with pytest.raises(NotImplementedError):
            await getattr(provider, method)({"Body": "hi"})

    async def test_a_vendor_s_parser_says_it_needs_the_channel_id(self) -> None:
        from providers.twilio import TwilioConfig, TwilioSMSProvider

        provider = TwilioSMSProvider(
            TwilioConfig(account_sid="AC1", auth_token="t", from_number="+15550001111")
        )
        payload = {"From": "+15550002222", "To": "+15550001111", "Body": "hi", "MessageSid": "SM1"}
        with pytest.raises(TypeError, match="channel_id"):
            await provider.parse_webhook(payload)
        message = await provider.parse_webhook(payload, "sms")
        assert (message.channel_id, message.sender_id) == ("sms", "+15550002222")
        await provider.close()
