"""Bad input to the kit gets a clear, typed error and changes nothing: in particular nothing
is logged that a replay of the room would fail on."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import traceback
import types
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import anyio
import pydantic
import pydantic_core
import pytest

from eventlog import EventLog, MemoryEventLog, NewEvent
from roomkit import (
    Access,
    AIChannel,
    AIContext,
    AIProvider,
    AIResponse,
    ChannelBinding,
    ChannelCapabilities,
    ChannelCategory,
    ChannelMediaType,
    ChannelNotRegisteredError,
    ChannelOutput,
    ChannelType,
    CompositeContent,
    EphemeralEvent,
    EventRefusedError,
    EventSource,
    FrameworkEvent,
    HookExecution,
    HookResult,
    HookTrigger,
    Identity,
    IdentityResult,
    InboundMessage,
    InjectedEvent,
    InvalidRoomIdError,
    KitClosedError,
    MediaContent,
    MockAIProvider,
    Observation,
    ProviderResult,
    RoomContext,
    RoomEvent,
    RoomKit,
    RoomKitError,
    RoomNotFoundError,
    StoredEventError,
    Task,
    TextContent,
    WebSocketChannel,
)
from roomkit.core._room_ids import room_stream
from roomkit.core.router import DefaultContentTranscoder
from roomkit.identity.base import IdentityResolver
from roomkit.models.channel import RateLimit
from roomkit.models.room import RoomTimers
from roomkit.realtime.memory import InMemoryRealtime
from roomkit.store.base import ConversationStore
from roomkit.store.memory import InMemoryStore
from tests.roomkit.kit_helpers import RewritesUrls, SimpleChannel, errors_said, eventually, text


async def room(kit: RoomKit) -> None:
    kit.register_channel(SimpleChannel("sms"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")


async def test_a_binding_change_the_model_refuses_is_not_logged(
    kit: RoomKit, event_log: EventLog
) -> None:
    await room(kit)
    version = await event_log.last_version(room_stream("r1"))
    with pytest.raises(pydantic.ValidationError):
        await kit.set_visibility("r1", "sms", 5)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        await kit.set_access("r1", "sms", "sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await kit.update_binding_metadata("r1", "sms", None)  # type: ignore[arg-type]
    assert await event_log.last_version(room_stream("r1")) == version
    binding = await kit.get_binding("r1", "sms")
    assert (binding.visibility, binding.access) == ("all", Access.READ_WRITE)
    # The room still works; the kit fixture then replays the log into a second kit.
    assert not (await kit.process_inbound(text("sms", "still here"), room_id="r1")).blocked


async def test_metadata_to_merge_is_a_dict_with_string_keys(
    kit: RoomKit, event_log: EventLog
) -> None:
    # A key 1 was taken: the live room held both 1 and "1" (JSON writes it "1"), a room read
    # back from its log "1" alone. None failed with "'NoneType' object is not a mapping".
    await room(kit)
    version = await event_log.last_version(room_stream("r1"))
    for wrong, why in ((None, "must be a dict"), ({1: "x"}, "keys must be strings")):
        with pytest.raises(TypeError, match=f"^metadata {why}"):
            await kit.update_room_metadata("r1", wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=f"^metadata {why}"):
            await kit.update_binding_metadata("r1", "sms", wrong)  # type: ignore[arg-type]
    # A key JSON cannot hold: written as U+FFFD (two such keys were one, a value lost).
    surrogates = {"\ud800": "first", "ok": "second"}
    with pytest.raises(EventRefusedError, match="^Room cannot be stored: .*lone surrogate"):
        await kit.update_room_metadata("r1", surrogates)
    with pytest.raises(EventRefusedError, match="^Room cannot be stored: .*lone surrogate"):
        await kit.create_room(room_id="r2", metadata=surrogates)
    kit.register_channel(SimpleChannel("ws"))
    with pytest.raises(EventRefusedError, match="^ChannelBinding cannot be stored"):
        await kit.attach_channel("r1", "ws", metadata=surrogates)
    assert await event_log.last_version(room_stream("r1")) == version
    with pytest.raises(RoomNotFoundError):
        await kit.get_room("r2")


async def test_a_read_marker_on_an_id_json_cannot_hold_is_refused(
    kit: RoomKit, event_log: EventLog
) -> None:
    # It raised the encoder's UnicodeEncodeError from inside the room.
    await room(kit)
    version = await event_log.last_version(room_stream("r1"))
    with pytest.raises(EventRefusedError, match="text JSON cannot hold"):
        await kit.mark_read("r1", "sms", "\udc00")
    assert await event_log.last_version(room_stream("r1")) == version
    await kit.mark_read("r1", "sms", "an-event")


async def test_a_binding_change_is_stored_as_the_model_reads_it(kit: RoomKit) -> None:
    await room(kit)
    changed = await kit.set_access("r1", "sms", "read_only")  # type: ignore[arg-type]
    assert changed.access is Access.READ_ONLY
    assert (await kit.get_binding("r1", "sms")).access is Access.READ_ONLY


async def test_process_inbound_takes_an_inbound_message(kit: RoomKit) -> None:
    await room(kit)
    for bad in (None, {"channel_id": "sms"}, "hello"):
        with pytest.raises(TypeError, match="InboundMessage"):
            await kit.process_inbound(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("rest_after", "10"),
        ("process_timeout", "30"),
        ("identity_timeout", [10]),
        ("outcome_delay", None),
        ("max_chain_depth", "5"),
        ("max_chain_depth", True),
        ("mailbox_size", 2.5),
        ("snapshot_every", "1000"),
        ("idle_timeout", "300"),
        ("task_linger", b"1"),
    ],
)
def test_a_setting_of_the_wrong_type_is_refused_by_name(setting: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"^{setting} must be "):
        RoomKit(**{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("part", "value", "said"),
    [
        ("log", "nats://localhost:4222", "EventLog, got str"),
        ("store", 42, "ConversationStore, got int"),
        ("store", InMemoryStore, "ConversationStore, got the class InMemoryStore"),
        ("identity_resolver", 5, "IdentityResolver, got int"),
        ("inbound_router", object(), "InboundRoomRouter, got object"),
        ("lock_manager", {}, "RoomLockManager, got dict"),
        ("realtime", object(), "RealtimeBackend, got object"),
        ("transcoder", "plain", "ContentTranscoder, got str"),
    ],
)
def test_a_part_of_the_wrong_kind_is_refused_by_name(part: str, value: object, said: str) -> None:
    """Before, each was taken, and failed at its first use inside a room (a store's failure
    left the room's read model behind its log)."""
    with pytest.raises(TypeError, match=f"^{part} must be an instance of {said}$"):
        RoomKit(**{part: value})  # type: ignore[arg-type]


async def test_a_part_shaped_like_the_contract_is_taken_as_0_3_0_took_it() -> None:
    class DuckStore:  # every method of ConversationStore, without the base class
        def __init__(self) -> None:
            self._inner = InMemoryStore()

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    for name in ConversationStore.__abstractmethods__:
        setattr(DuckStore, name, _forward(name))
    async with RoomKit(store=DuckStore()) as kit:  # type: ignore[arg-type]
        await room(kit)
        assert (await kit.get_room("r1")) is not None


def _forward(name: str) -> object:
    def method(self: object, *args: object, **kwargs: object) -> object:
        return getattr(self._inner, name)(*args, **kwargs)  # type: ignore[attr-defined]

    return method


def _store_with(*methods: str) -> object:
    """A store with these methods of an InMemoryStore's and nothing else (no base class)."""

    def init(self: object) -> None:
        self._inner = InMemoryStore()  # type: ignore[attr-defined]

    return type("Shaped", (), {"__init__": init, **{m: _forward(m) for m in methods}})()


async def test_a_store_with_only_the_contract_s_abstract_methods_holds_the_conversation() -> None:
    # Every message was missing from its read model: the kit called add_event_envelope and
    # count_event, which the contract gained since 0.3.0, on a store without them.
    store = _store_with(*ConversationStore.__abstractmethods__)
    async with RoomKit(store=store) as kit:  # type: ignore[arg-type]
        await room(kit)
        sent = [await kit.process_inbound(text("sms", f"m{n}"), room_id="r1") for n in range(3)]
        timeline = await kit.get_timeline("r1")
        assert [e.id for e in timeline][-3:] == [r.event.id for r in sent if r.event]
        found = await kit.get_room("r1")
        assert found is not None and found.event_count == len(timeline)
        with pytest.raises(NotImplementedError, match="does not support clear"):
            await kit.rebuild_store()  # it has no clear(): the store was left as it was
        assert [e.id for e in await kit.get_timeline("r1")] == [e.id for e in timeline]


async def test_a_shaped_store_s_own_additions_are_used() -> None:
    methods = [
        *ConversationStore.__abstractmethods__,
        "clear",
        "count_event",
        "add_event_envelope",
    ]
    store = _store_with(*methods)
    called: list[str] = []
    for name in ("count_event", "add_event_envelope", "add_event", "update_room"):
        own = getattr(type(store), name)

        def spy(self: object, *args: object, _own: Any = own, _name: str = name) -> object:
            called.append(_name)
            return _own(self, *args)

        setattr(type(store), name, spy)
    async with RoomKit(store=store) as kit:  # type: ignore[arg-type]
        await room(kit)
        called.clear()
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        # Its own shortcuts, not the contract's defaults through add_event and update_room
        # (a model built per message, and a read and a write of the room to count it).
        assert called == ["add_event_envelope", "count_event"]
        await kit.rebuild_store()
        found = await kit.get_room("r1")
        assert found is not None and found.event_count == 2
        assert found.event_count == len(await kit.get_timeline("r1"))


async def test_a_proxy_store_s_own_writes_are_used_over_what_it_hands_through() -> None:
    # A 0.3.0-shaped store that forwards everything to an InMemoryStore (__getattr__) but
    # writes events and rooms itself (to index them, say): the shortcuts it handed through
    # were taken, and its own add_event and update_room never saw a message.
    seen: list[str] = []

    class Proxy:
        def __init__(self) -> None:
            self.inner = InMemoryStore()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def add_event(self, event: RoomEvent) -> RoomEvent:
            seen.append("add_event")
            return await self.inner.add_event(event)

        async def update_room(self, room: Any) -> Any:
            seen.append("update_room")
            return await self.inner.update_room(room)

    async with RoomKit(store=Proxy()) as kit:  # type: ignore[arg-type]
        await room(kit)
        seen.clear()
        await kit.process_inbound(text("sms", "hi"), room_id="r1")
        assert seen == ["add_event", "update_room"]
        assert (await kit.get_room("r1")).event_count == 2


async def test_writes_reach_an_app_s_overrides_behind_a_pure_proxy_or_on_an_instance() -> None:
    # A proxy whose class defines none of the store's methods got the inner store's
    # shortcuts, past the overrides of the app's InMemoryStore subclass inside; a spy set on
    # an InMemoryStore instance was passed over for the class's shortcut.
    seen: list[str] = []

    class AppStore(InMemoryStore):
        async def add_event(self, event: RoomEvent) -> RoomEvent:
            seen.append("add_event")
            return await super().add_event(event)

    class PureProxy:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    spied = InMemoryStore()
    add_event = spied.add_event

    async def spy(event: RoomEvent) -> RoomEvent:
        seen.append("add_event")
        return await add_event(event)

    spied.add_event = spy  # type: ignore[method-assign]
    for store in (PureProxy(AppStore()), spied):
        async with RoomKit(store=store) as kit:  # type: ignore[arg-type]
            await room(kit)
            seen.clear()
            await kit.process_inbound(text("sms", "hi"), room_id="r1")
            assert seen == ["add_event"], type(store).__name__
            assert (await kit.get_room("r1")).event_count == 2


def test_a_channel_of_the_wrong_kind_is_refused_when_registered() -> None:
    kit = RoomKit()
    with pytest.raises(TypeError, match="^channel must be an instance of Channel, got int$"):
        kit.register_channel(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got the class SimpleChannel$"):
        kit.register_channel(SimpleChannel)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string, got 7$"):
        kit.register_channel(SimpleChannel(7))  # type: ignore[arg-type]
    # An empty id was registered, attached and routed to: a channel of no name.
    with pytest.raises(ValueError, match="^channel_id must not be empty$"):
        kit.register_channel(SimpleChannel(""))
    assert kit.list_channels() == []


def test_a_transcoder_whose_transcode_cannot_be_called_is_refused() -> None:
    # A ContentTranscoder subclass passes the isinstance check whatever its transcode is;
    # every delivery needing transcoding then failed.
    class NoTranscode(DefaultContentTranscoder):
        transcode = None  # type: ignore[assignment]  # the mistake under test

    with pytest.raises(TypeError, match="^transcoder must have a callable transcode"):
        RoomKit(transcoder=NoTranscode())


def test_framework_handlers_are_registered_under_a_string_type() -> None:
    kit = RoomKit()
    with pytest.raises(TypeError, match="^event_type must be a string"):
        kit.on(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        kit.on("room_created")("not a function")  # type: ignore[type-var]


def test_identity_channel_types_is_a_collection_not_a_string() -> None:
    # Each was taken, and then every message failed ("argument of type 'int' is not iterable").
    for wrong in ("sms", 5, [5], {ChannelType.SMS: 1, 2: 3}):
        with pytest.raises(TypeError, match="^identity_channel_types must be a collection"):
            RoomKit(identity_channel_types=wrong)  # type: ignore[arg-type]
    RoomKit(identity_channel_types={ChannelType.SMS, "email"})  # type: ignore[arg-type]


def test_names_no_channel_or_framework_event_has_are_said_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Taken as 0.3.0 took them, and then nothing ever matched them: the resolver ran for no
    # message of "SMS", the handler of "room_create" was never called, and nothing said so.
    with caplog.at_level(logging.WARNING, logger="roomkit"):
        RoomKit(identity_channel_types={ChannelType.SMS, "email"})  # type: ignore[arg-type]
        kit = RoomKit()
        kit.on("room_created")(print)
        assert not caplog.records
        RoomKit(identity_channel_types={"SMS", ChannelType.EMAIL})  # type: ignore[arg-type]
        kit.on("room_create")(print)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "identity_channel_types holds 'SMS'" in said[0]
    assert "kit.on('room_create')" in said[1]


def test_settings_take_any_real_number_as_0_3_0_did() -> None:
    kit = RoomKit(
        max_chain_depth=math.inf,  # only ever compared: no limit
        identity_timeout=Fraction(1, 2),
        process_timeout=10**400,  # no bound in practice; its asks stay finite
        rest_after=Fraction(5),
        outcome_delay=0,
        mailbox_size=16,
    )
    assert kit._max_chain_depth == math.inf


def test_settings_that_are_not_a_number_of_their_kind_are_refused() -> None:
    # A NaN depth compared false: every AI reply was blocked. A NaN or negative identity
    # timeout timed every resolution out.
    # A negative depth blocked every reply as 0 does, without saying the value was wrong.
    for depth in (math.nan, -1):
        with pytest.raises(ValueError, match="^max_chain_depth must be >= 0, got"):
            RoomKit(max_chain_depth=depth)
    RoomKit(max_chain_depth=0)  # no AI reply at all: a setting some rooms want
    for timeout in (math.nan, -1):
        with pytest.raises(ValueError, match="^identity_timeout must be >= 0 or None"):
            RoomKit(identity_timeout=timeout)


def test_settings_that_take_none_take_it() -> None:
    RoomKit(
        process_timeout=None,
        identity_timeout=None,  # as 0.3.0's asyncio.wait_for: no bound
        rest_after=None,
        idle_timeout=None,
        task_linger=None,
        snapshot_every=None,
    )


class _SlowResolver(IdentityResolver):
    """Suspends before it answers, so that the identity timeout is armed."""

    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        await anyio.sleep(0)
        return IdentityResult(status="unknown")


async def test_durations_past_a_floats_range_mean_no_bound() -> None:
    # Each of these met clock arithmetic (now + seconds) and failed with OverflowError: the
    # hooks and the identity resolver at every call, the outcome flusher and the actor
    # system's sweeper in their own tasks, which then stopped the kit.
    huge = 10**400
    log = MemoryEventLog()
    seen: list[str] = []
    kit = RoomKit(
        log=log,
        identity_resolver=_SlowResolver(),
        identity_timeout=huge,
        process_timeout=huge,
        rest_after=huge,
        outcome_delay=huge,
        idle_timeout=huge,
        task_linger=huge,
    )

    @kit.hook(HookTrigger.BEFORE_BROADCAST, timeout=huge)
    async def slow_check(event: RoomEvent, context: RoomContext) -> HookResult:
        await anyio.sleep(0)
        return HookResult.allow()

    @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC, timeout=huge)
    async def slow_watch(event: RoomEvent, context: RoomContext) -> None:
        await anyio.sleep(0)
        seen.append(event.id)

    async with kit:
        await room(kit)
        kit.register_channel(SimpleChannel("ws"))
        await kit.attach_channel("r1", "ws")
        result = await kit.process_inbound(text("sms", "hello"), room_id="r1")
        assert not result.blocked
        assert seen == [result.event.id]
        assert kit.get_channel("ws").texts() == ["hello"]  # type: ignore[union-attr]
    # Its delivery outcome waited (for ever, as outcome_delay says) and was appended at close.
    types = [r.type for r in await log.read(room_stream("r1"))]
    assert types[-2:] == ["message.recorded", "delivery.recorded"]


async def test_a_number_too_long_to_read_back_is_refused_and_nothing_is_logged(
    kit: RoomKit, event_log: EventLog
) -> None:
    # JSON readers refuse an int of more than 4,300 digits (Python's limit): logged, it
    # would fail every replay of its room. A run of digits inside a string is text and fine.
    huge = 10**4400
    await room(kit)
    with pytest.raises(EventRefusedError, match="4,300 digits"):
        await kit.create_room(room_id="big", metadata={"n": huge})
    assert "big" not in [r.id for r in await kit.store.list_rooms()]
    version = await event_log.last_version(room_stream("r1"))
    with pytest.raises(ValueError, match="4,300 digits"):
        await kit.send_event("r1", "sms", TextContent(body="x"), metadata={"n": huge})
    message = text("sms", "hi")
    with pytest.raises(ValueError, match="4,300 digits"):
        await kit.process_inbound(
            message.model_copy(update={"metadata": {"n": huge}}), room_id="r1"
        )
    assert await event_log.last_version(room_stream("r1")) == version
    digits = "7" * 5000
    result = await kit.process_inbound(text("sms", digits), room_id="r1")
    assert not result.blocked
    timeline = await kit.get_timeline("r1")
    assert timeline[-1].content.body == digits  # type: ignore[union-attr]


async def test_read_markers_and_resolutions_take_strings_and_log_nothing_else(
    kit: RoomKit, event_log: EventLog
) -> None:
    # Each of these was logged as given, and the room could not be read back after a restart.
    await room(kit)
    sent = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert sent.event is not None
    version = await event_log.last_version(room_stream("r1"))
    with pytest.raises(TypeError, match="^event_id must be a string"):
        await kit.mark_read("r1", "sms", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string"):
        await kit.mark_all_read("r1", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^resolved_by must be a string"):
        await kit.resolve_participant("r1", "user-1", "id-x", resolved_by=5)  # type: ignore[arg-type]
    # These said "Channel None not in room r1" (other methods a TypeError for the same call).
    for change in (kit.mute, kit.unmute, kit.detach_channel, kit.store.remove_binding):
        with pytest.raises(TypeError, match="^channel_id must be a string, got None$"):
            await change("r1", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string, got None$"):
        await kit.send_event("r1", None, TextContent(body="x"))  # type: ignore[arg-type]
    assert await event_log.last_version(room_stream("r1")) == version
    await kit.mark_read("r1", "sms", sent.event.id)
    assert await kit.store.get_unread_count("r1", "sms") == 0
    with pytest.raises(TypeError, match="^event_id must be a string"):
        await kit.mark_read("r1", "sms", None)  # type: ignore[arg-type]  # mark_all_read does it


async def test_ids_of_another_type_are_refused_by_name(kit: RoomKit) -> None:
    # "unhashable type: 'dict'", or an identity 5 not found, or "'int' object is not iterable".
    await room(kit)

    async def send(event: object) -> None:
        return None

    with pytest.raises(TypeError, match="^channel_id must be a string"):
        kit.get_channel({"id": "sms"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string"):
        await kit.attach_channel("r1", {"id": "sms"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string"):
        await kit.connect_websocket(["ws"], "c1", send)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel_id must be a string"):
        await kit.disconnect_websocket(["ws"], "c1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^room_id must be a string"):
        kit.remove_room_hook({"r": 1}, "h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^identity_id must be a string"):
        await kit.resolve_participant("r1", "p1", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^participant_id must be a string"):
        await kit.resolve_participant("r1", {"id": 1}, "i1")  # type: ignore[arg-type]
    # ensure_participant's room id as every room id (the model's ValidationError named no
    # room); its other arguments the model's ValidationError, a ValueError as in 0.3.0.
    with pytest.raises(InvalidRoomIdError, match="not NoneType"):
        await kit.ensure_participant(None, "sms", "p1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel_id"):
        await kit.ensure_participant("r1", 5, "p1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id"):
        await kit.ensure_participant("r1", "sms", 123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="display_name"):
        await kit.ensure_participant("r1", "sms", "p1", display_name=5)  # type: ignore[arg-type]
    assert await kit.store.list_participants("r1") == []
    # attach_channel too (the binding's ValidationError; mute, detach_channel... raised this).
    for bad_room in (None, 123, ["r1"]):
        with pytest.raises(InvalidRoomIdError):
            await kit.attach_channel(bad_room, "sms")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^nats_url must be a URL"):
        await kit.serve_ingress(4222)


async def test_an_empty_list_of_nats_servers_is_refused(kit: RoomKit) -> None:
    # nats-py, given no server, retries for ever without awaiting: the first publish of a
    # NatsRealtime([]) hung the event loop, beyond any timeout.
    from roomkit.ownership.nats import NatsOwnership
    from roomkit.realtime.nats import NatsRealtime

    for make in (NatsRealtime, NatsOwnership):
        with pytest.raises(ValueError, match="^no NATS server given"):
            make([])
    with pytest.raises(ValueError, match="^no NATS server given"):
        await kit.serve_ingress([])


class _Prefix:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and value.startswith(self.prefix)


async def test_hook_registrations_that_would_break_every_message_are_refused(
    kit: RoomKit,
) -> None:
    await room(kit)

    async def allow(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.allow()

    # A priority that does not compare failed the sorting at every message of every room; a
    # float NaN compared false with every other, leaving the hooks in anyone's order.
    for priority in ("10", None, math.nan):
        with pytest.raises(TypeError, match="^hook priority must be a number"):
            kit.hook(HookTrigger.BEFORE_BROADCAST, priority=priority)(allow)  # type: ignore[arg-type]
    # Logged as the hooks that modified or blocked a message: a name of another type made a
    # record no replay could read.
    with pytest.raises(TypeError, match="^hook name must be a string"):
        kit.hook(HookTrigger.BEFORE_BROADCAST, name=5)(allow)  # type: ignore[arg-type]
    # A string filter matched by substring ("ms" in "sms"); one that is not a collection
    # (5) was taken, then every message of every room failed on it.
    # Nor one that ``in`` asks by index over a mapping (KeyError 0 at every message), a model
    # (``in`` iterates its fields: it never matched) or a class.
    refused = ("sms", 5, (c for c in "sms"), _Lookup({"sms": True}), _Lookup, list[str])
    for name in ("channel_types", "channel_ids", "directions"):
        for value in (*refused, HookResult.allow()):
            with pytest.raises(TypeError, match=f"^hook {name} must be a collection"):
                kit.hook(HookTrigger.BEFORE_BROADCAST, **{name: value})(allow)
            with pytest.raises(TypeError, match=f"^hook {name} must be a collection"):
                kit.hook(HookTrigger.AFTER_BROADCAST, HookExecution.ASYNC, **{name: value})(allow)
        # An identity hook's too: one meant for channel "sms-vip" rejected senders on "sms".
        for value in ("sms-vip", 5):
            with pytest.raises(TypeError, match=f"^identity hook {name} must be a collection"):
                kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN, **{name: value})
    # Not callable: it failed at the first delivery status, or the room's first ephemeral event.
    with pytest.raises(TypeError, match="^a delivery status handler must be callable"):
        kit.on_delivery_status(5)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="^callback must be callable"):
        await kit.subscribe_room("r1", 5)  # type: ignore[arg-type]
    # A room hook for room None was a global hook that remove_room_hook could not remove.
    with pytest.raises(InvalidRoomIdError):
        kit.add_room_hook(None, HookTrigger.BEFORE_BROADCAST, HookExecution.SYNC, allow)  # type: ignore[arg-type]
    # What answers ``in`` will do (a prefix matcher; a class ``in`` asks through its
    # ``__iter__`` or ``__getitem__``): the filters are asked with it only.
    ran: list[str] = []

    def seen(label: str) -> Callable[[RoomEvent, RoomContext], Awaitable[HookResult]]:
        async def hook(event: RoomEvent, context: RoomContext) -> HookResult:
            ran.append(label)
            return HookResult.allow()

        return hook

    kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=_Prefix("sms"))(seen("prefix"))  # type: ignore[arg-type]
    kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=_Iterated("sms"))(seen("iter"))  # type: ignore[arg-type]
    kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=_Indexed("sms"))(seen("getitem"))  # type: ignore[arg-type]
    kit.hook(HookTrigger.BEFORE_BROADCAST, channel_ids=_Iterated("email"))(seen("other"))  # type: ignore[arg-type]
    kit.hook(HookTrigger.BEFORE_BROADCAST, priority=2.5)(allow)  # any number sorts
    kit.hook(HookTrigger.BEFORE_BROADCAST, priority=Decimal("1.5"))(allow)  # type: ignore[arg-type]
    for body in ("hi", "again"):  # asked again at every message
        assert not (await kit.process_inbound(text("sms", body), room_id="r1")).blocked
    assert sorted(ran) == sorted(["prefix", "iter", "getitem"] * 2)


class _Iterated:
    def __init__(self, *ids: str) -> None:
        self.ids = ids

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)


class _Indexed:
    def __init__(self, *ids: str) -> None:
        self.ids = ids

    def __getitem__(self, index: int) -> str:
        return self.ids[index]


class _Lookup:
    def __init__(self, allowed: dict[str, bool]) -> None:
        self.allowed = allowed

    def __getitem__(self, channel_id: str) -> bool:
        return self.allowed[channel_id]


async def test_a_room_whose_log_cannot_be_read_says_so_and_the_kit_goes_on() -> None:
    # A record its reader refuses (written by another program, or by an older bug): the
    # room's actor gives up. Its callers used to get KitClosedError from an open kit.
    log = MemoryEventLog()
    unreadable = NewEvent(type="room.created", data=b'{"room":{"id":5}}')
    await log.append("bad", [unreadable], expected_version=0)
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        with pytest.raises(RoomKitError, match="room bad is unavailable") as raised:
            await kit.process_inbound(text("sms", "x"), room_id="bad")
        assert not isinstance(raised.value, KitClosedError)
        assert "record 1 ('room.created') cannot be applied" in str(raised.value)
        await kit.create_room(room_id="ok")
        await kit.attach_channel("ok", "sms")
        assert not (await kit.process_inbound(text("sms", "y"), room_id="ok")).blocked


async def test_a_record_a_live_room_cannot_read_fails_its_commands_with_a_kit_error() -> None:
    # Appended by another writer while the room's actor ran: the actor read it as its append
    # conflicted, and every command raised what the decoder raised (msgspec's errors).
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        await room(kit)
        stream = room_stream("r1")
        unreadable = NewEvent(type="message.recorded", data=b'{"event":{"id":5}}')
        version = await log.last_version(stream)
        await log.append(stream, [unreadable], expected_version=version)
        with pytest.raises(RoomKitError, match=r"record \d+ \('message.recorded'\) cannot be"):
            await kit.process_inbound(text("sms", "x"), room_id="r1")
        for command in (
            kit.send_event("r1", "sms", TextContent(body="x")),
            kit.update_room_metadata("r1", {"a": 1}),
            kit.mute("r1", "sms"),
        ):
            with pytest.raises(RoomKitError, match="room r1 is unavailable.*cannot be applied"):
                await command
        assert await log.last_version(stream) == version + 1


async def test_a_message_whose_event_does_not_validate_keeps_its_room_and_is_named_by_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another writer's (or another RoomKit version's) message.recorded whose event decodes
    # but does not validate (a content type this version does not know). The room is folded
    # from the message's few fields and keeps working: refusing it made the room unavailable
    # for good, its error and logs quoting the message's content. The store's reads of that
    # event raised pydantic's ValidationError, no RoomKitError, naming neither room nor event.
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        await room(kit)
        await kit.create_room(room_id="r2")
        await kit.attach_channel("r2", "sms")
        good = (await kit.process_inbound(text("sms", "fine"), room_id="r2")).event
        assert good is not None
        stream = room_stream("r1")
        foreign = json.loads((await kit.get_timeline("r1"))[-1].model_dump_json())
        foreign.update(id="from-a-newer-writer", content={"type": "hologram", "url": "PIN 4242"})
        data = json.dumps({"event": foreign}).encode()
        version = await log.last_version(stream)
        await log.append(stream, [NewEvent("message.recorded", data)], expected_version=version)
        on_top = (await kit.process_inbound(text("sms", "on top"), room_id="r1")).event
        assert on_top is not None
        assert await log.last_version(stream) == version + 2
        await kit._read_model_at((await log.read(stream))[-1].position)
        for read in (
            lambda: kit.get_timeline("r1"),
            lambda: kit.store.list_recent_events("r1"),
            lambda: kit.store.get_event("from-a-newer-writer"),
        ):
            with pytest.raises(StoredEventError, match="content") as raised:
                await read()
            assert (raised.value.room_id, raised.value.event_id) == ("r1", "from-a-newer-writer")
            assert "PIN 4242" not in str(raised.value)
        # The other room, and the bad room's events on either side of it, still read.
        assert good in await kit.get_timeline("r2")
        assert await kit.store.get_event(good.id) == good
        assert len(await kit.get_timeline("r1", limit=1)) == 1
        assert await kit.store.list_recent_events("r1", limit=1) == [on_top]
    assert "PIN 4242" not in caplog.text


async def test_a_message_its_channel_changed_in_place_survives_a_restart(
    event_log: EventLog,
) -> None:
    # The kit recorded the event, then refused its own record on recovery: after a restart
    # every command of the room failed "room r1 is unavailable: ... cannot be applied",
    # for good.
    media = MediaContent(url="https://vendor.example/m/1.png", mime_type="image/png")
    async with RoomKit(log=event_log) as kit:
        kit.register_channel(RewritesUrls("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        inbound = InboundMessage(channel_id="sms", sender_id="+1555", content=media)
        recorded = (await kit.process_inbound(inbound, room_id="r1")).event
        assert recorded is not None
        count = (await kit.get_room("r1")).event_count
    async with RoomKit(log=event_log) as kit:
        kit.register_channel(RewritesUrls("sms"))
        sent = await kit.send_event("r1", "sms", TextContent(body="after the restart"))
        assert (await kit.get_room("r1")).event_count == count + 1
        assert await kit.store.list_recent_events("r1", limit=1) == [sent]
        with pytest.raises(StoredEventError) as raised:
            await kit.store.get_event(recorded.id)
        assert raised.value.event_id == recorded.id


async def test_a_message_its_channel_changed_in_place_is_left_out_of_the_recent_events(
    event_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    # The room's recent events read each event from its JSON once a hook had read them: the
    # one its channel changed in place did not read, so the room's decision failed (the
    # caller told the room crashed, though the message was recorded), and every hook
    # reading the room's history failed for the next 50 events (a moderation hook, open).
    media = MediaContent(url="https://vendor.example/m/SECRET-4242.png", mime_type="image/png")
    read: list[int] = []
    failed: list[object] = []
    async with RoomKit(log=event_log) as kit:
        kit.register_channel(RewritesUrls("sms"))
        kit.register_channel(SimpleChannel("web"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "web")
        kit.on("hook_error")(failed.append)

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def reads_the_history(event: RoomEvent, context: RoomContext) -> None:
            read.append(len(context.recent_events))

        await kit.process_inbound(text("web", "before"), room_id="r1")
        inbound = InboundMessage(channel_id="sms", sender_id="+1555", content=media)
        assert (await kit.process_inbound(inbound, room_id="r1")).event is not None
        after = await kit.process_inbound(text("web", "after"), room_id="r1")
        assert after.event is not None and not after.blocked
    assert failed == [] and len(read) == 3
    assert "SECRET-4242" not in caplog.text


def _traceback(error: BaseException) -> str:
    """What a traceback logged of ``error`` prints (its cause and context included)."""
    return "".join(traceback.format_exception(error))


async def test_a_stored_event_error_holds_no_content_in_its_cause_or_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # StoredEventError was raised from pydantic's ValidationError, which quotes the input
    # (input_value='s3://bucket/SECRET-4242.png'): the traceback the kit logged of an async
    # hook that only read the timeline printed the message's content, as would an app's
    # logger.exception of the error.
    media = MediaContent(url="https://vendor.example/m/1.png", mime_type="image/png")
    failed: list[FrameworkEvent] = []
    async with RoomKit() as kit:
        kit.register_channel(RewritesUrls("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        kit.on("hook_error")(failed.append)

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        async def reads_the_timeline(event: RoomEvent, context: RoomContext) -> None:
            await kit.get_timeline("r1")

        inbound = InboundMessage(channel_id="sms", sender_id="+1555", content=media)
        assert (await kit.process_inbound(inbound, room_id="r1")).event is not None

        async def hook_failed() -> bool:
            return bool(failed)

        await eventually(hook_failed, what="the hook's failure")
        with pytest.raises(StoredEventError) as raised:
            await kit.get_timeline("r1")
    error = raised.value
    assert error.__cause__ is None and error.__context__ is None
    assert "content.media.url" in str(error)  # what did not validate, still said
    assert "SECRET-4242" not in _traceback(error)
    assert "reads_the_timeline" in caplog.text and "SECRET-4242" not in caplog.text


async def test_what_the_log_could_not_read_back_holds_no_content_in_its_traceback(
    kit: RoomKit,
) -> None:
    # The refusal was raised from pydantic's ValidationError, which quotes the input: a
    # traceback logged of it printed the content the kit refused to log.
    await room(kit)
    content = MediaContent(url="https://vendor.example/m/1.png", mime_type="image/png")
    changed = content.model_copy(update={"size_bytes": "SECRET-4242"})
    with pytest.raises(EventRefusedError, match="could not read it back.*size_bytes") as raised:
        await kit.send_event("r1", "sms", changed)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert "SECRET-4242" not in _traceback(raised.value)


class _TakesModelsOnly(InMemoryStore):
    """An app's store written to 0.3.0's contract: it takes events through ``add_event``
    only, as ``RoomEvent`` models (the base class's defaults of the newer entries)."""

    add_event_json = ConversationStore.add_event_json
    add_event_envelope = ConversationStore.add_event_envelope


async def test_a_store_taking_models_only_is_told_of_an_event_that_does_not_validate_plainly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The store projection logged pydantic's traceback of the event its channel changed in
    # place, input (the message's content) and all; the room's count in that store also
    # missed the message, the next one taking an index past the count.
    media = MediaContent(url="https://vendor.example/m/1.png", mime_type="image/png")
    async with RoomKit(store=_TakesModelsOnly()) as kit:
        kit.register_channel(RewritesUrls("sms"))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        inbound = InboundMessage(channel_id="sms", sender_id="+1555", content=media)
        recorded = (await kit.process_inbound(inbound, room_id="r1")).event
        assert recorded is not None
        after = await kit.send_event("r1", "sms", TextContent(body="after"))
        timeline = await kit.get_timeline("r1")
        room_now = await kit.get_room("r1")
    assert after in timeline and recorded.id not in [e.id for e in timeline]
    assert room_now is not None and room_now.event_count == after.index + 1
    said = [r for r in caplog.records if r.name == "roomkit.projection.store"]
    assert [r.levelno for r in said] == [logging.ERROR]
    assert recorded.id in said[0].getMessage() and "left r1 v" in said[0].getMessage()
    assert said[0].exc_info is None
    assert "SECRET-4242" not in caplog.text


async def test_a_record_that_does_not_validate_is_said_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pydantic's report quotes the input (input_value=...): the room's error, and the
    # crash its actor logged, held another writer's participant name as it was.
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        await room(kit)
        stream = room_stream("r1")
        participant = {"id": "p1", "room_id": "r1", "display_name": "PIN 4242", "role": 5}
        data = json.dumps({"participant": participant}).encode()
        version = await log.last_version(stream)
        await log.append(stream, [NewEvent("participant.joined", data)], expected_version=version)
        with pytest.raises(RoomKitError, match=r"cannot be applied.*Participant") as raised:
            await kit.send_event("r1", "sms", TextContent(body="x"))
        assert "PIN 4242" not in str(raised.value)
    assert "cannot be applied" in caplog.text and "PIN 4242" not in caplog.text


async def test_a_room_that_cannot_be_checked_does_not_stop_the_timer_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryEventLog()
    async with RoomKit(log=log) as kit:
        kit.register_channel(SimpleChannel("sms"))
        for room_id in ("a-broken", "b-ok"):
            await kit.create_room(room_id=room_id, timers=RoomTimers(inactive_after_seconds=0))
            await kit.attach_channel(room_id, "sms")
            await kit.process_inbound(text("sms", "hi"), room_id=room_id)  # room activity
        stream = room_stream("a-broken")
        version = await log.last_version(stream)
        unreadable = NewEvent("room.updated", b"{not json")
        await log.append(stream, [unreadable], expected_version=version)
        system = kit._runtime._system
        assert system is not None
        await system.passivate("room", "a-broken")  # reloads from its log at the next command
        changed = await kit.check_all_timers()
    assert [room.id for room in changed] == ["b-ok"]
    assert "timers of room a-broken not checked" in caplog.text


class _HalfAMeta:
    is_inbound = True
    is_status = False


async def test_webhooks_and_statuses_of_the_wrong_kind_are_refused() -> None:
    async with RoomKit() as kit:
        await room(kit)
        half = _HalfAMeta()  # an object shaped like WebhookMeta without to_inbound
        for wrong in ({"From": "+1555", "Body": "hi"}, None, text("sms", "parsed already"), half):
            with pytest.raises(TypeError, match="^process_webhook takes a WebhookMeta"):
                await kit.process_webhook(wrong, "sms")
        with pytest.raises(TypeError, match="pass an InboundMessage to process_inbound$"):
            await kit.process_webhook(text("sms", "parsed already"), "sms")
        for status in (None, {"status": "delivered"}):
            with pytest.raises(TypeError, match="^process_delivery_status takes a Delivery"):
                await kit.process_delivery_status(status)  # type: ignore[arg-type]
        assert [e.type for e in await kit.get_timeline("r1")] == ["channel_attached"]


def _nested(depth: int) -> list[object]:
    deep: list[object] = []
    for _ in range(depth):
        deep = [deep]
    return deep


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (text("sms", "hi \udc00"), "surrogates not allowed"),  # json.loads lets one through
        (
            InboundMessage(
                channel_id="sms",
                sender_id="a",
                content=TextContent(body="hi"),
                metadata={"deep": _nested(1000)},
            ),
            "Maximum serialization depth exceeded",
        ),
        # pydantic writes such a key as U+FFFD: two of them were one, a value lost.
        (
            InboundMessage(
                channel_id="sms",
                sender_id="a",
                content=TextContent(body="hi"),
                metadata={"\ud800": "first", "ok": "second"},
            ),
            "the key '.ud800' has a lone surrogate",
        ),
    ],
)
async def test_a_message_json_cannot_hold_is_refused_plainly_and_nothing_is_logged(
    kit: RoomKit, event_log: EventLog, message: InboundMessage, why: str
) -> None:
    await room(kit)
    version = await event_log.last_version(room_stream("r1"))
    # An EventRefusedError (a ValueError): the same message is refused again, so the NATS
    # ingress dead-letters it at once instead of retrying it.
    with pytest.raises(EventRefusedError, match=f"^RoomEvent cannot be stored: .*{why}"):
        await kit.process_inbound(message, room_id="r1")
    assert await event_log.last_version(room_stream("r1")) == version
    after = await kit.process_inbound(text("sms", "fine"), room_id="r1")
    assert after.event is not None and after.event.index == 1


class _Forgetful(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        return None  # type: ignore[return-value]  # forgot the return


class _Unknown(IdentityResolver):
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        return IdentityResult(status="unknown")


class _Dict(IdentityResolver):
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        return {"status": "unknown"}  # type: ignore[return-value]


class _Nothing(IdentityResolver):
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        return None  # type: ignore[return-value]  # was reported as an identity_timeout


async def test_wrong_return_types_of_extension_points_are_named() -> None:
    # Each failed with an AttributeError from deep inside the kit.
    for identity_resolver in (None, _Unknown()):  # with one, the channel is called apart
        async with RoomKit(identity_resolver=identity_resolver) as kit:
            kit.register_channel(_Forgetful("sms"))
            await kit.create_room(room_id="r1")
            await kit.attach_channel("r1", "sms")
            with pytest.raises(TypeError, match="handle_inbound returned NoneType, expected"):
                await kit.process_inbound(text("sms", "x"), room_id="r1")
    for resolver, returned in ((_Dict(), "dict"), (_Nothing(), "NoneType")):
        async with RoomKit(identity_resolver=resolver) as kit:
            await room(kit)
            timeouts: list[object] = []
            kit.on("identity_timeout")(timeouts.append)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=f"resolve returned {returned}, expected Identity"):
                await kit.process_inbound(text("sms", "x"), room_id="r1")
            assert timeouts == []
    async with RoomKit(identity_resolver=_Unknown()) as kit:
        await room(kit)

        @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
        async def gate(event: RoomEvent, context: RoomContext, result: IdentityResult) -> str:
            return "reject"  # not an IdentityHookResult: ignored, with a warning

        assert not (await kit.process_inbound(text("sms", "x"), room_id="r1")).blocked


async def test_identity_hooks_are_registered_on_identity_triggers_only() -> None:
    kit = RoomKit()
    with pytest.raises(ValueError, match="not before_broadcast$"):
        kit.identity_hook(HookTrigger.BEFORE_BROADCAST)  # it would never run
    with pytest.raises(ValueError):
        kit.identity_hook("nonsense")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an async callable"):
        kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)(42)  # type: ignore[type-var]
    assert kit._identity_hooks == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"offset": -3}, ValueError),
        ({"limit": -1}, ValueError),
        ({"offset": None}, TypeError),
        ({"limit": "1"}, TypeError),
        ({"limit": 1.5}, TypeError),
    ],
)
async def test_timeline_paging_takes_counts(
    kit: RoomKit, arguments: dict[str, object], error: type[Exception]
) -> None:
    await room(kit)
    name = next(iter(arguments))
    with pytest.raises(error, match=f"^{name} must be"):
        await kit.get_timeline("r1", **arguments)  # type: ignore[arg-type]


async def test_websocket_connections_and_subscriptions_refuse_what_cannot_work() -> None:
    ws = WebSocketChannel("ws")
    disconnected: list[object] = []
    async with RoomKit() as kit:
        kit.register_channel(ws)
        kit.on("channel_disconnected")(disconnected.append)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^send_fn must be an async callable"):
            await kit.connect_websocket("ws", "c1", None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^connection_id must be a string"):
            await kit.connect_websocket("ws", None, _Sink().send)  # type: ignore[arg-type]
        assert ws.connection_count == 0
        await kit.disconnect_websocket("ws", "never-connected")
        assert len(disconnected) == 1  # as 0.3.0 (the channel may have dropped it itself)
        kit.register_channel(SimpleChannel("sms"))
        for channel_id in ("sms", "nope"):  # as 0.3.0 too, whatever the channel
            await kit.disconnect_websocket(channel_id, "c1")
        assert [e.channel_id for e in disconnected[1:]] == ["sms", "nope"]  # type: ignore[attr-defined]
        with pytest.raises(ChannelNotRegisteredError, match="not a registered WebSocket channel"):
            await kit.connect_websocket("sms", "c1", _Sink().send)
    with pytest.raises(KitClosedError):
        await kit.subscribe_room("r1", _Sink().send)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^max_queue_size must be an integer"):
        InMemoryRealtime(max_queue_size=2.5)  # type: ignore[arg-type]


class _Sink:
    async def send(self, *args: object) -> None:
        return None


class _OddProvider(SimpleChannel):
    """Its provider answers with metadata the log cannot hold."""

    def __init__(self, channel_id: str, metadata: dict[str, object]) -> None:
        super().__init__(channel_id)
        self.metadata = metadata

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.delivered.append(event)
        return ChannelOutput(provider_result=ProviderResult(success=True, metadata=self.metadata))


@pytest.mark.parametrize("metadata", [{"n": 10**4400}, {"n": object()}])
async def test_a_delivery_result_the_log_cannot_hold_is_recorded_without_it(
    kit: RoomKit, event_log: EventLog, metadata: dict[str, object]
) -> None:
    # Outcomes ride on the room's next append: one that could not be encoded made every
    # later write to its room fail.
    await room(kit)
    kit.register_channel(_OddProvider("ws", metadata))
    await kit.attach_channel("r1", "ws")
    for body in ("first", "second", "third"):
        assert not (await kit.process_inbound(text("sms", body), room_id="r1")).blocked
    await kit.send_event("r1", "sms", TextContent(body="sent"))  # appends the outcomes
    records = await event_log.read(room_stream("r1"))
    outcomes = [r.data for r in records if r.type == "delivery.recorded"]
    # Only what could not be stored is left out: the provider's own answer stays.
    assert outcomes and all(b"provider metadata not storable" in data for data in outcomes)
    assert all(b'"provider_result":{"success":true}' in data for data in outcomes)
    bodies = [e.content.body for e in await kit.get_timeline("r1")]  # type: ignore[union-attr]
    assert bodies[-4:] == ["first", "second", "third", "sent"]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "said"),
    [
        ("get_room", (5,), {}, "room_id must be a string"),
        ("get_event", (None,), {}, "event_id must be a string"),
        ("list_events", ("r1",), {"visibility_filter": 5}, "visibility_filter must be a string"),
        ("get_event_count", (b"r1",), {}, "room_id must be a string"),
        ("find_room_id_by_channel", (5,), {}, "channel_id must be a string"),
        ("find_latest_room", (5,), {}, "participant_id must be a string"),
        ("find_rooms", (), {"organization_id": 5}, "organization_id must be a string or None"),
        ("find_rooms", (), {"metadata_filter": "team"}, "metadata_filter must be a dict"),
        ("check_idempotency", ("r1", 5), {}, "key must be a string"),
        ("get_unread_count", ("r1", 5), {}, "channel_id must be a string"),
        ("resolve_identity", ("sms", 5), {}, "address must be a string"),
        ("link_address", ("i1", None, "+1"), {}, "channel_type must be a string"),
        ("create_identity", ("i1",), {}, "identity must be an Identity"),
        ("list_tasks", ("r1",), {"status": 5}, "status must be a string or None"),
    ],
)
async def test_kit_store_refuses_arguments_of_the_wrong_type_whatever_the_store(
    kit: RoomKit, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], said: str
) -> None:
    # InMemoryStore answered None, [] or 0 (and kept a link to None); PostgresStore raised
    # asyncpg's DataError; some raised AttributeError from deep inside.
    await kit.create_room(room_id="r1")
    with pytest.raises(TypeError, match=f"{method}: {said}"):
        await getattr(kit.store, method)(*args, **kwargs)
    assert await kit.store.get_room("r1") is not None


async def test_the_digit_limit_follows_python_s(kit: RoomKit) -> None:
    # A process may lower the limit (sys.set_int_max_str_digits): pydantic reads numbers
    # as Python does, so the kit refuses what this process could not read back.
    await room(kit)
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(1000)
    try:
        with pytest.raises(ValueError, match="1,000 digits"):
            await kit.create_room(room_id="big", metadata={"n": 10**1500})
    finally:
        sys.set_int_max_str_digits(limit)
    with pytest.raises(TypeError, match="^hook priority must be a number"):

        @kit.hook(HookTrigger.BEFORE_BROADCAST, priority=Decimal("NaN"))  # type: ignore[arg-type]
        async def never(event: RoomEvent, context: RoomContext) -> None: ...


def _nested(levels: int) -> list[object]:
    """A list nested ``levels`` deep: pydantic writes 255 levels of JSON, and reads 200."""
    value: list[object] = []
    for _ in range(levels):
        value = [value]
    return value


async def _resolve_a_constructed_identity(kit: RoomKit) -> object:
    await kit.ensure_participant("r1", "sms", "p1")
    identity = Identity.model_construct(id="id-1", display_name=5, channel_addresses={})
    await kit.store.read_model.create_identity(identity)
    return await kit.resolve_participant("r1", "p1", "id-1")


async def _attach_with_a_constructed_rate_limit(kit: RoomKit) -> object:
    kit.register_channel(SimpleChannel("other"))
    limit = RateLimit.model_construct(max_per_second=-1.0)
    return await kit.attach_channel("r1", "other", rate_limit=limit)


_NOT_READ_BACK = {
    "room metadata nested 220 deep": lambda kit: kit.update_room_metadata(
        "r1", {"deep": _nested(220)}
    ),
    "message metadata nested 220 deep": lambda kit: kit.process_inbound(
        text("sms", "hi", metadata={"deep": _nested(220)}), room_id="r1"
    ),
    "sent content made with model_construct": lambda kit: kit.send_event(
        "r1", "sms", TextContent.model_construct(body=5)
    ),
    "a rate limit made with model_construct": _attach_with_a_constructed_rate_limit,
    "timers made with model_construct": lambda kit: kit.create_room(
        room_id="r2", timers=RoomTimers.model_construct(inactive_after_seconds="soon")
    ),
    "an identity made with model_construct": _resolve_a_constructed_identity,
}


@pytest.mark.parametrize("case", _NOT_READ_BACK)
async def test_what_the_log_could_not_read_back_is_refused_and_nothing_is_logged(
    kit: RoomKit, event_log: EventLog, case: str
) -> None:
    # Logged, each made every replay of the room fail for good ("room r1 is unavailable"),
    # or its timeline raise: pydantic validates neither model_construct nor assignments, and
    # writes JSON deeper than it reads.
    await room(kit)
    assert not (await kit.process_inbound(text("sms", "before"), room_id="r1")).blocked
    position = await event_log.last_position()
    with pytest.raises(EventRefusedError, match="could not read it back"):
        await _NOT_READ_BACK[case](kit)
    # Only what a case set up itself is logged (a participant, a channel and its system
    # event), and none of what was refused.
    appended = await event_log.read_all(after_position=position)
    set_up = {"participant.joined", "channel.attached", "message.recorded"}
    assert {r.type for r in appended} <= set_up
    messages = [r.data for r in appended if r.type == "message.recorded"]
    assert all(b'"content":{"type":"system"' in data for data in messages)
    assert "r2" not in [r.id for r in await kit.store.list_rooms()]
    assert not (await kit.process_inbound(text("sms", "after"), room_id="r1")).blocked
    timeline = await kit.get_timeline("r1")
    bodies = [e.content.body for e in timeline if e.type == "message"]  # type: ignore[union-attr]
    assert bodies[-2:] == ["before", "after"]
    # The kit fixture then replays the log into a second kit, which must hold the same.


async def test_a_hook_result_no_validation_made_is_a_hook_error(kit: RoomKit) -> None:
    # A block reason that is not text, logged, made every replay of the room fail. The hook
    # fails instead (fail-open), as one returning something else than a HookResult does.
    await room(kit)
    returned = [
        HookResult.model_construct(action="block", reason=5),
        HookResult.model_construct(action="allow", tasks=None),
        HookResult.model_construct(action="maybe"),
        HookResult.model_construct(action=["allow"]),
    ]

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def odd(event: RoomEvent, context: RoomContext) -> HookResult:
        return returned.pop(0)

    errors: list[FrameworkEvent] = []

    @kit.on("hook_error")
    async def note(event: FrameworkEvent) -> None:
        errors.append(event)

    async def all_reported() -> bool:
        return len(errors) == 4

    for n in range(4):
        assert not (await kit.process_inbound(text("sms", f"m{n}"), room_id="r1")).blocked
    await eventually(all_reported)
    texts = [e.data["error"] for e in errors]
    assert texts == [
        "returned a HookResult whose reason is a int",
        "returned a HookResult whose tasks is a NoneType",
        "returned a HookResult with action 'maybe'",
        "returned a HookResult with action ['allow']",
    ]


async def test_an_injected_event_whose_targets_do_not_validate_is_left_out(
    kit: RoomKit, caplog: pytest.LogCaptureFixture
) -> None:
    # Its targets are logged with it: a str there made every replay of the room fail.
    await room(kit)
    note = RoomEvent(
        room_id="r1",
        source=EventSource(channel_id="sms", channel_type="sms"),
        content=TextContent(body="note"),
    )

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def inject(event: RoomEvent, context: RoomContext) -> HookResult:
        odd = InjectedEvent.model_construct(event=note, target_channel_ids="sms")
        return HookResult.allow([odd])

    assert not (await kit.process_inbound(text("sms", "hi"), room_id="r1")).blocked
    bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
    assert "note" not in bodies and bodies[-1] == "hi"
    assert "injected event InjectedEvent does not validate" in caplog.text


class _DictReplies(SimpleChannel):
    """Answers each message with a reply whose content it gives as a dict."""

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        await super().on_event(event, binding, context)
        if event.source.channel_id == self.channel_id or event.chain_depth:
            return ChannelOutput.empty()
        source = EventSource(channel_id=self.channel_id, channel_type="ai")
        reply = event.model_copy(
            update={"id": "reply", "source": source, "chain_depth": 1}
            | {"content": {"type": "text", "body": "answer"}}
        )
        return ChannelOutput(responded=True, response_events=[reply])


async def test_fields_given_as_dicts_are_sent_as_the_log_holds_them(kit: RoomKit) -> None:
    # model_copy(update=...) takes a dict for a content, or a source: the log held the model
    # it reads back as, but the dict itself was sent on, and every channel failed on it.
    await room(kit)
    kit.register_channel(SimpleChannel("out"))
    kit.register_channel(_DictReplies("ai"))
    await kit.attach_channel("r1", "out")
    await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
    failed: list[FrameworkEvent] = []
    kit.on("delivery_failed")(failed.append)

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def rewrite(event: RoomEvent, context: RoomContext) -> HookResult:
        source = {"channel_id": "sms", "channel_type": "sms", "participant_id": "ana"}
        changed = event.model_copy(update={"content": {"type": "text", "body": "rewritten"}})
        note = event.model_copy(update={"id": "note", "content": {"type": "text", "body": "n"}})
        return HookResult.modify(
            changed.model_copy(update={"source": source}),
            injected=[InjectedEvent(event=note, target_channel_ids=["out"])],
        )

    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert result.event is not None
    assert result.event.content == TextContent(body="rewritten")
    assert result.event.source.participant_id == "ana"
    out = kit.get_channel("out")
    assert isinstance(out, SimpleChannel)
    assert [(e.id, e.content) for e in out.delivered if e.id in ("note", "reply")] == [
        ("note", TextContent(body="n")),
        ("reply", TextContent(body="answer")),
    ]
    assert "rewritten" in out.texts() and not failed
    timeline = await kit.get_timeline("r1")
    assert [e.content for e in timeline if e.type == "message"] == [
        TextContent(body="rewritten"),
        TextContent(body="n"),
        TextContent(body="answer"),
    ]


async def test_a_replacement_is_sent_on_as_the_log_reads_it_back(kit: RoomKit) -> None:
    # Values model_copy(update=...) took as given, which read back otherwise: the channels
    # got a time as text, a tuple, parts given as dicts in a tuple (which they failed on).
    await room(kit)
    kit.register_channel(
        SimpleChannel("out", media_types=[ChannelMediaType.TEXT, ChannelMediaType.RICH])
    )
    await kit.attach_channel("r1", "out")
    parts = ({"type": "text", "body": "a"}, {"type": "text", "body": "b"})
    changes = {
        "created_at": "2026-01-02T03:04:05Z",
        "metadata": {"pair": (1, 2)},
        "content": CompositeContent.model_construct(type="composite", parts=parts),
    }

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def change(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.modify(event.model_copy(update=changes))

    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    out = kit.get_channel("out")
    assert isinstance(out, SimpleChannel)
    [sent] = out.delivered
    [logged] = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    for event in (sent, result.event):
        assert event is not None
        assert (event.created_at, event.metadata, event.content) == (
            logged.created_at,
            logged.metadata,
            logged.content,
        )
    assert sent.metadata == {"pair": [1, 2]}


class _Signed(TextContent):
    """An app's own content class."""

    signature: str = ""


class _SignedIn(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        return event.model_copy(update={"content": _Signed(body="hi", signature="sig")})


async def _sent_as_a_hook_replaced_it(
    kit: RoomKit, source: SimpleChannel, update: dict[str, Any]
) -> RoomEvent:
    """What a channel "out" gets of a message from ``source`` that a BEFORE_BROADCAST hook
    replaced with ``event.model_copy(update=update)``."""
    await room(kit)
    kit.register_channel(source)
    kit.register_channel(SimpleChannel("out"))
    await kit.attach_channel("r1", source.channel_id)
    await kit.attach_channel("r1", "out")

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def replace(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.modify(event.model_copy(update=update))

    await kit.process_inbound(text(source.channel_id, "hi"), room_id="r1")
    out = kit.get_channel("out")
    assert isinstance(out, SimpleChannel)
    [sent] = out.delivered
    return sent


async def test_a_hook_s_replacement_keeps_the_app_s_own_classes(kit: RoomKit) -> None:
    # Checking a replacement as the log holds it swapped every field that read back as
    # another class: an app's content class became a plain TextContent for the channels.
    sent = await _sent_as_a_hook_replaced_it(kit, _SignedIn("signed"), {"metadata": {"t": 1}})
    assert isinstance(sent.content, _Signed) and sent.content.signature == "sig"
    assert sent.metadata == {"t": 1}


class _Ticket(pydantic.BaseModel):
    # Strict: it takes a time as text from JSON only (the log's form).
    model_config = pydantic.ConfigDict(strict=True)

    ticket: str
    due: datetime
    priority: int = 0  # left out of the log's JSON at its default


_DUE = datetime(2026, 1, 2, tzinfo=UTC)


class _TicketEvent(RoomEvent):
    """An app's event class whose metadata is its own model (a dict in the log)."""

    metadata: _Ticket  # type: ignore[assignment]


class _Tickets(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        return _TicketEvent(**{**dict(event), "metadata": _Ticket(ticket="T-42", due=_DUE)})


async def test_a_hook_s_replacement_keeps_the_app_s_own_models_in_its_fields(
    kit: RoomKit,
) -> None:
    # The metadata, a dict as the log reads it back, was sent on as that dict: the app's
    # class no longer held its own type (event.metadata.ticket raised AttributeError).
    sent = await _sent_as_a_hook_replaced_it(kit, _Tickets("app"), {"status": "delivered"})
    assert isinstance(sent, _TicketEvent) and sent.metadata == _Ticket(ticket="T-42", due=_DUE)
    [logged] = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert logged.metadata == {"ticket": "T-42", "due": "2026-01-02T00:00:00Z"}


class _RawTicketEvent(RoomEvent):
    """Its metadata is the app's model; its raw payload a field the log does not keep."""

    metadata: _Ticket  # type: ignore[assignment]
    raw: dict[str, object] = pydantic.Field(exclude=True)


class _RawTickets(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        ticket = _Ticket(ticket="T-42", due=_DUE)
        return _RawTicketEvent(**{**dict(event), "metadata": ticket, "raw": {"p": 1}})


async def test_an_app_model_is_kept_beside_a_field_the_log_does_not_keep(kit: RoomKit) -> None:
    # The app's whole class was read back from the log, without its required raw: refused,
    # the metadata went on as the log's dict (event.metadata.ticket raised AttributeError).
    sent = await _sent_as_a_hook_replaced_it(kit, _RawTickets("app"), {"status": "delivered"})
    assert isinstance(sent, _RawTicketEvent) and sent.raw == {"p": 1}
    assert sent.metadata == _Ticket(ticket="T-42", due=_DUE)


class _SignedEvent(RoomEvent):
    """Its metadata's bytes go to JSON as base64, as its class's config says."""

    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
    metadata: dict[str, bytes]  # type: ignore[assignment]


class _SignedEvents(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        return _SignedEvent(**{**dict(event), "metadata": {"sig": b"\x01\x02raw"}})


async def test_a_field_typed_anew_is_compared_with_its_class_s_config(kit: RoomKit) -> None:
    # Compared without it (bytes read as text, not base64), the bytes went on as the log's
    # base64 text.
    sent = await _sent_as_a_hook_replaced_it(kit, _SignedEvents("app"), {"status": "delivered"})
    assert isinstance(sent, _SignedEvent) and sent.metadata == {"sig": b"\x01\x02raw"}


class _Tagged(pydantic.BaseModel):
    code: str

    @pydantic.field_validator("code")
    @classmethod
    def tagged(cls, code: str) -> str:
        return "#" + code  # not idempotent: each validation adds one


class _TaggedEvent(RoomEvent):
    metadata: _Tagged  # type: ignore[assignment]


class _TaggedIn(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        return _TaggedEvent(**{**dict(event), "metadata": _Tagged(code="42")})


async def test_a_model_whose_validator_changes_it_again_is_not_validated_again(
    kit: RoomKit,
) -> None:
    # Its class read back the log's JSON a second time: "##42" went to the channels and the
    # log, where the app made "#42". What goes on is what the log holds.
    sent = await _sent_as_a_hook_replaced_it(kit, _TaggedIn("app"), {"status": "delivered"})
    [logged] = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert logged.metadata == {"code": "#42"}
    assert pydantic_core.to_jsonable_python(sent.metadata) == {"code": "#42"}


class _AliasedTicket(pydantic.BaseModel):
    ticket_id: str = pydantic.Field(alias="ticketId")


class _AliasedTicketEvent(RoomEvent):
    metadata: _AliasedTicket  # type: ignore[assignment]


class _AliasedTickets(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        ticket = _AliasedTicket(ticketId="T-7")
        return _AliasedTicketEvent(**{**dict(event), "metadata": ticket})


async def test_a_model_with_an_alias_is_kept_where_the_app_s_class_types_it(kit: RoomKit) -> None:
    # The log writes its fields by name; read back by alias only, it was sent on as a dict.
    sent = await _sent_as_a_hook_replaced_it(kit, _AliasedTickets("app"), {"status": "delivered"})
    assert isinstance(sent, _AliasedTicketEvent)
    assert sent.metadata == _AliasedTicket(ticketId="T-7")


class _Order(pydantic.BaseModel):
    id: int


async def test_a_model_where_the_event_types_a_dict_goes_on_as_the_log_reads_it(
    kit: RoomKit,
) -> None:
    # RoomEvent.metadata is a dict of anything: a model a hook put in it is logged as a dict,
    # and the channels get that dict, as the timeline has it (they got the model object, which
    # json.dumps refused, since 0c3885b).
    update = {"metadata": {"order": _Order(id=7)}}
    sent = await _sent_as_a_hook_replaced_it(kit, SimpleChannel("sms"), update)
    assert sent.metadata == {"order": {"id": 7}}
    [logged] = [e for e in await kit.get_timeline("r1") if e.type == "message"]
    assert logged.metadata == sent.metadata


class _AppEvent(RoomEvent):
    """An app's own event class, with a field the log does not keep."""

    raw: dict[str, object] = pydantic.Field(exclude=True)


class _AppEvents(SimpleChannel):
    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = await super().handle_inbound(message, context)
        return _AppEvent(**dict(event), raw={"provider": "payload"})


async def test_an_app_s_event_class_is_read_back_as_the_log_holds_it(kit: RoomKit) -> None:
    # Read back as its own class, it was refused for the field the log does not keep, once
    # its text had brackets enough to be read back (pasted code, JSON).
    await room(kit)
    kit.register_channel(_AppEvents("app"))
    await kit.attach_channel("r1", "app")
    for body in ("hello", "{" * 200):
        assert not (await kit.process_inbound(text("app", body), room_id="r1")).blocked
    timeline = await kit.get_timeline("r1")
    assert [e.content.body for e in timeline if e.type == "message"] == ["hello", "{" * 200]  # type: ignore[union-attr]


class _UndecodableError(SimpleChannel):
    """Fails with a provider's text decoded with surrogateescape: bytes JSON cannot hold."""

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        raise RuntimeError("provider said \udcff")


async def test_a_delivery_error_text_json_cannot_hold_is_recorded_escaped(
    kit: RoomKit, event_log: EventLog
) -> None:
    # Its outcome rides on the room's next append: it could not be stored, and every other
    # message of the room was refused with it.
    await room(kit)
    kit.register_channel(_UndecodableError("odd"))
    await kit.attach_channel("r1", "odd")
    for body in ("one", "two", "three"):
        assert not (await kit.process_inbound(text("sms", body), room_id="r1")).blocked
    await kit.send_event("r1", "sms", TextContent(body="sent"))
    bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
    assert bodies[-4:] == ["one", "two", "three", "sent"]
    records = await event_log.read(room_stream("r1"))
    outcomes = [r.data for r in records if r.type == "delivery.recorded"]
    assert len(outcomes) >= 3 and all(b"provider said \\\\udcff" in data for data in outcomes)


class _LoneSurrogateAI(AIProvider):
    """An app's provider whose reply was cut inside a character (a lone surrogate)."""

    @property
    def model_name(self) -> str:
        return "cut"

    async def generate(self, context: AIContext) -> AIResponse:
        return AIResponse(content="price is 5\ud83d")


async def test_an_ai_reply_json_cannot_hold_is_said_to_on_error_and_loses_only_itself(
    kit: RoomKit,
) -> None:
    # It was dropped with a warning in the log: the ON_ERROR hooks heard nothing of it.
    errors = errors_said(kit)

    await room(kit)
    kit.register_channel(AIChannel("odd", provider=_LoneSurrogateAI()))
    kit.register_channel(AIChannel("fine", provider=MockAIProvider(["a fine reply"])))
    for ai in ("odd", "fine"):
        await kit.attach_channel("r1", ai, category=ChannelCategory.INTELLIGENCE)
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert result.event is not None and not result.blocked
    bodies = [getattr(e.content, "body", None) for e in await kit.get_timeline("r1")]
    assert bodies[-2:] == ["hi", "a fine reply"]

    async def said() -> bool:
        return bool(errors)

    await eventually(said, what="the ON_ERROR hook of the reply not recorded")
    # Odd answers the message, then the fine reply (another AI's message): both lost.
    assert {(e["code"], e["channel_id"]) for e in errors} == {("outcome_not_recorded", "odd")}
    assert errors[0]["event_id"] == result.event.id
    assert "surrogates not allowed" in str(errors[0]["error"])


class _CutOutput(SimpleChannel):
    """Answers a message from sms with a task, an observation or a blocked (past the chain
    depth) reply whose text was cut inside a character."""

    def __init__(self, channel_id: str, what: str) -> None:
        super().__init__(channel_id)
        self.what = what

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if event.source.channel_id != "sms":
            return ChannelOutput.empty()
        output = ChannelOutput(responded=True)
        cut = "cut \ud83d"
        if self.what == "task":
            task = Task(room_id="r1", title="x")
            task.title = cut  # assigned in place: validated by nobody
            output.tasks.append(task)
        elif self.what == "observation":
            observation = Observation(room_id="r1", channel_id=self.channel_id, content="x")
            observation.content = cut
            output.observations.append(observation)
        else:
            source = EventSource(channel_id=self.channel_id, channel_type="sms")
            reply = RoomEvent(room_id="r1", source=source, content=TextContent(body="x"))
            reply.content.body = cut  # type: ignore[union-attr]
            output.response_events.append(reply.model_copy(update={"chain_depth": 99}))
        return output


@pytest.mark.parametrize("what", ["task", "observation", "blocked reply"])
async def test_what_a_channel_gives_that_json_cannot_hold_is_said_to_on_error(
    kit: RoomKit, what: str
) -> None:
    # Only a reply was (78c2f2c); the rest of the outcome was left out with a log line.
    errors = errors_said(kit)

    await room(kit)
    kit.register_channel(_CutOutput("cut", what))
    await kit.attach_channel("r1", "cut")
    result = await kit.process_inbound(text("sms", "hi"), room_id="r1")
    assert result.event is not None and not result.blocked

    async def said() -> bool:
        return bool(errors)

    await eventually(said, what="the ON_ERROR hook of what was left out")
    assert [(e["code"], e["what"], e["event_id"]) for e in errors] == [
        ("outcome_not_recorded", what, result.event.id)
    ]


async def test_ephemeral_events_name_their_room_and_user_with_strings(kit: RoomKit) -> None:
    # Published as given: another process's NatsRealtime dropped them with a warning, and
    # this process's subscribers got them with the wrong types.
    for room_id, user_id in ((123, "u"), ("r1", None), (None, "u")):
        with pytest.raises(TypeError, match="must be a string"):
            await kit.publish_typing(room_id, user_id)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be a string"):
            await kit.publish_presence(room_id, user_id, "online")  # type: ignore[arg-type]


async def test_ephemeral_events_carry_what_their_model_says(kit: RoomKit) -> None:
    # Each went out as given: this process's subscribers got a str or list as the event's
    # data (a dict), another process's NatsRealtime dropped it; a subscription to room None
    # could never hear a thing.
    heard: list[EphemeralEvent] = []
    await kit.subscribe_room("r1", heard.append)
    for data in ("not-a-dict", ["a", "b"], {1: "x"}):
        with pytest.raises(TypeError, match="^data "):
            await kit.publish_typing("r1", "u1", data=data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^status must be a string, got None$"):
        await kit.publish_presence("r1", "u1", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^event_id must be a string, got 5$"):
        await kit.publish_read_receipt("r1", "u1", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^emoji must be a string, got None$"):
        await kit.publish_reaction("r1", "u1", "e1", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^room_id must be a string, got None$"):
        await kit.subscribe_room(None, heard.append)  # type: ignore[arg-type]
    await kit.publish_typing("r1", "u1", data={"n": 1})
    await eventually(lambda: _not_empty(heard), what="the event that was right")
    assert [(e.user_id, e.data) for e in heard] == [("u1", {"n": 1})]


async def test_an_ephemeral_event_carries_its_data_as_published(kit: RoomKit) -> None:
    # The caller's dict went out as it was: one dict reused for each event (or changed by a
    # subscriber) changed the events already published, where another process's
    # NatsRealtime got each as published; a read-only mapping reached subscribers as itself,
    # which json.dumps of the event's to_dict() refused.
    heard: list[EphemeralEvent] = []
    await kit.subscribe_room("r1", heard.append)
    data: dict[str, Any] = {"cursor": {}}
    for n in range(3):
        data["n"] = data["cursor"]["line"] = n
        await kit.publish_typing("r1", "u1", data=data)
    await kit.publish_typing("r1", "u1", data=types.MappingProxyType({"n": 3}))  # type: ignore[arg-type]
    await eventually(lambda: _has(heard, 4), what="the four events")
    assert [e.data.get("cursor") for e in heard] == [{"line": 0}, {"line": 1}, {"line": 2}, None]
    assert [e.data["n"] for e in heard] == [0, 1, 2, 3]
    assert all(type(e.data) is dict for e in heard)
    assert data == {"n": 2, "cursor": {"line": 2}}
    # What deepcopy refuses is handed on as it is (publish_typing raised TypeError for it).
    lock = threading.Lock()
    nested = {"lock": lock, "seen": types.MappingProxyType({"a": [1]}), "pair": (1, [2])}
    await kit.publish_typing("r1", "u1", data=nested)
    await eventually(lambda: _has(heard, 5), what="the fifth event")
    assert heard[4].data == {"lock": lock, "seen": {"a": [1]}, "pair": (1, [2])}
    assert heard[4].data["lock"] is lock and type(heard[4].data["seen"]) is dict
    assert heard[4].data["pair"][1] is not nested["pair"][1]  # type: ignore[index]


async def _has(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def _not_empty(items: list[Any]) -> bool:
    return bool(items)


async def test_a_realtime_backend_shaped_like_the_contract_is_used_as_one() -> None:
    # Taken at construction (every abstract method), it failed at each use: the kit called
    # publish_to_room, subscribe_to_room and close, which the contract has and it lacked.
    class DuckRealtime:
        def __init__(self) -> None:
            self.inner = InMemoryRealtime()
            self.calls: list[str] = []

        async def publish(self, channel: str, event: EphemeralEvent) -> None:
            self.calls.append(f"publish {channel}")
            await self.inner.publish(channel, event)

        async def subscribe(self, channel: str, callback: Any) -> str:
            self.calls.append(f"subscribe {channel}")
            return await self.inner.subscribe(channel, callback)

        async def unsubscribe(self, subscription_id: str) -> bool:
            self.calls.append("unsubscribe")
            return await self.inner.unsubscribe(subscription_id)

    duck = DuckRealtime()
    heard: list[EphemeralEvent] = []
    async with RoomKit(realtime=duck) as kit:  # type: ignore[arg-type]
        assert kit.realtime is duck  # as given
        sub = await kit.subscribe_room("r1", heard.append)
        await kit.publish_typing("r1", "u1")
        await eventually(lambda: _not_empty(heard), what="the event")
        assert await kit.unsubscribe_room(sub)
    assert duck.calls == ["subscribe room:r1", "publish room:r1", "unsubscribe"]
    assert [e.user_id for e in heard] == ["u1"]
    await duck.inner.close()


async def test_a_shaped_store_has_the_contract_s_newer_reads_through_kit_store() -> None:
    store = _store_with(*ConversationStore.__abstractmethods__)
    async with RoomKit(store=store) as kit:  # type: ignore[arg-type]
        await room(kit)
        sent = await kit.process_inbound(text("sms", "hi", idempotency_key="k"), room_id="r1")
        assert sent.event is not None
        recent = await kit.store.list_recent_events("r1", limit=1)
        assert [e.id for e in recent] == [sent.event.id]
        assert await kit.store.idempotent_event_id("r1", "k") == ""  # stored, id unknown
        assert await kit.store.applied_position() == 0


async def test_the_kit_s_reads_refuse_a_room_id_that_is_not_a_string() -> None:
    # The in-memory store found nothing (None, []), PostgreSQL's driver raised its own error:
    # the same typed error as the commands give, whatever the store.
    async with RoomKit() as kit:
        await room(kit)
        reads: list[Callable[[], Awaitable[object]]] = [
            lambda: kit.get_room(5),  # type: ignore[arg-type]
            lambda: kit.get_timeline(5),  # type: ignore[arg-type]
            lambda: kit.list_bindings(5),  # type: ignore[arg-type]
            lambda: kit.get_binding(5, "sms"),  # type: ignore[arg-type]
            lambda: kit.list_tasks(5),  # type: ignore[arg-type]
            lambda: kit.list_observations(5),  # type: ignore[arg-type]
        ]
        for read in reads:
            with pytest.raises(InvalidRoomIdError, match="not int"):
                await read()
        with pytest.raises(TypeError, match="visibility_filter"):
            await kit.get_timeline("r1", visibility_filter=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="channel_id"):
            await kit.get_binding("r1", 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="status"):
            await kit.list_tasks("r1", status=5)  # type: ignore[arg-type]
        with pytest.raises(RoomNotFoundError):
            await kit.get_room("")  # a str the kit would not create is just not found


def test_a_bare_kit_hook_is_refused() -> None:
    # @kit.hook without its trigger registered nothing: a content filter that never ran.
    kit = RoomKit()

    async def no_spam(event: RoomEvent, context: RoomContext) -> HookResult:
        return HookResult.block("spam")

    with pytest.raises(TypeError, match="kit.hook needs its trigger"):
        kit.hook(no_spam)  # type: ignore[arg-type]


async def test_a_hook_written_with_plain_def_is_run_as_it_is() -> None:
    # Its HookResult was awaited: the hook failed at every message, and a failed
    # BEFORE_BROADCAST hook lets the message through (a content filter that blocked nothing).
    ran: list[str] = []
    async with RoomKit() as kit:
        await room(kit)

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        def no_spam(event: RoomEvent, context: RoomContext) -> HookResult:
            spam = isinstance(event.content, TextContent) and "spam" in event.content.body
            return HookResult.block("spam") if spam else HookResult.allow()

        @kit.hook(HookTrigger.AFTER_BROADCAST, execution=HookExecution.ASYNC)
        def note(event: RoomEvent, context: RoomContext) -> None:
            ran.append(event.id)

        errors: list[FrameworkEvent] = []

        @kit.on("hook_error")
        async def noted(failure: FrameworkEvent) -> None:
            errors.append(failure)

        blocked = await kit.process_inbound(text("sms", "buy spam"), room_id="r1")
        fine = await kit.process_inbound(text("sms", "hello"), room_id="r1")
    assert blocked.blocked and blocked.reason == "spam"
    assert not fine.blocked and fine.event is not None and ran == [fine.event.id]
    assert errors == []


async def test_metadata_is_answered_and_seen_as_the_log_holds_it() -> None:
    # update_room_metadata answered with NaN and a tuple, and the room's hooks saw them, while
    # get_room (and any replay of the log) gave null and a list.
    seen: list[dict[str, Any]] = []
    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def note(event: RoomEvent, context: RoomContext) -> None:
            seen.append(dict(context.room.metadata))
            seen.append(dict(context.bindings[0].metadata))

        room = await kit.create_room(room_id="r1", metadata={"t": (1, 2)})
        assert room.metadata == {"t": [1, 2]}
        binding = await kit.attach_channel("r1", "sms", metadata={"x": math.inf})
        assert binding.metadata == {"x": None}
        room = await kit.update_room_metadata("r1", {"x": math.nan, "s": {3}})
        stored = await kit.get_room("r1")
        assert room.metadata == stored.metadata == {"t": [1, 2], "x": None, "s": [3]}
        await kit.process_inbound(text("sms", "hello"), room_id="r1")
    assert seen == [{"t": [1, 2], "x": None, "s": [3]}, {"x": None}]


class TupleCapable(SimpleChannel):
    """Capabilities with a tuple in ``custom``, which JSON gives back as a list."""

    def capabilities(self) -> ChannelCapabilities:
        return ChannelCapabilities(custom={"pair": (1, 2)})


async def test_capabilities_are_shared_and_seen_as_the_log_holds_them() -> None:
    # Read back from JSON for each binding (a list for the tuple), they were a copy per
    # room; and after a passivation hooks saw the tuple again (the kit's shared instance).
    seen: list[Any] = []
    async with RoomKit(idle_timeout=0.05) as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(TupleCapable("odd"))

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def note(event: RoomEvent, context: RoomContext) -> None:
            binding = next(b for b in context.bindings if b.channel_id == "odd")
            seen.append(binding.capabilities.custom)

        bindings = []
        for room_id in ("r1", "r2"):
            await kit.create_room(room_id=room_id)
            await kit.attach_channel(room_id, "sms")
            await kit.attach_channel(room_id, "odd")
            context = await kit._context(room_id)
            bindings.append(next(b for b in context.bindings if b.channel_id == "odd"))
        assert bindings[0].capabilities is bindings[1].capabilities
        await kit.process_inbound(text("sms", "before"), room_id="r1")

        async def passivated() -> bool:
            return not kit._runtime._system.is_active("room", "r1")  # type: ignore[union-attr]

        await eventually(passivated, what="room r1 passivated")
        await kit.process_inbound(text("sms", "after"), room_id="r1")
    assert seen == [{"pair": [1, 2]}, {"pair": [1, 2]}]


class _SaysCapabilities(SimpleChannel):
    """A channel whose ``capabilities()`` returns what it was given."""

    def __init__(self, channel_id: str, capabilities: object) -> None:
        super().__init__(channel_id)
        self.said = capabilities

    def capabilities(self) -> ChannelCapabilities:
        return self.said  # type: ignore[return-value]


async def test_a_channel_s_capabilities_are_validated_as_0_3_0_validated_them(
    kit: RoomKit, event_log: EventLog
) -> None:
    # They went to the kit's shared instances unchecked: a dict or None raised AttributeError,
    # an object in ``custom`` a bare serialization error.
    await kit.create_room(room_id="r1")
    kit.register_channel(_SaysCapabilities("as-dict", {"max_length": 160}))
    binding = await kit.attach_channel("r1", "as-dict")
    assert binding.capabilities == ChannelCapabilities(max_length=160)
    version = await event_log.last_version(room_stream("r1"))
    kit.register_channel(_SaysCapabilities("none", None))
    with pytest.raises(pydantic.ValidationError):
        await kit.attach_channel("r1", "none")
    kit.register_channel(_SaysCapabilities("odd", ChannelCapabilities(custom={"o": object()})))
    with pytest.raises(EventRefusedError, match="odd"):
        await kit.attach_channel("r1", "odd")
    assert await event_log.last_version(room_stream("r1")) == version
    assert [b.channel_id for b in await kit.list_bindings("r1")] == ["as-dict"]
