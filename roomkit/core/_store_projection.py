"""The store projection: keeps the ``ConversationStore`` read model in step with the log.

It consumes the log in global order from its checkpoint and applies each domain event to the
store, at most once per ``(stream, version)``, so replaying from zero into an empty store
rebuilds it. ``wait(position)`` is the read-your-writes barrier the kit's methods use before
they return.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from eventlog import EventLog, EventLogError, MemoryEventLog, Record
from roomkit.core._domain import (
    ChannelAttached,
    ChannelDetached,
    ChannelUpdated,
    DeliveryRecorded,
    MessageRecorded,
    ObservationRecorded,
    ParticipantJoined,
    ParticipantUpdated,
    ReadMarked,
    RoomCreated,
    RoomUpdated,
    TaskRecorded,
    decode_domain_event,
    is_activity,
    load,
)
from roomkit.core._room_ids import room_of_stream
from roomkit.errors import KitClosedError, StoredEventError, StoreUnavailableError
from roomkit.models._json import EventFields, enveloped_event_activity, event_json
from roomkit.models.channel import ChannelBinding
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store._shaped import ShapedStore, as_conversation_store
from roomkit.store._stored_events import stored_event
from roomkit.store.base import ConversationStore, StorePositionLost
from roomkit.store.memory import InMemoryStore

__all__ = ["StoreProjection"]

logger = logging.getLogger("roomkit.projection.store")


_MESSAGE = MessageRecorded.TAG
_DELIVERY = DeliveryRecorded.TAG


class _Turnstile:
    """Mutual exclusion for two parties (the live tail, a rebuild). The tail takes it for every
    record, and ``anyio.Lock`` asks the loop for the current task on each acquisition and
    release, which costs more than applying an event to the in-memory store."""

    def __init__(self) -> None:
        self._held = False
        self._released: anyio.Event | None = None

    async def acquire(self) -> None:
        while self._held:
            if self._released is None:
                self._released = anyio.Event()
            await self._released.wait()  # every waiter wakes and checks again
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._released is not None:
            self._released.set()
            self._released = None


class _Rewound(Exception):
    """The store holds less of the log than was applied to it: follow the log again from
    the position it holds (``StoreProjection._rewind``)."""


_FIRST_PAUSE = 0.1
_MAX_PAUSE = 5.0
# The longest pause between two tries of a store that is away: once it is back, what was
# recorded meanwhile shows within as long (with _MAX_PAUSE, a room created during the outage
# was "not found" for up to 5 s from a store that answered again).
_MAX_STORE_PAUSE = 1.0
# Streams whose last applied version is kept (~90 bytes each): a service running for days
# kept one entry per room it ever saw. The others are known by the checkpoint (see apply).
_VERSIONS_KEPT = 10_000
_UNKNOWN = sys.maxsize  # the version of a stream no longer remembered (see version_of)


def _nothing() -> None:
    return None


class StoreProjection:
    """Applies the log to a ``ConversationStore``; see the module docstring."""

    name = "store"

    def __init__(
        self,
        log: EventLog,
        store: ConversationStore,
    ) -> None:
        self._log = log
        # 0.3.0's stores may not even subclass ConversationStore: they lack what it gained.
        self._store = store = as_conversation_store(store)
        # A store that keeps no position (InMemoryStore, 0.3.0's stores) takes each record
        # straight: the default apply_record would only add a call per record.
        apply_record = store.apply_record
        apply_record = getattr(apply_record, "__func__", apply_record)
        self._keeps_position = apply_record is not ConversationStore.apply_record
        # Whether it keeps the record's timestamp with its position (see _resume): an app's
        # override of apply_record written before it took one is called as before.
        self._stamps = self._keeps_position and _takes_timestamp(store.apply_record)
        self._add_event = _event_entry(store)
        self._count_event = _count_entry(store)
        self._put_logged = _logged_entry(log, store)
        # How one record goes into the store (a single call on the hot path).
        self._put = self._apply_at_position if self._keeps_position else self._apply
        self.checkpoint = 0
        self._versions: dict[str, int] = {}
        self._let_go = False  # whether a stream was dropped from _versions (see version_of)
        # Waiters by the position they wait for (a heap): an advance wakes only those it
        # satisfies, so a thousand callers waiting on their own writes cost O(log n) each.
        self._waiters: list[tuple[int, int, anyio.Event]] = []
        self._waiter_ids = itertools.count()
        # Held while applying, so that a rebuild never interleaves with the live tail.
        self._applying = _Turnstile()
        # Set while a rebuild runs: the store is being refilled from empty, and the kit's
        # reads and routing wait for it (see ``rebuilt``). Every command checks it: a plain
        # attribute, set when the rebuild ends.
        self.rebuilding: anyio.Event | None = None
        self._resumed = False  # the store's own position was read (see catch_up)
        # Whether the store said it is unavailable and a record waits for it: post-commit
        # work does not wait for the read model then (see KitRuntime._read_model_for_work),
        # and ``went_away`` ends the waits begun before.
        self.store_away = False
        self.went_away: Callable[[], None] = _nothing
        # The position of the last record the store was seen to hold (applied, or held
        # already): it must never hold less (see _rewind). Not the checkpoint: records that
        # need no store call (delivery outcomes) move the checkpoint alone.
        self._held = 0
        # The subscription run() follows the log with: cancelled to follow it again from the
        # checkpoint (see _follow_again).
        self._following: anyio.CancelScope | None = None
        self._stopped = False  # its runtime stopped: nothing more is applied (see stop())
        # The position a rebuild cut short left the store behind (see rebuild), until the
        # live tail is back there.
        self._repair_to: int | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the log for ever (until cancelled), applying every record.

        A subscription that fails once running is taken up again from the checkpoint, after a
        pause that grows to ``_MAX_PAUSE``: the read model is the kit's to keep, and a failure
        raised from here would end the kit's runtime, cancelling the rooms' work and the code
        around ``async with RoomKit()``.
        """
        started = False
        pause = _FIRST_PAUSE
        while True:
            try:
                with anyio.CancelScope() as following:
                    self._following = following
                    async with self._log.subscribe(after_position=self.checkpoint) as records:
                        if not started:
                            task_status.started()
                            started = True
                        async for record in records:
                            await self._applying.acquire()
                            try:
                                await self.apply(record)
                            finally:
                                self._applying.release()
                            pause = _FIRST_PAUSE
                    return  # the log ended the subscription: it is closing
                continue  # see _follow_again
            except _Rewound:
                continue  # follow the log again from the store's position, at once
            except Exception as exc:
                if not started:
                    raise  # the kit's start fails with it
                if isinstance(exc, EventLogError):  # the log's failure (an outage): no bug
                    logger.warning(
                        "the store projection cannot follow the log (%s); it goes on from "
                        "position %d in %.1f s",
                        exc,
                        self.checkpoint,
                        pause,
                    )
                else:
                    logger.exception(
                        "the store projection's subscription to the log failed; it goes on "
                        "from position %d in %.1f s",
                        self.checkpoint,
                        pause,
                    )
            await anyio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)

    def version_of(self, stream: str) -> int:
        """The last version of ``stream`` applied (0: none yet): another process's appends
        show here before the room's actor sees them. ``_UNKNOWN`` for one not among the last
        ``_VERSIONS_KEPT`` streams applied."""
        known = self._versions.get(stream)
        if known is not None:
            return known
        # Once streams were let go, one not remembered may have records the room's actor has
        # not seen (another process's): said as unknown, the actor reads its tail first.
        return _UNKNOWN if self._let_go else 0

    def forget_waiters(self) -> None:
        """Drop the waiters and the turnstile of an event loop that ended (their tasks are
        gone), so that a runtime taking over in another loop starts clean."""
        self._waiters.clear()
        self._applying = _Turnstile()
        self._following = None
        self._stopped = False
        if self.rebuilding is not None:
            self.rebuilding = None  # its task is gone with its loop
            if self._repair_to is not None and self.checkpoint < self._repair_to:
                self._repairing()  # the reads of the new loop wait for it as well
            else:
                self._repair_to = None  # repaired meanwhile

    def _repairing(self) -> None:
        """Have the kit's reads wait until the checkpoint is back at ``_repair_to``."""
        assert self._repair_to is not None
        repaired = anyio.Event()
        self._waiters_push(self._repair_to, repaired)
        self.rebuilding = repaired

    def stop(self) -> None:
        """The runtime stopped and nothing more is applied: the calls waiting for the read
        model (a record the store was unavailable for) raise ``KitClosedError`` instead of
        waiting for ever."""
        self._stopped = True
        waiters, self._waiters = self._waiters, []
        for _, _, event in waiters:
            event.set()

    def _follow_again(self) -> None:
        """Have run() follow the log again from the checkpoint, moved back (see rebuild)."""
        if self._following is not None:
            self._following.cancel()

    async def catch_up(self) -> None:
        """Apply everything the log holds now (used to rebuild before serving).

        The first time, a store that keeps the position it holds the log up to (one that
        outlives the process) is taken up from there.
        """
        if self.checkpoint == 0 and not self._resumed:
            self._resumed = True
            await self._resume()
        while batch := await self._log.read_all(after_position=self.checkpoint, limit=5000):
            try:
                for record in batch:
                    await self.apply(record)
            except _Rewound:
                pass  # read again from the store's position

    async def catch_up_in_turn(self) -> None:
        """``catch_up``, never at once with a rebuild or the live tail (a closing kit's last
        catch-up: run next to a rebuild, both applied the same records, counted twice)."""
        await self._applying.acquire()
        try:
            await self.catch_up()
        finally:
            self._applying.release()

    async def _resume(self) -> None:
        if not self._keeps_position:
            await self._check_fits_the_log()
            return
        position, timestamp = await self._store.applied_record()
        if position <= 0:
            return
        last = await self._log.last_position()
        if position > last:
            # Not this log's read model (the log was made anew, or the store belongs to
            # another): what it holds would pass for this log's.
            logger.warning(
                "the store holds the log up to position %d, past this log's last (%d): it "
                "was filled from another log, and is filled again from this one",
                position,
                last,
            )
            await self._store.clear()
            return
        if not await self._holds_record(position, timestamp):
            await self._store.clear()
            return
        self.checkpoint = self._held = position

    async def _holds_record(self, position: int, timestamp: float | None) -> bool:
        """Whether the log holds the record the store was filled up to: the record at
        ``position``, with ``timestamp`` if the store kept it (as a room's snapshot is checked,
        see ``EventSourcedActor._resume``).

        A position within the log is not enough: a stream deleted and made again (and
        written to past it by another process), or purged (JetStream goes on counting, so its
        last position stays the store's), left the store with rooms the log no longer holds,
        and without those it does (their reads raised RoomNotFoundError, and messages routed
        by the stale bindings failed).

        No record there but later ones: the stream's limits dropped it (see
        ``_dropped_by_limits``), and the store is the log's up to it, as a room's snapshot
        whose record the limits dropped is (its actor takes it up): emptied, it came back
        without the rooms whose early records were dropped, which their actors still had.
        """
        found = await self._log.read_all(after_position=position - 1, limit=1)
        record = found[0] if found else None
        if record is not None and record.position > position:
            if await self._dropped_by_limits(position, timestamp):
                return True
            there = "no record there"
        elif record is not None:
            if timestamp is None or _same_time(record.timestamp, timestamp):
                return True
            there = f"another record there ({record.stream} v{record.version})"
        else:
            there = "no record there"
        logger.warning(
            "the store holds the log up to position %d, but this log has %s: it was filled "
            "from another log (a stream deleted and made again, or purged), and is filled "
            "again from this one",
            position,
            there,
        )
        return False

    async def _dropped_by_limits(self, position: int, timestamp: float | None) -> bool:
        """Whether the log, holding records after ``position`` but none at it, is the one the
        store was filled from, whose limits dropped the record there (``timestamp``'s).

        A stream purged or deleted holds nothing at or after it. One made again and
        written past it holds its first records before it (positions start low again),
        written after the deletion, so after the store's record; the limits of the same log
        leave none before it (``discard=old``, ``max_age``), or older ones of other rooms
        (``max_msgs_per_subject``). Not known without ``timestamp`` (taken as the same log,
        as before timestamps were kept). A stream purged and then written to by another
        process holds only records after it, and passes for the same log.
        """
        first = await self._log.read_all(limit=1)
        return (
            not first
            or first[0].position > position
            or timestamp is None
            or not first[0].timestamp > timestamp  # NaN: not known either
        )

    async def _check_fits_the_log(self) -> None:
        """Warn of a store that holds rooms when the log holds nothing: an app's own durable
        store (0.3.0's state) with a log that is not (the default memory log). The kit's rooms
        are the log's: its reads showed the stored rooms, and its commands to them failed
        with RoomNotFoundError."""
        try:
            if await self._log.last_position() > 0 or not await self._store.list_rooms(limit=1):
                return
        except Exception:  # a check for the app's sake: the kit starts all the same
            logger.debug("store projection: the store not checked against the log", exc_info=True)
            return
        logger.warning(
            "the store holds rooms but the event log holds nothing: the kit's rooms are those "
            "of its log, and commands to the stored rooms fail with RoomNotFoundError. Give "
            "the kit the log those rooms were recorded in (a durable one, NatsEventLog), or "
            "an empty store"
        )

    async def rebuild(self) -> None:
        """Empty the store and apply the whole log again (the live tail waits meanwhile).

        Raises:
            NotImplementedError: the store cannot be cleared.
        """
        await self._applying.acquire()
        done = self.rebuilding = anyio.Event()
        before = (self.checkpoint, self._held, dict(self._versions))
        cleared = False
        try:
            rebuilding = self._store.rebuilding if self._keeps_position else nullcontext
            async with rebuilding():
                await self._store.clear()
                cleared = True
                self._versions.clear()
                self.checkpoint = self._held = 0
                await self.catch_up()
            self._wake()  # committed: the waiters it reached may read (see apply)
        except BaseException:
            if self._keeps_position:
                # The store undid the rebuild whole: so must the projection, or it would count
                # as applied the records the rebuild read and the store undid (the live tail
                # skipping them, by their versions).
                self.checkpoint, self._held, self._versions = before
                # Callers that began to wait during the rebuild (the checkpoint was back at
                # 0) for what the store held before it: it holds it still.
                self._wake()
            elif cleared and self.checkpoint < before[0]:
                # A store without a transaction keeps what the rebuild put back: the live
                # tail, which was past it, follows the log again from where it stopped, and
                # the kit's reads wait until it is back where it was.
                logger.warning(
                    "the rebuild of the store stopped at log position %d of %d: the store "
                    "projection goes on from there",
                    self.checkpoint,
                    before[0],
                )
                self._follow_again()
                self._repair_to = before[0]
                self._repairing()
            raise
        finally:
            if self.rebuilding is done:
                self.rebuilding = None
            done.set()
            self._applying.release()

    async def rebuilt(self) -> None:
        """Return once no rebuild runs (at once when none does). Reads wait here: during a
        rebuild on a log that is not in memory, the store is empty for a while, and a room
        looked up then would be "not found", a routed message given a new room."""
        while (rebuilding := self.rebuilding) is not None:
            await rebuilding.wait()
            if self.rebuilding is rebuilding:
                self.rebuilding = self._repair_to = None  # repaired (see rebuild)

    async def wait(self, position: int) -> None:
        """Return once every record up to ``position`` is in the store.

        Raises:
            KitClosedError: the kit's runtime stopped first (see ``stop``).
        """
        if self.checkpoint >= position:
            return
        if not self._stopped:
            event = anyio.Event()
            self._waiters_push(position, event)
            await event.wait()
            if self.checkpoint >= position:
                return
        raise KitClosedError(
            f"the kit's runtime stopped (the kit closed, or its event loop ended) before its "
            f"read model held the log up to position {position}: what was recorded is in the "
            "log"
        )

    async def holds(self, position: int, within: float) -> bool:
        """Whether every record up to ``position`` is in the store, waiting at most ``within``
        seconds for it (``wait``, bounded: a store away holds it back).

        Raises:
            KitClosedError: the kit's runtime stopped first (see ``stop``).
        """
        if self.checkpoint < position:
            with anyio.move_on_after(within):
                await self.wait(position)
        return self.checkpoint >= position

    def _waiters_push(self, position: int, event: anyio.Event) -> None:
        heapq.heappush(self._waiters, (position, next(self._waiter_ids), event))

    def _wake(self) -> None:
        """Release the waiters the checkpoint satisfies."""
        checkpoint = self.checkpoint
        waiters = self._waiters
        while waiters and waiters[0][0] <= checkpoint:
            heapq.heappop(waiters)[2].set()

    async def apply(self, record: Record) -> None:
        """Apply one record (a second time is a no-op) and advance the checkpoint."""
        versions = self._versions
        known = versions.get(record.stream)
        # Records come in the log's order: one of a stream no longer in ``versions`` (see
        # _VERSIONS_KEPT) is new if it is past the checkpoint.
        if record.version > known if known is not None else record.position > self.checkpoint:
            try:
                try:
                    await self._put(record)
                except StoreUnavailableError as unavailable:
                    await self._put_when_available(record, unavailable)
            except (StoreUnavailableError, _Rewound):
                raise  # see _put_when_available and _rewind
            except Exception:
                # A read model that cannot take one event must not stop the others: log it
                # loudly; rebuilding from the log repairs the store.
                logger.exception(
                    "store projection failed on %s v%d (%s)",
                    record.stream,
                    record.version,
                    record.type,
                )
            # Last in the dict's order: the streams applied least recently go first.
            versions.pop(record.stream, None)
            versions[record.stream] = record.version
            if len(versions) > _VERSIONS_KEPT:
                del versions[next(iter(versions))]
                self._let_go = True
        self.checkpoint = checkpoint = max(self.checkpoint, record.position)
        waiters = self._waiters
        # In a rebuild's transaction, they are released once it commits (see rebuild).
        if (
            waiters
            and waiters[0][0] <= checkpoint
            and (self.rebuilding is None or not self._keeps_position)
        ):
            self._wake()

    async def _put_when_available(
        self, record: Record, unavailable: StoreUnavailableError
    ) -> None:
        """Put the record into the store again and again while the store says it is
        unavailable (a database restarting): skipped, the record would be missing from the
        read model until the next rebuild.

        Raises:
            StoreUnavailableError: during a rebuild in a transaction of the store, which
                cannot go on without it.
        """
        if self.rebuilding is not None and self._keeps_position:
            raise unavailable
        since = anyio.current_time()
        logger.warning(
            "the store is unavailable (%s): %s v%d waits for it, and so do the calls that "
            "wait for the read model",
            unavailable,
            record.stream,
            record.version,
        )
        pause = _FIRST_PAUSE
        self.store_away = True
        self.went_away()
        try:
            while True:
                await anyio.sleep(pause)
                pause = min(pause * 2, _MAX_STORE_PAUSE)
                try:
                    await self._put(record)
                except StoreUnavailableError:
                    continue
                logger.warning(
                    "the store is available again after %.1f s", anyio.current_time() - since
                )
                return
        finally:
            self.store_away = False

    async def _apply_at_position(self, record: Record) -> None:
        """Put a record into a store that keeps its log position, with what the kit saw it
        hold (see ``ConversationStore.apply_record``)."""
        if record.type == _DELIVERY:
            return  # nothing to write: no transaction for it
        apply = partial(self._apply, record)
        try:
            if self._stamps:
                await self._store.apply_record(
                    record.position, apply, after=self._held, timestamp=record.timestamp
                )
            else:
                await self._store.apply_record(record.position, apply, after=self._held)
        except StorePositionLost as lost:
            self._rewind(lost.position)
        self._held = record.position  # applied, or held already

    def _rewind(self, position: int) -> None:
        """The store holds the log up to ``position`` only (it lost its last commits): follow
        the log again from there.

        Raises:
            _Rewound: always.
        """
        logger.warning(
            "the store holds the log up to position %d, behind the %d it held (its database "
            "lost its last commits, or it was emptied): the records after it are applied again",
            position,
            self._held,
        )
        self.checkpoint = self._held = position
        self._versions.clear()  # the store's position says what it holds now
        raise _Rewound

    async def _apply(self, record: Record) -> None:
        store = self._store
        kind = record.type
        if kind == _MESSAGE:
            # The payload as it is: an in-memory store keeps the log's own bytes.
            try:
                await self._add_event(record.data)
            except StoredEventError as exc:
                _not_taken(record, exc)
            # Counted all the same, as the room and the stores that keep JSON count it: the
            # room's count and latest index stay those of its log.
            await self._count(*enveloped_event_activity(record.data), record.timestamp)
            return
        if kind == _DELIVERY:
            return  # audit only (the timeline API has no delivery outcomes): not even decoded
        match decode_domain_event(record):
            case RoomCreated(room=raw) | RoomUpdated(room=raw) if self._put_logged:
                await self._put_logged(load(Room, raw), record.data)
            case ChannelAttached(binding=raw) | ChannelUpdated(binding=raw) if self._put_logged:
                await self._put_logged(load(ChannelBinding, raw), record.data)
            case RoomCreated(room=raw):
                await store.create_room(load(Room, raw))
            case RoomUpdated(room=raw):
                await store.update_room(load(Room, raw))
            case ChannelAttached(binding=raw):
                await store.add_binding(load(ChannelBinding, raw))
            case ChannelUpdated(binding=raw):
                await store.update_binding(load(ChannelBinding, raw))
            case ChannelDetached(channel_id=channel_id, room_id=room_id):
                await store.remove_binding(room_id or _room_of(record), channel_id)
            case ParticipantJoined(participant=raw):
                await store.add_participant(load(Participant, raw))
            case ParticipantUpdated(participant=raw):
                await store.update_participant(load(Participant, raw))
            case TaskRecorded(task=raw):
                await store.add_task(load(Task, raw))
            case ObservationRecorded(observation=raw):
                await store.add_observation(load(Observation, raw))
            case ReadMarked(channel_id=channel_id, event_id=None, room_id=room_id):
                await store.mark_all_read(room_id or _room_of(record), channel_id)
            case ReadMarked(channel_id=channel_id, event_id=str(event_id), room_id=room_id):
                await store.mark_read(room_id or _room_of(record), channel_id, event_id)
            case None:
                pass  # a type from a newer version

    async def _count(self, event: EventFields, activity: bool | None, at: float) -> None:
        # Room.event_count / latest_index / last activity are derived from the timeline; the
        # store counts in place (the in-memory store without reading or writing the room).
        # Activity is at the time the event was recorded, as the room actor takes it.
        active = is_activity(activity, event.type, event.status)
        await self._count_event(
            event.room_id, event.index, datetime.fromtimestamp(at, UTC) if active else None
        )


