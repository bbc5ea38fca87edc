"""The lease table: who holds each partition, and which processes are alive.

It is a JetStream key-value bucket whose entries expire ``lease_ttl`` seconds after they were
written (the bucket's max age): ``part.<n>`` holds the process that leased partition ``n``,
``member.<id>`` says that process ``id`` is alive. A process renews its entries well within
the ttl; one that dies stops renewing, and the server drops its entries, which frees its
partitions for the others. Claims are atomic (a key is created only if absent) and renewals
conditional on the revision the process last wrote, so two processes never both hold a lease.
The server's clock decides every expiry: the processes' clocks need not agree.

The bucket's max age is the one lease ttl in use: each process says its own in its heartbeat,
checks the bucket's against it at each renewal, and takes no lease while they differ.
"""

from __future__ import annotations

import contextlib
import logging

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from eventlog._nats_errors import ERR_STREAM_NAME_IN_USE

__all__ = ["LeaseTable", "LeaseTtlError", "TableView"]

logger = logging.getLogger("roomkit.ownership")

_OPEN_READ_TIMEOUT = 5.0  # seconds to read who uses a bucket of another lease ttl

_PART = "part."
_MEMBER = "member."
_LEAVING = b":leaving"
# The lease ttl a process uses, in a header of its heartbeat (its value is read by processes
# of earlier versions, which ignore headers).
_TTL_HEADER = "Roomkit-Lease-Ttl"

# What a failure of the key-value store may raise: the server away, a request unanswered.
KV_FAILURES: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    TimeoutError,
    OSError,
)


class LeaseTtlError(ValueError):
    """The lease bucket lets leases live another time than this process's ``lease_ttl``, or
    live processes use another one: this process must take no lease (they would lapse
    between its renewals, or outlive what it counts on)."""


class TableView:
    """The table as read at one moment: each leased partition's holder, the live processes."""

    __slots__ = ("leaving", "members", "owners", "partitions", "ttls")

    def __init__(
        self,
        owners: dict[int, str],
        members: set[str],
        partitions: dict[str, int] | None = None,
        leaving: set[str] | None = None,
        ttls: dict[str, float] | None = None,
    ) -> None:
        self.owners = owners
        self.members = members
        # The partition count each live process said it splits the rooms into.
        self.partitions = partitions if partitions is not None else {}
        # The live processes that said they are leaving: they hold what they hold until they
        # give it back, and take nothing more.
        self.leaving = leaving if leaving is not None else set()
        # The lease ttl each live process said it uses (not said by earlier versions).
        self.ttls = ttls if ttls is not None else {}

    @property
    def staying(self) -> set[str]:
        """The live processes that are not leaving: those that take free partitions up."""
        return self.members - self.leaving


