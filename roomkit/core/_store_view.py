"""``kit.store``: the read model, with the writes 0.3.0 apps made there turned into commands.

In 0.3.0 the store was the state, and apps wrote to it: a room's timers (no kit method set
them), a paused room made active again, a task completed, a read marker. Here the store is the
log's projection: a write made on it directly would not reach the rooms' actors and would be
lost when the read model is rebuilt. So ``kit.store`` is this view of it, which reads the read
model and sends those writes to the kit, whose rooms log them: ``create_room``,
``update_room``, ``update_task``, ``mark_read`` and ``mark_all_read``. Every other write
still goes to the read model as it is (docs/quirks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from roomkit.models.room import Room
from roomkit.models.task import Task
from roomkit.store.base import ConversationStore

if TYPE_CHECKING:
    from roomkit.core.framework import RoomKit

__all__ = ["KitStore"]

_LOGGED = frozenset({"create_room", "update_room", "update_task", "mark_read", "mark_all_read"})


class KitStore(ConversationStore):
    """The kit's read model (``read_model``), whose room, task and read-marker writes go
    through ``kit``; any other attribute is the read model's."""

    def __init__(self, kit: RoomKit, read_model: ConversationStore) -> None:
        self._kit = kit
        self.read_model = read_model

    def __getattr__(self, name: str) -> Any:
        # What a store class adds to the contract (InMemoryStore's clear(), say).
        return getattr(self.read_model, name)

    def __repr__(self) -> str:
        return f"KitStore({self.read_model!r})"

    async def create_room(self, room: Room) -> Room:
        """Create the room through the kit (an existing one is returned unchanged)."""
        if not isinstance(room, Room):
            raise TypeError(f"create_room takes a Room, not {type(room).__name__}")
        self._kit._check_room_id(room.id)
        return await self._kit._create(room)

    async def update_room(self, room: Room) -> Room:
        """``RoomKit.update_room``: logged, and seen by the room's actor."""
        return await self._kit.update_room(room)

    async def update_task(self, task: Task) -> Task:
        """``RoomKit.update_task``: logged."""
        return await self._kit.update_task(task)

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """``RoomKit.mark_read``: logged."""
        await self._kit.mark_read(room_id, channel_id, event_id)

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """``RoomKit.mark_all_read``: logged."""
        await self._kit.mark_all_read(room_id, channel_id)


def _forward(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def forward(self: KitStore, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.read_model, name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"The read model's ``{name}``."
    return forward


# Every other method of the contract is the read model's, abstract or not (a store may
# override a default, as InMemoryStore does ``idempotent_event_id``).
for _name, _member in vars(ConversationStore).items():
    if callable(_member) and not _name.startswith("_") and _name not in _LOGGED:
        setattr(KitStore, _name, _forward(_name))
KitStore.__abstractmethods__ = frozenset()