def _not_taken(record: Record, error: StoredEventError) -> None:
    """Say that a store taking events as ``RoomEvent`` models (an app's, written to 0.3.0's
    contract: ``add_event`` only) did not get a recorded event that does not validate as
    one. Said as the projection says a record the store failed on, an error, but by the
    error's text alone: its traceback printed pydantic's, input (the message's content) and
    all. A rebuild meets it again; the stores that keep events as JSON hold it, and their
    reads of it raise ``StoredEventError``."""
    logger.error(
        "store projection left %s v%d (%s) out of the store, which takes events as RoomEvent "
        "models: %s",
        record.stream,
        record.version,
        record.type,
        error,
    )


def _same_time(logged: float, kept: float) -> bool:
    """Whether a record's timestamp is the one a store kept for it: NaN is the same as NaN
    (a record another writer logged with one was taken for another log's at every start,
    and the store filled again from the whole log)."""
    return logged == kept or (math.isnan(logged) and math.isnan(kept))


def _takes_timestamp(apply_record: Callable[..., Awaitable[bool]]) -> bool:
    """Whether a store's ``apply_record`` takes the record's ``timestamp`` (a keyword added
    after the method: an app's override written before takes none, and failed with a
    TypeError on every record if given it)."""
    try:
        parameters = inspect.signature(apply_record).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): not told it
        return False
    return any(
        parameter.kind is parameter.VAR_KEYWORD
        or (parameter.name == "timestamp" and parameter.kind is not parameter.POSITIONAL_ONLY)
        for parameter in parameters
    )


