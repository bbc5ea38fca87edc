"""A channel that pushes events to connected WebSocket clients."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors import check_seconds
from roomkit.channels.base import Channel
from roomkit.core._bounded import TimedOut, bounded_here
from roomkit.core._cancel import raised_uncancelled
from roomkit.core._concurrently import concurrently
from roomkit.models.channel import ChannelBinding, ChannelCapabilities, ChannelOutput
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import ChannelMediaType, ChannelType
from roomkit.models.event import RoomEvent

__all__ = ["SendFn", "WebSocketChannel"]

logger = logging.getLogger("roomkit.channels.websocket")

SendFn = Callable[[str, RoomEvent], Awaitable[None]]
"""Sends one event to one connection: ``await send_fn(connection_id, event)`` (a plain
function, which has sent when it returns, is taken too)."""


_REACHED_KEPT = 64
"""Deliveries cut short whose reached connections a channel keeps for their retry."""

_Reached = tuple[frozenset[str], int]
"""Of a delivery cut short: the connections its sends reached, and the attempts it made."""


class _Connection:
    """One registration of a connection: ``_drop`` tells a re-registration (a client that
    reconnected under its id) from the one whose send failed by this object, not by the send
    function, which an app often shares between all its connections."""

    __slots__ = ("send",)

    def __init__(self, send: SendFn) -> None:
        self.send = send


class WebSocketChannel(Channel):
    """Delivers every event to each registered connection; a connection whose send fails, or
    does not finish within ``send_timeout``, is dropped.

    Args:
        channel_id: Unique id of this channel in the kit.
        send_timeout: Seconds one send may take (``None``: no bound). A client that stopped
            reading blocks its sends once the buffers are full; without a bound it would hold
            every delivery of its rooms, the healthy clients' included.
    """

    channel_type = ChannelType.WEBSOCKET

    def __init__(self, channel_id: str, *, send_timeout: float | None = 10.0) -> None:
        super().__init__(channel_id)
        self._connections: dict[str, _Connection] = {}
        # Of the deliveries cut short that their binding's retry policy tries again (see
        # deliver), by event id: the connections their sends reached, which a retry skips,
        # and the retries left. Taken by the retry; a few at most (a cut delivery is tried
        # again, or given up, before its room's next one), the oldest let go.
        self._reached: dict[str, _Reached] = {}
        self._send_timeout = check_seconds("send_timeout", send_timeout, none=True)
        if self._send_timeout is not None and not self._send_timeout > 0:
            raise ValueError(f"send_timeout must be positive or None, got {send_timeout!r}")

    def register_connection(self, connection_id: str, send_fn: SendFn) -> None:
        """Add a connection (replacing any with the same id).

        Args:
            connection_id: Id of the connection.
            send_fn: Coroutine function called with ``(connection_id, event)`` per event.
        """
        self._connections[connection_id] = _Connection(send_fn)

    def unregister_connection(self, connection_id: str) -> bool:
        """Remove a connection; whether there was one (unknown ids are ignored)."""
        return self._connections.pop(connection_id, None) is not None

    @property
    def connection_count(self) -> int:
        """Number of registered connections."""
        return len(self._connections)

    @property
    def info(self) -> dict[str, Any]:
        """``{"connection_count": n}``."""
        return {"connection_count": self.connection_count}

    def capabilities(self) -> ChannelCapabilities:
        """Everything a browser client can render."""
        return ChannelCapabilities(
            media_types=[
                ChannelMediaType.TEXT,
                ChannelMediaType.RICH,
                ChannelMediaType.MEDIA,
                ChannelMediaType.AUDIO,
                ChannelMediaType.VIDEO,
                ChannelMediaType.LOCATION,
            ],
            supports_typing=True,
            supports_read_receipts=True,
            supports_reactions=True,
            supports_rich_text=True,
            supports_media=True,
            supports_buttons=True,
            supports_cards=True,
            supports_quick_replies=True,
        )

    async def handle_inbound(self, message: InboundMessage, context: RoomContext) -> RoomEvent:
        """Build the room event for a message received from a client.

        Args:
            message: What the client sent.
            context: The room the message was routed to.

        Returns:
            The event to process.
        """
        return self._inbound_event(message, context, ChannelType.WEBSOCKET)

    async def deliver(
        self, event: RoomEvent, binding: ChannelBinding, context: RoomContext
    ) -> ChannelOutput:
        """Send ``event`` to every registered connection, concurrently.

        A connection whose send raises or times out is logged and unregistered; the others
        still get the event. Cancellation is not caught.

        Args:
            event: The event to push.
            binding: This channel's binding in the event's room.
            context: The room, including the event.

        Returns:
            An empty output.
        """
        connections = list(self._connections.items())
        earlier: frozenset[str] = frozenset()
        made = 0  # the attempts made before this one
        if self._reached:
            cut = self._reached.pop(event.id, None)
            if cut is not None:
                # A retry of a delivery cut short: the clients it reached got the event (sent
                # again, the healthy clients showed each message twice).
                earlier, made = cut
                connections = [c for c in connections if c[0] not in earlier]
        if not connections:
            return ChannelOutput.empty()
        unfinished = dict(connections)
        reached: set[str] = set()
        try:
            # concurrently: a send that completes at once (a buffered write) costs no task.
            await concurrently(
                [
                    functools.partial(
                        self._send_one, connection_id, connection, event, unfinished, reached
                    )
                    for connection_id, connection in connections
                ]
            )
        except BaseException:
            # Cancelled from outside (the kit bounds a delivery by its process_timeout, which
            # may be shorter than send_timeout): the sends still running belong to clients
            # too slow for it. Kept, they would time out every delivery of the channel.
            for connection_id, connection in unfinished.items():
                self._drop(connection_id, connection, "its send was cut short")
            # The earlier attempts' too: a retry cut again that kept its own alone sent the
            # next retry to the clients the attempts before it reached.
            self._keep_reached(event.id, earlier.union(reached), made + 1, binding)
            raise
        return ChannelOutput.empty()

    async def close(self) -> None:
        """Let go of what the deliveries cut short left for their retries, which closing
        the kit stops."""
        self._reached.clear()
        await super().close()

    def _keep_reached(
        self, event_id: str, reached: frozenset[str], made: int, binding: ChannelBinding
    ) -> None:
        """Keep what a delivery cut short reached for its retry, if one may follow: the
        router tries again while the attempts ``made`` are fewer than the retry policy of
        the binding as it is now allows (``binding``: this attempt's), as this does.
        Counted down from the first attempt's policy, a policy raised meanwhile (a re-attach)
        had the router try once more than kept for: the healthy clients got it twice."""
        policy = binding.retry_policy
        if policy is None or made > policy.max_retries:
            # No retry policy, or its last attempt: nothing would take it (it stayed until
            # _REACHED_KEPT later cuts pushed it out).
            return
        self._reached[event_id] = (reached, made)
        if len(self._reached) > _REACHED_KEPT:
            del self._reached[next(iter(self._reached))]

    async def _send_one(
        self,
        connection_id: str,
        connection: _Connection,
        event: RoomEvent,
        unfinished: dict[str, _Connection],
        reached: set[str],
    ) -> None:
        try:
            sent = connection.send(connection_id, event)
            # A plain function has sent already (awaiting its None failed, and dropped the
            # connection after the event had reached it). Each send already runs in a context
            # of its own (concurrently): bounded_here.
            if inspect.isawaitable(sent):
                await bounded_here(sent, self._send_timeout)
            # Its send succeeded, and only then: a retry skipped a client whose send failed
            # (a socket closed) and that reconnected under its id, which never got the event.
            reached.add(connection_id)
        except TimedOut:
            self._drop(connection_id, connection, f"its send took over {self._send_timeout} s")
        except Exception as exc:
            # A client gone is routine: one line says it; the traceback is for debugging.
            logger.debug(
                "channel %s: send to connection %s failed",
                self.channel_id,
                connection_id,
                exc_info=True,
            )
            self._drop(connection_id, connection, f"its send failed ({type(exc).__name__}: {exc})")
        except BaseException as exc:
            # The send's own CancelledError (a socket torn down under it), nothing cancelling
            # the delivery: it failed that connection alone. Taken for a cancellation from
            # outside, it failed the delivery and dropped every connection still sending.
            failure = raised_uncancelled(exc, "its send")  # re-raises a real cancellation
            self._drop(connection_id, connection, str(failure))
        unfinished.pop(connection_id, None)

    def _drop(self, connection_id: str, connection: _Connection, why: str) -> None:
        # Only if it was not registered again meanwhile (a client that reconnected).
        if self._connections.get(connection_id) is connection:
            logger.warning(
                "channel %s: dropping connection %s: %s", self.channel_id, connection_id, why
            )
            del self._connections[connection_id]