class LeaseTable:
    """Leases of one process (``me``) in the bucket ``bucket``."""

    def __init__(
        self, js: JetStreamContext, bucket: str, lease_ttl: float, me: str, partitions: int = 0
    ) -> None:
        self._js = js
        self._bucket = bucket
        self._lease_ttl = lease_ttl
        self._me = me
        self._partitions = partitions  # said in each heartbeat (0: not said)
        # Said in each heartbeat once set: the others count this process out of the shares
        # (see TableView.leaving).
        self.leaving = False
        self._kv: KeyValue | None = None

    async def open(self) -> None:
        """Make the bucket, or bind to it if it exists with the same lease ttl, or with
        another that no live process uses (then it takes this one); then say this process is
        alive and check that no other ttl took the bucket meanwhile.

        The bucket keeps the ttl it was made with: the whole fleet stopped and started again
        with a new ``lease_ttl`` was refused for good, each process told to use the ttl of
        processes that were gone.

        Raises:
            LeaseTtlError (a ValueError): it exists with another ttl that live processes use
                (every process must use the same), or another process took it to its own ttl
                as this one did (then this process is not a live one).
            TimeoutError: the ttl changed, and the check that no process uses another took
                longer than this ttl (this process is not a live one).
            nats errors: the server or the connection failed (``KV_FAILURES``).
        """
        began = anyio.current_time()
        found = await self._bind()
        try:
            await self._confirm(found, began)
        except BaseException:
            # Not said alive: its heartbeat would keep others from the bucket for a ttl.
            with anyio.CancelScope(shield=True), contextlib.suppress(*KV_FAILURES):
                await self.leave()
            raise

    async def _bind(self) -> float | None:
        """Make the bucket or bind to it (taken to this ttl if no live process uses the one it
        has): the ttl it had when found."""
        config = KeyValueConfig(
            bucket=self._bucket, history=1, ttl=self._lease_ttl, storage=StorageType.MEMORY
        )
        try:
            self._kv = await self._js.create_key_value(config)
            return self._lease_ttl
        except nats.js.errors.APIError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
        kv = await self._js.key_value(self._bucket)
        stream = (await kv.status()).stream_info.config
        ttl = stream.max_age
        if not self._is_mine(ttl):
            view = await self.read(_OPEN_READ_TIMEOUT)
            live = view.members - {self._me}
            if live and all(self._is_mine(view.ttls.get(m, ttl)) for m in live):
                # Those alive say this process's ttl: one of them took the bucket to it since
                # it was read (a fleet restarted with a new ttl, started together). Refused,
                # processes of one ttl kept each other from starting.
                ttl = (await self._js.stream_info(f"KV_{self._bucket}")).config.max_age
                if self._is_mine(ttl):
                    self._kv = kv
                    return ttl
            if live:
                raise LeaseTtlError(
                    f"the lease bucket {self._bucket} lets leases live {ttl} s, not "
                    f"{self._lease_ttl} s, and {len(live)} process(es) use it: every process "
                    "sharing it must use the same lease_ttl (once they all stopped, and their "
                    f"leases lapsed after {ttl} s, a process with another one changes it)"
                )
            await self._set_ttl(self._lease_ttl)
            logger.warning(
                "the lease bucket %s let leases live %s s; no process uses it: now %s s",
                self._bucket,
                ttl,
                self._lease_ttl,
            )
        self._kv = kv
        return ttl

    async def _confirm(self, found: float | None, began: float) -> None:
        """Say this process is alive, then read the bucket's ttl and the live processes again:
        one that took the bucket to another ttl as this one bound to it is seen in one or the
        other. Two processes started together with different ttls each found no live process,
        each took the bucket to its own, and both went on: the leases of the one whose ttl
        lost lapsed between its renewals, and the other took its rooms.

        ``found``: the bucket's ttl when this open began (that of the live processes that do
        not say theirs, of earlier versions); ``began``: when it began.
        """
        await self.heartbeat()
        await self.check()
        others = self._others_ttls(await self.read(_OPEN_READ_TIMEOUT), found)
        if any(not self._is_mine(ttl) for ttl in others.values()):
            # The bucket goes to the longest of theirs: none of their leases lapses before
            # they renew it, and those of another ttl stop taking leases at their next check.
            longest = max(others.values())
            if not self._is_mine(longest):
                await self._set_ttl(longest)
            raise LeaseTtlError(
                f"processes using the lease bucket {self._bucket} use lease_ttl "
                f"{sorted(set(others.values()))} s, not {self._lease_ttl} s: every process "
                "sharing it must use the same lease_ttl (started together with another one)"
            )
        if not self._is_mine(found) and anyio.current_time() - began >= self._lease_ttl:
            # A process of another ttl that said it was alive after this one found none may
            # have lapsed under this ttl since: not seen, and not known to be gone.
            raise TimeoutError(
                f"the lease bucket {self._bucket}: checking that no process uses another "
                f"lease_ttl took longer than {self._lease_ttl} s"
            )

    def _others_ttls(self, view: TableView, found: float | None) -> dict[str, float]:
        """The lease ttl of each other live process in ``view`` (``found`` if not said)."""
        default = found if found is not None else self._lease_ttl
        return {m: view.ttls.get(m, default) for m in view.members if m != self._me}

    async def check(self) -> None:
        """Raise ``LeaseTtlError`` unless the bucket lets leases live this process's ttl.

        Raises:
            LeaseTtlError: it lets them live another time (changed by another process).
            nats errors: the server or the connection failed (``KV_FAILURES``).
        """
        ttl = (await self._js.stream_info(f"KV_{self._bucket}")).config.max_age
        if not self._is_mine(ttl):
            raise LeaseTtlError(
                f"the lease bucket {self._bucket} lets leases live {ttl} s, not "
                f"{self._lease_ttl} s: another process took it to its lease_ttl (every "
                "process sharing it must use the same)"
            )

    def _is_mine(self, ttl: float | None) -> bool:
        return ttl is not None and abs(ttl - self._lease_ttl) <= 1e-3

    async def _set_ttl(self, ttl: float) -> None:
        """Let the bucket's entries live ``ttl`` seconds (those written already too)."""
        stream = (await self._js.stream_info(f"KV_{self._bucket}")).config
        stream.max_age = ttl
        # JetStream keeps a bucket's duplicate window within its max age.
        stream.duplicate_window = min(stream.duplicate_window or 0.0, ttl)
        await self._js.update_stream(stream)

    @property
    def opened(self) -> bool:
        return self._kv is not None

    def _open_kv(self) -> KeyValue:
        assert self._kv is not None, "LeaseTable.open() first"
        return self._kv

    async def heartbeat(self) -> None:
        """Say this process is alive for another ``lease_ttl``."""
        said = str(self._partitions).encode() if self._partitions else b""
        if self.leaving:
            said += _LEAVING  # after the count, which processes before this one still read
        self._open_kv()
        # Published as KeyValue.put does, with the ttl this process uses (which put cannot
        # say): a process that opens the bucket refuses one whose ttl differs.
        await self._js.publish(
            f"$KV.{self._bucket}.{_MEMBER}{self._me}",
            said,
            headers={_TTL_HEADER: repr(self._lease_ttl)},
        )

    async def claim(self, partition: int) -> int | None:
        """Lease ``partition`` if nobody holds it: the lease's revision, or None."""
        kv = self._open_kv()
        key = _PART + str(partition)
        for _ in range(2):
            try:
                return await kv.create(key, self._me.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                return None
            except nats.js.errors.KeyNotFoundError:
                # nats-py's create found the key taken, looked for its deletion marker, and
                # the marker had expired meanwhile (a lease given back lease_ttl ago): the
                # key is gone now, so it is tried again. It failed the start of a process
                # joining one that had left (LogUnavailableError, NATS up).
                continue
        return None

    async def renew(self, partition: int, revision: int) -> int | None:
        """Extend the lease written at ``revision``: its new revision, or None when it is
        gone (it expired, and maybe another process holds it now)."""
        try:
            return await self._open_kv().update(
                _PART + str(partition), self._me.encode(), last=revision
            )
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
            return None

    async def release(self, partition: int, revision: int) -> None:
        """Give the lease written at ``revision`` back (nothing if it is gone already)."""
        gone = (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError)
        with contextlib.suppress(*gone):
            await self._open_kv().delete(_PART + str(partition), last=revision)

    async def leave(self) -> None:
        """Say this process is gone (its leases are released one by one beforehand)."""
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self._open_kv().delete(_MEMBER + self._me)

    async def read(self, timeout: float) -> TableView:
        """Every live lease and process.

        Read through a pull consumer of this read only, deleted after. nats-py's key watch
        (``watchall``) was used before: its end-of-snapshot marker can come before the
        entries (the server may count them delivered before the client has them), which read
        a full table as empty and made a process take its peers for dead; and each watch left
        its consumer on the server for five minutes.

        Raises:
            TimeoutError: not read whole within ``timeout`` (then nothing is taken from it).
            nats errors: the server or the connection failed (``KV_FAILURES``).
        """
        js = self._js
        stream = f"KV_{self._bucket}"
        prefix = f"$KV.{self._bucket}."
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            filter_subject=prefix + ">",
            mem_storage=True,
            # Dropped by the server should this process not delete it (gone meanwhile).
            inactive_threshold=max(timeout, 5.0),
        )
        owners: dict[int, str] = {}
        members: set[str] = set()
        partitions: dict[str, int] = {}
        leaving: set[str] = set()
        ttls: dict[str, float] = {}
        consumer = None
        deadline = anyio.current_time() + timeout
        try:
            # One bound for the whole read: a tick renews its leases before it, and waits
            # lease_ttl / 3 after it; a read that outlasted the rest let them lapse.
            with anyio.fail_after(timeout):
                consumer = await js.add_consumer(stream, config, timeout=timeout)
                # A pull consumer sends nothing before it is asked: what it had to send when
                # it was made is all it counts as pending. A fetch that times out raises (a
                # stall, a connection lost): the table read so far may lack every lease, and
                # taken as the table it made this process take its peers for dead.
                left = consumer.num_pending or 0
                if left:
                    pull = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
                    try:
                        while left:
                            msgs = await pull.fetch(min(left, 1_000), timeout=timeout)
                            for msg in msgs:
                                left = msg.metadata.num_pending or 0
                                self._take(msg, prefix, owners, members, partitions, leaving, ttls)
                    finally:
                        with anyio.CancelScope(shield=True), contextlib.suppress(*KV_FAILURES):
                            await pull.unsubscribe()
        finally:
            if consumer is not None:
                # Within the read's bound (a little past it after a timeout): a consumer not
                # deleted goes at its inactive threshold anyway.
                left_to_delete = max(0.1, deadline - anyio.current_time())
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(left_to_delete),
                    contextlib.suppress(*KV_FAILURES),
                ):
                    await js.delete_consumer(stream, consumer.name)
        return TableView(owners, members, partitions, leaving, ttls)

    @staticmethod
    def _take(
        msg: Msg,
        prefix: str,
        owners: dict[int, str],
        members: set[str],
        partitions: dict[str, int],
        leaving: set[str],
        ttls: dict[str, float],
    ) -> None:
        """Add one entry of the bucket to the view (a deletion adds nothing)."""
        headers = msg.headers or {}
        if headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers:
            return
        key = msg.subject[len(prefix) :]
        if key.startswith(_MEMBER):
            member = key[len(_MEMBER) :]
            members.add(member)
            count = msg.data
            if count.endswith(_LEAVING):
                leaving.add(member)
                count = count[: -len(_LEAVING)]
            if count.isdigit():
                partitions[member] = int(count)
            with contextlib.suppress(ValueError):
                ttls[member] = float(headers.get(_TTL_HEADER, ""))
        elif key.startswith(_PART) and msg.data:
            try:
                owners[int(key[len(_PART) :])] = msg.data.decode()
            except (ValueError, UnicodeDecodeError):
                logger.warning("lease table: %r is not a lease, left alone", key)
