"""``EventSourcedActor``: an actor whose state is the fold of its stream in the event log.

The Pekko persistence model: an id (the stream), an empty state, a command handler
``decide(state, command) -> Effect`` and a pure event handler ``evolve(state, event) -> state``.
The actor is the only writer of its stream; optimistic concurrency on the stream's version
guards against a second writer (another process), which is detected, reloaded and retried,
never overwritten.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from actors.actor import Actor
from actors.effect import Effect
from actors.errors import ActorCrash, ActorError, AfterCommitError, ConcurrencyConflict
from eventlog import (
    EventLog,
    EventLogError,
    LogUnavailable,
    NewEvent,
    Record,
    Snapshot,
    WrongExpectedVersion,
)

__all__ = ["EventSourcedActor"]

logger = logging.getLogger("roomkit.actors")

S = TypeVar("S")
E = TypeVar("E")

#: Records read per call while recovering, so a long stream never sits in memory whole.
_REPLAY_BATCH = 1000
# Seconds: the longest random pause before the second retry after a conflict (twice that
# before the third, ...).
_CONFLICT_PAUSE = 0.002
# The longest pause before a retry (it grows with the conflicts): a command retried many
# times (see conflict_retries) must not wait seconds for one turn.
_MAX_CONFLICT_PAUSE = 0.1


class EventSourcedActor(Actor, Generic[S, E]):
    """An actor that persists its changes as events and recovers by replaying them.

    **Recovery** (on activation, and after a crash): the latest snapshot if there is one (a
    snapshot that fails to decode is ignored: full replay), then every later record of the
    stream, decoded and applied with ``evolve``. Messages that arrive meanwhile wait in the
    mailbox.

    **A command** (every message is one): ``decide(state, command)`` returns an ``Effect``. Its
    events are encoded and appended with the version the actor knows as the expected version;
    only once the log acknowledged them does the actor ``evolve`` its state, save a snapshot if
    ``snapshot_interval()`` events passed since the last one, run ``after_commit`` (side effects)
    and reply. If the log says another writer moved the stream (``WrongExpectedVersion``), the
    actor reads the new records, then runs ``decide`` again on the new state, up to
    ``conflict_retries()`` times (once by default; each retry after the first a random moment
    later, so that two writers do not keep meeting); one more conflict fails the command with
    ``ConcurrencyConflict``. If the log returns the records of an
    earlier append with the same message id (a retried command), the actor catches up from the
    log and replies without evolving the events twice.

    Failures: an exception from ``decide`` or the append fails the command only; an exception
    from ``evolve`` after a commit crashes the actor (``ActorCrash``: it restarts from the log);
    an exception from ``after_commit`` reaches the asker as ``AfterCommitError``.

    **An append in doubt**: when the log could not be reached (``LogUnavailable``), the append
    may have landed all the same (the server took it; its answer was lost), or may land later
    (a publish the client held through the outage). The command fails, and the actor
    remembers the append: before its next command, when an append conflicts or the log
    answers with an earlier append of the same message id, and before it stops, it reads the
    stream after the version it expected, and if it finds that very append there it commits
    it as its own (``evolve``, snapshot, ``after_commit``, with ``committing`` its effect:
    its side effects are not lost; the reply is). It forgets the append once the stream went
    on without it (the log checks the expected version, so it can no longer land). An append
    is recognised by its events' types, payloads and set timestamps: an actor whose events
    can be byte for byte another writer's should make them unique (an id in each).

    Attributes:
        state: the current state (valid from ``on_start`` on).
        version: the stream version the state includes (0: no event yet).
        last_timestamp: the timestamp of the record at ``version``.
        in_doubt: whether an append in doubt waits to be settled.
        committing: while ``after_commit`` runs, the effect whose events it commits.
    """

    def __init__(self, key: str) -> None:
        """Make an instance; its state is recovered from the log before ``on_start``.

        Args:
            key: the actor's key (also its stream id, unless ``stream_id`` says otherwise).
        """
        super().__init__(key)
        self._recovered = False
        self._version = 0
        # The record at _version (None before the first): a snapshot names the record it was
        # taken at, so that one of an earlier stream of the same name is known.
        self._last: Record | None = None
        self._snapshot_version = 0
        # Appends in doubt, all at the version the state is at (several if the log stayed
        # down: at most one of them can land).
        self._in_doubt: tuple[_InDoubt[E], ...] = ()
        self.committing: Effect[E] | None = None

    # -- the model: what subclasses write --------------------------------------------------------

    def stream_id(self) -> str:
        """Return the id of the stream the actor writes (default: its key)."""
        return self.key

    @abc.abstractmethod
    def initial_state(self) -> S:
        """Return the state of a stream with no events."""

    @abc.abstractmethod
    def evolve(self, state: S, event: E) -> S:
        """Return the state after ``event``. Pure: no I/O, no clock; deterministic.

        Live commands and recovery both go through it, so recovery rebuilds the same state.
        """

    @abc.abstractmethod
    async def decide(self, state: S, command: object) -> Effect[E]:
        """Validate ``command`` against ``state`` and return the events to commit and the reply.

        May await (e.g. user hooks that may veto), but must not change ``state`` or have side
        effects that matter if the command is re-run after a concurrency conflict.

        Raises:
            Exception: rejects the command: nothing is appended, the asker gets the error.
        """

    def conflict_retries(self) -> int:
        """How many times a command is decided again after another writer moved the stream
        (see the class docstring). Default: 1."""
        return 1

    def known_version(self) -> int | None:
        """The stream's version as something else in the process has seen it (a read model
        following the log), or None. A command is decided on the state caught up to it
        first: another writer's appends are otherwise seen only when an append of this
        actor's conflicts, and a command that appends nothing (a query, a no-op, a refusal)
        answers from the state before them. Default: None."""
        return None

    @abc.abstractmethod
    def encode_event(self, event: E) -> NewEvent:
        """Return the log form of ``event`` (a stable type tag, never a class name)."""

    @abc.abstractmethod
    def decode_event(self, record: Record) -> E:
        """Return the domain event stored in ``record`` (inverse of ``encode_event``)."""

    def encode_state(self, state: S) -> bytes:
        """Return ``state`` as snapshot bytes. Override with ``decode_state`` to enable snapshots.

        Raises:
            NotImplementedError: by default (the actor takes no snapshots).
        """
        raise NotImplementedError

    def decode_state(self, data: bytes) -> S:
        """Return the state stored in snapshot bytes (inverse of ``encode_state``).

        Raises:
            NotImplementedError: by default (the actor takes no snapshots).
        """
        raise NotImplementedError

    def snapshot_interval(self) -> int | None:
        """Return how many events to commit between snapshots (``None``: never).

        Default: the system's ``snapshot_every`` if the subclass implements ``encode_state`` and
        ``decode_state``, else ``None``.
        """
        if not self._snapshots_supported():
            return None
        return self.system.snapshot_every

    def refused_for_what_it_lacks(self, error: Exception) -> bool:
        """Whether ``decide`` raised ``error`` for want of something another writer may have
        appended since this actor last read its stream (a room that does not exist yet).

        No append of the command's tells the actor then, as a conflicting one does: such a
        refusal makes it read the stream's tail, and decide again if there was one. Default:
        never.
        """
        return False

    async def after_commit(self, state: S, events: list[E], records: list[Record]) -> None:  # noqa: B027
        """Run side effects of committed events (after ``evolve``, before the reply).

        Args:
            state: the state after the events.
            events: the domain events just committed.
            records: their committed records (versions, positions, timestamps).

        Raises:
            Exception: reported to the asker as ``AfterCommitError``; the events stay committed.
        """

    # -- what the runtime offers -----------------------------------------------------------------

    @property
    def state(self) -> S:
        """The current state.

        Raises:
            ActorError: before recovery.
        """
        if not self._recovered:
            raise ActorError(f"{type(self).__name__}({self.key!r}) has not recovered yet")
        return self._state

    @property
    def version(self) -> int:
        """The version of the last event applied to ``state`` (0: none)."""
        return self._version

    @property
    def last_timestamp(self) -> float:
        """The timestamp of the record at ``version`` (0.0 before the first): a subclass that
        stamps its events keeps the stream's stamps in version order from it."""
        last = self._last
        return last.timestamp if last is not None else 0.0

    @property
    def in_doubt(self) -> bool:
        """Whether an append the log did not confirm waits to be settled (see the class
        docstring)."""
        return bool(self._in_doubt)

    @property
    def log(self) -> EventLog:
        """The system's event log."""
        return self.system.log

    async def receive(self, message: object) -> object:
        """Handle ``message`` as a command (see the class docstring); return the reply."""
        stream = self.stream_id()
        if self._in_doubt:
            await self._settle_in_doubt(stream)
        known = self.known_version()
        if known is not None and known > self._version:
            await self._catch_up(stream)
        looked = False  # read the tail once for a refusal (apart from the conflict's retry)
        conflicts = 0
        while True:
            try:
                effect = await self.decide(self.state, message)
            except Exception as exc:
                if looked or not self.refused_for_what_it_lacks(exc):
                    raise
                looked = True
                before = self._version
                if self._in_doubt:
                    # That append may be what is lacking (a room's own creation): committed
                    # as ours, with its side effects, not folded in as another writer's.
                    await self._settle_in_doubt(stream)
                await self._catch_up(stream)
                if self._version != before:
                    continue  # the stream moved meanwhile: decide on it
                raise
            if type(effect) is not Effect and not isinstance(effect, Effect):
                # Said plainly: the asker got "'NoneType' object has no attribute 'events'".
                raise TypeError(
                    f"{type(self).__name__}.decide returned {effect!r}, not an Effect "
                    "(Effect.persist(...) or Effect.reply_only(...))"
                )
            events = list(effect.events)
            if not events:
                return effect.reply_for(self.state)
            expected = self._version
            encoded = [self.encode_event(event) for event in events]
            try:
                records = await self._append(stream, effect, encoded, expected)
            except WrongExpectedVersion as exc:
                _check_not_rewound(exc)
                conflicts += 1
                retry = conflicts <= self.conflict_retries()
                if retry and conflicts > 1:
                    # The other writer keeps appending: let it, for a moment as long as a
                    # few appends, rather than meet it again at once.
                    pause = min(_CONFLICT_PAUSE * conflicts, _MAX_CONFLICT_PAUSE)
                    await anyio.sleep(random.uniform(0, pause))
                if self._in_doubt:
                    await self._settle_in_doubt(stream)  # the conflict may be that append
                await self._catch_up(stream)
                if retry:
                    logger.info(
                        "stream %r moved (expected %d, at %s): reloaded, re-running the command",
                        stream,
                        expected,
                        exc.actual,
                    )
                    continue
                raise ConcurrencyConflict(stream, expected, exc.actual) from exc
            if records[0].version != expected + 1 or not _records_of(encoded, records):
                # The log returned an earlier append with the same message id: already applied
                # here, or written by another process we have not read yet (at the very
                # version this append expected, too: its records then hold that writer's
                # events, which the state must fold in, not this command's).
                if self._in_doubt:
                    await self._settle_in_doubt(stream)  # before it is folded in below
                await self._catch_up(stream)
                return effect.reply_for(self.state)
            # Appended after the version the appends in doubt expected: none of them can land.
            self._in_doubt = ()
            return await self._commit(effect, events, records)

    async def commit_now(self, effect: Effect[E]) -> object:
        """Append and commit ``effect`` at once, from inside the command being decided: a
        change user code makes while the decision runs, which the actor cannot take as a
        command of its own before the decision ends. ``decide``'s state then includes it, and
        the command's own append comes after it. Return its reply.

        Raises:
            ConcurrencyConflict: another writer moved the stream (the command's own append
                then conflicts too, and the command is decided again).
            LogUnavailable: the log could not be reached; the append is in doubt.
        """
        events = list(effect.events)
        if not events:
            return effect.reply_for(self.state)
        # Not cut half-way by a timeout of the code around (a hook's, the command's): landed
        # and not applied, the append would leave the state behind the stream. The log's own
        # timeouts bound it; the cancellation comes once it is done.
        work = self._append_now(effect, events)
        if asyncio._get_running_loop() is None:  # trio: its timeouts are scopes a shield holds
            with anyio.CancelScope(shield=True):
                reply = await work
            # Else nothing checked the cancellation before the code around went on, as if in
            # time (a hook that timed out writing through kit.store had its block count).
            await anyio.lowlevel.checkpoint_if_cancelled()
            return reply
        # asyncio's timeouts cancel the task natively, which no anyio shield holds off: the
        # append runs in a task of its own, waited out through every cancellation (anyio
        # delivers its own again and again), then the caller is cancelled, unless the append
        # failed: its error is the caller's then.
        task = asyncio.ensure_future(work)
        cancelled: asyncio.CancelledError | None = None
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as exc:
                cancelled = exc
        error = task.exception()
        if error is not None:
            raise error
        if cancelled is not None:
            # The one delivered, as it was: a bare one was no anyio scope's, and went through
            # the scope that cancelled (a hook's move_on_after) as a cancellation from outside.
            raise cancelled
        return task.result()

    async def _append_now(self, effect: Effect[E], events: list[E]) -> object:
        stream = self.stream_id()
        expected = self._version
        encoded = [self.encode_event(event) for event in events]
        try:
            records = await self._append(stream, effect, encoded, expected)
        except WrongExpectedVersion as exc:
            _check_not_rewound(exc)
            raise ConcurrencyConflict(stream, expected, exc.actual) from exc
        if records[0].version != expected + 1 or not _records_of(encoded, records):
            # An earlier append of that message id (another writer's, maybe at this version).
            raise ConcurrencyConflict(stream, expected, records[-1].version)
        self._in_doubt = ()
        return await self._commit(effect, events, records)

    async def _append(
        self, stream: str, effect: Effect[E], encoded: list[NewEvent], expected: int
    ) -> list[Record]:
        """Append ``encoded``; one the log could not confirm is remembered in doubt."""
        try:
            return await self.log.append(stream, encoded, expected_version=expected)
        except LogUnavailable:
            self._in_doubt = (*self._in_doubt, _InDoubt(effect, encoded, expected))
            raise

    async def reload(self) -> None:
        """Drop the state held and recover it from the log again (snapshot + tail), as a new
        incarnation would: for an actor that finds its state unusable.

        Raises:
            ActorCrash: the recovery failed; the runtime restarts the actor (or gives up on
                it) as its supervision policy says, instead of it going on half-recovered.
        """
        try:
            if self._in_doubt:
                await self._settle_in_doubt(self.stream_id())  # folded in, it would be lost
            await self._recover()
        except Exception as exc:
            raise ActorCrash(f"reloading {self.stream_id()!r} from the log failed") from exc

    async def on_stop(self) -> None:
        """Settle an append in doubt before the incarnation ends (passivation, shutdown, a
        crash): the next incarnation would fold it in from the log without its side effects.
        A subclass overriding ``on_stop`` calls this (``await super().on_stop()``)."""
        if not self._in_doubt:
            return
        try:
            await self._settle_in_doubt(self.stream_id())
        except Exception:
            logger.warning(
                "stream %r: an append in doubt could not be settled before stopping; if it "
                "landed, its side effects are lost",
                self.stream_id(),
                exc_info=True,
            )
            return
        if self._in_doubt:
            logger.warning(
                "stream %r: an append in doubt had not landed when the actor stopped; should "
                "it land still, the next incarnation folds it in without its side effects",
                self.stream_id(),
            )

    # -- internals -------------------------------------------------------------------------------

    _state: S

    async def _settle_in_doubt(self, stream: str) -> None:
        """Commit the append in doubt if it landed (see the class docstring); keep it in
        doubt while the stream holds nothing after the version it expected.

        Raises:
            LogUnavailable: the log still cannot be read; the appends stay in doubt.
        """
        expected = self._in_doubt[0].expected
        if self._version != expected:
            self._in_doubt = ()  # the state moved on (a reload): the records were folded in
            return
        longest = max(len(doubt.encoded) for doubt in self._in_doubt)
        records = await self.log.read(stream, after_version=expected, limit=longest)
        if not records:
            return  # not landed, or not yet: looked for again when an append conflicts
        doubts, self._in_doubt = self._in_doubt, ()
        doubt = next((d for d in doubts if _records_of(d.encoded, records)), None)
        if doubt is None:
            return  # another writer's records: the next append conflicts and reads them
        records = records[: len(doubt.encoded)]
        logger.info(
            "stream %r: the append that failed at version %d had landed; committing it now",
            stream,
            doubt.expected,
        )
        try:
            await self._commit(doubt.effect, list(doubt.effect.events), records)
        except AfterCommitError:
            logger.exception("stream %r: side effects of the append in doubt failed", stream)

    async def _commit(self, effect: Effect[E], events: list[E], records: list[Record]) -> object:
        try:
            state = self.state
            for event in events:
                state = self.evolve(state, event)
        except Exception as exc:
            raise ActorCrash(
                f"evolve failed after events were committed to {self.stream_id()!r}; "
                "the actor restarts from the log"
            ) from exc
        self._state = state
        self._last = records[-1]
        self._version = self._last.version
        await self._maybe_snapshot()
        reply = effect.reply_for(state)
        self.committing = effect
        try:
            await self.after_commit(state, events, records)
        except Exception as exc:
            raise AfterCommitError(reply, records) from exc
        finally:
            self.committing = None
        return reply

    async def _recover(self) -> None:
        stream = self.stream_id()
        self._state = self.initial_state()
        self._version = 0
        self._last = None
        self._snapshot_version = 0
        self._recovered = True
        snapshot = await self._load_snapshot(stream) if self._snapshots_supported() else None
        if snapshot is None or not await self._resume(stream, snapshot):
            await self._catch_up(stream)
        # A long tail since the last snapshot: take one now, so the next recovery is short.
        await self._maybe_snapshot()

    async def _resume(self, stream: str, snapshot: Snapshot) -> bool:
        """Take up ``snapshot`` and the records after it, if it is of the stream as it is:
        whether it was.

        Its record is read with the tail (one read more only for a tail of a whole batch).
        Another record there, or none past the stream's end, the snapshot is of an earlier
        stream of that name (purged, or deleted and made again, an import filling it anew):
        taken up, the old room's state went on under the new records (keys it never had
        taken for duplicates, indexes given twice). It is then replaced at the next commit:
        left, it was loaded again once the stream grew past its version. A stream whose
        limits dropped the snapshot's record (and those before it) holds its next one
        instead: the snapshot is then the only way to the room's state, and is taken up.
        """
        version = snapshot.version
        opened = _opened(snapshot.data)
        at, data = opened if opened is not None else (None, snapshot.data)
        try:
            state = self.decode_state(data)
        except Exception:
            logger.warning(
                "snapshot of stream %r at version %d does not decode; replaying the stream",
                stream,
                version,
                exc_info=True,
            )
            return False
        batch = await self.log.read(stream, after_version=version - 1, limit=_REPLAY_BATCH)
        first = batch[0] if batch else None
        if first is not None and first.version == version:
            if at is not None:
                taken = (first.position, first.timestamp) == at
            else:
                # Written before snapshots named their record: not known to be of this
                # stream, it is replayed past when the stream can be replayed.
                taken = not await self._replayable(stream)
                if not taken:
                    logger.info(
                        "snapshot of stream %r at version %d was written before snapshots "
                        "named their record; replaying the stream (the next snapshot "
                        "replaces it)",
                        stream,
                        version,
                    )
                    return False
            last: Record | None = first
            batch = batch[1:]
        else:
            # Its record dropped by the stream's limits: the next one follows it (positions
            # only grow in a stream; one made again starts low).
            taken = (
                first is not None
                and first.version == version + 1
                and (at is None or first.position > at[0])
            )
            last = None  # the records applied set it
        if taken:
            self._state = state
            self._version = version
            self._last = last
            self._snapshot_version = version
            self._apply_records(batch)
            if len(batch) >= _REPLAY_BATCH - 1:
                await self._catch_up(stream)
            return True
        where = "another record" if first is not None else "past the stream's end"
        logger.warning(
            "snapshot of stream %r at version %d is of an earlier stream of that name (%s "
            "there); replaying the stream",
            stream,
            version,
            where,
        )
        self._snapshot_version = -sys.maxsize
        return False

    async def _replayable(self, stream: str) -> bool:
        """Whether ``stream`` still holds its first record (its limits dropped none)."""
        head = await self.log.read(stream, after_version=0, limit=1)
        return not head or head[0].version == 1

    async def _catch_up(self, stream: str) -> int:
        """Apply the records after ``version``; return how many there were."""
        applied = 0
        while True:
            batch = await self.log.read(stream, after_version=self._version, limit=_REPLAY_BATCH)
            if not batch:
                return applied
            self._apply_records(batch)
            applied += len(batch)
            if len(batch) < _REPLAY_BATCH:
                return applied

    def _apply_records(self, records: Sequence[Record]) -> None:
        state = self.state
        version = self._version
        for record in records:
            if record.version != version + 1:
                raise ActorError(
                    f"stream {record.stream!r} jumps from version {version} to {record.version}"
                )
            try:
                state = self.evolve(state, self.decode_event(record))
            except Exception as exc:
                # A record another writer appended that this actor cannot read: its state
                # is no fold of the stream past it. Its caller is told the actor crashed,
                # not what the decoder raised, and the actor restarts from the log.
                raise ActorCrash(
                    f"stream {record.stream!r}: record {record.version} ({record.type!r}) "
                    f"cannot be applied: {exc!r}"
                ) from exc
            version = record.version
        self._state = state
        self._version = version
        if records:
            self._last = records[-1]

    async def _maybe_snapshot(self) -> None:
        interval = self.snapshot_interval()
        if (
            interval is None
            or self._version - self._snapshot_version < interval
            or self._version == 0  # nothing to keep (a stale snapshot found, no record yet)
        ):
            return
        stream = self.stream_id()
        try:
            last = self._last
            at = _NOWHERE if last is None else (last.position, last.timestamp)
            data = _sealed(at, self.encode_state(self.state))
            await self.log.save_snapshot(stream, self._version, data)
        except Exception:
            # A snapshot only shortens recovery; failing to take one loses nothing. The next
            # try waits for the next interval: one that fails for good (a state grown past the
            # log's largest payload) was tried again at every event, encoding the state each
            # time (a room's throughput fell twelvefold).
            logger.warning(
                "snapshot of stream %r at version %d failed; next try in %d events",
                stream,
                self._version,
                interval,
                exc_info=True,
            )
        self._snapshot_version = self._version

    async def _load_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's snapshot, or None when the log cannot read it: the stream is then
        replayed from its start, as for a snapshot that does not decode."""
        try:
            return await self.log.load_snapshot(stream)
        except LogUnavailable:
            raise
        except EventLogError as exc:
            logger.warning(
                "snapshot of stream %r cannot be read (%s); replaying the stream", stream, exc
            )
            return None

    def _snapshots_supported(self) -> bool:
        cls = type(self)
        return (
            cls.encode_state is not EventSourcedActor.encode_state
            and cls.decode_state is not EventSourcedActor.decode_state
        )


_NOWHERE = (0, 0.0)  # before the first record
# A snapshot's data: this mark, the position and timestamp of the record it was taken at,
# then the state as the actor encoded it.
_SNAPSHOT_MARK = b"\x00snap1"
_SNAPSHOT_HEAD = struct.Struct(f"<{len(_SNAPSHOT_MARK)}sqd")


def _sealed(at: tuple[int, float], state: bytes) -> bytes:
    """A snapshot's data: ``state`` with the record it was taken at."""
    return _SNAPSHOT_HEAD.pack(_SNAPSHOT_MARK, *at) + state


