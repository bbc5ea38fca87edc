"""IdentityResolver ABC and MockIdentityResolver."""

from __future__ import annotations

import pytest

from roomkit.identity import IdentityResolver, MockIdentityResolver
from roomkit.models import (
    IdentificationStatus,
    Identity,
    IdentityResult,
    InboundMessage,
    Room,
    RoomContext,
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
    assert result.address == "+15550001"


async def test_ambiguous_sender_gets_candidates(resolver: MockIdentityResolver) -> None:
    result = await resolver.resolve(message("+15550002"), CONTEXT)
    assert result.status is IdentificationStatus.AMBIGUOUS
    assert result.identity is None
    assert [c.id for c in result.candidates] == ["bob", "bobby"]


async def test_unknown_sender(resolver: MockIdentityResolver) -> None:
    result = await resolver.resolve(message("+19990000"), CONTEXT)
    assert result.status is IdentificationStatus.UNKNOWN
    assert (result.identity, result.candidates) == (None, [])


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
