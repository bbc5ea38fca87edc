"""A room actor keeps its recent events as JSON and hands contexts lists that load on use."""

from __future__ import annotations

import copy
import pickle

import msgspec

from roomkit import EventSource, RoomContext, RoomEvent, TextContent
from roomkit.core._domain import dump
from roomkit.core._recent import RECENT_EVENTS, SPARE_EVENTS, LazyEvents, RecentEvents
from roomkit.models.room import Room


def _event(n: int) -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        index=n,
        source=EventSource(channel_id="sms", channel_type="sms"),
        content=TextContent(body=f"m{n}"),
    )


def _recent(count: int) -> tuple[RecentEvents, list[RoomEvent]]:
    recent = RecentEvents()
    events = [_event(n) for n in range(count)]
    for event in events:
        recent.append(dump(event))
    return recent, events


def test_a_context_list_loads_the_events_of_its_moment() -> None:
    recent, events = _recent(3)
    view = recent.view()
    assert isinstance(view, LazyEvents)
    later = _event(3)
    recent.append(dump(later))
    # Read after the room moved on: still the three events it was made with.
    assert view == events
    assert [e.content.body for e in view] == ["m0", "m1", "m2"]  # type: ignore[union-attr]
    assert recent.view() == [*events, later]


def test_only_the_last_events_are_kept() -> None:
    recent, events = _recent(RECENT_EVENTS + 5)
    assert len(recent) == RECENT_EVENTS
    assert list(recent) == events[5:]
    assert [bytes(raw) for raw in recent.raw()] == [bytes(dump(e)) for e in events[5:]]


def test_every_list_operation_sees_the_events() -> None:
    recent, events = _recent(4)
    assert len(recent.view()) == 4
    assert bool(recent.view())
    assert recent.view()[-1] == events[-1]
    assert recent.view()[1:3] == events[1:3]
    assert events[2] in recent.view()
    assert list(reversed(recent.view())) == events[::-1]
    assert recent.view().index(events[1]) == 1
    assert recent.view() + [] == events
    appended = recent.view()
    appended.append(events[0])
    assert appended == [*events, events[0]]
    assert copy.deepcopy(recent.view()) == events
    assert type(copy.copy(recent.view())) is list
    assert recent.view().copy() == events
    assert [] + recent.view() == events
    assert recent.view() * 1 == events
    assert pickle.loads(pickle.dumps(recent.view())) == events
    assert repr(recent.view()).startswith("[RoomEvent(id=")


def test_after_the_first_read_the_room_keeps_the_models() -> None:
    recent, events = _recent(2)
    assert list(recent.view()) == events
    later = _event(2)
    recent.append(dump(later))
    view = recent.view()
    assert not isinstance(view, LazyEvents)  # plain list of the kept models
    # Read from its JSON once (as a replay reads it), then kept: the next view holds it.
    assert view[-1] == later and recent.view()[-1] is view[-1]


def test_a_context_serialises_its_lazy_events() -> None:
    recent, events = _recent(2)
    room = Room(id="r1")
    context = RoomContext.model_construct(
        room=room, bindings=[], participants=[], recent_events=recent.view()
    )
    dumped = context.model_dump(mode="json")
    assert [e["id"] for e in dumped["recent_events"]] == [e.id for e in events]
    fresh = RoomContext.model_construct(
        room=room, bindings=[], participants=[], recent_events=recent.view()
    )

    assert RoomContext.model_validate_json(fresh.model_dump_json()) == context


def test_equal_windows_compare_equal() -> None:
    first, events = _recent(3)
    second = RecentEvents()
    for event in events:
        second.append(dump(event))
    assert first == second
    second.append(dump(_event(9)))
    assert first != second


def test_the_context_schema_is_unchanged_by_lazy_events() -> None:
    serialization = RoomContext.model_json_schema(mode="serialization")
    assert serialization == RoomContext.model_json_schema(mode="validation")
    events = serialization["properties"]["recent_events"]
    assert events["type"] == "array" and events["items"] == {"$ref": "#/$defs/RoomEvent"}


def test_lazy_events_validate_into_other_models() -> None:
    # pydantic reads a list subclass's storage directly: the lazy sequence must be iterated.
    recent, events = _recent(3)
    room = Room(id="r1")
    assert RoomContext(room=room, recent_events=recent.view()).recent_events == events
    validated = RoomContext.model_validate({"room": room, "recent_events": recent.view()})
    assert validated.recent_events == events


