"""``kit.store``: the read model, with the writes 0.3.0 apps made there turned into commands.

In 0.3.0 the store was the state, and apps wrote to it: a room's timers (no kit method set
them), a paused room made active again, a binding or participant as they wanted it, history
imported, a task completed, a read marker. Here the store is the log's projection: a write
made on it directly would not reach the rooms' actors (they deliver, route and decide from
their own state) and would be lost when the read model is rebuilt. So ``kit.store`` is this
view of it, which reads the read model and sends the writes to the rooms, which log them as
they are, with no system event or hook (as 0.3.0's store writes had none). Rooms are never
deleted (the log keeps them): ``delete_room`` is refused, as are the writes only the kit's
projection of the log makes (``count_event``, ``apply_record``, ``rebuilding``, ``clear``:
``kit.rebuild_store()`` rebuilds it). Identities live in the store only and are written there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel

from roomkit.core._commands import (
    ImportEvent,
    MarkRead,
    PutBinding,
    PutParticipant,
    RecordObservation,
    RemoveBinding,
    ReplaceRoom,
    UpdateTask,
)
from roomkit.core._domain import logged_copy
from roomkit.core._helpers import check_str
from roomkit.core._in_decision import deciding
from roomkit.errors import RoomKitError, RoomNotFoundError
from roomkit.models._copy import handed_out
from roomkit.models._json import event_json
from roomkit.models.channel import ChannelBinding
from roomkit.models.event import RoomEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store._arguments import argument_check
from roomkit.store._shaped import as_conversation_store
from roomkit.store.base import ConversationStore

if TYPE_CHECKING:
    from roomkit.core.framework import RoomKit

__all__ = ["KitStore", "room_write"]


class KitStore(ConversationStore):
    """The kit's read model (``read_model``), whose room writes go to the rooms; any other
    attribute is the read model's.

    A write issued from a room's own decision (its BEFORE_BROADCAST hook, its channel's
    ``handle_inbound``) is committed by the room at once, ahead of the message decided
    (waited for as a command, it would wait for the decision it is part of); reads from the
    decision wait for the read model to hold it (see ``_in_decision``).
    """

    def __init__(self, kit: RoomKit, read_model: ConversationStore) -> None:
        self._kit = kit
        self.read_model = read_model
        # The contract's methods, with their defaults for a store shaped like 0.3.0's (one
        # that does not derive from ConversationStore lacks those added since).
        self._contract = as_conversation_store(read_model)
        self._adding: set[str] = set()  # ids of the events add_event is storing

    def __getattr__(self, name: str) -> Any:
        # What a store class adds to the contract (InMemoryStore's clear(), say). Looked up
        # in __dict__: a copy being made has no read_model yet.
        read_model = self.__dict__.get("read_model")
        if read_model is None:
            raise AttributeError(name)
        return getattr(read_model, name)

    def __repr__(self) -> str:
        return f"KitStore({self.read_model!r})"

    async def create_room(self, room: Room) -> Room:
        """The room as given, created if new or replacing the room of its id (as 0.3.0's
        store wrote it either way); see ``update_room``."""
        return await self.update_room(room)

    async def update_room(self, room: Room) -> Room:
        """``RoomKit.update_room``'s work: the room's own fields as given, its counters and
        creation time the log's; a room that does not exist is created (no hook fires)."""
        if isinstance(room, Room):
            self._kit._check_room_id(room.id)
        return await self._write("update_room", room, Room, ReplaceRoom, room_field="id")  # type: ignore[no-any-return]

    async def delete_room(self, room_id: str) -> bool:
        """Refused: the log keeps every room (``close_room`` closes one).

        Raises:
            RoomKitError: always.
        """
        raise RoomKitError(
            f"room {room_id!r} cannot be deleted: the event log keeps every room; "
            "close_room() closes it (kit.store.read_model.delete_room() drops it from the "
            "read model only, until it is rebuilt)"
        )

    async def add_event(self, event: RoomEvent) -> RoomEvent:
        """Record ``event`` in its room's timeline as it is, delivered to no one.

        Raises:
            ValueError: an event with its id is stored already (an event is recorded once),
                or its room holds one with its idempotency key.
        """
        if not isinstance(event, RoomEvent):  # refused by _write, with the reason
            return await self._write("add_event", event, RoomEvent, ImportEvent)
        # Two adds of one id at once both found it missing, and both were logged: the second
        # was missing from the read model (another room's) or miscounted (the same room's).
        # Taken before the lookup, which may wait (a database).
        if event.id in self._adding:
            raise ValueError(f"event {event.id!r} is being stored")
        self._adding.add(event.id)
        try:
            # Not on a read model being rebuilt (empty, then filling up): an id stored already
            # was not found there, and logged twice (its second record failed every rebuild).
            await self._kit._ensure_runtime()
            if await self.get_event(event.id):
                raise ValueError(f"event {event.id!r} is stored already")
            return await self._write("add_event", event, RoomEvent, ImportEvent)  # type: ignore[no-any-return]
        finally:
            self._adding.discard(event.id)

    async def add_event_json(self, data: bytes) -> None:
        """``add_event`` of the event given as its JSON."""
        await self.add_event(RoomEvent.model_validate_json(data))

    async def add_event_envelope(self, data: bytes) -> None:
        """``add_event`` of the event of a JSON object's ``event`` member."""
        await self.add_event_json(event_json(data))

    async def count_event(self, room_id: str, index: int, activity_at: datetime | None) -> None:
        """Refused: the kit counts the events its rooms record."""
        _projection_only("count_event")

    async def apply_record(
        self,
        position: int,
        apply: Callable[[], Awaitable[None]],
        *,
        after: int = 0,
        timestamp: float | None = None,
    ) -> bool:
        """Refused: the kit applies the log's records."""
        _projection_only("apply_record")

    def rebuilding(self) -> NoReturn:
        """Refused: ``kit.rebuild_store()`` rebuilds the read model."""
        _projection_only("rebuilding")

    async def clear(self) -> None:
        """Refused: ``kit.rebuild_store()`` rebuilds the read model. (Cleared alone, it
        lost every room while the rooms' actors kept them: the next message of a
        conversation started a new room.)"""
        _projection_only("clear")

    async def add_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Attach the binding as it is (no system event, no hook)."""
        return await self._write("add_binding", binding, ChannelBinding, PutBinding)  # type: ignore[no-any-return]

    async def update_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Replace the room's binding of that channel as it is."""
        return await self._write("update_binding", binding, ChannelBinding, PutBinding)  # type: ignore[no-any-return]

    async def remove_binding(self, room_id: str, channel_id: str) -> bool:
        """Detach the channel (no system event, no hook); False if it was not attached (or
        the removal was queued: see the class docstring)."""
        check_str("channel_id", channel_id)  # as detach_channel: not "it was not attached"
        return bool(await self._send(room_id, RemoveBinding(channel_id), False))

    async def add_participant(self, participant: Participant) -> Participant:
        """Add the participant as it is (no system event)."""
        return await self._write("add_participant", participant, Participant, PutParticipant)  # type: ignore[no-any-return]

    async def update_participant(self, participant: Participant) -> Participant:
        """Replace the participant as it is."""
        return await self._write("update_participant", participant, Participant, PutParticipant)  # type: ignore[no-any-return]

    async def add_task(self, task: Task) -> Task:
        """Record the task (no ON_TASK_CREATED: as ``RoomKit.update_task``)."""
        return await self._write("add_task", task, Task, UpdateTask)  # type: ignore[no-any-return]

    async def update_task(self, task: Task) -> Task:
        """As ``RoomKit.update_task``: the read model's task is replaced by it."""
        return await self._write("update_task", task, Task, UpdateTask)  # type: ignore[no-any-return]

    async def add_observation(self, observation: Observation) -> Observation:
        """Record the observation in its room's log."""
        return await self._write("add_observation", observation, Observation, RecordObservation)  # type: ignore[no-any-return]

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """As ``RoomKit.mark_read``."""
        check_str("channel_id", channel_id)
        check_str("event_id", event_id)
        with contextlib.suppress(RoomNotFoundError):
            await self._send(room_id, MarkRead(channel_id, event_id), None)

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """As ``RoomKit.mark_all_read``."""
        check_str("channel_id", channel_id)
        with contextlib.suppress(RoomNotFoundError):
            await self._send(room_id, MarkRead(channel_id, None), None)

    async def _write(
        self,
        method: str,
        model: Any,
        kind: type[Any],
        command: Callable[[Any], object],
        *,
        room_field: str = "room_id",
    ) -> Any:
        """Send ``command`` with a copy of ``model`` to the room it names (its
        ``room_field``); return what the room recorded.

        Raises:
            TypeError: ``model`` is not a ``kind`` (``method`` says whose argument).
            pydantic.ValidationError: it does not validate (a field assigned in place).
            RoomNotFoundError: its room does not exist.
        """
        if not isinstance(model, kind):
            raise TypeError(f"{method} takes a {kind.__name__}, not {type(model).__name__}")
        model = logged_copy(model)
        return await self._send(getattr(model, room_field), command(model), model)

    async def _send(self, room_id: str, command: object, default: object) -> Any:
        """The value of ``command`` done by the room (``default`` for None): see
        ``room_write``."""
        value = await room_write(self._kit, room_id, command)
        return default if value is None else value


