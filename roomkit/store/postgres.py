"""``PostgresStore``: the read model in PostgreSQL through an asyncpg pool (``roomkit[postgres]``).

The kit's source of truth is its event log; this store is what its queries read, kept by the
store projection. It suits processes that share one read model, or read models that must
outlive a process and be queried with SQL.

Each kind of record has its table (``rooms``, ``events``, ``idempotency``, ``bindings``,
``participants``, ``identities``, ``identity_addresses``, ``tasks``, ``observations``,
``read_markers``, ``position``, each name preceded by ``table_prefix``): the model's JSON in a
``data`` column, the columns the queries look things up by, and an ``ord`` column numbering
rows as they were first added (the order listings keep; an upsert keeps a row's number).

- ``data`` is of type ``json``, not ``jsonb``: ``jsonb`` refuses a NUL character, which a
  message may hold, and rewrites numbers (``1.5e300`` becomes an integer that no longer equals
  it). A room's counters, which every message changes, have columns of their own.
- ``data`` goes in and comes out as text (``$n::text::json``, ``data::text``, a column the
  cast keeps the name of): a pool given with a codec for ``json`` (as asyncpg's documentation
  sets one up) wrote a model's JSON as a JSON string, and read rows back as dicts.
- Text PostgreSQL cannot hold (a NUL character, a lone surrogate) can still be an id or a key:
  such a character, and the backslash, are written ``\\uXXXX`` in the key columns.
- A key longer than ``_LONGEST_KEY`` bytes as written (ids and keys come from outside: a
  webhook's message id, a sender's address) is held as a backslash and its SHA-256: a B-tree
  index takes at most some 2,700 bytes a row, and past that the record failed, and its message
  or participant was missing from the tables. Where a query returns such a column, the id is
  read back from the row's ``data``. Tables written by an earlier version may hold such keys
  as written (those of 1,000 to some 2,700 bytes), which are not found any more: rebuild
  them after upgrading (``kit.rebuild_store()``), and write such identities again.
- ``position`` holds the log position the tables hold every record up to: each record goes in
  with it in one transaction (``apply_record``), so the kits of several processes sharing the
  tables apply each record once, and a kit starting takes the tables up from there. Its row
  missing (an operator's ``TRUNCATE``), the tables hold nothing of the log: the next record
  empties them, puts the row back and the kit applies the log again from its start. The row
  also keeps the timestamp of the record at that position (``record_position``,
  ``record_time``): a kit starting on a log that has another record there, or none there
  nor after it (a stream deleted and made again, or purged), empties the tables and fills
  them from its log (a record the stream's limits dropped leaves later ones: kept).
- The schema has a version, ``_SCHEMA_VERSION``, kept as the comment of the ``position``
  table. Tables made before the position's row kept its record (``_RECORD_COLUMNS``) get
  those two nullable columns as they open, and keep their version: a RoomKit that never
  names them goes on using the tables (its processes restart during a rolling upgrade, or
  after a rollback). Tables of another version (or of a RoomKit that kept none) are
  refused with ``StoreSchemaError``, never used: each record failed on them and was
  skipped, while its caller was answered. Upgrading means dropping the tables the log
  rebuilds; the kit then fills them again from its event log.

The tables are RoomKit's own (prefixed ``roomkit_`` by default); RoomKit 0.3.0's tables, where
its store was the source of truth, are not read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import anyio
from pydantic import BaseModel, TypeAdapter

from roomkit.core._caller_context import KIT_MARKS
from roomkit.errors import RoomKitError, StoreUnavailableError
from roomkit.models._json import enveloped_event_fields, event_json, model_json
from roomkit.models.channel import ChannelBinding
from roomkit.models.event import RoomEvent
from roomkit.models.identity import Identity
from roomkit.models.participant import Participant
from roomkit.models.room import Room
from roomkit.models.task import Observation, Task
from roomkit.store._arguments import check_identity, check_link
from roomkit.store._stored_events import stored_event
from roomkit.store.base import ConversationStore, StorePositionLost, page_size

__all__ = ["PostgresStore", "StoreClosedError", "StoreSchemaError"]

logger = logging.getLogger("roomkit.store.postgres")

M = TypeVar("M", bound=BaseModel)
_Identified = Room | RoomEvent | Identity

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_BIGINT_MAX = 2**63 - 1

# The schema's version: one more whenever the schema below changes so that a RoomKit of the
# version before cannot use it (tables of another version are refused, see _check_version).
# Columns that a RoomKit of the same version not knowing them leaves alone are added
# instead (_RECORD_COLUMNS).
_SCHEMA_VERSION = 1
_VERSIONED = f"RoomKit schema {_SCHEMA_VERSION}"  # the position table's comment
_VERSION_COMMENT = re.compile(r"RoomKit schema (\d+)")

# The schema, with {p} for the table prefix and {v} for its version's comment. Creating it twice
# changes nothing.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}rooms (
    id text PRIMARY KEY,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    organization_id text,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    event_count numeric NOT NULL,
    latest_index numeric NOT NULL,
    last_activity text,
    data json NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}rooms_ord ON {p}rooms (ord);
CREATE INDEX IF NOT EXISTS {p}rooms_created ON {p}rooms (created_at DESC, ord DESC);
CREATE TABLE IF NOT EXISTS {p}events (
    id text PRIMARY KEY,
    room_id text NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    visibility text NOT NULL,
    data json NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}events_room ON {p}events (room_id, ord);
CREATE TABLE IF NOT EXISTS {p}idempotency (
    room_id text NOT NULL,
    key text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (room_id, key)
);
CREATE TABLE IF NOT EXISTS {p}bindings (
    room_id text NOT NULL,
    channel_id text NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    channel_type text NOT NULL,
    participant_id text,
    data json NOT NULL,
    PRIMARY KEY (room_id, channel_id)
);
CREATE INDEX IF NOT EXISTS {p}bindings_channel ON {p}bindings (channel_id);
CREATE INDEX IF NOT EXISTS {p}bindings_participant ON {p}bindings (participant_id)
    WHERE participant_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS {p}participants (
    room_id text NOT NULL,
    id text NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    data json NOT NULL,
    PRIMARY KEY (room_id, id)
);
CREATE INDEX IF NOT EXISTS {p}participants_id ON {p}participants (id);
CREATE TABLE IF NOT EXISTS {p}identities (
    id text PRIMARY KEY,
    data json NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}identity_addresses (
    channel_type text NOT NULL,
    address text NOT NULL,
    identity_id text NOT NULL,
    PRIMARY KEY (channel_type, address)
);
CREATE TABLE IF NOT EXISTS {p}tasks (
    id text PRIMARY KEY,
    room_id text NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    status text NOT NULL,
    data json NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}tasks_room ON {p}tasks (room_id, ord);
CREATE TABLE IF NOT EXISTS {p}observations (
    id text PRIMARY KEY,
    room_id text NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY,
    data json NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}observations_room ON {p}observations (room_id, ord);
CREATE TABLE IF NOT EXISTS {p}read_markers (
    room_id text NOT NULL,
    channel_id text NOT NULL,
    event_ord bigint NOT NULL,
    PRIMARY KEY (room_id, channel_id)
);
CREATE TABLE IF NOT EXISTS {p}position (
    id int PRIMARY KEY CHECK (id = 1),
    position bigint NOT NULL,
    record_position bigint,
    record_time double precision
);
INSERT INTO {p}position (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
COMMENT ON TABLE {p}position IS '{v}';
"""