def test_events_replayed_without_their_model_are_validated_only_when_read() -> None:
    recent, events = _recent(2)
    assert list(recent) == events  # the room now keeps models
    replayed = _event(2)
    recent.append(dump(replayed))  # a replay has only the JSON
    assert recent.view()[-1] == replayed
    fresh = RecentEvents()
    fresh.append(dump(replayed))
    assert isinstance(fresh.view(), LazyEvents) and fresh.view() == [replayed]


def test_an_idle_room_forgets_the_models_until_it_is_busy_again() -> None:
    recent, events = _recent(2)
    assert list(recent.view()) == events  # read: the room keeps the models
    recent.forget_models()  # the room goes idle
    late = recent.view()  # ... the context of a message still being delivered
    woken = recent.view()
    recent.forget_models()  # idle again before anybody read them
    assert isinstance(late, LazyEvents)
    assert late == events  # a late read still sees the events...
    assert isinstance(recent.view(), LazyEvents)  # ...but the idle room kept no models
    # Busy again (a new context): its reads are the room's, kept once for every reader.
    assert woken == events
    fresh = recent.view()
    assert fresh == events
    assert not isinstance(recent.view(), LazyEvents)


def test_a_view_may_leave_out_the_last_events() -> None:
    # Both ways the room holds them: JSON only (a lazy view), then models.
    recent, events = _recent(5)
    earlier = recent.view(leave_out=2)
    assert isinstance(earlier, LazyEvents)
    assert earlier == events[:3]
    assert recent.view() == events  # the cut view kept no models of its window for the room
    assert recent.view(leave_out=2) == events[:3]
    assert recent.view(leave_out=0) == events


def _appended(recent: RecentEvents, events: list[RoomEvent]) -> None:
    for event in events:
        recent.append(dump(event))


def test_a_view_that_leaves_out_events_of_a_full_window_still_holds_a_full_window() -> None:
    recent, events = _recent(RECENT_EVENTS + 5)
    recent.view()  # the room's context after those: the window holds the last 50
    assert recent.view() == events[-RECENT_EVENTS:]
    later = [_event(n) for n in range(len(events), len(events) + 3)]
    _appended(recent, later)  # three recorded together
    everything = events + later
    for leave_out in (2, 1):  # as the room makes them: the earlier events' contexts first
        assert recent.view(leave_out=leave_out) == everything[:-leave_out][-RECENT_EVENTS:]
    assert recent.view() == everything[-RECENT_EVENTS:]
    # The events let go are kept only until then: a later cut view holds what is left.
    assert recent.view(leave_out=2) == everything[-RECENT_EVENTS:-2]


def test_at_most_spare_events_are_kept_for_views_that_leave_out_events() -> None:
    recent, events = _recent(RECENT_EVENTS)
    recent.view()
    later = [_event(n) for n in range(RECENT_EVENTS, RECENT_EVENTS + SPARE_EVENTS + 3)]
    _appended(recent, later)  # a replay from the log makes no context between them
    everything = events + later
    assert recent.view(leave_out=SPARE_EVENTS) == everything[:-SPARE_EVENTS][-RECENT_EVENTS:]
    cut = recent.view(leave_out=SPARE_EVENTS + 2)
    assert cut == everything[-RECENT_EVENTS - SPARE_EVENTS : -SPARE_EVENTS - 2]


def test_a_resting_room_keeps_no_spare_events() -> None:
    recent, events = _recent(RECENT_EVENTS + 3)
    recent.forget_models()
    assert recent.view(leave_out=1) == events[-RECENT_EVENTS:-1]
    assert recent.raw() == [dump(e) for e in events[-RECENT_EVENTS:]]  # what a snapshot keeps


def test_the_window_says_which_event_ids_it_may_hold() -> None:
    recent, events = _recent(3)
    assert all(recent.may_hold(event.id) for event in events)
    assert not recent.may_hold("elsewhere") and not recent.may_hold(events[0].id[:-1])
    # Only each event's own id, at the start of its JSON as the kit writes it: read whole,
    # every reply paid for copying and searching the last fifty events.
    nested = _event(3).model_copy(update={"metadata": {"id": "nested"}})
    recent.append(dump(nested))
    assert bytes(dump(nested)).startswith(b'{"id":') and not recent.may_hold("nested")
    # An event another writer wrote with its keys in another order is read whole.
    recent.append(msgspec.Raw(b'{"room_id":"r1","id":"reordered"}'))
    assert recent.may_hold("reordered")
