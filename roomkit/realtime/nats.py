"""``NatsRealtime``: ephemeral events over core NATS, for kits in several processes.

``InMemoryRealtime`` reaches the subscribers of one process only. When several processes serve
the same rooms (two ingress processes on one JetStream, say), a typing indicator published in
one must reach the WebSocket clients connected to the other: this backend publishes each event
on a core NATS subject and every process subscribed to it gets it. Nothing is stored (core
NATS, not JetStream): a subscriber that is not connected when an event is published never sees
it, as ephemeral events go.

Subjects: the events of channel ``C`` go on ``<subject_prefix>.rt.<token>``, where the token
is ``C`` itself when it is a plain name (``[A-Za-z0-9_-]``, at most 64 characters) and else
``~`` and the base64url of ``C`` (or of its SHA-256, past 45 bytes): ``room:support-1`` is
``roomkit.rt.~cm9vbTpzdXBwb3J0LTE``. The payload is ``EphemeralEvent.to_dict()`` as JSON.

Differences from ``InMemoryRealtime``, both of NATS's making: a subscriber that falls more
than ``max_queue_size`` events behind loses the newest ones (nats-py's slow-consumer limit),
not the oldest; and ``publish`` to a server that is away is buffered by the client while it
reconnects (up to its pending size), then dropped with a warning. Runs on asyncio only, as
nats-py does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from actors import check_count, check_finite_seconds
from eventlog import LogUnavailable
from eventlog._nats_setup import close_quietly, open_client, require_asyncio
from roomkit.errors import RoomKitError
from roomkit.models._defaults import new_id
from roomkit.realtime.base import EphemeralCallback, EphemeralEvent, RealtimeBackend

__all__ = ["NatsRealtime", "RealtimeUnavailableError", "channel_subject"]

logger = logging.getLogger("roomkit.realtime")

_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX_TOKEN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_MAX_REVERSIBLE = 45  # bytes whose base64url (60 characters) still makes a short token


class RealtimeUnavailableError(RoomKitError):
    """NATS could not be reached to subscribe (or the backend runs outside asyncio)."""


def channel_subject(subject_prefix: str, channel: str) -> str:
    """The NATS subject of realtime channel ``channel`` (see the module docstring)."""
    if _PLAIN.fullmatch(channel):
        token = channel
    else:
        raw = channel.encode("utf-8", "surrogatepass")
        if len(raw) > _MAX_REVERSIBLE:
            raw = hashlib.sha256(raw).digest()
        token = "~" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return f"{subject_prefix}.rt.{token}"


class NatsRealtime(RealtimeBackend):
    """Realtime backend over core NATS pub/sub (see the module docstring).

    Connects on first use; ``close()`` (or leaving ``async with``) closes its own connection.

    Args:
        nats_url: the NATS URL(s), or a connected nats-py client (used and left open).
        subject_prefix: dot-separated tokens; events go on ``<prefix>.rt.<channel token>``.
        max_queue_size: events a subscription may fall behind by before it loses new ones.
        connect_timeout: bound of the first connection.
        connect_options: more keyword arguments for ``nats.connect`` (TLS, credentials, ...).

    Raises:
        ValueError: a bad prefix, or a non-positive size or timeout.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] | NatsClient = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "roomkit",
        max_queue_size: int = 100,
        connect_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(subject_prefix, str) or not _PREFIX_TOKEN.fullmatch(subject_prefix):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        self._max_queue_size = check_count("max_queue_size", max_queue_size)
        if self._max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        self._connect_timeout = check_finite_seconds("connect_timeout", connect_timeout)
        if isinstance(nats_url, NatsClient):
            self._client: NatsClient | None = nats_url
            self._servers: list[str] = []
        else:
            self._client = None
            self._servers = [nats_url] if isinstance(nats_url, str) else list(nats_url)
        self._connect_options = dict(connect_options or {})
        self.subject_prefix = subject_prefix
        self._nc: NatsClient | None = None
        self._connecting: anyio.Lock | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._closed = False

    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions."""
        return len(self._subscriptions)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    async def publish(self, channel: str, event: EphemeralEvent) -> None:
        """Publish ``event`` on ``channel``'s subject; ignored after ``close``.

        Best effort, as ephemeral events are: a failure (NATS unreachable, the connection
        closed) is logged and the event dropped, never raised to the publisher.
        """
        if self._closed:
            return
        try:
            nc = await self._connected()
            data = msgspec.json.encode(event.to_dict())
            await nc.publish(channel_subject(self.subject_prefix, channel), data)
        except (RealtimeUnavailableError, nats.errors.Error, OSError) as exc:
            logger.warning("realtime event on %r dropped: %s", channel, exc)

    async def subscribe(self, channel: str, callback: EphemeralCallback) -> str:
        """Call ``callback`` for every event published on ``channel`` (by any process) from
        now on, one at a time, in the order each publisher sent them.

        Raises:
            RuntimeError: the backend is closed.
            RealtimeUnavailableError: NATS could not be reached.
        """
        if self._closed:
            raise RuntimeError("NatsRealtime is closed")
        nc = await self._connected()

        async def deliver(msg: Msg) -> None:
            try:
                event = EphemeralEvent.from_dict(msgspec.json.decode(msg.data))
            except (msgspec.DecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
                logger.warning(
                    "realtime: not an ephemeral event on %s, ignored: %s", msg.subject, exc
                )
                return
            try:
                await callback(event)
            except Exception:
                logger.exception(
                    "realtime callback of subscription %s on %r failed", sub_id, channel
                )

        sub_id = new_id()
        try:
            subscription = await nc.subscribe(
                channel_subject(self.subject_prefix, channel),
                cb=deliver,
                pending_msgs_limit=self._max_queue_size,
            )
        except (nats.errors.Error, OSError) as exc:
            raise RealtimeUnavailableError(f"cannot subscribe to {channel!r}: {exc}") from exc
        self._subscriptions[sub_id] = subscription
        return sub_id

    async def unsubscribe(self, subscription_id: str) -> bool:
        """Stop a subscription; ``False`` if there is none of that id."""
        subscription = self._subscriptions.pop(subscription_id, None)
        if subscription is None:
            return False
        try:
            await subscription.unsubscribe()
        except (nats.errors.Error, OSError) as exc:  # the connection is gone: so is the interest
            logger.info("realtime: unsubscribing %s: %s", subscription_id, exc)
        return True

    async def close(self) -> None:
        """Stop every subscription and close the connection this backend made; later
        publishes are ignored."""
        self._closed = True
        for subscription_id in list(self._subscriptions):
            await self.unsubscribe(subscription_id)
        nc, self._nc = self._nc, None
        if nc is not None and self._client is None:
            await close_quietly(nc)

    async def _connected(self) -> NatsClient:
        if self._nc is not None:
            return self._nc
        require_asyncio("NatsRealtime", RealtimeUnavailableError)
        if self._connecting is None:
            self._connecting = anyio.Lock()
        async with self._connecting:  # concurrent first calls make one connection
            if self._nc is None:
                if self._client is not None:
                    self._nc = self._client
                else:
                    try:
                        self._nc = await open_client(
                            self._servers,
                            connect_timeout=self._connect_timeout,
                            request_timeout=self._connect_timeout,
                            options={"name": "roomkit-realtime", **self._connect_options},
                        )
                    except LogUnavailable as exc:
                        raise RealtimeUnavailableError(str(exc)) from exc
                if self._closed:  # closed while connecting
                    nc, self._nc = self._nc, None
                    if self._client is None:
                        await close_quietly(nc)
                    raise RealtimeUnavailableError("NatsRealtime is closed")
        return self._nc

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._nc else "idle"
        return f"<NatsRealtime {state} subscriptions={self.subscription_count}>"
