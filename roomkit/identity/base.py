"""``IdentityResolver``: finds who sent an inbound message."""

from __future__ import annotations

import abc

from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.identity import IdentityResult

__all__ = ["IdentityResolver"]


class IdentityResolver(abc.ABC):
    """Resolves the sender of an inbound message to a known ``Identity``.

    The kit calls ``resolve`` before the message enters the room, bounded by its
    ``identity_timeout`` (a timeout counts as UNKNOWN). A resolver must not mutate ``context``.
    If the result leaves ``address`` or ``channel_type`` unset, the kit fills them in from the
    message's ``sender_id`` and the channel's type.
    """

    @abc.abstractmethod
    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        """Return the identification status of ``message.sender_id`` (and the identity if found).

        Args:
            message: The inbound message.
            context: The room it is about to enter.
        """
