"""Shared pytest configuration: every ``async def`` test runs under anyio (asyncio backend).

A test module can override the ``anyio_backend`` fixture (e.g. ``params=["asyncio", "trio"]``)
for code that is pure anyio.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

pytest_plugins = ["tests.nats_fixtures", "tests.postgres_fixtures"]

# No per-example deadline: on a loaded 2-core CI machine a first example (imports, caches) can
# take longer than hypothesis' 200 ms default without anything being wrong. Invariants, not
# speed, are what the property tests check; speed lives in bench/.
settings.register_profile("roomkit", deadline=None)
settings.load_profile("roomkit")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
