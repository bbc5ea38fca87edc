"""Rooms and participants: create, close, timers, metadata, identity resolution."""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

from roomkit.core._commands import (
    CheckTimers,
    CloseRoom,
    CreateRoom,
    EnsureParticipant,
    ResolveParticipant,
    UpdateRoomMetadata,
)
from roomkit.core._helpers import (
    HelpersMixin,
    attached_data,
    check_metadata,
    check_str,
    utcnow,
)
from roomkit.core._room_ids import check_read_room_id
from roomkit.core._store_view import room_write
from roomkit.core._timers import timer_change
from roomkit.errors import (
    IdentityNotFoundError,
    KitClosedError,
    LogUnavailableError,
    ParticipantNotFoundError,
    RoomKitError,
    RoomNotFoundError,
)
from roomkit.models._copy import handed_out
from roomkit.models.channel import ChannelBinding
from roomkit.models.enums import RoomStatus
from roomkit.models.participant import Participant
from roomkit.models.room import Room, RoomTimers

__all__ = ["RoomLifecycleMixin"]


logger = logging.getLogger("roomkit.timers")


class RoomLifecycleMixin(HelpersMixin):
    """Room and participant operations of ``RoomKit``."""

    async def create_room(
        self,
        room_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        timers: RoomTimers | None = None,
        organization_id: str | None = None,
    ) -> Room:
        """Create a room (id: a new uuid4 hex by default) and fire ON_ROOM_CREATED.

        Creating a room that already exists returns it unchanged. ``timers`` and
        ``organization_id`` are additions to the 0.3.0 signature (there, callers wrote them
        to the store directly, which a log-sourced room would not see).

        Raises:
            InvalidRoomIdError: ``room_id`` is not a room id the kit takes (longer than 255
                characters, not a str, reserved: see docs/quirks.md). An empty one (or
                ``None``) makes a new id, as in 0.3.0.
        """
        now = utcnow()
        room = Room(
            # "" and None make a new id, as in 0.3.0 (which took any false value so).
            id=uuid4().hex if room_id is None or room_id == "" else self._check_room_id(room_id),
            organization_id=organization_id,
            metadata=metadata or {},
            timers=timers or RoomTimers(),
            created_at=now,
            updated_at=now,
        )
        return await self._create(room)

    async def _create(self, room: Room, bindings: tuple[ChannelBinding, ...] = ()) -> Room:
        """Create ``room`` with ``bindings`` attached, in one append."""
        outcome = await self._command(room.id, CreateRoom(room, bindings))
        created: Room = outcome.value
        if outcome.position:
            await self._emit_framework_event(
                "room_created", room_id=created.id, data={"room_id": created.id}
            )
            for binding in bindings:
                await self._emit_framework_event(
                    "room_channel_attached",
                    room_id=created.id,
                    channel_id=binding.channel_id,
                    data=attached_data(binding),
                )
        return handed_out(created)

    async def get_room(self, room_id: str) -> Room:
        """Return the room. Raises RoomNotFoundError (InvalidRoomIdError: not a str)."""
        room = await (await self._read_model()).get_room(check_read_room_id(room_id))
        if room is None:
            raise RoomNotFoundError(f"Room {room_id} not found")
        return room

    async def close_room(self, room_id: str) -> Room:
        """Close the room (status CLOSED, closed_at) and fire ON_ROOM_CLOSED and
        ``room_closed``; a room closed already is returned as it is, and nothing fires."""
        outcome = await self._command(room_id, CloseRoom(utcnow()))
        if outcome.position:  # closed by this call (it committed), here or at its owner
            await self._emit_framework_event(
                "room_closed", room_id=room_id, data={"room_id": room_id}
            )
        closed: Room = outcome.value
        return handed_out(closed)

    async def update_room(self, room: Room) -> Room:
        """Record a changed room in its log: its status, timers, metadata, organization (its
        counters and creation time stay the log's). A room that does not exist is created as
        given. No hook or framework event fires, as none did for a store write in 0.3.0.

        Not in 0.3.0, whose apps wrote rooms to ``kit.store`` (to set timers on a room, or
        make a paused room active again): ``kit.store.update_room`` comes here now, so that the
        room's actor sees the change and the log keeps it.

        Raises:
            TypeError: ``room`` is not a ``Room``.
            InvalidRoomIdError: its id is not one the kit takes.
            pydantic.ValidationError: it does not validate (a field assigned in place).
        """
        # The store view's work: also from a hook of the room, which the room commits at once.
        updated: Room = await self._store_view.update_room(room)
        return updated

    async def update_room_metadata(self, room_id: str, metadata: dict[str, Any]) -> Room:
        """Merge ``metadata`` into the room's metadata."""
        check_metadata(metadata)
        outcome = await self._command(room_id, UpdateRoomMetadata(metadata, utcnow()))
        room: Room = outcome.value
        return handed_out(room)

    async def check_room_timers(self, room_id: str) -> Room:
        """Pause or close the room if its inactivity timers have run out; return the room."""
        room, _ = await self._check_timers(room_id)
        return room

    async def _check_timers(self, room_id: str) -> tuple[Room, bool]:
        """``check_room_timers``, and whether this very check changed the room's status."""
        outcome = await self._command(room_id, CheckTimers(utcnow()))
        room, changed = outcome.value
        if changed == RoomStatus.CLOSED:
            await self._emit_framework_event(
                "room_closed", room_id=room_id, data={"reason": "timer"}
            )
        elif changed == RoomStatus.PAUSED:
            await self._emit_framework_event(
                "room_paused", room_id=room_id, data={"reason": "timer"}
            )
        result: Room = handed_out(room)
        return result, changed is not None

    async def check_all_timers(self) -> list[Room]:
        """Check the timers of every ACTIVE and PAUSED room; return those whose status changed.

        Only the rooms whose timers the read model finds due are commanded: the others'
        actors are left asleep (an idle room passivates whatever the sweep's period).

        A room that cannot be checked (unavailable, or busy past the kit's timeout) is logged
        and skipped: the others are checked all the same, and it is checked again next time.

        Raises:
            KitClosedError, LogUnavailableError: the kit is closed, or its log unreachable.
        """
        # A command, even when no room is due: a closed kit's sweep said nothing (it answered
        # [] until a room came due). The kit's own work (a hook) may sweep while it closes.
        (await self._started_runtime()).check_takes_commands()
        # A subclass's own check_room_timers is called for every room, as 0.3.0 did (it may
        # check timers of its own).
        own_check = type(self).check_room_timers is not RoomLifecycleMixin.check_room_timers
        changed: list[Room] = []
        for status in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
            for room in await (await self._read_model()).find_rooms(status=status):
                if not own_check and timer_change(room, utcnow()) is None:
                    continue  # not due by the read model, so not due (see roomkit.core._timers)
                try:
                    if own_check:
                        after = await self.check_room_timers(room.id)
                        changed_here = after.status != room.status
                    else:
                        after, changed_here = await self._check_timers(room.id)
                except (KitClosedError, LogUnavailableError):
                    raise  # the kit or its log, not this room: the others would fail too
                except Exception as exc:  # this room's, whatever it is: the others go on
                    logger.warning(
                        "timers of room %s not checked: %s",
                        room.id,
                        exc,
                        exc_info=not isinstance(exc, RoomKitError),
                    )
                    continue
                # Changed by this check: one that ran at the same time (another sweep, another
                # process's) changed it otherwise, and the app told its customers then.
                if changed_here:
                    changed.append(after)
        return changed

    async def ensure_participant(
        self,
        room_id: str,
        channel_id: str,
        participant_id: str,
        display_name: str | None = None,
    ) -> Participant:
        """Return the participant, adding it to the room first if it is not there.

        A store write in 0.3.0 (it took no room lock): called from the room's own decision (a
        BEFORE_BROADCAST hook registering the sender), the room commits it at once, as it
        does ``kit.store``'s writes.

        Raises:
            InvalidRoomIdError: ``room_id`` is not a string (as ``mark_read``'s).
            pydantic.ValidationError: ``channel_id``, ``participant_id`` or ``display_name``
                is not what the participant holds (a ``ValueError``, as in 0.3.0, which
                callers may catch).
        """
        check_read_room_id(room_id)
        participant = Participant(
            id=participant_id, room_id=room_id, channel_id=channel_id, display_name=display_name
        )
        command = EnsureParticipant(participant, now=utcnow())
        result: Participant = await room_write(self, room_id, command)  # type: ignore[arg-type]
        return result

    async def resolve_participant(
        self,
        room_id: str,
        participant_id: str,
        identity_id: str,
        resolved_by: str = "manual",
    ) -> Participant:
        """Mark a participant as identified as ``identity_id`` and fire
        ON_PARTICIPANT_IDENTIFIED.

        Raises:
            ParticipantNotFoundError: no such participant in the room, or no such room
                (checked first, as in 0.3.0).
            IdentityNotFoundError: the store has no identity ``identity_id``.
            TypeError: ``participant_id``, ``identity_id`` or ``resolved_by`` is not a string.
        """
        check_str("participant_id", participant_id)
        check_str("identity_id", identity_id)
        check_str("resolved_by", resolved_by)
        identity = await (await self._read_model()).get_identity(identity_id)
        try:
            if identity is None:
                # The room, which holds its participants, says whether the participant is
                # there: 0.3.0 reported a missing participant before a missing identity.
                context = await self._context(room_id)
                if all(p.id != participant_id for p in context.participants):
                    raise _participant_missing(participant_id, room_id)
                raise IdentityNotFoundError(f"Identity {identity_id} not found")
            command = ResolveParticipant(participant_id, identity, resolved_by, utcnow())
            outcome = await self._command(room_id, command)
        except RoomNotFoundError:
            # 0.3.0 looked the participant up by room and id: no room, no participant.
            raise _participant_missing(participant_id, room_id) from None
        result: Participant = outcome.value
        return handed_out(result)


def _participant_missing(participant_id: str, room_id: str) -> ParticipantNotFoundError:
    return ParticipantNotFoundError(f"Participant {participant_id} not found in room {room_id}")
