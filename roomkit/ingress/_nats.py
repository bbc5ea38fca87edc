"""NATS plumbing of the ingress: connecting, classifying failures, ensuring streams.

nats-py is asyncio only; everything here is awaited from anyio tasks on the asyncio backend,
and every request carries its own timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.client import JetStreamContext

from eventlog import LogUnavailable
from eventlog._nats_errors import limit_reached
from eventlog._redacted import redacted
from eventlog.nats import close_nats_client, is_transient_nats_error, open_nats_client
from roomkit.ingress._deadletter import headers_size
from roomkit.ingress.errors import IngressError, IngressUnavailable

__all__ = [
    "close_quietly",
    "connect",
    "ensure_consumer",
    "ensure_stream",
    "is_transient",
]

logger = logging.getLogger("roomkit.ingress")

#: ``add_stream`` with a name that exists with another configuration.
ERR_STREAM_NAME_IN_USE = 10058

#: ``add_consumer`` of a second consumer of a work-queue stream over the same subjects.
ERR_CONSUMER_NOT_UNIQUE = 10100


def is_transient(exc: BaseException) -> bool:
    """Whether a NATS call that raised ``exc`` may succeed later (server or link away)."""
    return is_transient_nats_error(exc)


#: What JetStream counts against a stream's ``max_bytes`` for each message beside its subject,
#: headers and payload, by storage: sequence and time (memory); record length, sequence,
#: time, subject length and hash, plus the headers' length when there are headers (file).
#: Measured on nats-server 2.10/2.11: a message fits an empty stream iff all of it is at most
#: ``max_bytes`` (``test_ingress.py`` checks it against the server the tests run).
_MEMORY_OVERHEAD = 16
_FILE_OVERHEAD = 30
_FILE_HEADERS_OVERHEAD = 4


def stored_size(
    subject: str, payload: int, headers: Mapping[str, str] | None, storage: StorageType | None
) -> int:
    """The bytes a message of ``payload`` bytes on ``subject`` with ``headers`` (as sent)
    takes in a stream of ``storage``, as JetStream counts them against ``max_bytes``."""
    size = len(subject.encode()) + (headers_size(headers) if headers else 0) + payload
    if storage == StorageType.MEMORY:
        return size + _MEMORY_OVERHEAD
    return size + _FILE_OVERHEAD + (_FILE_HEADERS_OVERHEAD if headers else 0)


async def full_for_now(
    exc: BaseException,
    js: JetStreamContext,
    stream: str | None,
    subject: str,
    payload: int,
    headers: Mapping[str, str] | None,
    timeout: float,
) -> bool:
    """Whether ``exc`` refused a message (``payload`` bytes, ``headers`` as sent) because
    ``stream`` (or the stream capturing ``subject``) is full, its limits on what it holds
    reached with ``discard=new``, and it may take the message once it holds less: the log's
    writes wait for nobody to empty its stream, but the ingress's streams empty as their
    messages are taken.

    Not when the message alone, with its subject, headers and JetStream's own bytes, is over
    the stream's ``max_bytes``: it is refused whatever the stream holds (waited for, a dead
    letter over it was retried for ever, and a caller told to publish again did so for
    ever). A limit on the number of messages is always full for now; so is a stream that
    holds nothing as it is asked (its consumer emptied it since: taken as never fitting, a
    valid message was said invalid for good). Full when it cannot say.
    """
    if not limit_reached(exc):
        return False
    if not getattr(exc, "description", "").startswith("maximum bytes"):
        return True
    try:
        with anyio.fail_after(timeout):
            name = stream or await js.find_stream_name_by_subject(subject)
            info = await js.stream_info(name)
    except Exception:  # noqa: BLE001 - not known: taken as full, waited for
        return True
    limit = info.config.max_bytes or -1
    return not 0 < limit < stored_size(subject, payload, headers, info.config.storage)


async def connect(
    servers: str | Sequence[str],
    *,
    connect_timeout: float,
    request_timeout: float,
    name: str,
    options: Mapping[str, Any] | None = None,
) -> NatsClient:
    """A client that reconnects for ever, quickly (the event log's settings, see
    ``eventlog.nats.open_nats_client``).

    Raises:
        IngressUnavailable: no server answered within ``connect_timeout``.
    """
    try:
        return await open_nats_client(
            [servers] if isinstance(servers, str) else list(servers),
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            options={"name": name, **(options or {})},
        )
    except LogUnavailable as exc:
        raise IngressUnavailable(f"cannot connect to NATS at {redacted(servers)}") from exc


async def close_quietly(nc: NatsClient) -> None:
    """Close ``nc``, bounded and best effort (the caller already has a better error)."""
    await close_nats_client(nc)


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    subject: str,
    *,
    storage: StorageType,
    duplicate_window: float,
    work_queue: bool,
    timeout: float,
) -> StreamInfo:
    """Create the JetStream stream ``name`` over ``subject``, or check the existing one.

    An existing stream is used as it is (an operator may have tuned its limits, replicas or
    retention), as long as it captures ``subject``.

    Returns:
        The stream's info (its configuration says whether direct gets are allowed).

    Raises:
        IngressUnavailable: JetStream did not answer.
        IngressError: the stream exists without ``subject``, or JetStream refused it.
    """
    config = StreamConfig(
        name=name,
        subjects=[subject],
        storage=storage,
        duplicate_window=duplicate_window,
        # Work queue: an acknowledged message is deleted, so the stream holds exactly the
        # messages still to process (and a recovery after a crash reads only those).
        retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
        allow_direct=True,
    )
    try:
        with anyio.fail_after(timeout):
            try:
                return await js.add_stream(config)
            except nats.js.errors.APIError as exc:
                if exc.err_code != ERR_STREAM_NAME_IN_USE:
                    raise
            info = await js.stream_info(name)
    except nats.js.errors.APIError as exc:
        if is_transient(exc):
            raise IngressUnavailable(f"JetStream did not create stream {name}: {exc}") from exc
        raise IngressError(f"JetStream refused stream {name}: {exc}") from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise IngressUnavailable(f"JetStream did not create stream {name}: {exc!r}") from exc
    subjects = info.config.subjects or []
    if subject not in subjects:
        raise IngressError(
            f"JetStream stream {name} exists with subjects {subjects}, not {subject!r}: "
            "choose another stream name or subject prefix"
        )
    logger.debug("using the existing JetStream stream %s", name)
    return info


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subject: str,
    *,
    ack_wait: float,
    max_ack_pending: int,
    timeout: float,
) -> JetStreamContext.PullSubscription:
    """Create (or update) the durable pull consumer and bind a pull subscription to it.

    A consumer that exists with settings that cannot change (an operator's, an older
    version's) is used as it is.

    Raises:
        IngressUnavailable: JetStream did not answer.
        IngressError: JetStream refused the consumer.
    """
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        filter_subject=subject,
    )
    try:
        with anyio.fail_after(timeout):
            try:
                await js.add_consumer(stream, config)
            except nats.js.errors.APIError as exc:
                if is_transient(exc):
                    raise
                if exc.err_code == ERR_CONSUMER_NOT_UNIQUE:
                    # Said as it is: "using it" and then "consumer not found" read as a bug.
                    raise IngressError(
                        f"JetStream stream {stream} is a work queue with a consumer already, "
                        f"which takes its messages: serve it with that consumer's durable "
                        f"name, not {durable!r}, or use another stream"
                    ) from exc
                logger.warning(
                    "ingress: consumer %s exists with another configuration (%s); using it",
                    durable,
                    exc.description,
                )
                await js.consumer_info(stream, durable)
            return await js.pull_subscribe_bind(durable=durable, stream=stream)
    except nats.js.errors.APIError as exc:
        if is_transient(exc):
            raise IngressUnavailable(f"JetStream did not answer: {exc}") from exc
        raise IngressError(f"JetStream refused consumer {durable}: {exc}") from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise IngressUnavailable(f"JetStream did not answer: {exc!r}") from exc
