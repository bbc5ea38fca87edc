"""``ChannelOutput.empty()`` and ``HookResult.allow()`` build their models without pydantic's
generic path: what they make must be what the validating constructor makes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from roomkit import ChannelOutput, HookResult, Observation, Task


def _same(made: BaseModel, validated: BaseModel) -> None:
    assert type(made) is type(validated)
    assert made.__dict__ == validated.__dict__
    assert list(made.__dict__) == list(validated.__dict__)  # the JSON's field order
    assert made.model_fields_set == validated.model_fields_set
    assert made.__pydantic_extra__ == validated.__pydantic_extra__
    assert made.__pydantic_private__ == validated.__pydantic_private__
    assert made == validated
    assert made.model_dump_json() == validated.model_dump_json()
    assert repr(made) == repr(validated)


def test_empty_output_is_what_validation_makes() -> None:
    _same(ChannelOutput.empty(), ChannelOutput())
    assert ChannelOutput.empty().failure is None


def test_empty_outputs_share_no_container() -> None:
    first, second = ChannelOutput.empty(), ChannelOutput.empty()
    first.tasks.append(Task(room_id="r", title="t"))
    first.metadata_updates["k"] = 1
    assert second.tasks == [] and second.metadata_updates == {}


def test_empty_output_of_a_subclass_validates() -> None:
    class Tagged(ChannelOutput):
        tag: str = "x"

    output = Tagged.empty()
    assert type(output) is Tagged and output.tag == "x"


def test_allow_is_what_validation_makes() -> None:
    _same(
        HookResult.allow(),
        HookResult(action="allow", injected_events=[], tasks=[], observations=[]),
    )


def test_allow_results_share_no_container() -> None:
    first, second = HookResult.allow(), HookResult.allow()
    first.tasks.append(Task(room_id="r", title="t"))
    assert second.tasks == []


def test_allow_with_items_still_validates() -> None:
    task: Any = {"room_id": "r", "title": "t"}  # validated into a Task, as before
    result = HookResult.allow(tasks=[task])
    assert isinstance(result.tasks[0], Task)
    observation = Observation(room_id="r", channel_id="c", content="o", category="c")
    assert HookResult.allow(observations=[observation]).observations == [observation]


def test_allow_of_a_subclass_validates() -> None:
    class Noted(HookResult):
        note: str = "n"

    result = Noted.allow()
    assert type(result) is Noted and result.note == "n" and result.action == "allow"
