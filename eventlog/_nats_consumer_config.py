"""The configuration of the short-lived consumers that read the log (replays, subscriptions)."""

from __future__ import annotations

from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["reader_config"]


def reader_config(
    name: str,
    *,
    filter_subject: str | None,
    start_seq: int,
    last_per_subject: bool,
    inactive_threshold: float,
    **push: Any,
) -> ConsumerConfig:
    """An ephemeral, unacknowledged, in-memory consumer from ``start_seq`` (or the last
    message of each subject). ``inactive_threshold``: the server forgets the consumer that long
    after its reader stopped, even if the delete is lost. ``push``: push-consumer settings
    (deliver subject, flow control, heartbeats)."""
    config = ConsumerConfig(
        name=name,
        ack_policy=AckPolicy.NONE,
        filter_subject=filter_subject,
        inactive_threshold=inactive_threshold,
        mem_storage=True,
        num_replicas=1,
        **push,
    )
    if last_per_subject:
        config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
    else:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = max(start_seq, 1)
    return config
