"""``make demo``: the scripted conversation runs and its output shows what it promises."""

from __future__ import annotations

import re

import pytest

from roomkit.demo import CUSTOMER_PHONE, ROOM_ID, main, run


async def test_the_demo_tells_the_story_and_replays_every_version() -> None:
    lines: list[str] = []
    log = await run(lines.append)
    output = "\n".join(lines)
    assert len(lines) < 60

    # The conversation.
    assert "   blocked by content_filter: card number" in lines
    ai_reply = "Sorry about that! I'm checking order #4711 with the team."
    assert f"   sms to {CUSTOMER_PHONE}: {ai_reply}" in lines  # the AI reply reached SMS
    assert f"   ws agent-console got [ai] {ai_reply}" in lines
    (duplicate,) = [line for line in lines if "duplicate recognised" in line]
    assert duplicate.endswith(", nothing appended") and "different event" not in duplicate
    assert "same as the live room: yes" in output

    # The replay, as ``roomkit replay`` prints it: one line per version, in order.
    start = lines.index(f"room {ROOM_ID}: log at version {await log.last_version(ROOM_ID)}")
    timeline = [line for line in lines[start + 1 :] if not line.startswith("-- ")]
    total = await log.last_version(ROOM_ID)
    assert [line.split()[0] for line in timeline] == [f"v{n}" for n in range(1, total + 1)]
    (blocked,) = [line for line in timeline if "BLOCKED" in line]
    assert blocked.endswith(
        '"Can I pay with 4111 1111 1111 1111?" BLOCKED by content_filter: card number'
    )
    (reply,) = [line for line in timeline if f'"{ai_reply}" delivered' in line]
    reply_version = reply.split()[0]
    assert any(
        re.search(rf"delivery\.recorded +router +{reply_version} -> sms ok", line)
        for line in timeline
    )
    # The duplicate webhook appended nothing: the first SMS is recorded once.
    assert sum("My order #4711 hasn't arrived" in line for line in timeline) == 1


def test_main_prints_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("RoomKit demo: ")
    assert "BLOCKED by content_filter" in out


@pytest.mark.nats
def test_nats_flag_runs_the_ingress_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("RoomKit NATS demo: nats-server with JetStream on nats://")
    assert "same as before the restart: yes" in out
