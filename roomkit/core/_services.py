"""What the room actors and delivery workers of one kit share.

One object per ``RoomKit``: the actors get it at creation instead of a reference to the kit, so
they depend on the few services they use and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from roomkit.core._reused_ids import ReusedIds
from roomkit.core._turns import TurnTracker

if TYPE_CHECKING:
    from roomkit.core._in_decision import InDecision
    from roomkit.core._outcome_flusher import OutcomeFlusher
    from roomkit.core._store_projection import StoreProjection
    from roomkit.core.event_router import EventRouter
    from roomkit.core.hooks import HookEngine
    from roomkit.models._capabilities import CapabilitiesInterner

__all__ = ["EmitFrameworkEvent", "KitServices"]

EmitFrameworkEvent = Callable[..., Awaitable[None]]
"""``await emit(type, room_id=..., channel_id=..., event_id=..., data=...)``."""


async def _at_once(position: int) -> None:
    return None


@dataclass(slots=True)
class KitServices:
    hooks: HookEngine
    router: Callable[[], EventRouter]
    emit: EmitFrameworkEvent
    turns: TurnTracker
    ask_room: Callable[..., Awaitable[Any]]  # (room_id, command, *, internal=False)
    tell_delivery: Callable[[str, object], Awaitable[None]]
    now: Callable[[], datetime]
    # Audit-only delivery outcomes wait there for the room's next append (OutcomeFlusher).
    outcomes: OutcomeFlusher
    # One ChannelCapabilities instance per value, for the bindings of every room.
    capabilities: CapabilitiesInterner
    # (room_id, idempotency key, the room's last position) -> the id of the event the read
    # model holds with that key ("" when it holds one but cannot say which), or None, once
    # the read model reached that position: for keys older than a room's window (see
    # _room_state.IDEMPOTENCY_WINDOW).
    older_duplicate: Callable[[str, str, int], Awaitable[str | None]]
    # The ids of the events given to the rooms (replies, injected events) the kit recorded,
    # and the read model's lookup of them: see _reused_ids.
    reused_ids: ReusedIds = field(default_factory=ReusedIds)
    # The kit these serve: code a room's decision runs may use another kit's store.
    kit: object = None
    # Whether the kit stopped taking commands for good, its close() drain given up or over:
    # a room refuses what is left in its mailbox (see RoomActor.receive).
    abandoned: Callable[[], bool] = lambda: False
    # Told by a room that settled the append in doubt it stopped with (see KitRuntime.ask_room):
    # closing need not wake it to settle it.
    settled: Callable[[str], None] = lambda room_id: None
    # The last version of a stream the read model applied (0: none): see
    # EventSourcedActor.known_version.
    known_version: Callable[[str], int] = lambda stream: 0
    # Return once the read model holds a log position, unless its store is away (bounded):
    # the hooks and channels of post-commit work read what they run for. Called only when
    # ``projection``'s checkpoint is behind it (on every job, a call cost 0.7% of a message).
    read_model_at: Callable[[int], Awaitable[None]] = _at_once
    projection: StoreProjection | None = None
    # The decision each room of this process is running (see KitRuntime.ask_room's cycles).
    deciding: dict[str, InDecision] = field(default_factory=dict)
