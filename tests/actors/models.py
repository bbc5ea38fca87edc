"""Actors used by the runtime's tests: a journaling probe and an event-sourced counter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import msgspec

from actors import Actor, ActorCrash, Effect, EventSourcedActor
from eventlog import Headers, NewEvent, Record

# -- a plain actor that writes down what happens to it -------------------------------------------


@dataclass
class Journal:
    """What the probes did, in order, shared by every probe of a test."""

    entries: list[tuple[str, object]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    on_stop_gate: anyio.Event | None = None
    stopped_event: anyio.Event = field(default_factory=anyio.Event)

    def handled(self, key: str) -> list[object]:
        return [message for k, message in self.entries if k == key]


@dataclass(frozen=True)
class Block:
    """Handled by waiting for ``gate``; ``entered`` is set when the handler starts."""

    gate: anyio.Event
    entered: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True)
class Raise:
    error: BaseException


@dataclass(frozen=True)
class Call:
    """Handled by awaiting ``fn(actor)``; the reply is its result."""

    fn: Callable[[Probe], object]


class Probe(Actor):
    """Records every message (and its lifecycle) in a shared journal; replies with the message."""

    def __init__(self, key: str, journal: Journal) -> None:
        super().__init__(key)
        self.journal = journal
        self.count = 0

    async def on_start(self) -> None:
        self.journal.started.append(self.key)

    async def receive(self, message: object) -> object:
        self.count += 1
        if isinstance(message, Block):
            self.journal.entries.append((self.key, "block"))
            message.entered.set()
            await message.gate.wait()
            return "unblocked"
        if isinstance(message, Raise):
            self.journal.entries.append((self.key, "raise"))
            raise message.error
        if isinstance(message, Call):
            result = message.fn(self)
            if hasattr(result, "__await__"):
                result = await result  # type: ignore[misc]
            return result
        self.journal.entries.append((self.key, message))
        return message

    async def on_stop(self) -> None:
        if self.journal.on_stop_gate is not None:
            await self.journal.on_stop_gate.wait()
        self.journal.stopped.append(self.key)
        self.journal.stopped_event.set()


def probes(journal: Journal) -> Callable[[str], Probe]:
    return lambda key: Probe(key, journal)


# -- an event-sourced counter --------------------------------------------------------------------


class Incremented(msgspec.Struct, frozen=True):
    amount: int
    idempotency_key: str | None = None


class CounterState(msgspec.Struct, frozen=True):
    total: int = 0
    count: int = 0
    amounts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Add:
    amount: int
    idempotency_key: str | None = None


@dataclass(frozen=True)
class AddMany:
    amounts: tuple[int, ...]


@dataclass(frozen=True)
class Get:
    pass


@dataclass(frozen=True)
class Crash:
    pass


@dataclass(frozen=True)
class Reload:
    """Handled by reloading the state from the log; the reply is the state reloaded."""


_ENCODER = msgspec.msgpack.Encoder()
_EVENT = msgspec.msgpack.Decoder(Incremented)
_STATE = msgspec.msgpack.Decoder(CounterState)


class Counter(EventSourcedActor[CounterState, Incremented]):
    """Adds amounts; ``Add`` replies with the new total. Negative amounts are refused."""

    #: Test switches, set per test and reset by the ``reset_counter`` fixture.
    fail_evolve_once = False
    instances = 0
    after_commit_calls: list[tuple[CounterState, list[Incremented], list[Record]]] = []
    after_commit_error: Exception | None = None

    def __init__(self, key: str) -> None:
        super().__init__(key)
        type(self).instances += 1

    def initial_state(self) -> CounterState:
        return CounterState()

    def evolve(self, state: CounterState, event: Incremented) -> CounterState:
        if type(self).fail_evolve_once:
            type(self).fail_evolve_once = False
            raise RuntimeError("evolve broke")
        return CounterState(
            total=state.total + event.amount,
            count=state.count + 1,
            amounts=(*state.amounts, event.amount),
        )

    async def decide(self, state: CounterState, command: object) -> Effect[Incremented]:
        match command:
            case Add(amount, key):
                if amount < 0:
                    raise ValueError("negative amount")
                return Effect.persist(Incremented(amount, key), reply_with=lambda s: s.total)
            case AddMany(amounts):
                return Effect(
                    events=[Incremented(a) for a in amounts], reply_with=lambda s: s.total
                )
            case Get():
                return Effect.reply_only(state)
            case Crash():
                raise ActorCrash("asked to crash")
            case Reload():
                await self.reload()
                return Effect.reply_only(self.state)
        raise TypeError(f"unknown command {command!r}")

    def encode_event(self, event: Incremented) -> NewEvent:
        return NewEvent(
            "counter.incremented",
            _ENCODER.encode(event),
            headers=Headers(message_id=event.idempotency_key),
        )

    def decode_event(self, record: Record) -> Incremented:
        assert record.type == "counter.incremented"
        return _EVENT.decode(record.data)

    def encode_state(self, state: CounterState) -> bytes:
        return _ENCODER.encode(state)

    def decode_state(self, data: bytes) -> CounterState:
        return _STATE.decode(data)

    async def after_commit(
        self, state: CounterState, events: list[Incremented], records: list[Record]
    ) -> None:
        type(self).after_commit_calls.append((state, events, records))
        if type(self).after_commit_error is not None:
            raise type(self).after_commit_error


class CounterWithoutSnapshots(Counter):
    """The same counter, with the default (unsupported) snapshot codec."""

    encode_state = EventSourcedActor.encode_state  # type: ignore[assignment]
    decode_state = EventSourcedActor.decode_state  # type: ignore[assignment]


def replay(records: list[Record]) -> CounterState:
    """The counter's state as a plain fold over its records, without any actor."""
    state = CounterState()
    for record in records:
        event = _EVENT.decode(record.data)
        state = CounterState(
            total=state.total + event.amount,
            count=state.count + 1,
            amounts=(*state.amounts, event.amount),
        )
    return state
