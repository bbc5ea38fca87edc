"""Test channels and helpers shared by the kit's tests (as the seed's testing section shows)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from roomkit import (
    Channel,
    ChannelBinding,
    ChannelCapabilities,
    ChannelCategory,
    ChannelMediaType,
    ChannelOutput,
    ChannelType,
    EventSource,
    HookExecution,
    HookTrigger,
    InboundMessage,
    MediaContent,
    RetryPolicy,
    RoomContext,
    RoomEvent,
    RoomKit,
    SystemContent,
    TextContent,
)


class SimpleChannel(Channel):
    """A bidirectional test channel that records every event delivered to it."""

    channel_type = ChannelType.SMS

    def __init__(
        self,
        channel_id: str,
        channel_type: ChannelType = ChannelType.SMS,
        media_types: list[ChannelMediaType] | None = None,
        fail: bool = False,
    ) -> None:
        super().__init__(channel_id)
        self.channel_type = channel_type  # type: ignore[misc]
        self.media_types = media_types or [ChannelMediaType.TEXT]
        self.fail = fail
        self.delivered: list[RoomEvent] = []
        self.seen: list[RoomEvent] = []

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        return RoomEvent(
            room_id=context.room.id,
            source=EventSource(
                channel_id=self.channel_id,
                channel_type=self.channel_type,
                participant_id=message.sender_id,
            ),
            content=message.content,
            idempotency_key=message.idempotency_key,
            metadata=dict(message.metadata),
        )

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if self.fail:
            raise RuntimeError(f"{self.channel_id} is down")
        self.delivered.append(event)
        return ChannelOutput.empty()

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.seen.append(event)
        return ChannelOutput.empty()

    def capabilities(self) -> ChannelCapabilities:
        return ChannelCapabilities(media_types=list(self.media_types))

    def texts(self) -> list[str]:
        return [e.content.body for e in self.delivered if isinstance(e.content, TextContent)]


def canned_reply(room_id: str, channel_id: str = "ai", body: str = "canned reply") -> RoomEvent:
    """An AI channel's reply made once, before any message it answers (see CannedReplies)."""
    return RoomEvent(
        room_id=room_id,
        source=EventSource(channel_id=channel_id, channel_type=ChannelType.AI),
        content=TextContent(body=body),
    )