async def room_write(kit: RoomKit, room_id: str, command: object) -> Any:
    """The value of the write ``command`` done by ``kit``'s room ``room_id``: committed by
    the room at once when issued from its own decision (see the class docstring of
    ``KitStore``), sent to it otherwise."""
    decision = deciding()
    if decision is not None and decision.room_id == room_id and decision.kit is kit:
        value = await decision.commit(command)
    else:
        value = (await kit._command(room_id, command)).value
    return handed_out(value) if isinstance(value, BaseModel) else value


def _projection_only(name: str) -> NoReturn:
    raise RoomKitError(
        f"kit.store.{name}() is the kit's own: the read model is the event log's projection, "
        "and a change made to it alone would go unseen by the rooms and be lost at the next "
        f"rebuild (kit.rebuild_store() rebuilds it; kit.store.read_model.{name}() reaches "
        "the read model itself)"
    )


def _forward(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    contract = getattr(ConversationStore, name)
    # Any store behind the view refuses bad arguments alike (see roomkit.store._arguments).
    check = argument_check(name, contract, {"Identity": Identity})

    # Its name, docstring and signature are the contract's (help() and IDEs show them).
    @functools.wraps(contract)
    async def forward(self: KitStore, *args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(args, kwargs)
        decision = deciding()
        if decision is not None and decision.kit is self._kit:
            await self._kit._read_model_at(decision.position)
        else:
            # During a rebuild (or past one cut short) the store is empty or half filled for a
            # while: the kit's own reads wait for it, and so do these.
            await self._kit._rebuilt(self._kit._runtime)
        return await getattr(self._contract, name)(*args, **kwargs)

    return forward


# Every other method of the contract is the read model's, abstract or not (a store may
# override a default, as InMemoryStore does ``idempotent_event_id``).
for _name, _member in vars(ConversationStore).items():
    if callable(_member) and not _name.startswith("_") and _name not in vars(KitStore):
        setattr(KitStore, _name, _forward(_name))
KitStore.__abstractmethods__ = frozenset()
