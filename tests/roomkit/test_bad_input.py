"""Bad input to the kit gets a clear, typed error and changes nothing: in particular nothing
is logged that a replay of the room would fail on."""

from __future__ import annotations

import pydantic
import pytest

from eventlog import EventLog
from roomkit import Access, RoomKit
from roomkit.core._room_ids import room_stream
from tests.roomkit.kit_helpers import SimpleChannel, text


async def room(kit: RoomKit) -> None:
    kit.register_channel(SimpleChannel("sms"))
    await kit.create_room(room_id="r1")
    await kit.attach_channel("r1", "sms")


async def test_a_binding_change_the_model_refuses_is_not_logged(
    kit: RoomKit, event_log: EventLog
) -> None:
    await room(kit)
    version = await event_log.last_version(room_stream("r1"))
    with pytest.raises(pydantic.ValidationError):
        await kit.set_visibility("r1", "sms", 5)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        await kit.set_access("r1", "sms", "sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await kit.update_binding_metadata("r1", "sms", None)  # type: ignore[arg-type]
    assert await event_log.last_version(room_stream("r1")) == version
    binding = await kit.get_binding("r1", "sms")
    assert (binding.visibility, binding.access) == ("all", Access.READ_WRITE)
    # The room still works; the kit fixture then replays the log into a second kit.
    assert not (await kit.process_inbound(text("sms", "still here"), room_id="r1")).blocked


async def test_a_binding_change_is_stored_as_the_model_reads_it(kit: RoomKit) -> None:
    await room(kit)
    changed = await kit.set_access("r1", "sms", "read_only")  # type: ignore[arg-type]
    assert changed.access is Access.READ_ONLY
    assert (await kit.get_binding("r1", "sms")).access is Access.READ_ONLY


async def test_process_inbound_takes_an_inbound_message(kit: RoomKit) -> None:
    await room(kit)
    for bad in (None, {"channel_id": "sms"}, "hello"):
        with pytest.raises(TypeError, match="InboundMessage"):
            await kit.process_inbound(bad)  # type: ignore[arg-type]
