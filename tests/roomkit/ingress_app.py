"""The serving process of the ingress crash test: ``roomkit serve`` on a test kit.

``python -m tests.roomkit.ingress_app --nats URL [serve options]`` runs the ``roomkit`` entry
point as ``roomkit serve --app tests.roomkit.ingress_app:build_kit``: a kit with one SMS-like
channel on a ``NatsEventLog`` of the same server. The test kills it with SIGKILL and starts it
again, and signals it as a user's Ctrl-C would.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from eventlog import EventLog
from roomkit import RoomKit
from roomkit.cli import main as roomkit_main
from tests.roomkit.kit_helpers import SimpleChannel

APP = "tests.roomkit.ingress_app:build_kit"
LINGERING_APP = "tests.roomkit.ingress_app:build_lingering_kit"


def build_kit(log: EventLog) -> RoomKit:
    """The factory ``roomkit serve --app`` calls: one channel, the log it is given."""
    kit = RoomKit(log=log)
    kit.register_channel(SimpleChannel("sms"))
    return kit


class _LingeringKit(RoomKit):
    """A kit whose process lingers for a second and a half once the kit closed: asyncio
    waits for its default executor's thread as the run ends."""

    async def close(self) -> None:  # what leaving ``async with`` calls
        try:
            await super().close()
        finally:
            asyncio.get_running_loop().run_in_executor(None, time.sleep, 1.5)


def build_lingering_kit(log: EventLog) -> RoomKit:
    """``build_kit``'s kit, in a process that lingers after the serve stopped."""
    kit = _LingeringKit(log=log)
    kit.register_channel(SimpleChannel("sms"))
    return kit


async def build_closed_kit() -> RoomKit:
    """A factory whose kit it closed before ``roomkit serve`` got it."""
    kit = RoomKit()
    await kit.close()
    return kit


def main(argv: Sequence[str] | None = None) -> int:
    """``roomkit serve --app APP`` with ``argv`` (default: the process's arguments), through
    the entry point users run: a Ctrl-C that lands as the run ends is its to turn into an exit
    code (``anyio.run(run_serve, ...)`` alone let it out as a traceback)."""
    options = list(sys.argv[1:] if argv is None else argv)
    app = APP
    if "--lingering" in options:
        app = LINGERING_APP
        options.remove("--lingering")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return roomkit_main(["serve", "--app", app, *options])


if __name__ == "__main__":
    sys.exit(main())
