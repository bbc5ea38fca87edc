"""Identity resolution: the ``IdentityResolver`` ABC and a mock for tests."""

from __future__ import annotations

from roomkit.identity.base import IdentityResolver
from roomkit.identity.mock import MockIdentityResolver

__all__ = ["IdentityResolver", "MockIdentityResolver"]
