"""``make demo-nats``: the conversation through the NATS ingress, a crash, and the replay."""

from __future__ import annotations

import re

import pytest

from roomkit.ingress.demo_nats import run_nats_demo

pytestmark = pytest.mark.nats


async def test_the_nats_demo_rebuilds_the_same_room_after_a_crash() -> None:
    lines: list[str] = []
    await run_nats_demo(lines.append)
    text = "\n".join(lines)

    assert re.match(r"RoomKit NATS demo: nats-server with JetStream on nats://127\.0\.0\.1:\d+$",
                    lines[0])  # fmt: skip
    first = re.search(r"recorded as event (\w{8}) at index \d+ of support-4711", text)
    assert first is not None, text
    assert "   blocked: card number (recorded as blocked, index" in text
    assert "   sms to +15550001111: For your safety, please never send card numbers here." in text
    assert "   JetStream recognised the retry (same Nats-Msg-Id): stored once" in text
    assert "   dead letter on roomkit.dlq.sms: bad_payload (the payload does not decode" in text
    assert "   ws agent-console got [ai] You're welcome! Anything else I can do?" in text
    assert "nats-server killed with SIGKILL and restarted on the same store" in lines
    # What kit #1 left is what the replay at the end reads (kit #2 appends nothing).
    assert "Kit #1 stopped; the room's log is at version 22 in JetStream" in lines

    rebuilt = next(line for line in lines if line.startswith("Kit #2"))
    assert rebuilt.endswith("same as before the restart: yes"), rebuilt
    assert "3 channels, 1 participant, 11 timeline events" in rebuilt
    assert (
        f"   duplicate recognised by the room: already recorded as event {first.group(1)}, "
        "nothing appended"
    ) in lines

    replay = lines[lines.index("") + 1 :]
    assert replay[0].startswith("The room's log, as `roomkit replay support-4711 --log nats://")
    assert replay[1] == "room support-4711: log at version 22"
    assert any("BLOCKED by content_filter" in line for line in replay)
