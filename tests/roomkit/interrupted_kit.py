"""A script whose room's hook raises ``KeyboardInterrupt`` or ``SystemExit(3)``, in a kit
entered with ``async with`` or used without it, as a Ctrl-C landing in a hook, or a hook
calling ``sys.exit``, does: ``python -m tests.roomkit.interrupted_kit BACKEND STYLE RAISE
[ignoring-sigint]``. Run in a subprocess by test_kit_trio: what ends the process must be that
exception, bare."""

from __future__ import annotations

import signal
import sys

import anyio

from roomkit import HookTrigger, RoomContext, RoomEvent, RoomKit
from tests.roomkit.kit_helpers import SimpleChannel, room_with, text


async def main(style: str, raised: BaseException) -> None:
    kit = RoomKit()

    @kit.hook(HookTrigger.BEFORE_BROADCAST)
    async def interrupt(event: RoomEvent, context: RoomContext) -> None:
        raise raised

    kit.register_channel(SimpleChannel("sms"))
    kit.register_channel(SimpleChannel("ws"))
    with anyio.fail_after(10):
        if style == "entered":
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
