"""The serving process of the ingress crash test: ``roomkit serve`` on a test kit.

``python -m tests.roomkit.ingress_app --nats URL [serve options]`` runs ``run_serve`` with
``--app tests.roomkit.ingress_app:build_kit``: a kit with one SMS-like channel on a
``NatsEventLog`` of the same server. The test kills it with SIGKILL and starts it again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from eventlog import EventLog
from roomkit import RoomKit
from roomkit.ingress.cli import add_serve_parser, run_serve
from tests.roomkit.kit_helpers import SimpleChannel

APP = "tests.roomkit.ingress_app:build_kit"


def build_kit(log: EventLog) -> RoomKit:
    """The factory ``roomkit serve --app`` calls: one channel, the log it is given."""
    kit = RoomKit(log=log)
    kit.register_channel(SimpleChannel("sms"))
    return kit


async def build_closed_kit() -> RoomKit:
    """A factory whose kit it closed before ``roomkit serve`` got it."""
    kit = RoomKit()
    await kit.close()
    return kit


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingress_app")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--app", APP, *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    code: int = anyio.run(run_serve, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
