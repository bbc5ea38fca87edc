"""A real PostgreSQL server for tests, run from the ``pgserver`` package (its binaries ship in
the wheel: nothing is downloaded), reached over a Unix socket in a temporary directory.

- ``postgres_uri``: one server for the whole session (starting one takes ~0.6 s).
- ``postgres_prefix``: a table prefix no other test uses, so each test has empty tables.

Tests that use them are marked ``postgres`` automatically.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "postgres_directory",
    "postgres_prefix",
    "postgres_uri",
    "start_postgres",
    "stop_postgres",
]

_FIXTURES = {"postgres_uri", "postgres_prefix"}
_numbers = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def start_postgres(directory: Path) -> Any:
    """A PostgreSQL server on the data directory ``directory`` (made if missing, started
    again if it holds one); ``.get_uri()`` says where, ``stop_postgres`` stops it."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset (a CI machine): not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pgserver = pytest.importorskip(
            "pgserver", reason="pgserver has no PostgreSQL binaries for this platform"
        )

        return pgserver.get_server(directory, cleanup_mode="stop")


def stop_postgres(server: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server.cleanup()


@contextmanager
def postgres_directory() -> Iterator[Path]:
    """A directory for a server's data, outside pytest's temporary directories: pytest keeps
    only its three latest runs' and removes the older ones, under the feet of a server another
    pytest run on the machine still has there (a CI run next to a developer's)."""
    with tempfile.TemporaryDirectory(prefix="roomkit-postgres-") as parent:
        yield Path(parent) / "data"


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """The URI of a running PostgreSQL server (asyncpg and libpq read it)."""
    with postgres_directory() as directory:
        server = start_postgres(directory)
        try:
            yield server.get_uri()
        finally:
            stop_postgres(server)


@pytest.fixture
def postgres_prefix() -> str:
    """A table prefix of this test's own."""
    return f"t{next(_numbers)}_"
