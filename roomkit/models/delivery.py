"""Inbound messages and the results of processing and delivering them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from roomkit.models.event import EventContent, RoomEvent

__all__ = [
    "DeliveryResult",
    "DeliveryStatus",
    "InboundMessage",
    "InboundResult",
    "ProviderResult",
]


class InboundMessage(BaseModel):
    """A message received by a channel, before it becomes a room event."""

    channel_id: str
    sender_id: str
    content: EventContent
    external_id: str | None = None
    thread_id: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class InboundResult(BaseModel):
    """Outcome of ``process_inbound``: the committed event, or why nothing was broadcast."""

    event: RoomEvent | None = None
    blocked: bool = False
    reason: str | None = None


class ProviderResult(BaseModel):
    """What a provider answered to a send; ``success=False`` counts as a delivery failure."""

    success: bool
    provider_message_id: str | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class DeliveryResult(BaseModel):
    """Outcome of delivering one event to one channel."""

    channel_id: str
    success: bool
    provider_result: ProviderResult | None = None
    error: str | None = None


class DeliveryStatus(BaseModel):
    """A delivery report sent back by a provider (delivered, failed, read, ...)."""

    provider: str
    message_id: str
    status: str
    recipient: str = ""
    sender: str = ""
    error_code: str | None = None
    error_message: str | None = None
    timestamp: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)
