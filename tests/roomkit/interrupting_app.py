"""An ``--app`` module whose import is interrupted: importing it sends the process SIGINT, as
a Ctrl-C while ``roomkit serve`` loads a slow app would (see test_ingress)."""

from __future__ import annotations

import os
import signal

from tests.roomkit.ingress_app import build_kit

__all__ = ["build_kit"]

os.kill(os.getpid(), signal.SIGINT)
