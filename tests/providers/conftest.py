"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.providers.ai_support import FakeAPI


@pytest.fixture
async def fake() -> AsyncIterator[FakeAPI]:
    """A fake vendor API; its ``client`` is closed after the test."""
    async with FakeAPI() as api:
        yield api
