"""RCS providers: the :class:`RCSProvider` contract, its result type and a mock."""

from __future__ import annotations

from providers.rcs.base import RCSDeliveryResult, RCSProvider
from providers.rcs.mock import MockRCSProvider

__all__ = ["MockRCSProvider", "RCSDeliveryResult", "RCSProvider"]