# Columns added to schema 1 after its first release (see applied_record). Tables made before
# get them as they open, empty (a kit then checks the position alone, once), which takes no
# rewrite of the table. A RoomKit that does not know them names the position's columns it
# writes, so it goes on using the tables: their version stays 1 (one more refused it, and
# a process of it could not restart once one of this version had opened them).
_RECORD_COLUMNS = ["record_position", "record_time"]
_ADD_RECORD_COLUMNS = """ALTER TABLE {p}position ADD COLUMN IF NOT EXISTS record_position bigint,
    ADD COLUMN IF NOT EXISTS record_time double precision"""

# Everything the log rebuilds (``clear``); identities are the application's.
_REBUILT = (
    "rooms",
    "events",
    "idempotency",
    "bindings",
    "participants",
    "tasks",
    "observations",
    "read_markers",
    "position",
)
_TABLES = (*_REBUILT, "identities", "identity_addresses")

_POSITION = "SELECT position FROM {position} WHERE id = 1"
# The position and the timestamp of the record at it: only if the kit that moved it there
# gave it (a RoomKit that does not know the columns, sharing the tables, moves the position
# alone).
_RECORD = """SELECT position, CASE WHEN record_position = position THEN record_time END
FROM {position} WHERE id = 1"""
# The timestamp of the record at a position given as $1 (see applied_record).
_RECORD_TIME = "SELECT record_time FROM {position} WHERE id = 1 AND record_position = $1"

# Whether the position's table exists, its comment (the schema's version), and whether it has
# the columns given as $2 (not dropped).
_FOUND = """SELECT to_regclass($1) IS NOT NULL, obj_description(to_regclass($1), 'pg_class'),
(SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND NOT attisdropped
    AND attname = ANY($2::text[])) = cardinality($2::text[])"""

# The connection of the record (or the rebuild) being applied, and its store: the store's
# calls made meanwhile go into its transaction.
_applying: ContextVar[tuple[PostgresStore, Any] | None] = ContextVar(
    "roomkit_postgres_applying", default=None
)

KIT_MARKS.append(_applying)  # the kit's own: see roomkit.core._caller_context

_DATETIME = TypeAdapter(datetime)  # a time as the models' JSON writes it


class _Json(str):
    """A model's JSON as a statement argument: written as it is (``_key`` leaves it alone)."""

    __slots__ = ()


# Characters a key column cannot hold as they are (NUL, lone surrogates), and the backslash
# that introduces their escapes.
_UNHOLDABLE = re.compile(r"[\\\x00\ud800-\udfff]")
_ESCAPE = re.compile(r"\\u([0-9a-f]{4})")


def _key(text: str) -> str:
    """``text`` as a key column holds it (see the module docstring)."""
    return _UNHOLDABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _unkey(text: str) -> str:
    """The text a key column's value stands for."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\" in text else text


# Keys longer than this, in UTF-8 as written, are held by their digest (module docstring):
# two of them, the most a key of these tables has, fit in an index row.
_LONGEST_KEY = 1000
_DIGEST = "\\sha256:"
# Escaped text has no surrogates: 4 bytes a character at most.
_SHORT_ENOUGH = _LONGEST_KEY // 4


class _Held(str):
    """Text a key column holds as it is: ``_arguments`` escapes every other ``str``."""

    __slots__ = ()


def _held(text: str) -> str:
    """``text`` as a key column holds it: escaped (``_key``), and by its digest if that is
    too long for an index. The digest form starts with a lone backslash, which no escaped
    text holds (``_key`` writes each backslash ``\\u005c``), so no text, however crafted,
    stands for another."""
    written = _key(text)
    if len(written) <= _SHORT_ENOUGH:
        return written
    raw = written.encode()
    if len(raw) <= _LONGEST_KEY:
        return written
    return _DIGEST + hashlib.sha256(raw).hexdigest()


def _arguments(args: Sequence[Any]) -> list[Any]:
    return [_held(a) if type(a) is str else _other_argument(a) for a in args]


def _other_argument(value: Any) -> Any:
    """An argument that is not a plain ``str``: escaped too if it is an app's ``str``
    subclass (an id type, a ``StrEnum``): sent as it was, it missed the escaped row it stands
    for, and a NUL in it failed in the driver."""
    if isinstance(value, str) and not isinstance(value, _Held | _Json):
        return _held(str.__str__(value))  # the text itself, whatever its str() says
    return value


def _unavailable() -> tuple[type[BaseException], ...]:
    """asyncpg's failures that trying again later can cure: no server, a lost connection, a
    server starting or shutting down, no connection slot left, a pooled connection left in
    the middle of an operation by a lost one, a transaction the server rolled back to break
    a deadlock or a serialization conflict; a lock not had within ``lock_timeout`` (a
    migration holding a table), a statement cancelled (``statement_timeout``, an admin's
    ``pg_cancel_backend``), a database read-only for a while (a failover), one out of disk
    or memory. Taken for a record that cannot be stored, such a record was skipped for good
    while its caller was answered."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs

    return (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        asyncpg.TooManyConnectionsError,
        asyncpg.InternalClientError,
        asyncpg.TransactionRollbackError,
        asyncpg.LockNotAvailableError,
        asyncpg.QueryCanceledError,
        asyncpg.ReadOnlySQLTransactionError,
        asyncpg.InsufficientResourcesError,
    )


@asynccontextmanager
async def _lost_as_unavailable(conn: Any) -> AsyncIterator[None]:
    """``StoreUnavailableError`` for any failure of a transaction whose connection died: its
    end then fails with asyncpg's ``InterfaceError`` ("the underlying connection is
    closed"), which would hide the loss, and the record would be skipped, not tried again."""
    try:
        yield
    except StoreUnavailableError:
        raise
    except Exception as exc:
        if _closed(conn):
            raise StoreUnavailableError(f"PostgreSQL connection lost: {exc!r}") from exc
        raise


def _closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except Exception:
        # A pool's connection the pool took back once it saw it lost answers with an
        # InterfaceError ("released back to the pool") even to this.
        return True


@contextmanager
def _translated(pool_ours: bool = True) -> Iterator[None]:
    """``StoreUnavailableError`` for a failure that trying again later can cure;
    ``TypeError`` for an argument of the wrong type (an id given as a number), which the
    driver refuses before sending anything; ``StoreClosedError`` for a pool closing under the
    call when the store closes it (``pool_ours``): a pool the app gave and closed itself is
    not opened again by ``init()``, and its calls fail as asyncpg says."""
    try:
        yield
    except _unavailable() as exc:
        raise StoreUnavailableError(f"PostgreSQL cannot be reached: {exc!r}") from exc
    except Exception as exc:
        if _bad_argument(exc):
            raise TypeError(f"PostgresStore: {exc}") from exc
        if pool_ours and _pool_closing(exc):
            # close() while the call waited for one of the pool's connections: asyncpg's own
            # InterfaceError was taken for a record that cannot be stored, and the store
            # projection skipped the record for good instead of holding it until init().
            raise StoreClosedError(
                f"PostgresStore was closed under the call (init() opens it again): {exc}"
            ) from exc
        raise


