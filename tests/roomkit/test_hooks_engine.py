"""HookEngine: ordering, filters, sync pipeline (block/modify/inject/fail-open), async hooks."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from roomkit.core.hooks import (
    SYNC_TRIGGERS,
    HookEngine,
    HookError,
    HookRegistration,
    HookTimeoutError,
    expected_execution,
)
from roomkit.models import (
    ChannelDirection,
    ChannelType,
    EventSource,
    HookExecution,
    HookResult,
    HookTrigger,
    InjectedEvent,
    Observation,
    Room,
    RoomContext,
    RoomEvent,
    Task,
    TextContent,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Pure anyio code: every async test runs on both backends."""
    param: str = request.param
    return param


SYNC = HookExecution.SYNC
ASYNC = HookExecution.ASYNC
BEFORE = HookTrigger.BEFORE_BROADCAST
AFTER = HookTrigger.AFTER_BROADCAST

CONTEXT = RoomContext(room=Room(id="r1"))


def event(
    body: str = "hello",
    channel_id: str = "sms-1",
    channel_type: ChannelType = ChannelType.SMS,
    direction: ChannelDirection = ChannelDirection.INBOUND,
) -> RoomEvent:
    return RoomEvent(
        room_id="r1",
        source=EventSource(channel_id=channel_id, channel_type=channel_type, direction=direction),
        content=TextContent(body=body),
    )


def body_of(ev: Any) -> str:
    assert isinstance(ev, RoomEvent) and isinstance(ev.content, TextContent)
    return ev.content.body


