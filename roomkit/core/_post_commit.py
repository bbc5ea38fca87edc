"""Whether the running code is a room's post-commit work (see ``post_commit_work``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["in_post_commit_work", "post_commit_work"]


class _Job:
    """One post-commit job; ``active`` until it ends."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True


_current: ContextVar[_Job | None] = ContextVar("roomkit_post_commit_job", default=None)


@contextmanager
def post_commit_work() -> Iterator[None]:
    """Mark the code run inside as a delivery worker's job (channels, async hooks, framework
    event handlers). A kit command issued from there settles on its commit, not on its
    delivery: that delivery is queued behind the very job issuing it (or, for another room,
    may wait on this one), so waiting for it would hold the room's deliveries for good.

    The mark is the job itself, ended on exit: a task started meanwhile copies the context,
    so it sees the mark too, but only while the job runs (a background task the job left
    running, or an actor task it woke, waits for deliveries again afterwards).
    """
    job = _Job()
    token = _current.set(job)
    try:
        yield
    finally:
        job.active = False
        _current.reset(token)


def in_post_commit_work() -> bool:
    """Whether a delivery worker's job is running this code (see `post_commit_work`)."""
    job = _current.get()
    return job is not None and job.active
