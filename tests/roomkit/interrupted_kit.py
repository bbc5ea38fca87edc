"""A script whose room's hook raises ``KeyboardInterrupt`` or ``SystemExit(3)``, in a kit
entered with ``async with`` or used without it, as a Ctrl-C landing in a hook, or a hook
calling ``sys.exit``, does: ``python -m tests.roomkit.interrupted_kit BACKEND STYLE RAISE
[ignoring-sigint]``. STYLE ``grouped``: an entered kit whose hook raises it in a task of a
task group of its own (which hands it on wrapped in an exception group). Run in a
subprocess by test_kit_trio: what ends the process must be that exception, bare."""

from __future__ import annotations

import signal
import sys

import anyio

from roomkit import HookTrigger, RoomContext, RoomEvent, RoomKit
from tests.roomkit.kit_helpers import SimpleChannel, room_with, text


async def main(style: str, raised: BaseException) -> None:
    kit = RoomKit()

    async def raise_it() -> None:
        raise raised

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def interrupt(event: RoomEvent, context: RoomContext) -> None:
        if style != "grouped":
            await raise_it()
        async with anyio.create_task_group() as group:
            group.start_soon(raise_it)
            group.start_soon(anyio.sleep, 5)

    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    with anyio.fail_after(10):
        if style in ("entered", "grouped"):
            async with kit:
                await room_with(kit, "r1", "sms", "ws")
                await kit.process_inbound(text("sms", "hi"), room_id="r1")
        else:
            await room_with(kit, "r1", "sms", "ws")
            await kit.process_inbound(text("sms", "hi"), room_id="r1")
            await anyio.sleep(5)  # the interrupt ends the run before


if __name__ == "__main__":
    backend, style, kind = sys.argv[1:4]
    if sys.argv[4:] == ["ignoring-sigint"]:  # an app that set its own SIGINT policy
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    anyio.run(
        main, style, KeyboardInterrupt() if kind == "ctrl-c" else SystemExit(3), backend=backend
    )
