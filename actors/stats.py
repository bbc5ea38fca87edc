"""``SystemStats``: what an actor system reports to operators and tests."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SystemStats"]


@dataclass(frozen=True, slots=True)
class SystemStats:
    """A snapshot of an ``ActorSystem``'s counters (see ``ActorSystem.stats``).

    Attributes:
        active_actors: incarnations that take messages (with or without a task right now).
        running_actors: active or stopping actors that hold a task right now.
        stopping_actors: incarnations passivating or shutting down, not over yet.
        activations: successful activations (restarts included) since the system started.
        passivations: passivations started (idle timeout or ``passivate``).
        restarts: restarts after a crash or a failed activation.
        failures: actors that gave up after their restart limit.
        messages_handled: messages handled (successfully or not).
        asks_dropped: asks that expired while queued, dropped without being handled.
        pending_asks: asks waiting for a reply or expiry (an upper bound: settled asks are
            dropped lazily).
        mailbox_depths: ``(kind, key) -> queued messages`` for every active actor.
    """

    active_actors: int
    running_actors: int
    stopping_actors: int
    activations: int
    passivations: int
    restarts: int
    failures: int
    messages_handled: int
    pending_asks: int
    asks_dropped: int = 0
    mailbox_depths: dict[tuple[str, str], int] = field(default_factory=dict)
