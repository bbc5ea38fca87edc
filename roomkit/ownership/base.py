"""Room ownership: each room's commands run in one process at a time.

Several processes may serve the same rooms over one shared event log. Without ownership, each
runs the commands it is given, and the log's expected versions keep the rooms' histories
whole: a process that lost a race decides again on the room as it is now. With it, every room
belongs to a partition, each partition is leased to one live process, and a command for a
room is sent to the process holding its partition, which runs it on its actor: one live actor
per room, and no process deciding on a room another one is changing.

Ownership only places work: the log's expected versions still guard every append, so a lease
that changes hands while a command runs, or two processes that briefly both think they hold a
partition, cost a retry, never a forked history.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from roomkit.core._commands import Outcome
    from roomkit.core._in_decision import DecisionWait
    from roomkit.models.delivery import InboundMessage, InboundResult

__all__ = ["KitPort", "Placement", "RoomOwnership"]


class KitPort(Protocol):
    """What a placement needs of the kit it serves."""

    @property
    def kit(self) -> object:
        """The kit (what the decisions of a chain name)."""
        ...

    async def run_command(
        self,
        room_id: str,
        command: object,
        settle: bool,
        commit_only: bool,
        waiting: tuple[DecisionWait, ...],
    ) -> Outcome:
        """Run a room command here (as ``RoomKit._command``), whoever owns the room now;
        ``commit_only``: settle on its commit, not on its delivery, as the caller would have
        (see ``commit_only``); ``waiting``: the decisions the caller holds up.

        Raises:
            RoomKitError: the room's own decision is among ``waiting`` (each would wait for
                the other), or what the command raised.
        """
        ...

    async def run_inbound(
        self,
        message: InboundMessage,
        room_id: str,
        commit_only: bool,
        waiting: tuple[DecisionWait, ...],
    ) -> InboundResult:
        """Run an inbound message in its room here (as ``process_inbound``); see
        ``run_command``."""
        ...

    def commit_only(self) -> bool:
        """Whether a command made here now returns once committed, without waiting for
        its delivery (``wait_for_delivery=False``, or a delivery worker's own job, which must
        not wait for deliveries that may be queued behind it): the owner does the same."""
        ...

    def checkpoint(self) -> int:
        """The log position this process's read model holds."""
        ...

    async def commands_done(self) -> None:
        """Return once no command is being decided or waits for its room in this process
        (its callers' included): a leaving process keeps its leases until then (see
        ``Placement.leave``)."""
        ...

    @property
    def process_timeout(self) -> float | None:
        """The kit's ``process_timeout``: how long ``process_inbound`` waits for its read
        model to show what it recorded (None: no bound)."""
        ...

    @property
    def drain_timeout(self) -> float:
        """How long the kit's close waits for the commands it took (``ask_timeout``): a
        leaving process waits as long for those other processes sent it."""
        ...

    async def wait_checkpoint(self, position: int, timeout: float) -> None:
        """Return once the read model holds ``position``, or after ``timeout`` seconds."""
        ...

    def live_rooms(self) -> Iterable[str]:
        """The rooms whose actors run here."""
        ...

    def request_passivation(self, room_id: str) -> None:
        """Have the room's actor stop once it has handled what it holds."""
        ...


class ReadModelBehind(Exception):
    """A message its room's owner ran is not in this process's read model within the
    caller's ``process_timeout`` (its store away): the kit answers ``process_timeout`` with the
    recorded event, as for a message run here."""

    def __init__(self, result: InboundResult, waited: float) -> None:
        super().__init__(f"the read model did not show the message within {waited:g} s")
        self.result = result
        self.waited = waited


class Placement(ABC):
    """One process's part in the ownership while its kit runs."""

    @abstractmethod
    async def forward_command(self, room_id: str, command: object, settle: bool) -> Outcome | None:
        """Run ``command`` at the room's owner when another process owns the room, and
        return its outcome once this process's read model shows it; None: run it here.

        Raises:
            RoomTimeoutError: the owner did not answer in time (the command may have been
                applied there).
            StoreUnavailableError: the read model did not show it within the kit's ask
                timeout (as for a command run here).
            RoomKitError: what the command raised at the owner.
        """

    @abstractmethod
    async def forward_inbound(
        self, message: InboundMessage, room_id: str, waiting: tuple[DecisionWait, ...]
    ) -> InboundResult | None:
        """As ``forward_command``, for an inbound message routed to ``room_id``; ``waiting``:
        the decisions the message holds up (``message_waits``).

        Raises:
            ReadModelBehind: this process's read model did not show the result within
                ``process_timeout``.
        """

    @abstractmethod
    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Keep the leases (started in the kit's task group; runs until cancelled)."""

    @abstractmethod
    async def leave(self) -> None:
        """Stop taking commands from other processes, finish those taken, and give the
        leases back (the kit is closing). Idempotent."""

    async def disconnect(self) -> None:  # noqa: B027 - optional: nothing to end by default
        """End what ``leave`` left for the kit's last work (its deliveries and async hooks,
        whose commands still go to the rooms' owners): the kit closed. Idempotent."""

    @property
    @abstractmethod
    def forward_timeout(self) -> float:
        """Seconds a command sent to its room's owner is waited for."""

    @abstractmethod
    def owner_of(self, room_id: str) -> str | None:
        """The other process that owns ``room_id`` as this process last saw the leases;
        None when this one does, or nobody does."""


class RoomOwnership(ABC):
    """How the processes sharing a log split the rooms (``RoomKit(ownership=...)``)."""

    @abstractmethod
    async def start_placement(self, port: KitPort) -> Placement:
        """Take part as the kit behind ``port``: called once its runtime starts.

        Raises:
            LogUnavailableError: the shared service cannot be reached.
        """

    def describe(self) -> dict[str, Any]:
        """What ``repr`` and logs show of it."""
        return {}
