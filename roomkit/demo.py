"""``make demo``: a scripted conversation on the embedded in-memory default.

For now it shows the engine underneath a room: commands become immutable events appended to the
log, and replaying the log rebuilds the same history.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

from eventlog import Headers, MemoryEventLog, NewEvent, WrongExpectedVersion


class MessageRecorded(msgspec.Struct, frozen=True):
    channel: str
    sender: str
    body: str


SCRIPT = [
    MessageRecorded("sms", "+15550001111", "Hi, my order hasn't arrived."),
    MessageRecorded("ai", "assistant", "Sorry about that! Can you share the order number?"),
    MessageRecorded("sms", "+15550001111", "It's 4711."),
    MessageRecorded("websocket", "agent-ana", "Found it: it ships today."),
]


async def run(out: list[str]) -> None:
    log = MemoryEventLog()
    room = "demo-room"
    for n, message in enumerate(SCRIPT):
        headers = Headers(message_id=f"msg-{n}", correlation_id=room)
        event = NewEvent("message.recorded", msgspec.msgpack.encode(message), headers)
        await log.append(room, [event], expected_version=n)
    # A retry of an already committed message is recognised and appends nothing.
    retry = NewEvent("message.recorded", msgspec.msgpack.encode(SCRIPT[0]), Headers("msg-0"))
    await log.append(room, [retry], expected_version=0)
    try:
        await log.append(room, [NewEvent("message.recorded")], expected_version=1)
    except WrongExpectedVersion as exc:
        out.append(f"stale writer rejected: {exc}")

    out.append(f"replaying room {room!r}:")
    for record in await log.read(room):
        message = msgspec.msgpack.decode(record.data, type=MessageRecorded)
        out.append(f"  v{record.version} [{message.channel:>9}] {message.sender}: {message.body}")
    info = (await log.streams())[0]
    out.append(f"room {info.stream!r} is at version {info.version}")


def main() -> None:
    lines: list[str] = []
    anyio.run(run, lines)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
