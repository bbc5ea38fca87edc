"""Room ownership between the processes that share one event log (see ``base``).

``NatsOwnership`` is in ``roomkit.ownership.nats`` (it imports nats-py).
"""

from __future__ import annotations

from roomkit.ownership._partitions import partition_of
from roomkit.ownership.base import KitPort, Placement, RoomOwnership

__all__ = ["KitPort", "Placement", "RoomOwnership", "partition_of"]
