"""A generic actor runtime on anyio: virtual actors, mailboxes, ask/tell, supervision,
passivation and event-sourced recovery.

Knows nothing of rooms: any keyed entity (rooms, orders, devices) can be an actor. Works on
asyncio and trio. See ``ActorSystem`` for the shutdown policy and ``SupervisionPolicy`` for
what happens when actors fail.
"""

from __future__ import annotations

from actors.actor import Actor
from actors.effect import Effect
from actors.errors import (
    ActorCrash,
    ActorDeadError,
    ActorError,
    AfterCommitError,
    AskTimeout,
    ConcurrencyConflict,
    MailboxFull,
    UnknownActorKind,
)
from actors.eventsourced import EventSourcedActor
from actors.failures import described, error_text, is_cancellation
from actors.ref import ActorRef
from actors.stats import SystemStats
from actors.supervision import SupervisionPolicy
from actors.system import (
    ActorSystem,
    check_count,
    check_finite_seconds,
    check_number,
    check_seconds,
    check_settings,
)

__all__ = [
    "Actor",
    "ActorCrash",
    "ActorDeadError",
    "ActorError",
    "ActorRef",
    "ActorSystem",
    "AfterCommitError",
    "AskTimeout",
    "ConcurrencyConflict",
    "Effect",
    "EventSourcedActor",
    "MailboxFull",
    "SupervisionPolicy",
    "SystemStats",
    "UnknownActorKind",
    "check_count",
    "check_finite_seconds",
    "check_number",
    "check_seconds",
    "check_settings",
    "described",
    "error_text",
    "is_cancellation",
]