def _most_derived(store: ConversationStore, names: tuple[str, ...]) -> str | None:
    """The one of ``names`` that ``store`` defines last: as an instance attribute (a method
    an app set on it), else in the most derived of its classes that defines any (the first of
    them, if one defines several); ``None`` if none does.

    For a ``ShapedStore``, the store it wraps, and what that store's own class hierarchy
    defines, not what it hands out through ``__getattr__`` (a proxy of an ``InMemoryStore``
    whose overrides 0.3.0 called, and whose class may define none of them)."""
    layers: list[Mapping[str, Any]]
    if isinstance(store, ShapedStore):
        layers = [vars(cls) for cls in type(store.shaped).__mro__]
    else:
        layers = [getattr(store, "__dict__", {}), *(vars(cls) for cls in type(store).__mro__)]
    for layer in layers:
        for name in names:
            if name in layer:
                return name
    return None


def _event_entry(store: ConversationStore) -> Callable[[bytes], Awaitable[None]]:
    """How a ``message.recorded`` payload goes into ``store``.

    Through ``add_event_envelope``, which a backend keeping events serialised (the in-memory
    store, PostgreSQL) defines to skip building the model, unless an app's subclass of it
    overrides ``add_event_json`` or ``add_event`` below it, expecting every event to go
    through that method, as every event did in 0.3.0.
    """
    entry = _most_derived(store, ("add_event_envelope", "add_event_json", "add_event"))
    if entry == "add_event_envelope":
        return store.add_event_envelope
    # None: a proxy that says nothing of its own; through its add_event, which 0.3.0 called.

    async def add_event_json(data: bytes) -> None:
        await store.add_event_json(event_json(data))

    async def add_event(data: bytes) -> None:
        await store.add_event(stored_event(event_json(data)))

    return add_event_json if entry == "add_event_json" else add_event


