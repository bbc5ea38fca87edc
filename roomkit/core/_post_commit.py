"""Whether the running code is a room's post-commit work (see ``PostCommitJob``)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import ClassVar

from roomkit.core._context_mark import ContextMark

__all__ = ["PostCommitJob", "in_post_commit_work", "job_position"]


class PostCommitJob(ContextMark):
    """``with PostCommitJob():`` marks the code run inside as a delivery worker's job
    (channels, async hooks, framework event handlers). A kit command issued from there
    settles on its commit, not on its delivery: that delivery is queued behind the very job
    issuing it (or, for another room, may wait on this one), so waiting for it would hold the
    room's deliveries for good.

    A task started meanwhile sees the mark only while the job runs (see ``ContextMark``): a
    background task the job left running, or an actor task it woke, waits for deliveries
    again afterwards. It is entered for every job of every room.
    """

    __slots__ = ("kit", "position", "room_id")

    def __init__(self, room_id: str = "", kit: object = None, position: int = 0) -> None:
        self.active = True  # ContextMark's, set here: one call less, on every job
        self._token = None
        self.room_id = room_id  # the room whose job it is, of that kit
        self.kit = kit
        # The log position the job was committed at: its context is the room as of there.
        self.position = position

    _var: ClassVar[ContextVar[PostCommitJob | None]] = ContextVar(
        "roomkit_post_commit_job", default=None
    )


def in_post_commit_work() -> bool:
    """Whether a delivery worker's job is running this code (see `PostCommitJob`)."""
    job = PostCommitJob._var.get()  # read here, not through a method: it runs per command
    return job is not None and job.active


def job_position(room_id: str) -> int | None:
    """The log position the running delivery job of ``room_id`` was committed at (the room
    its context and bindings show); None when no job of that room runs this code."""
    job = PostCommitJob._var.get()
    if job is None or not job.active or job.room_id != room_id:
        return None
    return job.position
