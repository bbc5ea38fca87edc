"""The event log contract.

An event log holds named **streams** of immutable records. Every backend implements
``EventLog`` and passes the shared contract suite in ``eventlog.testing``:

- ``append`` is atomic per call (all events or none), checks the stream's version, and
  de-duplicates by the first event's ``headers.message_id``;
- ``read`` returns one stream in version order; ``read_all`` and ``subscribe`` return every
  stream in global ``position`` order, with no gaps and no duplicates;
- snapshots are a separate, latest-wins store per stream.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from eventlog._streams import check_append
from eventlog.errors import InvalidAppend
from eventlog.record import NewEvent, Record, Snapshot, StreamInfo

__all__ = ["ANY_VERSION", "EventLog", "Subscription"]

ANY_VERSION: None = None
"""Pass as ``expected_version`` to append without a version check (imports, tools)."""


class Subscription(abc.ABC):
    """Records of every stream in global order: the catch-up from a position, then the live tail.

    Use it as an async context manager and iterate it::

        async with log.subscribe(after_position=checkpoint) as records:
            async for record in records:
                ...

    Iteration never ends by itself; cancel the enclosing scope or leave the ``async with``.
    Backends implement ``__anext__`` as a plain method (not an async generator), so that
    breaking out of the loop leaves nothing for the garbage collector to finalise.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Record:
        """Return the next record, waiting for one if the log has none yet.

        Raises:
            StopAsyncIteration: once the subscription is closed.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release what the subscription holds (consumers, wake-ups). Idempotent."""


class EventLog(abc.ABC):
    """An append-only log of streams. See the module docstring for the contract."""

    #: Seconds during which a re-sent ``message_id`` is recognised (``None``: forever).
    dedup_window: float | None = None
    #: The largest number of events one ``append`` accepts.
    max_append_events: int = 1000

    @property
    def max_append_bytes(self) -> int | None:
        """How many bytes of events one ``append`` takes, as `append_size` counts them
        (``None``: no limit but ``max_append_events``)."""
        return None

    def append_size(self, events: Sequence[NewEvent]) -> int:
        """An upper bound of the bytes ``events`` take of `max_append_bytes` in an append
        (0 for a log without a byte limit); a batch takes at most the sum of its events'."""
        return 0

    def check_append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int | None = None
    ) -> None:
        """Raise what ``append`` refuses ``events`` for before writing, without writing: for
        a caller that must know a series of appends will all be taken before making the first
        (an import).

        Raises:
            InvalidStreamId: ``stream`` is not a valid id.
            InvalidAppend: ``events`` is empty, longer than ``max_append_events``, larger than
                ``max_append_bytes``, or holds a field no log takes.
        """
        check_append(stream, events, self.max_append_events, expected_version)
        limit = self.max_append_bytes
        if limit is not None and (size := self.append_size(events)) > limit:
            raise InvalidAppend(
                f"append to {stream!r}: {size} bytes of events, more than {limit} per append"
            )

    @abc.abstractmethod
    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> list[Record]:
        """Append ``events`` to ``stream`` atomically and return the committed records.

        Args:
            stream: a valid stream id (``[A-Za-z0-9_-]{1,64}``).
            events: one or more events; they get consecutive versions.
            expected_version: the stream's current version as the caller knows it (0 for a
                stream that has no events), or ``ANY_VERSION`` to skip the check.

        Returns:
            The committed records, in order.

        Raises:
            InvalidStreamId: ``stream`` is not a valid id.
            InvalidAppend: ``events`` is empty or longer than ``max_append_events``.
            WrongExpectedVersion: the stream is not at ``expected_version``; nothing appended.
            LogUnavailable: the backend could not be reached.

        If the first event's ``headers.message_id`` was already committed to ``stream`` by an
        earlier append (within ``dedup_window``), nothing is appended and the records of that
        earlier append are returned, whatever ``expected_version`` says: a caller that lost the
        acknowledgement can retry safely. So can one cancelled while its append was on its way:
        the append may have committed all the same. (A caller cancelled already as it calls
        ``append``: ``NatsEventLog`` appends nothing; ``MemoryEventLog``, which never waits,
        appends and returns the records.)
        """

    @abc.abstractmethod
    async def read(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Record]:
        """Return the records of ``stream`` with a version above ``after_version``, in order.

        A stream that does not exist reads as empty.
        """

    @abc.abstractmethod
    async def last_version(self, stream: str) -> int:
        """Return the version of the last record of ``stream`` (0 if it has none)."""

    @abc.abstractmethod
    async def read_all(self, *, after_position: int = 0, limit: int | None = None) -> list[Record]:
        """Return records of every stream with a position above ``after_position``, in order."""

    @abc.abstractmethod
    async def last_position(self) -> int:
        """Return the position of the last record in the log (0 if the log is empty)."""

    @abc.abstractmethod
    def subscribe(self, *, after_position: int = 0) -> Subscription:
        """Follow the log from ``after_position``: catch-up, then live, in global order.

        Raises:
            TypeError: ``after_position`` is not an int.
        """

    @abc.abstractmethod
    async def streams(self) -> list[StreamInfo]:
        """Describe every stream that has at least one record, ordered by stream id."""

    @abc.abstractmethod
    async def save_snapshot(self, stream: str, version: int, data: bytes) -> None:
        """Store ``data`` as the state of ``stream`` at ``version`` (replaces the previous one).

        Raises:
            InvalidAppend: ``version`` is not an int >= 0, or ``data`` is not bytes.
        """

    @abc.abstractmethod
    async def load_snapshot(self, stream: str) -> Snapshot | None:
        """Return the latest snapshot of ``stream``, or ``None``."""

    async def aclose(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections and background tasks. Idempotent.

        What a closed log does next is the backend's: ``NatsEventLog`` ends its subscriptions
        (``StopAsyncIteration``) and refuses later calls; ``MemoryEventLog`` holds nothing to
        release, and goes on as before (its subscriptions too: close them to end them).
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