_LOGGED_WRITES = ("_put_logged", "create_room", "update_room", "add_binding", "update_binding")


def _logged_entry(
    log: EventLog, store: ConversationStore
) -> Callable[[Room | ChannelBinding, bytes], Awaitable[None]] | None:
    """``InMemoryStore._put_logged`` (it keeps the log's payload of a room or a binding instead
    of JSON of its own), for the in-process log only, whose payloads stay in memory anyway;
    ``None`` otherwise, and when an app's subclass of the store overrides one of the methods
    that 0.3.0 called for them below it."""
    if not isinstance(log, MemoryEventLog) or not isinstance(store, InMemoryStore):
        return None
    if _most_derived(store, _LOGGED_WRITES) != "_put_logged":
        return None
    return store._put_logged


def _count_entry(
    store: ConversationStore,
) -> Callable[[str, int, datetime | None], Awaitable[None]]:
    """``store.count_event``, unless an app's subclass of the store overrides ``get_room``
    or ``update_room`` below it: then ``ConversationStore``'s, which goes through them."""
    if _most_derived(store, ("count_event", "update_room", "get_room")) == "count_event":
        return store.count_event
    return partial(ConversationStore.count_event, store)


def _room_of(record: Record) -> str:
    """The room of a record whose event does not name it: the one its stream is named after
    (such events name their room whenever the stream name does not tell it)."""
    return room_of_stream(record.stream) or record.stream
