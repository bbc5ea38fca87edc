"""The kit is pure anyio on the memory log: the same flows run on trio."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from roomkit import (
    AIChannel,
    ChannelCategory,
    ChannelOutput,
    FrameworkEvent,
    HookTrigger,
    IdentityResult,
    MockAIProvider,
    MockIdentityResolver,
    RoomContext,
    RoomEvent,
    RoomKit,
)
from tests.roomkit.kit_helpers import (
    CannedReplies,
    Retried,
    SimpleChannel,
    canned_reply,
    changed_while_it_hangs,
    retrying_room,
    room_with,
    text,
)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def test_an_entered_kit_runs_the_pipeline_on_trio() -> None:
    async with RoomKit() as kit:
        sms = SimpleChannel("sms")
        kit.register_channel(sms)
        kit.register_channel(AIChannel("ai", provider=MockAIProvider(["hi back"])))
        await kit.create_room(room_id="r1")
        await kit.attach_channel("r1", "sms")
        await kit.attach_channel("r1", "ai", category=ChannelCategory.INTELLIGENCE)
        result = await kit.process_inbound(text("sms", "hello"))
        assert result.event is not None and result.event.index == 2
        assert sms.texts() == ["hi back"]


async def test_a_kit_that_is_never_entered_starts_and_closes_on_trio() -> None:
    kit = RoomKit()
    kit.register_channel(SimpleChannel("sms"))
    result = await kit.process_inbound(text("sms", "hello"))
    assert result.event is not None
    assert [e.index for e in await kit.get_timeline(result.event.room_id)] == [0, 1]
    await kit.close()


async def test_a_channel_raising_what_is_not_an_exception_fails_alone_on_trio() -> None:
    # Off asyncio only the backend's Cancelled is a cancellation: a BaseException of the
    # channel's own fails its target, as on asyncio (it crashed the delivery worker here).
    class Odd(BaseException):
        pass

    class OddDeliver(SimpleChannel):
        async def deliver(self, *args: Any) -> ChannelOutput:
            raise Odd("in deliver")

    failed: list[object] = []
    async with RoomKit() as kit:

        @kit.on("delivery_failed")
        async def on_failed(event: FrameworkEvent) -> None:
            failed.append(event.data["error"])

        ws = SimpleChannel("ws")
        for channel in (SimpleChannel("sms"), OddDeliver("odd"), ws):
            kit.register_channel(channel)
        await room_with(kit, "r1", "sms", "odd", "ws")
        for body in ("one", "two"):
            assert not (await kit.process_inbound(text("sms", body), room_id="r1")).blocked
    assert ws.texts() == ["one", "two"]
    assert failed == ["channel 'odd' raised Odd: in deliver"] * 2


async def test_a_hook_raising_a_cancelled_error_of_its_own_fails_open_on_trio() -> None:
    # asyncio's CancelledError is no cancellation under trio: the hook failed, the message
    # goes on (it crashed the room's actor, failing the message).
    async with RoomKit() as kit:

        @kit.hook(HookTrigger.BEFORE_BROADCAST)
        async def stray(event: RoomEvent, context: RoomContext) -> None:
            raise asyncio.CancelledError

        ws = SimpleChannel("ws")
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(ws)
        await room_with(kit, "r1", "sms", "ws")
        result = await kit.process_inbound(text("sms", "one"), room_id="r1")
    assert not result.blocked
    assert ws.texts() == ["one"]


async def test_a_hung_identity_hook_times_out_on_trio() -> None:
    # It held its message's process_inbound for good (identity_timeout bounded the resolver
    # only); it fails within identity_timeout, reported, and the message goes on.
    reported: list[dict[str, Any]] = []
    resolver = MockIdentityResolver(mapping={})
    async with RoomKit(identity_resolver=resolver, identity_timeout=0.05) as kit:
        kit.on("hook_error")(lambda event: reported.append(event.data))

        @kit.identity_hook(HookTrigger.ON_IDENTITY_UNKNOWN)
        async def crm(event: RoomEvent, context: RoomContext, result: IdentityResult) -> None:
            await anyio.sleep_forever()

        kit.register_channel(SimpleChannel("sms"))
        await room_with(kit, "r1", "sms")
        with anyio.fail_after(5):  # the hang this guards against, cut short
            result = await kit.process_inbound(text("sms", "hello", sender="+9"), room_id="r1")
    assert not result.blocked and result.event is not None
    assert reported == [{"hook": "crm", "error": "timeout (0.05s)"}]


@pytest.mark.parametrize("change", ["detach", "mute"])
async def test_a_binding_change_returns_while_an_earlier_delivery_retries_on_trio(
    change: str,
) -> None:
    # The command waited for its lifecycle turn, queued behind the earlier message's whole
    # retry schedule; and the detached channel kept getting the retries.
    async with RoomKit() as kit:
        sms = Retried("sms")
        await retrying_room(kit, sms)
        await changed_while_it_hangs(kit, sms, change)
    # Detached: no further attempt; muted: it still receives, as in 0.3.0.
    assert sms.attempts == (1 if change == "detach" else 4)


async def test_one_reply_object_given_in_two_rooms_at_once_is_recorded_apart_on_trio() -> None:
    # A channel's canned reply answered in two rooms at once was looked up in the read model
    # before it held the other room's copy: recorded under one id in both rooms, the second
    # copy was refused by the read model (and by its rebuild), and room r2 showed no reply.
    canned = canned_reply("r1", body="we are closed")

    async with RoomKit() as kit:
        kit.register_channel(SimpleChannel("sms"))
        kit.register_channel(CannedReplies("ai", canned))
        for room_id in ("r1", "r2"):
            await room_with(kit, room_id, "sms")
            await kit.attach_channel(room_id, "ai", category=ChannelCategory.INTELLIGENCE)
        async with anyio.create_task_group() as tg:
            for room_id in ("r1", "r2"):
                tg.start_soon(
                    functools.partial(kit.process_inbound, text("sms", "hi"), room_id=room_id)
                )
        await kit.rebuild_store()
        replies = []
        for room_id in ("r1", "r2"):
            timeline = await kit.get_timeline(room_id, limit=100)
            replies += [e.id for e in timeline if e.source.channel_id == "ai"]
    assert len(replies) == len(set(replies)) == 2


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize(
    ("style", "kind", "code"),
    [
        ("entered", "ctrl-c", -signal.SIGINT),
        ("entered", "exit", 3),
        ("unentered", "ctrl-c", -signal.SIGINT),
        ("grouped", "ctrl-c", -signal.SIGINT),
        ("grouped", "exit", 3),
    ],
)
def test_a_ctrl_c_or_exit_in_a_hook_ends_the_run_as_itself(
    backend: str, style: str, kind: str, code: int
) -> None:
    # On trio it came out of an entered kit wrapped in groups of groups (exit code 1, not
    # sys.exit's 3; `except KeyboardInterrupt` missed it), and out of a kit used without
    # `async with` as TrioInternalError ("please file a bug"), a system task having raised.
    # Raised in a task group the hook ran, trio's group of it was reported as the hook's
    # failure: the run went on (exit code 0).
    script = [sys.executable, "-m", "tests.roomkit.interrupted_kit", backend, style, kind]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        script, capture_output=True, text=True, timeout=60, check=False, cwd=root
    )
    assert done.returncode == code, done.stderr
    assert "TrioInternalError" not in done.stderr and "ExceptionGroup" not in done.stderr


def test_a_ctrl_c_in_a_hook_is_not_lost_where_sigint_is_ignored() -> None:
    # Handed to the main task through the SIGINT handler, a Ctrl-C raised in a hook of a kit
    # used without `async with` was dropped by the app's own policy (SIG_IGN): the run went
    # on as if nothing had happened. Not trio's handler, it ends the run as an error.
    script = [
        sys.executable,
        "-m",
        "tests.roomkit.interrupted_kit",
        "trio",
        "unentered",
        "ctrl-c",
        "ignoring-sigint",
    ]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        script, capture_output=True, text=True, timeout=60, check=False, cwd=root
    )
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr
