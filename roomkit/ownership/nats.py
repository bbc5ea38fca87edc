"""Room ownership over NATS: leases in a JetStream key-value bucket, commands sent to their
room's owner as core NATS requests.

::

    from roomkit.ownership.nats import NatsOwnership

    kit = RoomKit(log=NatsEventLog(url), ownership=NatsOwnership(url))

Every process serving the same rooms gives its kit a ``NatsOwnership`` with the same
``partitions``, ``lease_ttl``, ``bucket`` and ``subject_prefix``. The rooms are split into
``partitions`` partitions; each live process leases an even share of them and renews its
leases every ``lease_ttl / 3`` seconds. A process that joins gets its share as the others give
some back; one that stops gives its leases back; one that dies loses them after ``lease_ttl``,
and the others take them up. A process that joins, claims, releases or leaves says so on
``<subject_prefix>.owners``, and the others read the table again at once: a handover between
live processes takes a few round trips, not a renewal period or two.

A command for a room (``process_inbound``, ``attach_channel``, ``send_event``, ...) made in a
process that does not hold the room's partition is sent to the one that does, which runs it
and answers; the caller returns once its own read model shows what the command did. A command
whose owner is gone (no answer on its subject) or not known (a partition between two holders)
runs where it was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from eventlog._nats_needed import nats_needed

try:
    import nats.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
except ModuleNotFoundError as missing:  # an optional dependency
    raise nats_needed(missing, "roomkit.ownership.nats (NatsOwnership)") from None

from actors import check_finite_seconds
from eventlog import LogUnavailable
from eventlog._nats_setup import (
    client_or_servers,
    close_quietly,
    open_client,
    require_asyncio,
)
from roomkit.core._commands import GetContext, Outcome, SendEvent
from roomkit.core._in_decision import DecisionWait
from roomkit.errors import (
    KitClosedError,
    LogUnavailableError,
    RoomKitError,
    RoomTimeoutError,
    StoreUnavailableError,
)
from roomkit.models.delivery import InboundMessage, InboundResult
from roomkit.ownership._chain import current_chain, decode_chain, encode_chain
from roomkit.ownership._partitions import partition_of, rebalance
from roomkit.ownership._table import KV_FAILURES, LeaseTable, LeaseTtlError, TableView
from roomkit.ownership._wire import WireError, decode, decode_error, encode, encode_error
from roomkit.ownership.base import KitPort, Placement, ReadModelBehind, RoomOwnership

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ["NatsOwnership"]

logger = logging.getLogger("roomkit.ownership")

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_MAX_PARTITIONS = 4096
# The fields of a command's Outcome that mean something in another process (a turn, its
# announcements and the caller's deadline are the owner's own).
_OUTCOME_FIELDS = (
    "value",
    "position",
    "read_position",
    "event",
    "blocked",
    "reason",
    "blocked_by",
    "duplicate_of",
    "timed_out",
    "unbound",
    "in_doubt",
)


class NatsOwnership(RoomOwnership):
    """Rooms split between the processes that share a NATS server (see the module).

    Args:
        nats_url: the NATS URL(s), or a connected nats-py client (used and left open).
        partitions: how many partitions the rooms are split into; the most processes that can
            hold some. The same in every process.
        lease_ttl: seconds a lease lives unless renewed: how long the rooms of a process that
            died wait for another one. The same in every process.
        forward_timeout: how long a command sent to its room's owner is waited for; past it
            the caller gets ``RoomTimeoutError`` (``process_inbound``: a ``process_timeout``
            result), and the command may have been applied there. Keep it above the kit's
            ``process_timeout``. An owner gone from the lease table before it answered (died,
            or frozen past its leases) is not waited for further: a command safe to send again
            (an inbound message or ``send_event`` with an idempotency key) goes to the room's
            new holder, any other ends then as it would past this timeout.
        subject_prefix: the first tokens of the subjects commands are sent on.
        bucket: the JetStream key-value bucket that holds the leases.
        member: this process's name among them (default: host, pid and a random part). Two
            live processes must never share one: a process started under the name of one
            that hangs rather than died (frozen, then back) would run every command sent to
            that name along with it, recording each message twice. Nothing detects it.
        connect_timeout: bound of the connection and of each lease request.
        connect_options: more keyword arguments for ``nats.connect``.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] | NatsClient = "nats://127.0.0.1:4222",
        *,
        partitions: int = 64,
        lease_ttl: float = 6.0,
        forward_timeout: float = 60.0,
        subject_prefix: str = "roomkit",
        bucket: str = "roomkit_owners",
        member: str | None = None,
        connect_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int):
            raise TypeError(f"partitions must be an int, not {type(partitions).__name__}")
        if not 1 <= partitions <= _MAX_PARTITIONS:
            raise ValueError(f"partitions must be from 1 to {_MAX_PARTITIONS}, got {partitions}")
        self.lease_ttl = check_finite_seconds("lease_ttl", lease_ttl)
        if self.lease_ttl < 1:  # the server checks expiries about once a second
            raise ValueError(f"lease_ttl must be at least 1 s, got {lease_ttl!r}")
        self.forward_timeout = check_finite_seconds("forward_timeout", forward_timeout)
        if not self.forward_timeout > 0:
            raise ValueError(f"forward_timeout must be positive, got {forward_timeout!r}")
        self.connect_timeout = check_finite_seconds("connect_timeout", connect_timeout)
        if not isinstance(subject_prefix, str) or not _PREFIX.fullmatch(subject_prefix):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        if not isinstance(bucket, str) or not _TOKEN.fullmatch(bucket):
            raise ValueError(f"invalid bucket name {bucket!r}: 1-64 of [A-Za-z0-9_-]")
        if member is None:
            host = re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)[:32]
            member = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        elif not isinstance(member, str) or not _TOKEN.fullmatch(member):
            raise ValueError(f"invalid member name {member!r}: 1-64 of [A-Za-z0-9_-]")
        self.partitions = partitions
        self.subject_prefix = subject_prefix
        self.bucket = bucket
        self.member = member
        self._client, self._servers = client_or_servers(nats_url)
        self._connect_options = dict(connect_options or {})

    def subject(self, member: str) -> str:
        """Where the commands for ``member``'s rooms are sent."""
        return f"{self.subject_prefix}.owner.{member}"

    @property
    def changes_subject(self) -> str:
        """Where a process says that it joined, claimed, released or left (no member is
        named \"owners\" there: members' subjects have one more token)."""
        return f"{self.subject_prefix}.owners"

    async def start_placement(self, port: KitPort) -> Placement:
        require_asyncio("NatsOwnership", RoomKitError)
        own = self._client is None
        if self._client is not None:
            nc = self._client
        else:
            try:
                nc = await open_client(
                    self._servers,
                    connect_timeout=self.connect_timeout,
                    request_timeout=self.connect_timeout,
                    options={"name": f"roomkit-owner-{self.member}", **self._connect_options},
                )
            except LogUnavailable as exc:
                raise LogUnavailableError(f"room ownership: {exc}") from exc
        placement = NatsPlacement(self, nc, own, port)
        try:
            await placement.start()
        except BaseException:
            await placement.leave()
            await placement.disconnect()
            raise
        return placement

    def describe(self) -> dict[str, Any]:
        return {"member": self.member, "partitions": self.partitions, "bucket": self.bucket}

    def __repr__(self) -> str:
        return f"<NatsOwnership member={self.member} partitions={self.partitions}>"


# Lease requests in flight at once: one after the other, a process holding thousands of
# partitions took longer to renew them than their lease_ttl, and lost them as it renewed.
_CONCURRENT_LEASE_REQUESTS = 64


async def _at_once(calls: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run ``calls``, up to ``_CONCURRENT_LEASE_REQUESTS`` at a time; the first lease-table
    failure (``KV_FAILURES``) is raised once all are done, as it was raised by the loop this
    replaces (not in an exception group)."""
    failures: list[BaseException] = []
    limiter = anyio.CapacityLimiter(_CONCURRENT_LEASE_REQUESTS)

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            try:
                await call()
            except KV_FAILURES as exc:
                failures.append(exc)

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(one, call)
    if failures:
        raise failures[0]


@dataclass(slots=True)
class _Lease:
    revision: int
    renewed_at: float  # time.monotonic()


@dataclass(eq=False, slots=True)
class _Waiting:
    """A command sent to ``owner`` for a room of ``partition``, waiting for its answer;
    ``scope`` ends the wait once the owner is gone from the table (see ``_owners_gone``)."""

    owner: str
    partition: int
    scope: anyio.CancelScope
    # The owner was seen leaving: it answers what it received before it is gone (see leave).
    leaving: bool = False


def _sent_again_safely(request: dict[str, Any]) -> bool:
    """Whether ``request``, sent to an owner that died (or froze) before it answered, may be
    sent to the room's next owner: run twice, it records nothing twice. An inbound message or
    a ``send_event`` with an idempotency key is answered as a duplicate of what the dead owner
    recorded (the room's dedup reads the log); reading a room's context changes nothing."""
    if request["op"] == "inbound":
        return bool(request["message"].idempotency_key)
    command = request["command"]
    if isinstance(command, SendEvent):
        return bool(command.idempotency_key)
    return isinstance(command, GetContext)


class NatsPlacement(Placement):
    """A process's leases, and the commands it sends and serves (see ``NatsOwnership``)."""

    def __init__(self, owner: NatsOwnership, nc: NatsClient, own: bool, port: KitPort) -> None:
        self._owner = owner
        self._nc = nc
        self._own = own
        self._port = port
        self._me = owner.member
        self._table = LeaseTable(
            nc.jetstream(), owner.bucket, owner.lease_ttl, owner.member, owner.partitions
        )
        self._mismatched: set[str] = set()  # processes reported splitting rooms otherwise
        self._held: dict[int, _Lease] = {}
        # When the least recently renewed lease held was renewed (see _leases_checked).
        self._renewed_floor = math.inf
        # Leases expired since the table was last read: its view may name no holder for a
        # room another process holds now (see _owner_for).
        self._view_stale = False
        # The read of the table that a stale view called for, while in flight: the callers
        # that come meanwhile wait for it (see _fresh_view).
        self._view_read: anyio.Event | None = None
        self._view = TableView({}, set())
        # Reads of the table begun, numbered: the view installed is that of the read begun
        # last (see _install), and only a read begun after the last expiry is fresh. A tick
        # frozen in the tail of its read (SIGSTOP, a stalled VM) returned, as the process woke,
        # a view read before the freeze, naming this process for the partitions it had just
        # lost; installed over the callers' fresh read, it made them run here, in rooms
        # another process held by then.
        self._reads = 0
        self._view_number = 0  # the read whose view is installed
        self._fresh_from = 0  # the first read begun after the last expiry
        self._serving: Subscription | None = None
        self._changes: Subscription | None = None
        # Set when another process changed the table: the lease loop reads it at once.
        self._wake = anyio.Event()
        self._answering: set[asyncio.Task[None]] = set()
        # This process's commands waiting for another's answer: leave() keeps the connection
        # open for them (closed under them, they waited their forward_timeout for nothing).
        self._sending = 0
        self._sent = anyio.Event()
        # Those of them waiting for an answer: each one's wait ends once its owner is gone
        # from the table (see _owners_gone).
        self._waiting: set[_Waiting] = set()
        self._left = False
        self._released = False  # the leases given back: the lease loop ends
        self._gone = False  # disconnected as the kit closed: nothing more is sent
        self._disconnected = False  # disconnect() began
        self._settled = False  # leaving, past the wait for its own commands: it takes no more
        self._ticking = anyio.Lock()  # a tick and leave() do not renew and release at once
        self._failing = False  # the lease table unreachable: reported once per outage
        # The lease bucket lets leases live another time than this process's lease_ttl: it
        # takes no lease until it lets them live this one again (reported once).
        self._refused = False

    @property
    def held(self) -> frozenset[int]:
        """The partitions this process holds."""
        return frozenset(self._held)

    @property
    def forward_timeout(self) -> float:
        return self._owner.forward_timeout

    @property
    def owners(self) -> dict[int, str]:
        """Each leased partition's holder, as last seen."""
        return dict(self._view.owners)

    @property
    def members(self) -> frozenset[str]:
        """The live processes as last seen."""
        return frozenset(self._view.members | {self._me})

    # -- leases ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._table.open()
            self._serving = await self._nc.subscribe(
                self._owner.subject(self._me), cb=self._take_request
            )
            self._changes = await self._nc.subscribe(
                self._owner.changes_subject, cb=self._heard_change
            )
            # Joined: announced, so that the others give this process its share now, not at
            # their next renewal.
            await self._tick(joining=True)
        except KV_FAILURES as exc:
            raise LogUnavailableError(f"room ownership: NATS failed: {exc!r}") from exc

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        interval = self._owner.lease_ttl / 3
        while True:
            with anyio.move_on_after(interval):
                await self._wake.wait()
            self._wake = anyio.Event()  # before the tick: a change heard during it counts
            if self._released:
                return
            try:
                async with self._ticking:
                    if self._released:
                        return
                    await self._tick()
                if self._failing:
                    logger.warning("room ownership: the lease table answers again")
                    self._failing = False
            except KV_FAILURES as exc:
                if not self._failing:
                    logger.warning("room ownership: the lease table failed: %r", exc)
                    self._failing = True
                self._expire_unrenewed()

    async def _tick(self, *, joining: bool = False) -> None:
        """Renew, read the table, move towards a fair share, stop actors of others' rooms;
        announce a change (and a join, ``joining``)."""
        table = self._table
        agreed = await self._heartbeat()
        if agreed:
            await _at_once(
                [functools.partial(self._renew, p, lease) for p, lease in self._held.items()]
            )
            self._note_renewals()
        if self._left:
            # Still answering what it took: it keeps its leases (another process deciding
            # the same rooms meanwhile would run their hooks twice), and takes no more.
            return
        # Its renewals come before the read, the next ones lease_ttl / 3 after it: a read is
        # bounded so that they still come in time.
        number = self._begin_read()
        view = await table.read(min(self._owner.connect_timeout, self._owner.lease_ttl / 3))
        self._report_mismatches(view)
        if not agreed:
            # Read all the same: its commands go to the rooms' holders.
            self._install(view, number)
            self._stop_actors_of_others()
            return
        # Leaving processes are counted out: the shares take up what they give back, all of
        # it (counted in, some of their partitions stayed free until they were gone).
        change = rebalance(
            self._me, self._held.keys(), view.owners, view.staying, self._owner.partitions
        )
        for partition in change.release:
            # One expired meanwhile (a process stalled in this tick: see _leases_checked) is
            # no longer held, nor to be given back.
            lease = self._held.pop(partition, None)
            view.owners.pop(partition, None)
            if lease is not None:
                await table.release(partition, lease.revision)
        claimed: dict[int, _Lease] = {}
        try:
            await _at_once([functools.partial(self._claim, claimed, p) for p in change.claim])
        finally:
            # Those claimed before one failed are held all the same (and renewed).
            self._held.update(claimed)
            view.owners.update(dict.fromkeys(claimed, self._me))
        if not self._install(view, number):
            # A read begun later is installed (the callers' after an expiry): this tick's
            # own changes go into it.
            for partition in change.release:
                if self._view.owners.get(partition) == self._me:
                    del self._view.owners[partition]
            self._view.owners.update(dict.fromkeys(claimed, self._me))
        self._note_renewals()
        if joining or change.claim or change.release:
            await self._announce()
        if change.claim or change.release:
            logger.info(
                "room ownership: %s holds %d of %d partitions (%d processes)",
                self._me,
                len(self._held),
                self._owner.partitions,
                len(view.members | {self._me}),
            )
        self._stop_actors_of_others()

    async def _heartbeat(self) -> bool:
        """Say this process is alive, then whether the lease bucket lets leases live its
        ``lease_ttl``; if not, its leases are given back. Checked at each tick, after the
        heartbeat (a process that takes the bucket to another ttl later sees this one alive,
        see ``LeaseTable.open``): a process of another ttl that took the bucket to its own
        (started as this one was) made this one's leases lapse between its renewals, and
        took its rooms while it still ran them. Opened again after a failure (the server may
        have come back without the bucket: it is kept in memory) or a refusal (taken up if no
        process uses the other ttl any more)."""
        try:
            if self._failing or self._refused:
                await self._table.open()
            else:
                await self._table.heartbeat()
                await self._table.check()
        except LeaseTtlError as exc:
            # Not a failure of the table: it answers, and will refuse until the processes of
            # the other ttl stop. Raised from the lease loop, it ended the kit's runtime.
            await self._give_back_for(exc)
            return False
        if self._refused:
            logger.warning(
                "room ownership: the lease bucket lets leases live %s s again: %s takes "
                "rooms again",
                self._owner.lease_ttl,
                self._me,
            )
            self._refused = False
        return True

    async def _give_back_for(self, refusal: LeaseTtlError) -> None:
        """Give every lease back and stop saying this process is alive (counted in, it kept
        the others from their shares and from the bucket): the bucket refused its ttl. Once
        per refusal: it takes no lease meanwhile."""
        if self._refused:
            return
        logger.error(
            "room ownership: %s (lease_ttl %s s) takes no rooms: %s",
            self._me,
            self._owner.lease_ttl,
            refusal,
        )
        self._refused = True
        held, self._held = self._held, {}
        for partition in held:
            self._lost(partition)
        self._note_renewals()
        # Its leases may have lapsed already (a shorter ttl): a release is conditional.
        for partition, lease in sorted(held.items()):
            await self._table.release(partition, lease.revision)
        await self._table.leave()
        if held:
            await self._announce()  # the others take them up now

    async def _renew(self, partition: int, lease: _Lease) -> None:
        # Counted from before the request: the server's expiry runs from its write, which
        # comes before the answer.
        sent = time.monotonic()
        revision = await self._table.renew(partition, lease.revision)
        if revision is None:
            logger.warning("room ownership: the lease of partition %d was lost", partition)
            if self._held.pop(partition, None) is not None:
                # Another process may hold it now: the view, which names this one, is stale
                # until read again. Left as it was, the callers that came before the tick's
                # read ended (a process woken past its leases, whose tick renewed first)
                # found the room neither held nor another's, and ran it here.
                self._lost(partition)
        else:
            lease.revision, lease.renewed_at = revision, sent

    async def _claim(self, claimed: dict[int, _Lease], partition: int) -> None:
        sent = time.monotonic()
        revision = await self._table.claim(partition)
        if revision is not None:
            claimed[partition] = _Lease(revision, sent)

    def _report_mismatches(self, view: TableView) -> None:
        """Say (once per process) that a process splits the rooms into another number of
        partitions: a room's partition differs between them, and its commands may run in
        both (nothing else detected it)."""
        mine = self._owner.partitions
        for member, theirs in view.partitions.items():
            if theirs != mine and member != self._me and member not in self._mismatched:
                self._mismatched.add(member)
                logger.error(
                    "room ownership: process %s splits the rooms into %d partitions, this "
                    "one (%s) into %d: give every process the same settings (until then a "
                    "room's commands may run in both)",
                    member,
                    theirs,
                    self._me,
                    mine,
                )

    async def _heard_change(self, msg: Msg) -> None:
        if msg.data != self._me.encode():
            self._wake.set()

    async def _announce(self) -> None:
        """Tell the other processes the table changed (at most once: a process that misses
        it reads the table at its next renewal anyway)."""
        try:
            await self._nc.publish(self._owner.changes_subject, self._me.encode())
        except nats.errors.Error as exc:
            logger.debug("room ownership: not announced: %r", exc)

    def _expire_unrenewed(self) -> None:
        """Leases this process could not renew for ``lease_ttl`` have expired at the server
        (whose clock decides, but cannot be ahead by more than the time since): another
        process may hold them now."""
        limit = time.monotonic() - self._owner.lease_ttl
        for partition, lease in list(self._held.items()):
            if lease.renewed_at < limit:
                logger.warning("room ownership: the lease of partition %d expired", partition)
                del self._held[partition]
                self._lost(partition)
        self._note_renewals()

    def _lost(self, partition: int) -> None:
        """``partition``'s lease is no longer this process's (expired, or its renewal
        refused): the view is stale (see ``_fresh_view``), and so is the view of a read in
        flight, begun before (see ``_install``)."""
        if self._view.owners.get(partition) == self._me:
            del self._view.owners[partition]
        self._view_stale = True
        self._fresh_from = self._reads + 1

    def _begin_read(self) -> int:
        """Number a read of the table about to begin (see ``_install``)."""
        self._reads += 1
        return self._reads

    def _install(self, view: TableView, number: int) -> bool:
        """Make ``view``, read by read ``number``, the view, unless the view of a read begun
        after it is installed already (a read that ends last may have begun first: one frozen
        in its tail); whether it was. Only a read begun after the last expiry makes the view
        fresh again (see ``_fresh_view``)."""
        if number >= self._fresh_from:
            self._view_stale = False
        if number <= self._view_number:
            return False
        self._view = view
        self._view_number = number
        self._owners_gone()
        return True

    def _note_renewals(self) -> None:
        held = self._held.values()
        self._renewed_floor = min((lease.renewed_at for lease in held), default=math.inf)

    def _leases_checked(self) -> None:
        """Let go of the leases not renewed for ``lease_ttl`` before acting on them: a process
        frozen past its leases (SIGSTOP, a stalled VM) ran the commands waiting for it as it
        woke, before its lease loop noticed, in rooms another process held by then."""
        if time.monotonic() - self._renewed_floor > self._owner.lease_ttl:
            self._expire_unrenewed()

    def _stop_actors_of_others(self) -> None:
        port = self._port
        for room_id in list(port.live_rooms()):
            if self.owner_of(room_id) is not None:
                port.request_passivation(room_id)

    def owner_of(self, room_id: str) -> str | None:
        self._leases_checked()
        partition = partition_of(room_id, self._owner.partitions)
        if partition in self._held:
            return None
        view = self._view
        owner = view.owners.get(partition)
        if owner is None or owner == self._me or owner not in view.members:
            return None
        return owner

    async def leave(self) -> None:
        if self._left:
            return
        # From now on what others ask is answered "leaving" (see _answer). What this process
        # still sends (its callers' commands, their hooks') goes on to the rooms' owners: run
        # here, a room another process holds was decided in both at once.
        self._left = True
        done = False
        try:
            # Said in the table: the others count this process out of their shares now, and
            # take up all it gives back.
            self._table.leaving = True
            with (
                contextlib.suppress(*KV_FAILURES),
                anyio.move_on_after(self._owner.connect_timeout),
            ):
                if self._table.opened and not self._refused:
                    await self._table.heartbeat()
                    await self._announce()
            changes, self._changes = self._changes, None
            if changes is not None:
                with contextlib.suppress(nats.errors.Error):
                    await changes.unsubscribe()
            # Still subscribed: what comes from now on is answered "leaving" (see _answer), and
            # its sender waits for the leases given back below. Unsubscribed, a sender got no
            # responders, took this process for gone and ran the room itself while this one
            # still decided the commands it had taken: their hooks ran in both.
            # What it took is answered before the kit closes (closing refuses commands), for
            # as long as the kit's close waits for its own callers: cut short, a command was
            # recorded and never delivered. Not for ever: a command that never ends (a hook
            # without a timeout) would hold the close.
            # Its own callers' commands too (new ones are refused, the kit is closing): given
            # back first, a room was decided elsewhere while one of them still ran here. Not
            # the deliveries and async hooks of what they recorded, which the kit's close
            # waits for next: held for them, every room of this process waited for its
            # slowest channel, and a hook waiting on a command another process sent here
            # waited for good.
            with anyio.move_on_after(max(self._owner.forward_timeout, self._port.drain_timeout)):
                await self._commands_answered()
            for task in self._answering:
                task.cancel()
            done = True
        finally:
            # From here on, nothing more is taken ("leaving"), also when the wait above was
            # cut short (its caller gave up the close): the leases go next.
            self._settled = True
            if not done:
                await self._decided_before_release()
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._owner.connect_timeout):
                try:
                    async with self._ticking:  # not while a tick renews them
                        self._released = True
                        if self._table.opened:
                            for partition, lease in sorted(self._held.items()):
                                await self._table.release(partition, lease.revision)
                            await self._table.leave()
                            await self._announce()  # the others take the leases up now
                except KV_FAILURES as exc:
                    logger.debug("room ownership: leaving: %r (the leases expire)", exc)
                self._held.clear()
            serving, self._serving = self._serving, None
            if serving is not None:
                # Drained, not unsubscribed: the requests it received and had not taken yet
                # are answered too ("leaving"). Unsubscribing dropped them, and their senders
                # waited forward_timeout to say process_timeout.
                with (
                    contextlib.suppress(nats.errors.Error),
                    anyio.move_on_after(self._owner.connect_timeout),
                ):
                    await serving.drain()  # type: ignore[no-untyped-call]

    async def disconnect(self) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        try:
            # This process's own commands sent to another before it left are answered first;
            # the answers it is still giving are given before its connection closes.
            with anyio.move_on_after(self._owner.forward_timeout):
                while self._sending or self._answering:
                    if self._answering:
                        await asyncio.wait(set(self._answering))
                    else:
                        await self._sent.wait()
        finally:
            self._gone = True
            if self._own:
                # Also when the wait above was cut short (a close given up): left open, the
                # connection outlived the kit, its reads ended.
                with anyio.CancelScope(shield=True):
                    await close_quietly(self._nc)

    async def _decided_before_release(self) -> None:
        """Wait (a close given up: shielded, at most ``lease_ttl``) for the commands this
        process's rooms are deciding, its callers' and others', before the leases go: given
        back at once, the room's next message was decided by its new owner meanwhile, and the
        one decided here was then decided again after it (its hooks twice, the room's order
        reversed). The kit refuses what is queued behind them as it stops."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._owner.lease_ttl):
            await self._commands_answered()

    async def _commands_answered(self) -> None:
        """Return once the commands other processes sent here are answered and this
        process's own are decided (callers bound the wait)."""
        while True:
            while self._answering:
                await asyncio.wait(set(self._answering))
            await self._port.commands_done()
            # Commands another leaving process sent meanwhile (see _takes_while_leaving) are
            # answered too, before the leases go.
            if not self._answering:
                return

    # -- sending -----------------------------------------------------------------------------

    async def _owner_for(self, room_id: str) -> str | None:
        """The process a command for ``room_id`` goes to (None: it runs here).

        Leaving, this process no longer follows the table: it reads it again, or a room it
        last saw at a process that has since given it on was decided there and by its new
        holder at once; a room nobody holds yet is waited for (see ``_holder_now``).

        Raises:
            KitClosedError: the kit closed, its connection to the others too.
        """
        if self._gone:
            raise KitClosedError(
                f"room {room_id}: the kit closed, and with it its connection to the other "
                "processes: it decides no room any more"
            )
        if not self._left:
            self._leases_checked()
            if self._view_stale:
                await self._fresh_view()
            return self.owner_of(room_id)
        deadline = anyio.current_time() + self._owner.forward_timeout
        await self._read_table(deadline)
        return await self._holder_now(room_id, deadline)

    async def _fresh_view(self) -> None:
        """Read the table once leases expired (see ``_leases_checked``): the room may be
        another process's now, which the table says; run here on the view, it was decided
        here and by its new holder at once.

        One read for every caller: those that come while it is in flight (the commands that
        waited for a process woken past its leases come at once) wait for it, or they decided
        on the view it replaces. Read once: a table that fails must not hold every command.
        """
        while self._view_stale:
            reading = self._view_read
            if reading is not None:
                await reading.wait()
                continue  # stale still if that reader was cancelled: one of these reads
            reading = self._view_read = anyio.Event()
            try:
                timeout = min(self._owner.connect_timeout, self._owner.lease_ttl / 3)
                number = self._begin_read()
                try:
                    view = await self._table.read(timeout)
                except KV_FAILURES:
                    # Read once: a table that fails must not hold every command.
                    self._view_stale = False
                else:
                    # Fresh unless leases expired again meanwhile (then read again); not
                    # installed over the view of a read begun later (a tick's, newer).
                    self._install(view, number)
            finally:
                self._view_read = None
                reading.set()

    async def _holder_now(self, room_id: str, deadline: float) -> str | None:
        """The process holding ``room_id`` as the view says (None: this one; callers whose
        view may be stale read the table first), once one does: while its partition is free
        (its holder gave it back) and other processes stay (not leaving), one of them takes
        it up at once, and it is waited for (the table read again, until ``deadline``). Run
        here meanwhile, the room was decided here and by the process that took it."""
        partition = partition_of(room_id, self._owner.partitions)
        pause = 0.02
        while True:
            owner = self.owner_of(room_id)
            if owner is not None or partition in self._held:
                return owner
            view = self._view
            if view.owners.get(partition) not in (None, self._me):
                return None  # its holder died: its rooms run where asked until its lease ends
            takers = view.staying - {self._me}
            if (
                not takers
                or any(
                    view.partitions.get(m, self._owner.partitions) != self._owner.partitions
                    for m in takers
                )
                or anyio.current_time() >= deadline
            ):
                # Nobody to take it up (the others leave too; or they split the rooms
                # otherwise, and may never lease this partition), or nobody did in time.
                return None
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.25)
            await self._read_table(deadline)

    async def _read_table(self, deadline: float) -> None:
        """Read the lease table into the view (left as it was if the read fails)."""
        with contextlib.suppress(TimeoutError, *KV_FAILURES):
            left = max(0.1, deadline - anyio.current_time())
            number = self._begin_read()
            self._install(await self._table.read(min(self._owner.connect_timeout, left)), number)

    def _check_connected(self, room_id: str, owner: str) -> None:
        """Raise ``KitClosedError`` once this process closed its connection as it left: a
        command for a room another process holds (its kit's last post-commit work) was run
        here, deciding the room in two processes at once."""
        if self._gone:
            raise KitClosedError(
                f"room {room_id}: the kit closed, and its room is process {owner}'s, which this "
                "process no longer reaches"
            )

    async def forward_command(self, room_id: str, command: object, settle: bool) -> Outcome | None:
        owner = await self._owner_for(room_id)
        if owner is None:
            return None
        # Held until answered: a link coming back here is this very wait (see _chain).
        waiting = current_chain()
        request = {
            "op": "command",
            "room": room_id,
            "command": command,
            "settle": settle,
            "commit_only": self._port.commit_only(),
            "waiting": encode_chain(waiting, self._port.kit, self._me),
            "leaving": self._left,
        }
        answer = await self._send(owner, room_id, request)
        del waiting
        if answer is None:
            return None
        if "too_large" in answer:
            if isinstance(command, GetContext):
                return None  # it changes nothing: read here
            raise RoomKitError(
                f"room {room_id}: the command ran at process {owner}, but its answer "
                f"({answer['too_large']} bytes) is larger than NATS takes"
            )
        fields = answer.get("outcome")
        if not isinstance(fields, dict) or not set(fields) <= set(_OUTCOME_FIELDS):
            raise WireError(f"process {owner} answered a command with {answer!r}"[:300])
        outcome = Outcome(**fields)
        if settle:
            within = min(self._port.drain_timeout, self._owner.forward_timeout)
            if not await self._caught_up(answer["position"], owner, within):
                did = (
                    "the command is recorded (it ran at process "
                    f"{owner}), but this process's read model did not hold it"
                    if outcome.position
                    else f"the command (run at process {owner}) recorded nothing, but this "
                    "process's read model did not hold the room as it answered from"
                )
                raise StoreUnavailableError(
                    f"room {room_id}: {did} within {within:g} s: the store is unavailable, "
                    "and reads show it once it is back"
                )
        return outcome

    async def forward_inbound(
        self, message: InboundMessage, room_id: str, waiting: tuple[DecisionWait, ...]
    ) -> InboundResult | None:
        owner = await self._owner_for(room_id)
        if owner is None:
            return None
        request = {
            "op": "inbound",
            "room": room_id,
            "message": message,
            "commit_only": self._port.commit_only(),
            "waiting": encode_chain(waiting, self._port.kit, self._me),
            "leaving": self._left,
        }
        answer = await self._send(owner, room_id, request)
        if answer is None:
            return None
        if "too_large" in answer:
            raise RoomKitError(
                f"room {room_id}: process {owner} took the message, but its answer "
                f"({answer['too_large']} bytes) is larger than NATS takes"
            )
        result = answer.get("result")
        if not isinstance(result, InboundResult):
            raise WireError(f"process {owner} answered an inbound message with {answer!r}"[:300])
        process_timeout = self._port.process_timeout
        within = self._owner.forward_timeout if process_timeout is None else process_timeout
        if not await self._caught_up(answer["position"], owner, within):
            raise ReadModelBehind(result, within)
        return result

    async def _caught_up(self, position: int, owner: str, within: float) -> bool:
        """Whether this process's read model shows what the owner did (its callers read
        their writes) within ``within`` seconds, saying why when it does not. Waited for up to
        ``forward_timeout``, a caller whose store was away waited that long (60 s by default)
        and was then answered as if its read model showed it."""
        port = self._port
        await port.wait_checkpoint(position, within)
        if port.checkpoint() >= position:
            return True
        logger.warning(
            "room ownership: this process's read model is still at %d, process %s's at %d "
            "after %g s: its store is unavailable (or the processes do not share one event "
            "log)",
            port.checkpoint(),
            owner,
            position,
            within,
        )
        return False

    async def _send(self, owner: str, room_id: str, request: dict[str, Any]) -> Any:
        try:
            payload = encode(request)
        except WireError as exc:  # something only this process can hold: run it here
            logger.debug("room %s: run here, as %s", room_id, exc)
            return None
        leaving = self._left
        timeout = self._owner.forward_timeout
        deadline = anyio.current_time() + timeout
        self._sending += 1
        try:
            while True:
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise RoomTimeoutError(
                        f"room {room_id}: its owner {owner} was leaving (or no longer held "
                        f"it), and no process took the room up within {timeout:g} s"
                    )
                if leaving is not self._left:
                    # It began to leave since it sent the command: the owner, leaving too,
                    # runs it now (see _takes_while_leaving). Sent again as it was, each
                    # waited for the other until forward_timeout, and both commands were lost.
                    leaving = request["leaving"] = self._left
                    payload = encode(request)
                try:
                    reply = await self._request(owner, room_id, payload, left)
                except nats.errors.NoRespondersError:
                    # Gone (stopped or died) since the table was read: its leases go with it.
                    self._forget(owner)
                    if self._left:
                        # This process no longer follows the table: the room may have gone
                        # on to a live process (it ran here, at once with that one).
                        await self._read_table(deadline)
                        owner_now = await self._holder_now(room_id, deadline)
                        if owner_now is not None and owner_now != owner:
                            owner = owner_now
                            continue
                    return None
                except nats.errors.TimeoutError as exc:
                    raise RoomTimeoutError(
                        f"room {room_id}: its owner {owner} did not answer within {timeout:g} s "
                        "(the command may have been applied there)"
                    ) from exc
                except nats.errors.Error as exc:  # not sent (too large, this connection)
                    self._check_connected(room_id, owner)
                    logger.warning(
                        "room %s: not sent to its owner %s (%r): run here", room_id, owner, exc
                    )
                    return None
                if reply is None:
                    # Its owner died or froze before it answered (see _owners_gone).
                    owner_now = await self._after_owner_gone(owner, room_id, deadline, request)
                    if owner_now is None:
                        return None
                    owner = owner_now
                    continue
                answer = decode(reply.data)
                if isinstance(answer, dict) and "elsewhere" in answer:
                    owner_now = await self._moved(owner, room_id, deadline, answer["elsewhere"])
                elif isinstance(answer, dict) and answer.get("leaving") is True:
                    # Closing: it answers what it took, then gives its leases back; the room
                    # is decided where the leases go then (here, or a third process).
                    owner_now = await self._after_leaving(owner, room_id, deadline, leaving)
                else:
                    break
                if owner_now is None:
                    return None
                owner = owner_now
        finally:
            self._sending -= 1
            if not self._sending:
                self._sent.set()
                self._sent = anyio.Event()
        if not isinstance(answer, dict):
            raise WireError(f"process {owner} answered {answer!r}"[:300])
        if "error" in answer:
            raise decode_error(answer["error"], owner)
        position = answer.get("position")
        if isinstance(position, bool) or not isinstance(position, int):
            raise WireError(f"process {owner} answered without a log position: {answer!r}"[:300])
        return answer

    async def _request(self, owner: str, room_id: str, payload: bytes, left: float) -> Msg | None:
        """Send ``payload`` to ``owner`` and wait up to ``left`` seconds for its answer;
        None once the owner is gone from the table meanwhile (see ``_owners_gone``).

        Raises:
            nats.errors.Error: as ``Client.request`` (TimeoutError after ``left`` seconds).
        """
        waiting = _Waiting(
            owner,
            partition_of(room_id, self._owner.partitions),
            anyio.CancelScope(),
            owner in self._view.leaving,
        )
        self._waiting.add(waiting)
        try:
            with waiting.scope:
                return await self._nc.request(self._owner.subject(owner), payload, timeout=left)
        finally:
            self._waiting.discard(waiting)
        return None  # the scope was cancelled by _owners_gone (a caller's cancel propagates)

    async def _after_owner_gone(
        self, owner: str, room_id: str, deadline: float, request: dict[str, Any]
    ) -> str | None:
        """The process to send ``request`` to now (None: run it here), its owner ``owner``
        gone before it answered; the room's holder once one takes it up (this process
        included), as for a command sent anew.

        Raises:
            RoomTimeoutError: the command is not one sent again safely (see
                ``_sent_again_safely``): it may have been applied there, as after
                ``forward_timeout``, but said now rather than when that ran out.
        """
        if not _sent_again_safely(request):
            waited = self._owner.forward_timeout - (deadline - anyio.current_time())
            raise RoomTimeoutError(
                f"room {room_id}: its owner {owner} did not answer, and is gone (its lease "
                f"lapsed after {waited:.1f} s of the {self._owner.forward_timeout:g} s waited "
                "for: it died or froze) (the command may have been applied there)"
            )
        logger.info(
            "room %s: its owner %s is gone before it answered: sent to the room's owner now",
            room_id,
            owner,
        )
        return await self._holder_now(room_id, deadline)

    async def _after_leaving(
        self, owner: str, room_id: str, deadline: float, sent_leaving: bool
    ) -> str | None:
        """Wait until ``room_id`` is no longer ``owner``'s, who said it is leaving (or until
        ``deadline``); return its owner then (None: this process). Return ``owner`` at once
        if this process began to leave since it sent the command (``sent_leaving`` False):
        sent again, the owner runs it (see _takes_while_leaving)."""
        # Its announcement once it gave the leases back has the table read again at once,
        # unless this process is leaving too: it no longer follows the table, and reads it.
        pause = 0.02
        while anyio.current_time() < deadline:
            if self._left and not sent_leaving:
                return owner
            if self._left:
                await self._read_table(deadline)
            if owner not in self._view.members or self.owner_of(room_id) != owner:
                # Given back: to a process that took it, or, if none did yet, to the one
                # that does (two senders told "leaving" otherwise ran it, each in itself).
                return await self._holder_now(room_id, deadline)
            await anyio.sleep(min(pause, max(0.0, deadline - anyio.current_time())))
            pause = min(pause * 2, 0.25)
        return owner

    async def _moved(
        self, owner: str, room_id: str, deadline: float, partitions: object
    ) -> str | None:
        """``owner`` does not hold ``room_id``'s partition (any more, or yet): read the table
        again and return the room's owner now (None: this process), ``owner`` again after a
        pause if it is still named (a claim it has not seen answered yet)."""
        if partitions != self._owner.partitions:
            # It splits the rooms otherwise (reported as the table is read): no process may
            # ever hold the room in its eyes; run here, as before it said so.
            return None
        await self._read_table(deadline)
        owner_now = self.owner_of(room_id)
        if owner_now == owner:
            await anyio.sleep(min(0.05, max(0.0, deadline - anyio.current_time())))
            return owner
        return await self._holder_now(room_id, deadline)

    def _forget(self, owner: str) -> None:
        view = self._view
        view.members.discard(owner)
        for partition in [p for p, member in view.owners.items() if member == owner]:
            del view.owners[partition]
        # Not _owners_gone: no responders says only that the owner is not subscribed now (a
        # connection blip it reconnects from); the table says whether it is gone. Ended
        # here, its other commands in flight were run again here while it ran them, or
        # answered process_timeout though it recorded them.

    def _owners_gone(self) -> None:
        """End the waits of the commands whose owner the view no longer counts alive and
        no longer names for their room: it died or froze past its lease (its heartbeat
        lapsed, not renewed). Each waited the whole forward_timeout (60 s by default) for
        an answer that could not come, while a live process took the room up within a
        lease_ttl. An owner still alive that gave the room on (a rebalance), or one seen
        leaving, answers what it took: that wait goes on."""
        view = self._view
        for waiting in self._waiting:
            if waiting.owner in view.leaving:
                # Closing, it answers each command it received (or says "leaving") before
                # it leaves the table; ended as it left, one it was about to answer
                # "leaving" (then sent where the room went) ended in doubt.
                waiting.leaving = True
            elif not waiting.leaving and (
                waiting.owner not in view.members
                and view.owners.get(waiting.partition) != waiting.owner
            ):
                waiting.scope.cancel()

    # -- serving -----------------------------------------------------------------------------

    async def _take_request(self, msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one after the other: each command gets a
        # task of its own, so that a slow room holds up no other.
        task = asyncio.ensure_future(self._answer(msg))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _takes_while_leaving(self, request: dict[str, Any], waiting: Sequence[Any]) -> bool:
        """Whether this leaving process runs ``request`` rather than answer "leaving".

        It does when a decision of its own waits for it: leave() waits for that decision (and
        a call back into it is refused at once, as ever). And, for a room it still holds, when
        its sender is leaving too, or while this process waits for commands it sent others:
        it waits for its own callers' commands before it gives its leases back, so two
        processes closing at once, each with a command for the other's room, waited on each
        other until forward_timeout, and both commands were lost; so did a caller's command
        sent to another process whose hook sent one back here (the chain of waits names
        decisions, not callers).
        """
        kit = self._port.kit
        if any(wait.mark.kit is kit for wait in waiting):
            return True
        if self._settled or not (request.get("leaving") is True or self._sending):
            # Once its own commands are done it takes no more: taken later, a command could
            # still be decided here after the leases went to another process.
            return False
        room = request.get("room")
        self._leases_checked()
        return isinstance(room, str) and partition_of(room, self._owner.partitions) in self._held

    def _runs_here(self, request: dict[str, Any], waiting: Sequence[Any]) -> bool:
        """Whether this process holds the room of ``request``, or a decision of its own waits
        for the command (a call coming back to the room it is deciding)."""
        if any(wait.mark.kit is self._port.kit for wait in waiting):
            return True
        room = request.get("room")
        if not isinstance(room, str):
            return False
        self._leases_checked()
        partition = partition_of(room, self._owner.partitions)
        # Or the table names this process: one restarted under the same member name holds
        # its predecessor's leases in every other's eyes until they expire.
        return partition in self._held or (
            not self._left and self._view.owners.get(partition) == self._me
        )

    async def _answer(self, msg: Msg) -> None:
        port = self._port
        reply: dict[str, Any]
        try:
            request = decode(msg.data)
            op = request.get("op") if isinstance(request, dict) else None
            if op not in ("command", "inbound"):
                raise WireError(f"a request that is not a room command: {request!r}"[:300])
            waiting = decode_chain(request.get("waiting"), port.kit, self._me)
            if self._left and not self._takes_while_leaving(request, waiting):
                # Taken no more (see leave): its sender waits for the leases given back.
                with contextlib.suppress(nats.errors.Error):
                    await msg.respond(encode({"leaving": True}))
                return
            if not self._runs_here(request, waiting):
                # Its sender read the table before the room's partition moved on (a leaving
                # one no longer follows it): it reads it again and sends the command where the
                # room is now. Run here, the room was decided here and by its holder at once.
                with contextlib.suppress(nats.errors.Error):
                    await msg.respond(encode({"elsewhere": self._owner.partitions}))
                return
            commit_only = bool(request["commit_only"])
            if op == "command":
                outcome = await port.run_command(
                    request["room"],
                    request["command"],
                    bool(request["settle"]),
                    commit_only,
                    waiting,
                )
                fields = {name: getattr(outcome, name) for name in _OUTCOME_FIELDS}
                reply = {"outcome": fields, "position": port.checkpoint()}
            else:
                result = await port.run_inbound(
                    request["message"], request["room"], commit_only, waiting
                )
                reply = {"result": result, "position": port.checkpoint()}
            data = encode(reply)
            if len(data) > self._nc.max_payload:
                # Refused by NATS, it reached nobody: its caller waited its forward_timeout.
                data = encode({"too_large": len(data), "position": port.checkpoint()})
        except KitClosedError as exc:
            # Closed under the command (a close that gave up waiting): it may have been
            # applied, so the caller must not run it again as if it had not ("gone").
            data = encode(
                {
                    "error": encode_error(
                        RoomKitError(
                            f"process {self._me} closed while it had the command (it may have "
                            f"been applied; retry with the same idempotency key): {exc}"
                        )
                    )
                }
            )
        except Exception as exc:
            data = encode({"error": encode_error(exc)})
        try:
            await msg.respond(data)
        except (nats.errors.Error, UnicodeEncodeError) as exc:
            # UnicodeEncodeError: a reply subject that is not UTF-8 (a raw client's), which
            # nothing can be published on.
            logger.warning("room ownership: the answer to a command was lost: %r", exc)
