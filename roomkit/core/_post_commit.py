"""Whether the running code is a room's post-commit work (see ``IN_POST_COMMIT_WORK``)."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["IN_POST_COMMIT_WORK"]

IN_POST_COMMIT_WORK: ContextVar[bool] = ContextVar("roomkit_in_post_commit_work", default=False)
"""True in code a delivery worker runs (channels, async hooks, framework event handlers). A
kit command issued from there settles on its commit, not on its delivery: that delivery is
queued behind the very job issuing it (or, for another room, may wait on this one), so
waiting for it would hold the room's deliveries for good."""
