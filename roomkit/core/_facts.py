"""``Fact``: a domain event on its way into (or out of) the log, with what the actor knows.

The log stores only ``domain`` (encoded). In the process that decided it, a fact also carries the
decoded public model (so ``evolve`` need not parse JSON again) and what to do once it is
committed (deliver it as part of a turn, run a lifecycle hook). Facts read back from the log
have neither, so replaying a room never repeats its side effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import BaseModel

from eventlog import Headers, NewEvent, Record
from roomkit.core._domain import DomainEvent, decode_domain_event, encode_domain_event
from roomkit.models.enums import HookTrigger
from roomkit.models.event import RoomEvent

__all__ = ["Announcement", "Deliver", "Fact", "RunLifecycle", "fact_from_record"]


# Deliver, RunLifecycle, ReportErrors and Fact are frozen msgspec structs, not frozen dataclasses
# (as ProcessInbound, RecordOutcome and DeliveryJob): a frozen dataclass's __init__ sets each
# field through ``object.__setattr__`` (~13,000 instructions for six fields given by keyword, a
# struct ~1,300), and a message makes seven of them. Same fields, defaults, equality and hash;
# changed with ``msgspec.structs.replace``, not ``dataclasses.replace``.
class Deliver(msgspec.Struct, frozen=True):
    """After commit: broadcast ``event`` within turn ``root`` (only to ``targets``, if set)."""

    event: RoomEvent
    root: str
    targets: list[str] | None = None
    # Emit the framework events of its deliveries (delivery_succeeded/failed,
    # broadcast_partial_failure, chain_depth_exceeded): 0.3.0 did for an inbound message's own
    # broadcast only, not for replies, injected events or send_event.
    report: bool = False
    announce: tuple[Announcement, ...] = ()  # framework events to emit first (see below)


class RunLifecycle(msgspec.Struct, frozen=True):
    """After commit: run the async hooks of ``trigger`` with this synthetic event."""

    trigger: HookTrigger
    event: RoomEvent
    root: str
    # Run once the rest of the turn is delivered (the replies and theirs): 0.3.0 ran
    # ON_TASK_CREATED and the message's AFTER_BROADCAST at the end of its pipeline.
    last: bool = False
    announce: tuple[Announcement, ...] = ()  # framework events to emit first (see below)


class ReportErrors(msgspec.Struct, frozen=True):
    """After commit: the ON_ERROR hooks of the failed BEFORE_BROADCAST hooks (name, error)
    of a message that has no other work (blocked, or from a channel not bound in the room),
    in the room's delivery worker as for any other. Its ``root`` is a turn of its own, which
    the message's caller does not wait for (closing the kit does)."""

    root: str
    failures: tuple[tuple[str, str], ...]
    announce: tuple[Announcement, ...] = ()


@dataclass(frozen=True, slots=True)
class Announcement:
    """A framework event of a turn (``hook_error``, ``event_blocked``) that 0.3.0 emitted
    before anything of the turn went out: the turn's first post-commit work emits it, or the
    caller when the turn has none."""

    event_type: str
    channel_id: str | None = None
    event_id: str | None = None
    data: dict[str, Any] | None = None

    async def emit(self, emit: Callable[..., Awaitable[None]], room_id: str) -> None:
        """Emit it through ``emit`` (the kit's ``_emit_framework_event``) for ``room_id``."""
        await emit(
            self.event_type,
            room_id=room_id,
            channel_id=self.channel_id,
            event_id=self.event_id,
            data=self.data,
        )


class Fact(msgspec.Struct, frozen=True):
    domain: DomainEvent
    timestamp: float
    model: BaseModel | None = None
    headers: Headers | None = None
    then: Deliver | RunLifecycle | None = None
    # ``domain`` encoded, when the decider needed the bytes first (a message: see _Draft.message).
    data: bytes | None = None

    def to_new_event(self) -> NewEvent:
        return encode_domain_event(
            self.domain, timestamp=self.timestamp, headers=self.headers, data=self.data
        )

    def at(self, timestamp: float) -> Fact:
        """This fact stamped ``timestamp`` instead (built directly, positionally: a busy room
        restamps a fact per message)."""
        return Fact(self.domain, timestamp, self.model, self.headers, self.then, self.data)


def fact_from_record(record: Record) -> Fact | None:
    """The fact a record holds; ``None`` if this version does not know its type."""
    domain = decode_domain_event(record)
    if domain is None:
        return None
    return Fact(domain=domain, timestamp=record.timestamp, headers=record.headers)
