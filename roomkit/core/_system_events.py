"""Builders for the room's system events: stored audit events and the synthetic, never stored
events that lifecycle and task-created hooks receive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors import error_text
from roomkit.models.enums import ChannelType, EventStatus, EventType
from roomkit.models.event import EventContent, EventSource, RoomEvent, SystemContent
from roomkit.models.task import Task

__all__ = ["audit_event", "lifecycle_event", "task_created_event"]


def lifecycle_event(
    room_id: str,
    type: EventType,
    code: str,
    body: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> RoomEvent:
    """The synthetic, never stored event that lifecycle hooks receive (as in RoomKit 0.3.0:
    source ``"system"``/SYSTEM, SystemContent, status DELIVERED, visibility ``"internal"``)."""
    return RoomEvent(
        room_id=room_id,
        type=type,
        source=EventSource(channel_id="system", channel_type=ChannelType.SYSTEM),
        content=SystemContent(body=body, code=code, data=data or {}),
        status=EventStatus.DELIVERED,
        visibility="internal",
        created_at=now,
    )


def hook_failure(name: str, error: BaseException) -> tuple[dict[str, str], str, dict[str, Any]]:
    """What a failed async hook is reported with: the data of its ``hook_error`` framework
    event, and the body and data of the event the ON_ERROR hooks get."""
    from roomkit.core.hooks import HookTimeoutError  # noqa: PLC0415 - hooks imports this

    # A timeout in 0.3.0's words, as a sync hook's is: apps match on them.
    text = error.reported if isinstance(error, HookTimeoutError) else error_text(error)
    return {"hook": name, "error": text}, f"hook {name} failed: {text}", {"hook": name}


def task_created_event(
    room_id: str, task: Task, trigger: RoomEvent | None, now: datetime
) -> RoomEvent:
    """The synthetic, never stored event that ON_TASK_CREATED hooks receive for ``task``.

    As in RoomKit 0.3.0 it is not a lifecycle event: it carries the source and content of
    ``trigger``, the event whose processing produced the task (so a hook filtered by channel
    type, channel id or direction matches the channel the message came from, and reads the
    message), status DELIVERED (as 0.3.0's ``_persist_side_effects`` set it), visibility
    ``"internal"`` and metadata ``{task_id, task_title}``. 0.3.0 sets nothing else, so every
    other field keeps ``RoomEvent``'s default (index and chain depth 0, no parent or
    correlation id); ``now`` stands in for its clock read.

    ``trigger`` is None only when the room no longer holds that event (see the decider): the
    hook then still runs, with a system source and the task's title as content.
    """
    metadata = {"task_id": task.id, "task_title": task.title}
    if trigger is None:
        source = EventSource(channel_id="system", channel_type=ChannelType.SYSTEM)
        content: EventContent = SystemContent(body=task.title, code="task_created")
    else:
        source, content = trigger.source, trigger.content
    return RoomEvent(
        room_id=room_id,
        type=EventType.TASK_CREATED,
        source=source,
        content=content,
        status=EventStatus.DELIVERED,
        visibility="internal",
        metadata=metadata,
        created_at=now,
    )


def audit_event(
    room_id: str,
    type: EventType,
    code: str,
    body: str,
    now: datetime,
    index: int,
    data: dict[str, Any] | None = None,
) -> RoomEvent:
    """A system event stored in the timeline (channel attached, participant joined, ...).

    Its source is ``"system"``/SYSTEM whatever channel or participant it is about, as in
    RoomKit 0.3.0 (``content.data`` names them). Events that a log written before this holds
    with a channel as their source are read back as they were stored."""
    return RoomEvent(
        room_id=room_id,
        type=type,
        source=EventSource(channel_id="system", channel_type=ChannelType.SYSTEM),
        content=SystemContent(body=body, code=code, data=data or {}),
        status=EventStatus.DELIVERED,
        visibility="internal",
        index=index,
        created_at=now,
    )
