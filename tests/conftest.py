"""Shared pytest configuration: every ``async def`` test runs under anyio (asyncio backend).

A test module can override the ``anyio_backend`` fixture (e.g. ``params=["asyncio", "trio"]``)
for code that is pure anyio.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.nats_fixtures"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
