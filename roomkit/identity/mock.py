"""``MockIdentityResolver``: a dictionary-backed resolver for tests and demos."""

from __future__ import annotations

from roomkit.identity.base import IdentityResolver
from roomkit.models.context import RoomContext
from roomkit.models.delivery import InboundMessage
from roomkit.models.enums import IdentificationStatus
from roomkit.models.identity import Identity, IdentityResult

__all__ = ["MockIdentityResolver"]


class MockIdentityResolver(IdentityResolver):
    """Resolves senders from fixed tables, keyed by ``sender_id``.

    A sender in ``mapping`` is IDENTIFIED as that identity; one in ``ambiguous`` with at least
    one candidate is AMBIGUOUS with those candidates; anyone else (an empty candidate list
    included) gets ``unknown_status``, as in RoomKit 0.3.0. The result's ``address`` and
    ``channel_type`` are left unset, as 0.3.0 left them: the kit fills them in from the message
    and its channel. Every message passed to ``resolve`` is recorded in ``calls``.

    Args:
        mapping: ``sender_id`` -> the identity it resolves to.
        ambiguous: ``sender_id`` -> the candidate identities it could be.
        unknown_status: Status for senders found in neither table.
    """

    def __init__(
        self,
        mapping: dict[str, Identity] | None = None,
        ambiguous: dict[str, list[Identity]] | None = None,
        unknown_status: IdentificationStatus = IdentificationStatus.UNKNOWN,
    ) -> None:
        self.mapping: dict[str, Identity] = dict(mapping or {})
        self.ambiguous: dict[str, list[Identity]] = dict(ambiguous or {})
        self.unknown_status = unknown_status
        self.calls: list[InboundMessage] = []

    async def resolve(self, message: InboundMessage, context: RoomContext) -> IdentityResult:
        """Look ``message.sender_id`` up in ``mapping``, then ``ambiguous``."""
        self.calls.append(message)
        sender = message.sender_id
        identity = self.mapping.get(sender)
        if identity is not None:
            return IdentityResult(status=IdentificationStatus.IDENTIFIED, identity=identity)
        candidates = self.ambiguous.get(sender)
        # No candidate is no ambiguity: an empty list resolves as an unknown sender (0.3.0).
        if candidates:
            return IdentityResult(
                status=IdentificationStatus.AMBIGUOUS, candidates=list(candidates)
            )
        return IdentityResult(status=self.unknown_status)
