"""A real PostgreSQL server for tests, run from the ``pgserver`` package (its binaries ship in
the wheel: nothing is downloaded), reached over a Unix socket in a temporary directory.

- ``postgres_uri``: one server for the whole session (starting one takes ~0.6 s).
- ``postgres_prefix``: a table prefix no other test uses, so each test has empty tables.

Tests that use them are marked ``postgres`` automatically.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import pytest

__all__ = ["postgres_prefix", "postgres_uri"]

_FIXTURES = {"postgres_uri", "postgres_prefix"}
_numbers = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a running PostgreSQL server (asyncpg and libpq read it)."""
    directory = tmp_path_factory.mktemp("postgres")
    # platformdirs warns that XDG_RUNTIME_DIR is unset (a CI machine): not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


@pytest.fixture
def postgres_prefix() -> str:
    """A table prefix of this test's own."""
    return f"t{next(_numbers)}_"
