"""Errors of the NATS ingress.

::

    RoomKitError
    └── IngressError
        ├── IngressUnavailable     NATS cannot be reached (connect, publish, stream setup)
        ├── IngressTimeout         (also a TimeoutError) no reply in time; the message is stored
        └── InvalidInbound         (also a ValueError) a message publish_inbound refuses to send

nats-py exceptions are translated into these at the boundary (``raise ... from exc``).
Messages the ingress itself refuses (bad payload, unknown channel, ...) are not exceptions on
the serving side: they are dead-lettered and answered with an ``IngressReply`` whose ``error``
is an ``IngressErrorCode``.
"""

from __future__ import annotations

from roomkit.errors import RoomKitError

__all__ = ["IngressError", "IngressTimeout", "IngressUnavailable", "InvalidInbound"]


class IngressError(RoomKitError):
    """Root of the ingress's errors."""


class IngressUnavailable(IngressError):
    """NATS (or its JetStream) could not be reached, or refused a request, in time."""


class IngressTimeout(IngressError, TimeoutError):
    """No reply came within the requester's timeout.

    The message was stored by JetStream (its publish was acknowledged), so the ingress will
    still process it: a timeout says the requester stopped waiting, not that nothing happened.
    """


class InvalidInbound(IngressError, ValueError):
    """``publish_inbound`` was given a message that the ingress would reject.

    For example a channel id that is not one subject token, an invalid room id, or no
    idempotency key where one is required.
    """