class Recorder:
    """Builds hooks that record their calls (name, event body) in one shared list."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def hook(self, name: str, result: HookResult | None = None) -> Any:
        async def fn(ev: Any, ctx: Any) -> HookResult | None:
            self.calls.append(name)
            return result

        fn.__name__ = name
        return fn


def reg(
    fn: Any,
    trigger: HookTrigger = BEFORE,
    execution: HookExecution = SYNC,
    **kwargs: Any,
) -> HookRegistration:
    """A registration named after its function, as ``kit.hook`` names one."""
    kwargs.setdefault("name", getattr(fn, "__name__", ""))
    return HookRegistration(trigger=trigger, execution=execution, fn=fn, **kwargs)


# -- registration ---------------------------------------------------------------------------


class TestRegistration:
    def test_non_callable_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="async callable"):
            reg("not a function", name="bad")

    @pytest.mark.parametrize("timeout", [0, -1.0])
    def test_timeout_must_be_positive(self, timeout: float) -> None:
        with pytest.raises(ValueError):
            reg(Recorder().hook("h"), timeout=timeout)

    def test_string_values_are_coerced(self) -> None:
        r = HookRegistration(trigger="before_broadcast", execution="sync", fn=Recorder().hook("h"))  # type: ignore[arg-type]
        assert r.trigger is BEFORE and r.execution is SYNC
        with pytest.raises(ValueError):
            HookRegistration(trigger="before_lunch", execution="sync", fn=Recorder().hook("h"))  # type: ignore[arg-type]

    def test_the_name_is_kept_as_given(self) -> None:
        # 0.3.0: only the kit.hook decorator names a hook after its function.
        async def my_filter(ev: Any, ctx: Any) -> None:
            return None

        made = HookRegistration(trigger=BEFORE, execution=SYNC, fn=my_filter)
        assert made.name == ""
        assert reg(my_filter, name="custom").name == "custom"

    def test_defaults(self) -> None:
        r = reg(Recorder().hook("h"))
        assert (r.priority, r.timeout) == (0, 30.0)
        assert r.channel_types is r.channel_ids is r.directions is None

    @pytest.mark.parametrize("trigger", list(HookTrigger))
    def test_execution_mismatch(self, trigger: HookTrigger) -> None:
        """QUIRK 8: the engine says when a hook would never run."""
        expected = SYNC if trigger in SYNC_TRIGGERS else ASYNC
        assert expected_execution(trigger) is expected
        fn = Recorder().hook("h")
        assert HookEngine.execution_mismatch(reg(fn, trigger, expected)) is None
        wrong = ASYNC if expected is SYNC else SYNC
        message = HookEngine.execution_mismatch(reg(fn, trigger, wrong))
        assert message is not None
        assert trigger.value in message and f"HookExecution.{expected.name}" in message

    def test_sync_triggers(self) -> None:
        assert {
            HookTrigger.BEFORE_BROADCAST,
            HookTrigger.ON_TRANSCRIPTION,
            HookTrigger.BEFORE_TTS,
            HookTrigger.ON_REALTIME_TOOL_CALL,
        } == SYNC_TRIGGERS


# -- lookup ---------------------------------------------------------------------------------


class TestGetHooks:
    def test_global_then_room_stable_by_priority(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("g_late"), priority=10))
        engine.register(reg(rec.hook("g_first"), priority=0))
        engine.add_room_hook("r1", reg(rec.hook("r_first"), priority=0))
        engine.add_room_hook("r1", hook=reg(rec.hook("r_early"), priority=-5))  # 0.3.0's name
        engine.register(hook=reg(rec.hook("g_second"), priority=0))
        names = [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)]
        assert names == ["r_early", "g_first", "g_second", "r_first", "g_late"]
        # Other rooms only see the global hooks.
        assert [h.name for h in engine.get_hooks("r2", BEFORE, SYNC)] == [
            "g_first",
            "g_second",
            "g_late",
        ]

    def test_only_the_asked_trigger_and_execution(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("sync_before")))
        engine.register(reg(rec.hook("async_before"), execution=ASYNC))
        engine.register(reg(rec.hook("async_after"), AFTER, ASYNC))
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["sync_before"]
        assert [h.name for h in engine.get_hooks("r1", BEFORE, ASYNC)] == ["async_before"]
        assert [h.name for h in engine.get_hooks("r1", AFTER, ASYNC)] == ["async_after"]
        assert engine.get_hooks("r1", AFTER, SYNC) == []

    def test_cache_follows_registration_changes(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        assert engine.get_hooks("r1", BEFORE, SYNC) == []
        engine.register(reg(rec.hook("g")))
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["g"]
        engine.add_room_hook("r1", reg(rec.hook("r")))
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["g", "r"]
        engine.register(reg(rec.hook("g2"), priority=-1))
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["g2", "g", "r"]
        assert engine.remove_room_hook("r1", "r")
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["g2", "g"]

    def test_remove_room_hook_removes_the_first_match_only(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.add_room_hook("r1", reg(rec.hook("a"), priority=1))
        engine.add_room_hook("r1", reg(rec.hook("a"), priority=2))
        assert engine.remove_room_hook("r1", "a")
        assert [h.priority for h in engine.room_hooks("r1")] == [2]
        assert not engine.remove_room_hook("r1", "missing")
        assert not engine.remove_room_hook("nope", "a")
        assert engine.remove_room_hook("r1", "a")
        assert engine.room_hooks("r1") == []
        assert not engine.remove_room_hook("r1", "a")

    def test_clear_room_and_copies(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("g")))
        engine.add_room_hook("r1", reg(rec.hook("r")))
        engine.global_hooks.clear()  # a copy
        engine.clear_room("r1")
        assert [h.name for h in engine.get_hooks("r1", BEFORE, SYNC)] == ["g"]


class TestFilters:
    @pytest.mark.parametrize(
        ("filters", "matches"),
        [
            ({}, True),
            ({"channel_types": {ChannelType.SMS}}, True),
            ({"channel_types": {ChannelType.EMAIL}}, False),
            ({"channel_ids": ["sms-1", "x"]}, True),
            ({"channel_ids": {"other"}}, False),
            ({"directions": {ChannelDirection.INBOUND}}, True),
            ({"directions": {ChannelDirection.OUTBOUND}}, False),
            (
                {
                    "channel_types": {ChannelType.SMS},
                    "channel_ids": {"sms-1"},
                    "directions": {ChannelDirection.INBOUND},
                },
                True,
            ),
            (
                {
                    "channel_types": {ChannelType.SMS},
                    "channel_ids": {"sms-1"},
                    "directions": {ChannelDirection.OUTBOUND},
                },
                False,
            ),
            ({"channel_types": set()}, False),
        ],
    )
    def test_all_filters_must_pass(self, filters: dict[str, Any], matches: bool) -> None:
        engine = HookEngine()
        engine.register(reg(Recorder().hook("h"), **filters))
        found = engine.get_hooks("r1", BEFORE, SYNC, event())
        assert bool(found) is matches
        # skip_event_filter (voice hooks) ignores every filter.
        assert engine.get_hooks("r1", BEFORE, SYNC, event(), skip_event_filter=True)
        # No event given: no filtering.
        assert engine.get_hooks("r1", BEFORE, SYNC)

    async def test_filters_apply_when_running(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("sms_only"), channel_types={ChannelType.SMS}))
        engine.register(reg(rec.hook("email_only"), channel_types={ChannelType.EMAIL}))
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert rec.calls == ["sms_only"]
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT, skip_event_filter=True)
        assert rec.calls == ["sms_only", "sms_only", "email_only"]

    async def test_objects_without_a_source_are_not_filtered(self) -> None:
        """Voice hooks get strings and sessions: filters cannot apply to them."""
        engine = HookEngine()
        rec = Recorder()
        engine.register(
            reg(rec.hook("tts"), HookTrigger.BEFORE_TTS, channel_ids={"voice"}),
        )
        result = await engine.run_sync_hooks("r1", HookTrigger.BEFORE_TTS, "say hi", CONTEXT)
        assert result.allowed and result.event == "say hi"
        assert rec.calls == ["tts"]


# -- sync pipeline --------------------------------------------------------------------------


def side_effects(tag: str) -> dict[str, Any]:
    return {
        "injected": [InjectedEvent(event=event(f"inj-{tag}"), target_channel_ids=["sms-1"])],
        "tasks": [Task(room_id="r1", title=f"task-{tag}")],
        "observations": [Observation(room_id="r1", channel_id="sms-1", content=f"obs-{tag}")],
    }


class TestRunSyncHooks:
    async def test_no_hooks_allows_the_event_as_is(self) -> None:
        ev = event()
        result = await HookEngine().run_sync_hooks("r1", BEFORE, ev, CONTEXT)
        assert result.allowed and result.event is ev
        assert result.reason is result.blocked_by is None
        assert result.injected_events == []
        assert result.tasks == []
        assert result.observations == []
        assert result.hook_errors == []

    async def test_none_and_allow_go_on(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("a")))
        engine.register(reg(rec.hook("b", HookResult.allow())))
        engine.register(reg(rec.hook("c")))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.allowed
        assert rec.calls == ["a", "b", "c"]

    async def test_a_registration_changed_after_it_was_registered_takes_its_new_place(
        self,
    ) -> None:
        # The engine kept its hooks sorted as registered: a priority or execution an app set
        # on a registration it kept did nothing (0.3.0 sorted at every run).
        engine = HookEngine()
        rec = Recorder()
        a, b = reg(rec.hook("a"), priority=0), reg(rec.hook("b"), priority=1)
        engine.register(a)
        engine.register(b)
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        a.priority = 5
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        a.execution = ASYNC
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert rec.calls == ["a", "b", "b", "a", "b"]
        # Set to what does not sort, it failed every message of every room at the next sort:
        # it is refused where it is set, as where it is made.
        with pytest.raises(TypeError, match="hook priority must be a number"):
            b.priority = None  # type: ignore[assignment]
        with pytest.raises(ValueError):
            b.execution = "sometimes"  # type: ignore[assignment]
        b.execution = "sync"  # type: ignore[assignment]  # an enum's value, as when made
        assert b.execution is SYNC
        await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert rec.calls[-1] == "b"

    async def test_block_stops_at_once(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("first")))
        engine.register(reg(rec.hook("spam_filter", HookResult.block("spam"))))
        engine.register(reg(rec.hook("never")))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert not result.allowed
        assert (result.reason, result.blocked_by) == ("spam", "spam_filter")
        assert rec.calls == ["first", "spam_filter"]

    async def test_modify_replaces_the_event_for_later_hooks(self) -> None:
        engine = HookEngine()
        seen: list[str] = []

        async def upper(ev: RoomEvent, ctx: RoomContext) -> HookResult:
            return HookResult.modify(
                ev.model_copy(update={"content": TextContent(body=body_of(ev).upper())})
            )

        async def exclaim(ev: RoomEvent, ctx: RoomContext) -> HookResult:
            seen.append(body_of(ev))
            return HookResult.modify(
                ev.model_copy(update={"content": TextContent(body=body_of(ev) + "!")})
            )

        async def observe(ev: RoomEvent, ctx: RoomContext) -> None:
            seen.append(body_of(ev))

        engine.register(reg(exclaim, priority=2))
        engine.register(reg(upper, priority=1))
        engine.register(reg(observe, priority=3))
        original = event("hi")
        result = await engine.run_sync_hooks("r1", BEFORE, original, CONTEXT)
        assert result.allowed
        assert body_of(result.event) == "HI!"
        assert seen == ["HI", "HI!"]
        assert body_of(original) == "hi"

    async def test_side_effects_accumulate_including_the_blocking_hook(self) -> None:
        engine = HookEngine()
        a, b, c = side_effects("a"), side_effects("b"), side_effects("c")
        rec = Recorder()
        engine.register(
            reg(
                rec.hook(
                    "a",
                    HookResult.allow(
                        a["injected"], tasks=a["tasks"], observations=a["observations"]
                    ),
                )
            )
        )
        modified = event("modified")
        engine.register(
            reg(
                rec.hook(
                    "b",
                    HookResult.modify(
                        modified, b["injected"], tasks=b["tasks"], observations=b["observations"]
                    ),
                )
            )
        )
        engine.register(
            reg(
                rec.hook("c", HookResult.block("no", c["injected"], c["tasks"], c["observations"]))
            )
        )
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert not result.allowed and result.blocked_by == "c"
        assert result.event is modified
        assert result.injected_events == a["injected"] + b["injected"] + c["injected"]
        assert result.tasks == a["tasks"] + b["tasks"] + c["tasks"]
        assert result.observations == a["observations"] + b["observations"] + c["observations"]

    async def test_exception_fails_open(self, caplog: pytest.LogCaptureFixture) -> None:
        engine = HookEngine()
        rec = Recorder()

        async def broken(ev: Any, ctx: Any) -> None:
            raise RuntimeError("db down")

        engine.register(reg(broken))
        engine.register(reg(rec.hook("after", HookResult.block("later"))))
        with caplog.at_level(logging.WARNING, logger="roomkit.hooks"):
            result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.hook_errors == [{"hook": "broken", "error": "db down"}]
        assert rec.calls == ["after"]
        assert not result.allowed and result.blocked_by == "after"
        # At ERROR, as 0.3.0 logged it (logger.exception): apps alert on that level.
        assert [r.levelno for r in caplog.records if "broken" in r.getMessage()] == [logging.ERROR]

    async def test_error_text_falls_back_to_the_exception_type(self) -> None:
        engine = HookEngine()

        async def silent(ev: Any, ctx: Any) -> None:
            raise KeyError

        engine.register(reg(silent))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.allowed
        assert result.hook_errors == [{"hook": "silent", "error": "KeyError"}]

    async def test_wrong_return_type_is_ignored_and_reported(self) -> None:
        engine = HookEngine()

        async def chatty(ev: Any, ctx: Any) -> str:
            return "block please"

        engine.register(reg(chatty))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.allowed
        assert result.hook_errors[0]["hook"] == "chatty"
        assert "expected HookResult" in result.hook_errors[0]["error"]

    async def test_a_plain_function_runs_its_result_counting(self) -> None:
        # It was reported as not async, and the message went through the filter it was.
        engine = HookEngine()

        def not_async(ev: Any, ctx: Any) -> HookResult:
            return HookResult.block("blocked")

        engine.register(reg(not_async))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert not result.allowed and result.reason == "blocked"
        assert result.hook_errors == []

    async def test_async_registrations_are_not_run(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("async_one", HookResult.block("x")), execution=ASYNC))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.allowed and rec.calls == []

    async def test_room_hooks_run_for_their_room_only(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.add_room_hook("r1", reg(rec.hook("room_guard", HookResult.block("closed"))))
        assert not (await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)).allowed
        assert (await engine.run_sync_hooks("r2", BEFORE, event(), CONTEXT)).allowed


# -- async hooks ----------------------------------------------------------------------------


class TestRunAsyncHooks:
    async def test_no_hooks(self) -> None:
        assert await HookEngine().run_async_hooks("r1", AFTER, event(), CONTEXT) == []

    async def test_single_hook_runs(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("only"), AFTER, ASYNC))
        assert await engine.run_async_hooks("r1", AFTER, event(), CONTEXT) == []
        assert rec.calls == ["only"]

    async def test_hooks_run_concurrently(self) -> None:
        """Each hook waits for the other: run one after the other, they would deadlock."""
        engine = HookEngine()
        a_ran, b_ran = anyio.Event(), anyio.Event()

        async def a(ev: Any, ctx: Any) -> None:
            a_ran.set()
            await b_ran.wait()

        async def b(ev: Any, ctx: Any) -> None:
            b_ran.set()
            await a_ran.wait()

        engine.register(reg(a, AFTER, ASYNC, timeout=5))
        engine.register(reg(b, AFTER, ASYNC, timeout=5))
        with anyio.fail_after(5):
            assert await engine.run_async_hooks("r1", AFTER, event(), CONTEXT) == []

    async def test_errors_are_returned_logged_and_not_raised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        engine = HookEngine()
        rec = Recorder()
        boom = ValueError("boom")

        async def failing(ev: Any, ctx: Any) -> None:
            raise boom

        engine.register(reg(rec.hook("ok_before"), AFTER, ASYNC))
        engine.register(reg(failing, AFTER, ASYNC))
        engine.add_room_hook("r1", reg(rec.hook("ok_room"), AFTER, ASYNC))
        with caplog.at_level(logging.WARNING, logger="roomkit.hooks"):
            errors = await engine.run_async_hooks("r1", AFTER, event(), CONTEXT)
        assert errors == [HookError("failing", boom)]
        name, exc = errors[0]
        assert (name, exc) == ("failing", boom)
        assert sorted(rec.calls) == ["ok_before", "ok_room"]
        assert [r.levelno for r in caplog.records if "failing" in r.getMessage()] == [
            logging.ERROR  # 0.3.0's level
        ]

    async def test_filters_and_skip(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(
            reg(rec.hook("speech"), HookTrigger.ON_SPEECH_START, ASYNC, channel_ids={"x"})
        )
        await engine.run_async_hooks("r1", HookTrigger.ON_SPEECH_START, event(), CONTEXT)
        assert rec.calls == []
        await engine.run_async_hooks(
            "r1", HookTrigger.ON_SPEECH_START, event(), CONTEXT, skip_event_filter=True
        )
        assert rec.calls == ["speech"]

    async def test_sync_registrations_are_not_run(self) -> None:
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("sync_one"), AFTER, SYNC))
        assert await engine.run_async_hooks("r1", AFTER, event(), CONTEXT) == []
        assert rec.calls == []

    async def test_caller_cancellation_is_not_swallowed(self) -> None:
        engine = HookEngine()
        started = anyio.Event()

        async def slow(ev: Any, ctx: Any) -> None:
            started.set()
            await anyio.Event().wait()

        engine.register(reg(slow, AFTER, ASYNC))
        engine.register(reg(Recorder().hook("quick"), AFTER, ASYNC))
        finished = False
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal finished
                await engine.run_async_hooks("r1", AFTER, event(), CONTEXT)
                finished = True

            tg.start_soon(run)
            await started.wait()
            tg.cancel_scope.cancel()
        assert not finished


class TestTimeouts:
    """Timeouts run on trio's autojumping mock clock: 30 virtual seconds pass instantly."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def test_sync_hook_timeout_fails_open(self, caplog: pytest.LogCaptureFixture) -> None:
        engine = HookEngine()
        rec = Recorder()

        async def stuck(ev: Any, ctx: Any) -> HookResult:
            await anyio.sleep(31)
            return HookResult.block("too late")

        engine.register(reg(stuck))  # default timeout 30 s
        engine.register(reg(rec.hook("next")))
        with caplog.at_level(logging.WARNING, logger="roomkit.hooks"):
            result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        # A timeout warns (0.3.0's level); an exception is an error.
        assert [r.levelno for r in caplog.records if "stuck" in r.getMessage()] == [
            logging.WARNING
        ]
        assert result.allowed
        assert result.hook_errors == [
            {"hook": "stuck", "error": "timeout (30.0s)"}  # 0.3.0's text
        ]
        assert rec.calls == ["next"]

    async def test_each_async_hook_has_its_own_timeout(self) -> None:
        engine = HookEngine()
        done: list[str] = []

        def sleeper(name: str, seconds: float) -> Any:
            async def fn(ev: Any, ctx: Any) -> None:
                await anyio.sleep(seconds)
                done.append(name)

            fn.__name__ = name
            return fn

        engine.register(reg(sleeper("fast", 1), AFTER, ASYNC, timeout=2))
        engine.register(reg(sleeper("slow", 10), AFTER, ASYNC, timeout=5))
        engine.register(reg(sleeper("patient", 10), AFTER, ASYNC, timeout=20))
        errors = await engine.run_async_hooks("r1", AFTER, event(), CONTEXT)
        assert [e.hook for e in errors] == ["slow"]
        assert isinstance(errors[0].error, HookTimeoutError)
        assert isinstance(errors[0].error, TimeoutError)
        assert sorted(done) == ["fast", "patient"]

    async def test_a_hooks_own_timeout_error_is_not_its_timeout(self) -> None:
        engine = HookEngine()

        async def io_timeout(ev: Any, ctx: Any) -> None:
            raise TimeoutError("upstream read timed out")

        engine.register(reg(io_timeout))
        result = await engine.run_sync_hooks("r1", BEFORE, event(), CONTEXT)
        assert result.hook_errors == [{"hook": "io_timeout", "error": "upstream read timed out"}]

    async def test_works_on_trio(self) -> None:
        """The engine is pure anyio: the whole pipeline also runs on trio."""
        engine = HookEngine()
        rec = Recorder()
        engine.register(reg(rec.hook("a"), AFTER, ASYNC))
        engine.register(reg(rec.hook("b"), AFTER, ASYNC))
        assert await engine.run_async_hooks("r1", AFTER, event(), CONTEXT) == []
        assert sorted(rec.calls) == ["a", "b"]