def _opened(data: bytes) -> tuple[tuple[int, float], bytes] | None:
    """The record a snapshot was taken at, and its state (inverse of ``_sealed``); ``None``
    for a snapshot written before snapshots named their record (not used: it could be an
    earlier stream's)."""
    if len(data) < _SNAPSHOT_HEAD.size or not data.startswith(_SNAPSHOT_MARK):
        return None
    _, position, timestamp = _SNAPSHOT_HEAD.unpack_from(data)
    return (position, timestamp), data[_SNAPSHOT_HEAD.size :]


def _records_of(encoded: Sequence[NewEvent], records: Sequence[Record]) -> bool:
    """Whether ``records`` begin with the events ``encoded`` (types, payloads and the
    timestamps set): an append's own, and not another writer's the log returned for the same
    message id."""
    if len(records) < len(encoded):
        return False
    for record, event in zip(records, encoded, strict=False):  # a loop: on every append
        if (
            record.type != event.type
            or record.data != event.data
            or (event.timestamp is not None and record.timestamp != event.timestamp)
        ):
            return False
    return True


@dataclass(frozen=True, slots=True)
class _InDoubt(Generic[E]):
    """An append the log could not confirm: what ``receive`` needs to commit it later."""

    effect: Effect[E]  # its events, as decided
    encoded: list[NewEvent]
    expected: int


def _check_not_rewound(conflict: WrongExpectedVersion) -> None:
    """Raise ``EventLogError`` if ``conflict`` says the stream is behind the version this
    actor read from it: streams only grow, so the log lost records (a JetStream stream
    purged, or deleted and made again). Taken for another writer's append, the command was
    re-run against a history no longer there, and refused as one that kept changing."""
    actual = conflict.actual
    if actual is not None and actual < conflict.expected:
        raise EventLogError(
            f"stream {conflict.stream!r} is at version {actual}, behind the "
            f"{conflict.expected} read from it: the log lost records (a JetStream stream "
            "purged, or deleted and made again); restart to go on from what it holds"
        ) from conflict
