"""IdentityResolver ABC and MockIdentityResolver."""

from __future__ import annotations

import pytest

from providers import MockSMSProvider
from roomkit import RoomKit, SMSChannel
from roomkit.identity import IdentityResolver, MockIdentityResolver
from roomkit.models import (
    HookTrigger,
    IdentificationStatus,
    Identity,
    IdentityHookResult,
    IdentityResult,
    InboundMessage,
    Room,
    RoomContext,
    RoomEvent,
    TextContent,
)

ADA = Identity(id="ada", display_name="Ada", phone="+15550001")
BOB = Identity(id="bob", display_name="Bob")
BOBBY = Identity(id="bobby", display_name="Bobby")
CONTEXT = RoomContext(room=Room(id="r1"))


def message(sender: str) -> InboundMessage:
    return InboundMessage(channel_id="sms-1", sender_id=sender, content=TextContent(body="hi"))


@pytest.fixture
def resolver() -> MockIdentityResolver:
    return MockIdentityResolver(mapping={"+15550001": ADA}, ambiguous={"+15550002": [BOB, BOBBY]})


async def test_known_sender_is_identified(resolver: MockIdentityResolver) -> None:
    result = await resolver.resolve(message("+15550001"), CONTEXT)
    assert result.status is IdentificationStatus.IDENTIFIED
    assert result.identity == ADA
    assert result.candidates == []
    # 0.3.0 leaves the address to the kit (see test_the_kit_fills_in_the_address).
    assert (result.address, result.channel_type) == (None, None)


async def test_ambiguous_sender_gets_candidates(resolver: MockIdentityResolver) -> None:
    result = await resolver.resolve(message("+15550002"), CONTEXT)
    assert result.status is IdentificationStatus.AMBIGUOUS
    assert result.identity is None
    assert [c.id for c in result.candidates] == ["bob", "bobby"]


async def test_unknown_sender(resolver: MockIdentityResolver) -> None:
    result = await resolver.resolve(message("+19990000"), CONTEXT)
    assert result.status is IdentificationStatus.UNKNOWN
    assert (result.identity, result.candidates, result.address) == (None, [], None)


@pytest.mark.parametrize("status", [IdentificationStatus.UNKNOWN, IdentificationStatus.PENDING])
async def test_no_candidates_is_not_ambiguous(status: IdentificationStatus) -> None:
    """An empty candidate list gives ``unknown_status``, as in 0.3.0, not AMBIGUOUS."""
    resolver = MockIdentityResolver(ambiguous={"+15550003": []}, unknown_status=status)
    result = await resolver.resolve(message("+15550003"), CONTEXT)
    assert result.status is status
    assert (result.identity, result.candidates, result.address) == (None, [], None)


@pytest.mark.parametrize(
    ("sender", "trigger"),
    [
        ("+15550009", HookTrigger.ON_IDENTITY_UNKNOWN),
        ("+15550002", HookTrigger.ON_IDENTITY_AMBIGUOUS),
    ],
)
async def test_the_kit_fills_in_the_address(sender: str, trigger: HookTrigger) -> None:
    """The mock leaves ``address`` unset: identity hooks still get the sender's address and
    channel type, which the kit's identity pipeline fills in."""
    resolver = MockIdentityResolver(ambiguous={"+15550002": [BOB, BOBBY]})
    seen: list[IdentityResult] = []
    async with RoomKit(identity_resolver=resolver) as kit:
        kit.register_channel(SMSChannel("sms-1", provider=MockSMSProvider()))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms-1")

        @kit.identity_hook(trigger)
        async def record(
            event: RoomEvent, context: RoomContext, result: IdentityResult
        ) -> IdentityHookResult | None:
            seen.append(result)
            return None

        await kit.process_inbound(message(sender))
    [result] = seen
    assert (result.address, result.channel_type) == (sender, "sms")


@pytest.mark.parametrize(
    "status",
    [IdentificationStatus.REJECTED, IdentificationStatus.PENDING, IdentificationStatus.UNKNOWN],
)
async def test_unknown_status_is_configurable(status: IdentificationStatus) -> None:
    resolver = MockIdentityResolver(unknown_status=status)
    assert (await resolver.resolve(message("anyone"), CONTEXT)).status is status


async def test_mapping_wins_over_ambiguous() -> None:
    resolver = MockIdentityResolver(mapping={"x": ADA}, ambiguous={"x": [BOB]})
    assert (await resolver.resolve(message("x"), CONTEXT)).identity == ADA


async def test_calls_are_recorded(resolver: MockIdentityResolver) -> None:
    first, second = message("a"), message("b")
    await resolver.resolve(first, CONTEXT)
    await resolver.resolve(second, CONTEXT)
    assert resolver.calls == [first, second]


async def test_defaults_resolve_nobody() -> None:
    resolver = MockIdentityResolver()
    assert (resolver.mapping, resolver.ambiguous) == ({}, {})
    assert resolver.unknown_status is IdentificationStatus.UNKNOWN
    assert (await resolver.resolve(message("a"), CONTEXT)).status is IdentificationStatus.UNKNOWN


async def test_the_abc_is_the_extension_point() -> None:
    with pytest.raises(TypeError):
        IdentityResolver()  # type: ignore[abstract]

    class Everyone(IdentityResolver):
        async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
            return IdentityResult(status=IdentificationStatus.IDENTIFIED, identity=ADA)

    assert (await Everyone().resolve(message("z"), CONTEXT)).identity == ADA
