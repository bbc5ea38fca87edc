"""The NATS ingress: other services publish inbound messages, RoomKit records them in rooms.

::

    from roomkit.ingress import Ingress, publish_inbound, serve_ingress

    async with NatsEventLog(url) as log, RoomKit(log=log) as kit:
        await serve_ingress(kit, url)             # runs until cancelled

    # elsewhere, in the service that receives the SMS webhooks:
    reply = await publish_inbound(nc, inbound_message, reply_timeout=5.0)

The wire format (subjects, payload, headers, replies, dead letters) is documented in
``roomkit.ingress.wire``; the guarantees (acknowledged after commit, per-room order, nothing
recorded twice, nothing lost silently) in ``roomkit.ingress.ingress``.

``Ingress``, ``serve_ingress`` and ``publish_inbound`` need nats-py (the ``nats`` extra); they
are imported on first access, so ``roomkit.ingress.wire`` and ``roomkit.ingress.cli`` load
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roomkit.ingress.errors import IngressError, IngressTimeout, IngressUnavailable, InvalidInbound
from roomkit.ingress.wire import InboundEnvelope, IngressErrorCode, IngressReply

if TYPE_CHECKING:
    from roomkit.ingress._work import IngressStats, LaneKey, default_lane_key
    from roomkit.ingress.ingress import Ingress, serve_ingress
    from roomkit.ingress.publisher import publish_inbound

__all__ = [
    "InboundEnvelope",
    "Ingress",
    "IngressError",
    "IngressErrorCode",
    "IngressReply",
    "IngressStats",
    "IngressTimeout",
    "IngressUnavailable",
    "InvalidInbound",
    "LaneKey",
    "default_lane_key",
    "publish_inbound",
    "serve_ingress",
]

_LAZY = {
    "Ingress": "roomkit.ingress.ingress",
    "serve_ingress": "roomkit.ingress.ingress",
    "publish_inbound": "roomkit.ingress.publisher",
    "IngressStats": "roomkit.ingress._work",
    "LaneKey": "roomkit.ingress._work",
    "default_lane_key": "roomkit.ingress._work",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'roomkit.ingress' has no attribute {name!r}")
    import importlib

    from eventlog._nats_needed import nats_needed

    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as missing:  # nats-py, an optional dependency
        raise nats_needed(missing, f"roomkit.ingress ({name})") from None
    globals()[name] = value
    return value
