"""The actor runtime is pure anyio: every test here runs on asyncio and on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def reset_counter() -> None:
    from tests.actors.models import Counter

    Counter.fail_evolve_once = False
    Counter.instances = 0
    Counter.after_commit_calls = []
    Counter.after_commit_error = None