def _pool_closing(error: Exception) -> bool:
    """Whether asyncpg refused a call because its pool is closing or closed (its
    ``InterfaceError`` has no subclass for it: its message alone says so)."""
    import asyncpg

    return isinstance(error, asyncpg.InterfaceError) and str(error) in (
        "pool is closing",
        "pool is closed",
    )


async def _close_quietly(pool: Any) -> None:
    """Close a pool whose store failed to open: its own failure to close (which terminates
    it) would hide the error that says why the store failed."""
    try:
        await pool.close()
    except Exception:
        logger.debug("PostgresStore: the pool of a failed init() did not close", exc_info=True)


def _bad_argument(error: Exception) -> bool:
    """Whether the driver refused an argument of the wrong type (before sending anything)."""
    import asyncpg

    return isinstance(error, asyncpg.DataError) and str(error).startswith(
        "invalid input for query argument"
    )


class StoreSchemaError(RoomKitError):
    """The database holds RoomKit tables of another schema version than this RoomKit's (or
    made before versions were kept): the store refuses them rather than fail on every record.
    The message says which tables to drop; the kit then fills them again from its event log.
    """


def _check_held(held: int, after: int) -> None:
    """Raise ``StorePositionLost`` if the tables hold less of the log than the kit saw them
    hold (``after``): a failover to a replica behind the primary, or commits lost with
    ``synchronous_commit`` off. The next record would move the position past the lost ones
    for good."""
    if held < after:
        raise StorePositionLost(held)


def _load(model: type[M], data: str) -> M:
    """The model a row's ``data`` holds.

    Raises:
        StoredEventError: an event that does not validate (see ``stored_event``).
    """
    if model is RoomEvent:
        # The only model stored as its log record holds it, unvalidated (add_event_json).
        return cast(M, stored_event(data))
    return model.model_validate_json(data)


def _json(model: BaseModel) -> _Json:
    return _Json(model_json(model).decode())


def _aware(moment: datetime) -> datetime:
    """A naive time read as UTC (the column is ``timestamptz``, which orders rooms): one
    past what a UTC ``datetime`` holds (``9999-12-31T23:00-05:00``) as the last or the first
    one, which it sorts as (the room's data keeps it as given). Sent as is, the driver
    refused it, and the room was missing from the tables."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        aware.astimezone(UTC)
    except OverflowError:
        edge = datetime.max if aware.year == datetime.max.year else datetime.min
        return edge.replace(tzinfo=UTC)
    return aware


def _page(offset: int, limit: int) -> tuple[int, int]:
    """SQL ``OFFSET``/``LIMIT`` for a page: negative values as 0, huge ones as the end.

    Raises:
        TypeError: either is not an integer (PostgreSQL took 1.5 as 1, the driver refused
            None deep inside).
    """
    return min(page_size("offset", offset), _BIGINT_MAX), min(
        page_size("limit", limit), _BIGINT_MAX
    )


def _activity(moment: datetime | None) -> _Json | None:
    """A room's last activity as its column holds it: the JSON string the model writes."""
    return None if moment is None else _Json(_DATETIME.dump_json(moment).decode())


# ``data::text`` (see the module docstring) is computed for each row the query reads, those an
# ``OFFSET`` skips or a sort leaves out included: a page is taken first, in a subquery, and
# its rows alone are cast (casting a page at offset 1,000 took 60 % longer).
_ROOM_COLUMNS = "data::text, event_count, latest_index, last_activity"


def _room(row: Any) -> Room:
    """The room of a row with ``_ROOM_COLUMNS``: its JSON with the counters of their own
    columns (``count_event`` changes those alone)."""
    room = _load(Room, row["data"])
    room.event_count = int(row["event_count"])
    room.latest_index = int(row["latest_index"])
    activity = row["last_activity"]
    last = None if activity is None else _DATETIME.validate_json(activity)
    if last != room.timers.last_activity_at:
        room.timers = room.timers.model_copy(update={"last_activity_at": last})
    return room


class StoreClosedError(StoreUnavailableError, RuntimeError):
    """The store was closed (``init()`` opens it again).

    A ``StoreUnavailableError``: the kit's store projection holds the records committed
    meanwhile until the store is open again (as a ``RuntimeError`` alone, it skipped them,
    and the read model lacked those messages for good); a ``RuntimeError``, as before.
    """