class CannedReplies(SimpleChannel):
    """An AI channel that answers each event of a channel that is not an AI with one and the
    same reply object (a canned reply made once, given again every time)."""

    def __init__(self, channel_id: str, reply: RoomEvent) -> None:
        super().__init__(channel_id, ChannelType.AI)
        self.reply = reply

    async def on_event(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        if event.source.channel_type == ChannelType.AI:
            return ChannelOutput.empty()
        return ChannelOutput(responded=True, response_events=[self.reply])


class RewritesUrls(SimpleChannel):
    """Points an inbound media message at the app's own bucket, in place: the kit records the
    event as the channel left it (not validated again on the hot path), one that does not
    validate as a RoomEvent. Where it points is the message's content, which no error or log
    may quote."""

    rewritten_url = "s3://bucket/SECRET-4242.png"  # no scheme a RoomEvent validates

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        event = RoomEvent(
            room_id=context.room.id,
            source=EventSource(channel_id=self.channel_id, channel_type=self.channel_type),
            content=message.content,
        )
        assert isinstance(event.content, MediaContent)
        event.content.url = self.rewritten_url
        return event


class Retried(SimpleChannel):
    """Fails every delivery; its first attempt hangs until ``release`` is set (or its
    ``process_timeout`` cuts it). Notes each attempt in ``log``."""

    def __init__(self, channel_id: str, log: list[str] | None = None) -> None:
        super().__init__(channel_id)
        self.log = log if log is not None else []
        self.attempts = 0
        self.metadata: list[dict[str, Any]] = []  # each attempt's binding's
        self.trying = anyio.Event()
        self.release = anyio.Event()

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        self.attempts += 1
        self.metadata.append(binding.metadata)
        self.log.append(f"attempt {self.attempts}")
        if self.attempts == 1:
            self.trying.set()
            await self.release.wait()
        raise RuntimeError(f"{self.channel_id} is down")


async def retrying_room(kit: RoomKit, sms: Retried, base_delay: float = 0.01) -> None:
    """Room r1: ws (the sender) and ``sms``, whose deliveries are retried three times."""
    kit.register_channel(SimpleChannel("ws", ChannelType.WEBSOCKET))
    kit.register_channel(sms)
    await room_with(kit, "r1", "ws")
    policy = RetryPolicy(max_retries=3, base_delay_seconds=base_delay)
    await kit.attach_channel("r1", "sms", retry_policy=policy)


async def changed_while_it_hangs(
    kit: RoomKit, sms: Retried, change: str | Callable[[], Awaitable[object]]
) -> None:
    """Send r1 a message from ws and, while its delivery to ``sms`` hangs in its first
    attempt, detach or mute ``sms`` (``change``; or await ``change()``): the command returns
    while it still hangs (it waited for the delivery's whole retry schedule); then let the
    attempt end."""

    async def named() -> None:
        if change == "detach":
            assert await kit.detach_channel("r1", "sms")
        else:
            assert (await kit.mute("r1", "sms")).muted

    async with anyio.create_task_group() as tg:
        tg.start_soon(kit.process_inbound, text("ws", "hello"))
        await sms.trying.wait()
        try:
            with anyio.fail_after(10):  # it waited for good: the channel hangs
                await (named() if isinstance(change, str) else change())
            assert sms.attempts == 1  # returned while the delivery still hangs
        finally:
            sms.release.set()


def text(channel_id: str, body: str, sender: str = "user-1", **kwargs: Any) -> InboundMessage:
    return InboundMessage(
        channel_id=channel_id, sender_id=sender, content=TextContent(body=body), **kwargs
    )


async def room_with(kit: RoomKit, room_id: str, *channel_ids: str) -> None:
    """Create the room and attach these (registered) channels to it."""
    await kit.create_room(room_id=room_id)
    for channel_id in channel_ids:
        await kit.attach_channel(room_id, channel_id)


def errors_said(kit: RoomKit) -> list[dict[str, object]]:
    """What the kit's ON_ERROR hooks will be told: each failure's code and data."""
    errors: list[dict[str, object]] = []

    @kit.hook(HookTrigger.ON_ERROR, execution=HookExecution.ASYNC)
    async def noted(event: RoomEvent, context: RoomContext) -> None:
        assert isinstance(event.content, SystemContent)
        errors.append({"code": event.content.code, **event.content.data})

    return errors


def category_of(channel_id: str) -> ChannelCategory:
    """The category the tests attach a channel with: the AI channels ("ai", "ai1", ...) are
    INTELLIGENCE, which 0.3.0 (and the kit) need to be told explicitly."""
    return (
        ChannelCategory.INTELLIGENCE if channel_id.startswith("ai") else ChannelCategory.TRANSPORT
    )


def stopped(pid: int) -> bool | None:
    """Whether every thread of process ``pid`` is stopped (SIGSTOP), read from ``/proc``;
    ``None`` where there is none. The signal is sent before they stop: a thread of a server
    still running answered what was sent just after."""
    threads = Path(f"/proc/{pid}/task")
    if not threads.is_dir():
        return None
    for thread in threads.iterdir():
        try:
            stat = thread.joinpath("stat").read_text()
        except FileNotFoundError:  # it ended meanwhile
            continue
        # "<tid> (<name>) <state> ...": "T" once stopped ("t" traced).
        if stat.rpartition(")")[2].split()[0] not in ("T", "t"):
            return False
    return True


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` (observable state) until it holds; fail after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not await check():
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