class PostgresStore(ConversationStore):
    """A ``ConversationStore`` in PostgreSQL; see the module docstring.

    Args:
        dsn: a libpq connection string or URI (``postgresql://user@host/db``); ``None``: the
            ``PG*`` environment variables, as libpq reads them.
        pool: an asyncpg pool to use instead; the store never closes it.
        table_prefix: put before every table name (lowercase letters, digits, ``_``), so
            several stores can share a database.

    ``init()`` opens the pool (unless given one) and creates the tables if missing; the first
    call that needs the database does it if nobody did. ``close()`` closes a pool the store
    opened; calls made after it raise ``StoreClosedError`` (a ``RuntimeError``) until
    ``init()`` opens it again: a kit's read model takes what was recorded meanwhile then. As
    an async context manager, the store does both.

    A database that cannot be reached makes calls raise ``StoreUnavailableError``.

    Raises:
        ValueError: ``table_prefix`` is not a valid prefix.
    """

    def __init__(
        self, dsn: str | None = None, pool: Any = None, *, table_prefix: str = "roomkit_"
    ) -> None:
        if not _PREFIX.fullmatch(table_prefix):
            raise ValueError(
                f"table_prefix {table_prefix!r}: up to 40 lowercase letters, digits and _, "
                "not starting with a digit"
            )
        self._dsn = dsn
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._prefix = table_prefix
        self._ready = False
        self._closed = False
        self._following = False  # the last record was another process's (apply_record)
        # Inside rebuilding(): its connection, and the position its records reached with the
        # timestamp of the record there.
        self._rebuild: tuple[Any, int, float | None] | None = None
        self._init_lock = anyio.Lock()
        self._t = {name: f"{table_prefix}{name}" for name in _TABLES}

    # -- lifecycle -------------------------------------------------------------------------------

    async def init(self) -> None:
        """Open the pool (unless one was given) and create the tables if missing.

        Raises:
            ImportError: asyncpg is not installed (``pip install roomkit[postgres]``).
            RuntimeError: not on asyncio (asyncpg runs on asyncio only; anyio's trio
                backend fails here rather than deep inside asyncpg).
            StoreUnavailableError: the database cannot be reached.
            StoreClosedError: ``close()`` was called before it was done.
            StoreSchemaError: the tables are of another schema version (see the module
                docstring).
            asyncpg.PostgresError: the database refuses (no right to create the tables...).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "PostgresStore runs on asyncio only (asyncpg is asyncio's): run it with "
                "anyio's asyncio backend"
            ) from None
        async with self._init_lock:
            if self._ready:
                return
            self._closed = False
            made = None  # the pool opened here, if any
            if self._pool is None:
                try:
                    import asyncpg
                except ImportError as exc:
                    raise ImportError(
                        "PostgresStore needs asyncpg: pip install 'roomkit[postgres]'"
                    ) from exc
                with _translated():
                    made = await asyncpg.create_pool(self._dsn, min_size=1)
                if self._closed:  # close() came meanwhile: nobody else would close it
                    await made.close()
                    raise StoreClosedError("PostgresStore was closed as it opened")
                self._pool = made
            try:
                with _translated():
                    await self._create_tables()
            except Exception as exc:
                if self._closed:  # the pool closed under it
                    raise StoreClosedError("PostgresStore was closed as it opened") from exc
                if made is not None:
                    # Not ready, the store is not closed by its owner (``async with`` never
                    # got to its exit): the pool, and its connections, were left to nobody.
                    # The next call opens one again.
                    self._pool = None
                    await _close_quietly(made)
                raise
            if self._closed:  # ready, it took calls with no pool to send them to
                raise StoreClosedError("PostgresStore was closed as it opened")
            self._ready = True

    async def _create_tables(self) -> None:
        """Create the tables unless they exist; refuse tables of another schema version.

        Existing tables are left alone without a statement that locks them: ``CREATE INDEX
        IF NOT EXISTS`` takes a lock on its table even when the index exists, and a kit
        starting next to kits applying records deadlocked with them (its transaction held
        those locks and waited for the position's row, which theirs held while waiting to
        write into its tables).
        """
        position = self._t["position"]
        async with self._pool.acquire() as conn:
            # The schema is created in one transaction: its last table, with its version,
            # means all of it.
            _, version, complete = await conn.fetchrow(_FOUND, position, _RECORD_COLUMNS)
            if version == _VERSIONED and complete:
                return
            # Two processes starting together: CREATE ... IF NOT EXISTS can collide. The lock
            # is the session's, taken before the transaction begins: in a transaction begun
            # before another store committed the tables, to_regclass still missed them once
            # it had (and they were refused as an older RoomKit's).
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", self._prefix)
            try:
                async with conn.transaction():
                    made, version, complete = await conn.fetchrow(
                        _FOUND, position, _RECORD_COLUMNS
                    )
                    # Tables without the position's are older still: the schema created next
                    # to them would pass them for its own.
                    if not made and not await conn.fetchval(
                        "SELECT bool_or(to_regclass(t) IS NOT NULL) FROM unnest($1::text[]) t",
                        [self._t[name] for name in _REBUILT],
                    ):
                        await conn.execute(_SCHEMA.format(p=self._prefix, v=_VERSIONED))
                        return
                    if made and version == _VERSIONED and not complete:
                        await self._add_record_columns(conn)
                        return
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self._prefix)
            self._check_version(version)

    async def _add_record_columns(self, conn: Any) -> None:
        """Add ``_RECORD_COLUMNS`` to tables made without them, in the transaction (and under
        the lock) that found them: their rows are the log's projection as it is, and
        refused, they would have to be dropped and filled again from the whole log."""
        logger.info(
            "PostgresStore: the tables prefixed %r keep the timestamp of the record at their "
            "position from now on (columns %s added)",
            self._prefix,
            ", ".join(_RECORD_COLUMNS),
        )
        await conn.execute(_ADD_RECORD_COLUMNS.format(p=self._prefix))

    def _check_version(self, comment: str | None) -> None:
        """Refuse tables of another schema version (``comment``: the position table's).

        Raises:
            StoreSchemaError: their version is not ``_SCHEMA_VERSION``.
        """
        if comment == _VERSIONED:
            return
        kept = comment and _VERSION_COMMENT.fullmatch(comment)
        found = f"of schema version {kept[1]}" if kept else "of a RoomKit that kept no version"
        rebuilt = ", ".join(self._t[name] for name in _REBUILT)
        raise StoreSchemaError(
            f"PostgresStore: the tables prefixed {self._prefix!r} are {found}; this "
            f"RoomKit's schema version is {_SCHEMA_VERSION}. They are a projection of the "
            f"event log: drop them (DROP TABLE IF EXISTS {rebuilt}) and the kit fills them again "
            f"from its log as it starts. Keep {self._t['identities']} and "
            f"{self._t['identity_addresses']}: the log does not hold identities."
        )

    async def close(self) -> None:
        """Close the pool if the store opened it (a pool given to it stays open)."""
        pool, self._ready, self._closed = self._pool, False, True
        if pool is not None and self._owns_pool:
            self._pool = None
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _db(self) -> Any:
        """Where statements go: the connection of the record being applied, or the pool."""
        applying = _applying.get()
        if applying is not None and applying[0] is self:
            return applying[1]
        if not self._ready:
            if self._closed:
                # Opening a pool again here would leave it to nobody to close.
                raise StoreClosedError("PostgresStore is closed (init() opens it again)")
            await self.init()
        return self._pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A connection in a transaction (nested in the record's, if one is being applied),
        its failures translated."""
        with _translated(self._owns_pool or self._closed):
            applying = _applying.get()
            if applying is not None and applying[0] is self:
                conn = applying[1]
                async with _lost_as_unavailable(conn), conn.transaction():
                    yield conn
                return
            pool = await self._db()
            async with pool.acquire() as conn, _lost_as_unavailable(conn), conn.transaction():
                yield conn

    async def _run(self, method: str, query: str, *args: Any, conn: Any = None) -> Any:
        """Run a statement (``{table}`` names filled in, key arguments escaped) on ``conn`` or
        where ``_db`` says."""
        with _translated(self._owns_pool or self._closed):
            target = conn if conn is not None else await self._db()
            return await getattr(target, method)(query.format(**self._t), *_arguments(args))

    async def _fetch(self, query: str, *args: Any, conn: Any = None) -> list[Any]:
        return list(await self._run("fetch", query, *args, conn=conn))

    async def _fetchval(self, query: str, *args: Any, conn: Any = None) -> Any:
        return await self._run("fetchval", query, *args, conn=conn)

    async def _one(self, model: type[M], query: str, *args: Any) -> M | None:
        """The model of the ``data`` the query selects, or None."""
        data = await self._fetchval(query, *args)
        return None if data is None else _load(model, data)

    async def _all(self, model: type[M], query: str, *args: Any) -> list[M]:
        """The models of the ``data`` the query's rows hold, in its order."""
        return [_load(model, row["data"]) for row in await self._fetch(query, *args)]

    async def _execute(self, query: str, *args: Any, conn: Any = None) -> str:
        result: str = await self._run("execute", query, *args, conn=conn)
        return result

    async def _id_of(
        self, column: str, table: str, model: type[_Identified], conn: Any = None
    ) -> str:
        """The id a key column's value stands for: a digest's, read from the ``data`` of the
        ``table`` row it is the id of (or the digest, if that row is gone)."""
        if not column.startswith(_DIGEST):
            return _unkey(column)
        data = await self._fetchval(
            f"SELECT data::text FROM {{{table}}} WHERE id = $1", _Held(column), conn=conn
        )
        return column if data is None else _load(model, data).id

    # -- the log's position ----------------------------------------------------------------------

    async def applied_position(self) -> int:
        """The log position up to which the tables hold every record a kit applied (0 if the
        position's row is missing: see ``_restore_position``)."""
        position: int | None = await self._fetchval(_POSITION)
        # None failed the kit's start with a TypeError.
        return 0 if position is None else position

    async def applied_record(self) -> tuple[int, float | None]:
        """``applied_position`` and the timestamp of the record at it (``None`` if the kit
        that applied it gave none, or one that does not keep it moved the position there).

        A subclass's ``applied_position`` is the position: read here in the same query, the
        kit starting no longer consulted an override of it.
        """
        applied_position = getattr(self.applied_position, "__func__", None)
        if applied_position is not PostgresStore.applied_position:
            position = await self.applied_position()
            time: float | None = await self._fetchval(_RECORD_TIME, position)
            return position, time
        row = await self._run("fetchrow", _RECORD)
        if row is None:
            return 0, None  # see applied_position
        time = row[1]
        return row[0], time

    async def _restore_position(self, conn: Any) -> None:
        """Put back a missing position row (an operator's ``TRUNCATE`` of the tables), at 0,
        and empty the tables the log rebuilds in the same transaction: without the row, what
        they hold of the log is unknown, and applying the log again over rows left in them
        would count their messages twice. Without it, ``apply_record`` skipped every record
        (its update found no row) and the read model stayed empty for good.

        Two processes doing it at once: the second one's insert waits for the first one's
        transaction, then finds the row and changes nothing."""
        restored = await self._fetchval(
            """INSERT INTO {position} (id, position) VALUES (1, 0)
            ON CONFLICT (id) DO NOTHING RETURNING position""",
            conn=conn,
        )
        if restored is not None:
            await self._empty(conn)

    async def _advance(self, position: int, timestamp: float | None, conn: Any) -> int | None:
        """Move the position to ``position`` (the record there of ``timestamp``) if it is
        below; return the position before, or None if it was there or past it (or the row is
        missing)."""
        # The position before the update (the self-join reads the row as it was).
        held: int | None = await self._fetchval(
            """UPDATE {position} AS p
            SET position = $1, record_position = $1, record_time = $2 FROM {position} AS o
            WHERE p.id = 1 AND o.id = 1 AND p.position < $1 RETURNING o.position""",
            position,
            timestamp,
            conn=conn,
        )
        return held

    async def apply_record(
        self,
        position: int,
        apply: Callable[[], Awaitable[None]],
        *,
        after: int = 0,
        timestamp: float | None = None,
    ) -> bool:
        """Apply a log record and keep ``position`` (and the record's ``timestamp``, see
        ``applied_record``), in one transaction; skip a record at or below the kept position
        (a kit of another process sharing these tables applied it).

        The position's row is locked from the start of the transaction: the kits of several
        processes apply each record once, in log order. A store whose last record another
        process had applied looks at the position first, without a lock: the kit that follows
        another one through the log skips its records in one statement, instead of queueing
        for the row behind it.
        """
        rebuild = self._rebuild
        if rebuild is not None and _applying.get() == (self, rebuild[0]):
            return await self._apply_rebuilt(position, apply, after, timestamp)
        if self._following:
            held = await self.applied_position()
            _check_held(held, after)
            if held >= position:
                return False
        async with self._transaction() as conn:
            before = await self._advance(position, timestamp, conn)
            # Changing nothing, the update may have found no row (an operator emptied the
            # tables): looked for here only, the statement of every record stays the same.
            if before is None and await self._fetchval(_POSITION, conn=conn) is None:
                await self._restore_position(conn)
                before = await self._advance(position, timestamp, conn)
            self._following = before is None
            if before is None:
                return False  # it holds this record: more than ``after``
            _check_held(before, after)  # raising undoes the update with the transaction
            token = _applying.set((self, conn))
            try:
                await apply()
            finally:
                _applying.reset(token)
        return True

    async def _apply_rebuilt(
        self,
        position: int,
        apply: Callable[[], Awaitable[None]],
        after: int,
        timestamp: float | None,
    ) -> bool:
        """``apply_record`` inside ``rebuilding()``, whose transaction holds the position's
        row: the position is written once, as it commits. An update of that row per record
        made a rebuild quadratic (each walked the row versions the others left in the one
        transaction: 51 s for 8,000 records, 13 s for 4,000)."""
        assert self._rebuild is not None
        conn, held, _ = self._rebuild
        if held >= position:
            return False
        _check_held(held, after)
        async with self._transaction():  # a savepoint: a record that fails undoes itself
            await apply()
        self._rebuild = (conn, position, timestamp)
        return True

    async def clear(self) -> None:
        """Empty every table the log rebuilds; identities stay (see ``ConversationStore``)."""
        # DELETE, not TRUNCATE: inside a rebuild's transaction, the other processes' reads
        # still see the rows until it commits (TRUNCATE would lock them out).
        async with self._transaction() as conn:
            await self._empty(conn)
            await self._execute(
                """UPDATE {position} SET position = 0, record_position = NULL,
                record_time = NULL WHERE id = 1""",
                conn=conn,
            )
        if self._rebuild is not None:
            self._rebuild = (self._rebuild[0], 0, None)

    async def _empty(self, conn: Any) -> None:
        """Delete the rows of the tables the log rebuilds, the position's row excepted."""
        for name in _REBUILT:
            if name != "position":
                await self._execute(f"DELETE FROM {{{name}}}", conn=conn)

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[None]:
        """Make a rebuild one transaction that holds the position's row: the kits of other
        processes sharing the tables read them as they were until it commits, and wait to
        apply records (then skip those it applied)."""
        async with self._transaction() as conn:
            lock = f"{_RECORD} FOR UPDATE"
            held = await self._run("fetchrow", lock, conn=conn)
            if held is None:  # no row to lock, nor to write the position to as it commits
                await self._restore_position(conn)
                held = await self._run("fetchrow", lock, conn=conn)
            token = _applying.set((self, conn))
            self._rebuild = (conn, held[0], held[1])
            try:
                yield
                _, position, timestamp = self._rebuild
                await self._execute(
                    """UPDATE {position} SET position = $1, record_position = $1,
                    record_time = $2 WHERE id = 1""",
                    position,
                    timestamp,
                    conn=conn,
                )
            finally:
                self._rebuild = None
                _applying.reset(token)

    # -- rooms -----------------------------------------------------------------------------------

    async def create_room(self, room: Room) -> Room:
        """Store a room (replacing one with the same id, which keeps its place)."""
        return await self._put_room(room)

    async def get_room(self, room_id: str) -> Room | None:
        """Return the room, or ``None``."""
        rows = await self._fetch(f"SELECT {_ROOM_COLUMNS} FROM {{rooms}} WHERE id = $1", room_id)
        return _room(rows[0]) if rows else None

    async def update_room(self, room: Room) -> Room:
        """Replace the room (an upsert), counters included."""
        return await self._put_room(room)

    async def _put_room(self, room: Room) -> Room:
        await self._execute(
            """INSERT INTO {rooms} (id, organization_id, status, created_at,
                event_count, latest_index, last_activity, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json)
            ON CONFLICT (id) DO UPDATE SET organization_id = EXCLUDED.organization_id,
                status = EXCLUDED.status, created_at = EXCLUDED.created_at,
                event_count = EXCLUDED.event_count, latest_index = EXCLUDED.latest_index,
                last_activity = EXCLUDED.last_activity, data = EXCLUDED.data""",
            room.id,
            room.organization_id,
            str(room.status),
            _aware(room.created_at),
            room.event_count,
            room.latest_index,
            _activity(room.timers.last_activity_at),
            _json(room),
        )
        return room

    async def count_event(self, room_id: str, index: int, activity_at: datetime | None) -> None:
        """Count one more event in the room, in one statement on its counters' columns
        (unknown rooms are ignored)."""
        await self._execute(
            """UPDATE {rooms} SET event_count = event_count + 1,
                latest_index = GREATEST(latest_index, $2::numeric),
                last_activity = COALESCE($3, last_activity)
            WHERE id = $1""",
            room_id,
            index,
            _activity(activity_at),
        )

    async def delete_room(self, room_id: str) -> bool:
        """Delete the room and everything stored in it; return whether the room existed (a
        room never created keeps what was stored in it, as in 0.3.0)."""
        async with self._transaction() as conn:
            result = await self._execute("DELETE FROM {rooms} WHERE id = $1", room_id, conn=conn)
            if result == "DELETE 0":
                return False
            for name in (
                "events",
                "idempotency",
                "bindings",
                "participants",
                "tasks",
                "observations",
                "read_markers",
            ):
                await self._execute(
                    f"DELETE FROM {{{name}}} WHERE room_id = $1", room_id, conn=conn
                )
        return True

    async def list_rooms(self, offset: int = 0, limit: int = 50) -> list[Room]:
        """Return one page of rooms, in creation order."""
        start, count = _page(offset, limit)
        # The page first, then its columns (see _ROOM_COLUMNS).
        rows = await self._fetch(
            f"""SELECT {_ROOM_COLUMNS} FROM (
                SELECT * FROM {{rooms}} ORDER BY ord OFFSET $1 LIMIT $2
            ) page ORDER BY ord""",
            start,
            count,
        )
        return [_room(row) for row in rows]

    async def find_rooms(
        self,
        organization_id: str | None = None,
        status: str | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[Room]:
        """Return the rooms matching every filter, in creation order.

        Organization and status are filtered in SQL; metadata in Python, with Python's
        equality (``1 == 1.0 == True``), as ``InMemoryStore`` does.
        """
        rows = await self._fetch(
            f"""SELECT {_ROOM_COLUMNS} FROM {{rooms}}
            WHERE ($1::text IS NULL OR organization_id = $1)
              AND ($2::text IS NULL OR status = $2)
            ORDER BY ord""",
            organization_id,
            None if status is None else str(status),
        )
        wanted = list(metadata_filter.items()) if metadata_filter else []
        rooms = [_room(row) for row in rows]
        return [
            room
            for room in rooms
            if all(k in room.metadata and room.metadata[k] == v for k, v in wanted)
        ]

    async def find_latest_room(
        self,
        participant_id: str,
        channel_type: str | None = None,
        status: str | None = None,
    ) -> Room | None:
        """Return the newest room the participant is in; see ``ConversationStore``.

        Ties on ``created_at`` go to the room created last; a naive ``created_at`` is read as
        UTC.
        """
        rows = await self._fetch(
            f"""SELECT {_ROOM_COLUMNS} FROM (
                SELECT * FROM {{rooms}} r
                WHERE ($3::text IS NULL OR r.status = $3)
                  AND (EXISTS (SELECT 1 FROM {{participants}} p
                               WHERE p.room_id = r.id AND p.id = $1)
                       OR EXISTS (SELECT 1 FROM {{bindings}} b
                                  WHERE b.room_id = r.id AND b.participant_id = $1
                                    AND ($2::text IS NULL OR b.channel_type = $2)))
                ORDER BY r.created_at DESC, r.ord DESC
                LIMIT 1
            ) latest""",
            participant_id,
            None if channel_type is None else str(channel_type),
            None if status is None else str(status),
        )
        return _room(rows[0]) if rows else None

    async def find_room_id_by_channel(
        self, channel_id: str, status: str | None = None
    ) -> str | None:
        """Return the first room (creation order) with the channel bound."""
        room_id: str | None = await self._fetchval(
            """SELECT r.id FROM {rooms} r JOIN {bindings} b ON b.room_id = r.id
            WHERE b.channel_id = $1 AND ($2::text IS NULL OR r.status = $2)
            ORDER BY r.ord LIMIT 1""",
            channel_id,
            None if status is None else str(status),
        )
        return None if room_id is None else await self._id_of(room_id, "rooms", Room)

    # -- events ----------------------------------------------------------------------------------

    async def add_event(self, event: RoomEvent) -> RoomEvent:
        """Append the event (replacing one with its id, in place) and record its key.

        Raises:
            ValueError: The event id is already stored in another room.
        """
        await self._put_event(
            event.id,
            event.room_id,
            event.idempotency_key,
            str(event.visibility),
            _json(event),
        )
        return event

    async def add_event_json(self, data: bytes) -> None:
        """Append an event given as its JSON, stored as it is (no model is built).

        Raises:
            ValueError: The event id is already stored in another room.
            msgspec.ValidationError: The JSON lacks an event's ``id`` or ``room_id``.
        """
        await self.add_event_envelope(b'{"event":' + data + b"}")

    async def add_event_envelope(self, data: bytes) -> None:
        """Append the event of a ``message.recorded`` payload, stored as its JSON.

        Raises:
            ValueError: The event id is already stored in another room.
            msgspec.ValidationError: The JSON has no ``event`` with an ``id`` and a ``room_id``.
        """
        keys = enveloped_event_fields(data)
        await self._put_event(
            keys.id,
            keys.room_id,
            keys.idempotency_key,
            keys.visibility,
            _Json(event_json(data).decode()),
        )

    async def _put_event(
        self,
        event_id: str,
        room_id: str,
        idempotency_key: str | None,
        visibility: str,
        data: _Json,
    ) -> None:
        # One statement: the event, and its key (the first event added with a key answers
        # for it, also once replaced by a version without it, as in InMemoryStore).
        stored = await self._fetchval(
            """WITH stored AS (
                INSERT INTO {events} (id, room_id, visibility, data)
                VALUES ($1, $2, $4, $5::text::json)
                ON CONFLICT (id) DO UPDATE SET visibility = EXCLUDED.visibility,
                    data = EXCLUDED.data
                WHERE {events}.room_id = EXCLUDED.room_id
                RETURNING id
            ), keyed AS (
                INSERT INTO {idempotency} (room_id, key, event_id)
                SELECT $2, $3, id FROM stored WHERE $3::text IS NOT NULL
                ON CONFLICT (room_id, key) DO NOTHING
            )
            SELECT id FROM stored""",
            event_id,
            room_id,
            idempotency_key or None,
            visibility,
            data,
        )
        if stored is None:
            # The room as the stored event names it (its column may hold a digest, and the
            # room's own row may be gone).
            stored_as = await self._one(
                RoomEvent, "SELECT data::text FROM {events} WHERE id = $1", event_id
            )
            room = None if stored_as is None else stored_as.room_id
            raise ValueError(f"event {event_id!r} is already stored in room {room!r}")

    async def get_event(self, event_id: str) -> RoomEvent | None:
        """Return the event, or ``None``."""
        return await self._one(
            RoomEvent, "SELECT data::text FROM {events} WHERE id = $1", event_id
        )

    async def list_events(
        self,
        room_id: str,
        offset: int = 0,
        limit: int = 50,
        visibility_filter: str | None = None,
    ) -> list[RoomEvent]:
        """Return one page of the room's timeline, oldest first."""
        start, count = _page(offset, limit)
        return await self._all(
            RoomEvent,
            # The page first, then its data (see _ROOM_COLUMNS).
            """SELECT data::text FROM (
                SELECT data, ord FROM {events}
                WHERE room_id = $1 AND ($2::text IS NULL OR visibility = $2)
                ORDER BY ord OFFSET $3 LIMIT $4
            ) page ORDER BY ord""",
            room_id,
            visibility_filter,
            start,
            count,
        )

    async def list_recent_events(self, room_id: str, limit: int = 50) -> list[RoomEvent]:
        """Return the room's ``limit`` most recent events, oldest first (one query)."""
        limit = page_size("limit", limit)
        if not limit:
            return []
        rows = await self._fetch(
            "SELECT data::text FROM {events} WHERE room_id = $1 ORDER BY ord DESC LIMIT $2",
            room_id,
            min(limit, _BIGINT_MAX),
        )
        return [_load(RoomEvent, row["data"]) for row in reversed(rows)]

    async def check_idempotency(self, room_id: str, key: str) -> bool:
        """Return whether the room has an event with this idempotency key."""
        return await self.idempotent_event_id(room_id, key) is not None

    async def idempotent_event_id(self, room_id: str, key: str) -> str | None:
        """The id of the room's first event added with idempotency ``key``, or None."""
        event_id: str | None = await self._fetchval(
            "SELECT event_id FROM {idempotency} WHERE room_id = $1 AND key = $2",
            room_id,
            key,
        )
        return None if event_id is None else await self._id_of(event_id, "events", RoomEvent)

    async def get_event_count(self, room_id: str) -> int:
        """Return the number of events of the room."""
        count: int = await self._fetchval(
            "SELECT count(*) FROM {events} WHERE room_id = $1", room_id
        )
        return count

    # -- bindings --------------------------------------------------------------------------------

    async def add_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Store the binding (an upsert that keeps its place)."""
        return await self._put_binding(binding)

    async def get_binding(self, room_id: str, channel_id: str) -> ChannelBinding | None:
        """Return the binding, or ``None``."""
        return await self._one(
            ChannelBinding,
            "SELECT data::text FROM {bindings} WHERE room_id = $1 AND channel_id = $2",
            room_id,
            channel_id,
        )

    async def update_binding(self, binding: ChannelBinding) -> ChannelBinding:
        """Replace the binding (an upsert)."""
        return await self._put_binding(binding)

    async def _put_binding(self, binding: ChannelBinding) -> ChannelBinding:
        await self._execute(
            """INSERT INTO {bindings} (room_id, channel_id, channel_type, participant_id, data)
            VALUES ($1, $2, $3, $4, $5::text::json)
            ON CONFLICT (room_id, channel_id) DO UPDATE SET
                channel_type = EXCLUDED.channel_type,
                participant_id = EXCLUDED.participant_id, data = EXCLUDED.data""",
            binding.room_id,
            binding.channel_id,
            str(binding.channel_type),
            binding.participant_id,
            _json(binding),
        )
        return binding

    async def remove_binding(self, room_id: str, channel_id: str) -> bool:
        """Remove the binding; return whether it existed."""
        result = await self._execute(
            "DELETE FROM {bindings} WHERE room_id = $1 AND channel_id = $2", room_id, channel_id
        )
        return result != "DELETE 0"

    async def list_bindings(self, room_id: str) -> list[ChannelBinding]:
        """Return the room's bindings, in the order they were first added."""
        return await self._all(
            ChannelBinding,
            "SELECT data::text FROM {bindings} WHERE room_id = $1 ORDER BY ord",
            room_id,
        )

    # -- participants ----------------------------------------------------------------------------

    async def add_participant(self, participant: Participant) -> Participant:
        """Store the participant (an upsert that keeps its place)."""
        return await self._put_participant(participant)

    async def get_participant(self, room_id: str, participant_id: str) -> Participant | None:
        """Return the participant, or ``None``."""
        return await self._one(
            Participant,
            "SELECT data::text FROM {participants} WHERE room_id = $1 AND id = $2",
            room_id,
            participant_id,
        )

    async def update_participant(self, participant: Participant) -> Participant:
        """Replace the participant (an upsert)."""
        return await self._put_participant(participant)

    async def _put_participant(self, participant: Participant) -> Participant:
        await self._execute(
            """INSERT INTO {participants} (room_id, id, data) VALUES ($1, $2, $3::text::json)
            ON CONFLICT (room_id, id) DO UPDATE SET data = EXCLUDED.data""",
            participant.room_id,
            participant.id,
            _json(participant),
        )
        return participant

    async def list_participants(self, room_id: str) -> list[Participant]:
        """Return the room's participants, in the order they were first added."""
        return await self._all(
            Participant,
            "SELECT data::text FROM {participants} WHERE room_id = $1 ORDER BY ord",
            room_id,
        )

    # -- identities ------------------------------------------------------------------------------

    async def _lock_identities(self, conn: Any) -> None:
        """Identity writes one at a time (until the transaction ends): two of them claiming
        one address at once each miss the other's claim, and an address ends up owned by an
        identity that does not list it."""
        await self._execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self._prefix}identities", conn=conn
        )

    async def create_identity(self, identity: Identity) -> Identity:
        """Store the identity and claim its addresses (in one transaction).

        Raises:
            TypeError: ``identity`` is not an ``Identity``.
        """
        check_identity("PostgresStore", identity)
        async with self._transaction() as conn:
            await self._lock_identities(conn)
            # The addresses it held before are its own no longer (unless it lists them again).
            await self._execute(
                "DELETE FROM {identity_addresses} WHERE identity_id = $1", identity.id, conn=conn
            )
            await self._execute(
                """INSERT INTO {identities} (id, data) VALUES ($1, $2::text::json)
                ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data""",
                identity.id,
                _json(identity),
                conn=conn,
            )
            for channel_type, addresses in identity.channel_addresses.items():
                for address in addresses:
                    await self._claim(conn, identity.id, str(channel_type), address)
        return identity

    async def get_identity(self, identity_id: str) -> Identity | None:
        """Return the identity, or ``None``."""
        return await self._one(
            Identity, "SELECT data::text FROM {identities} WHERE id = $1", identity_id
        )

    async def resolve_identity(self, channel_type: str, address: str) -> Identity | None:
        """Return the identity owning the address, or ``None``."""
        return await self._one(
            Identity,
            """SELECT i.data::text FROM {identity_addresses} a
            JOIN {identities} i ON i.id = a.identity_id
            WHERE a.channel_type = $1 AND a.address = $2""",
            str(channel_type),
            address,
        )

    async def link_address(self, identity_id: str, channel_type: str, address: str) -> None:
        """Give the address to the identity; an unknown identity id changes nothing.

        Raises:
            TypeError: an argument is not a string.
        """
        check_link("PostgresStore", identity_id, channel_type, address)
        channel_type = str(channel_type)
        async with self._transaction() as conn:
            await self._lock_identities(conn)
            data = await self._fetchval(
                "SELECT data::text FROM {identities} WHERE id = $1", identity_id, conn=conn
            )
            if data is None:
                logger.debug(
                    "link_address: no identity %r, address %r not linked", identity_id, address
                )
                return
            await self._claim(conn, identity_id, channel_type, address)
            identity = _load(Identity, data)
            addresses = identity.channel_addresses.get(channel_type, [])
            if address not in addresses:
                channel_addresses = {
                    **identity.channel_addresses,
                    channel_type: [*addresses, address],
                }
                identity = identity.model_copy(update={"channel_addresses": channel_addresses})
                await self._execute(
                    "UPDATE {identities} SET data = $2::text::json WHERE id = $1",
                    identity_id,
                    _json(identity),
                    conn=conn,
                )

    async def _claim(self, conn: Any, identity_id: str, channel_type: str, address: str) -> None:
        """Point the address at the identity, taking it out of its old owner's addresses
        (under ``_lock_identities``)."""
        owner = await self._fetchval(
            """SELECT identity_id FROM {identity_addresses}
            WHERE channel_type = $1 AND address = $2""",
            channel_type,
            address,
            conn=conn,
        )
        await self._execute(
            """INSERT INTO {identity_addresses} (channel_type, address, identity_id)
            VALUES ($1, $2, $3)
            ON CONFLICT (channel_type, address)
                DO UPDATE SET identity_id = EXCLUDED.identity_id""",
            channel_type,
            address,
            identity_id,
            conn=conn,
        )
        owner_id = (
            None if owner is None else await self._id_of(owner, "identities", Identity, conn)
        )
        if owner_id is None or owner_id == identity_id:
            return
        data = await self._fetchval(
            "SELECT data::text FROM {identities} WHERE id = $1", owner_id, conn=conn
        )
        if data is None:
            return
        previous = _load(Identity, data)
        kept = [a for a in previous.channel_addresses.get(channel_type, []) if a != address]
        channel_addresses = dict(previous.channel_addresses)
        if kept:
            channel_addresses[channel_type] = kept
        else:
            channel_addresses.pop(channel_type, None)
        previous = previous.model_copy(update={"channel_addresses": channel_addresses})
        await self._execute(
            "UPDATE {identities} SET data = $2::text::json WHERE id = $1",
            owner_id,
            _json(previous),
            conn=conn,
        )

    # -- tasks -----------------------------------------------------------------------------------

    async def add_task(self, task: Task) -> Task:
        """Store the task (an upsert that keeps its place; moved to another room, it comes
        last there)."""
        return await self._put_task(task)

    async def get_task(self, task_id: str) -> Task | None:
        """Return the task, or ``None``."""
        return await self._one(Task, "SELECT data::text FROM {tasks} WHERE id = $1", task_id)

    async def list_tasks(self, room_id: str, status: str | None = None) -> list[Task]:
        """Return the room's tasks (with ``status`` if given), oldest first."""
        return await self._all(
            Task,
            """SELECT data::text FROM {tasks}
            WHERE room_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY ord""",
            room_id,
            None if status is None else str(status),
        )

    async def update_task(self, task: Task) -> Task:
        """Replace the task (an upsert)."""
        return await self._put_task(task)

    async def _put_task(self, task: Task) -> Task:
        async with self._transaction() as conn:
            # Moved to another room: added there anew (InMemoryStore lists it last there). The
            # upsert sets the room too: a concurrent insert of it for another room won the
            # conflict, and the row kept that room while its data named this one.
            await self._execute(
                "DELETE FROM {tasks} WHERE id = $1 AND room_id <> $2",
                task.id,
                task.room_id,
                conn=conn,
            )
            await self._execute(
                """INSERT INTO {tasks} (id, room_id, status, data)
                VALUES ($1, $2, $3, $4::text::json)
                ON CONFLICT (id) DO UPDATE SET room_id = EXCLUDED.room_id,
                    status = EXCLUDED.status, data = EXCLUDED.data""",
                task.id,
                task.room_id,
                str(task.status),
                _json(task),
                conn=conn,
            )
        return task

    # -- observations ----------------------------------------------------------------------------

    async def add_observation(self, observation: Observation) -> Observation:
        """Store the observation (an upsert by id that keeps its place; moved to another room,
        it comes last there)."""
        async with self._transaction() as conn:
            await self._execute(
                "DELETE FROM {observations} WHERE id = $1 AND room_id <> $2",
                observation.id,
                observation.room_id,
                conn=conn,
            )
            await self._execute(
                """INSERT INTO {observations} (id, room_id, data)
                VALUES ($1, $2, $3::text::json)
                ON CONFLICT (id) DO UPDATE SET room_id = EXCLUDED.room_id,
                    data = EXCLUDED.data""",
                observation.id,
                observation.room_id,
                _json(observation),
                conn=conn,
            )
        return observation

    async def list_observations(self, room_id: str) -> list[Observation]:
        """Return the room's observations, oldest first."""
        return await self._all(
            Observation,
            "SELECT data::text FROM {observations} WHERE room_id = $1 ORDER BY ord",
            room_id,
        )

    # -- read tracking ---------------------------------------------------------------------------

    async def mark_read(self, room_id: str, channel_id: str, event_id: str) -> None:
        """Move the channel's read marker to the event; events of other rooms are ignored."""
        result = await self._execute(
            """INSERT INTO {read_markers} (room_id, channel_id, event_ord)
            SELECT $1, $2, ord FROM {events} WHERE id = $3 AND room_id = $1
            ON CONFLICT (room_id, channel_id) DO UPDATE SET event_ord = EXCLUDED.event_ord""",
            room_id,
            channel_id,
            event_id,
        )
        if result == "INSERT 0 0":
            logger.debug("mark_read ignored: event %r is not in room %r", event_id, room_id)

    async def mark_all_read(self, room_id: str, channel_id: str) -> None:
        """Move the channel's read marker to the room's latest event."""
        await self._execute(
            """INSERT INTO {read_markers} (room_id, channel_id, event_ord)
            SELECT $1, $2, max(ord) FROM {events} WHERE room_id = $1 HAVING count(*) > 0
            ON CONFLICT (room_id, channel_id) DO UPDATE SET event_ord = EXCLUDED.event_ord""",
            room_id,
            channel_id,
        )

    async def get_unread_count(self, room_id: str, channel_id: str) -> int:
        """Return the number of the room's events after the channel's read marker."""
        count: int = await self._fetchval(
            """SELECT count(*) FROM {events} e
            WHERE e.room_id = $1 AND e.ord > COALESCE(
                (SELECT event_ord FROM {read_markers} WHERE room_id = $1 AND channel_id = $2),
                -1)""",
            room_id,
            channel_id,
        )
        return count

    def __repr__(self) -> str:
        return f"PostgresStore(table_prefix={self._prefix!r})"
