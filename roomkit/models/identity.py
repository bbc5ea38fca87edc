"""Identities, the result of resolving a sender, and what identity hooks answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from roomkit.models._defaults import new_id
from roomkit.models.enums import IdentificationStatus
from roomkit.models.hook import InjectedEvent

__all__ = ["Identity", "IdentityHookResult", "IdentityResult"]


class Identity(BaseModel):
    """A known person or system, with its addresses on each channel type."""

    id: str = Field(default_factory=new_id)
    organization_id: str | None = None
    display_name: str | None = None
    email: str | None = None
    phone: str | None = None
    channel_addresses: dict[str, list[str]] = Field(default_factory=dict)
    external_id: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class IdentityResult(BaseModel):
    """What an ``IdentityResolver`` found for the sender of an inbound message."""

    status: IdentificationStatus
    identity: Identity | None = None
    candidates: list[Identity] = Field(default_factory=list)
    address: str | None = None
    channel_type: str | None = None
    challenge_type: str | None = None
    message: str | None = None


class IdentityHookResult(BaseModel):
    """What an identity hook decides for an ambiguous or unknown sender."""

    status: IdentificationStatus
    identity: Identity | None = None
    display_name: str | None = None
    candidates: list[Identity] | None = None
    inject: InjectedEvent | None = None
    reason: str | None = None
    challenge_type: str | None = None
    message: str | None = None

    @classmethod
    def resolved(cls, identity: Identity) -> IdentityHookResult:
        """The sender is ``identity``."""
        return cls(status=IdentificationStatus.IDENTIFIED, identity=identity)

    @classmethod
    def pending(
        cls, display_name: str | None = None, candidates: list[Identity] | None = None
    ) -> IdentityHookResult:
        """Let the message through with a pending participant, to be resolved later."""
        return cls(
            status=IdentificationStatus.PENDING,
            display_name=display_name,
            candidates=candidates,
        )

    @classmethod
    def challenge(cls, inject: InjectedEvent, message: str | None = None) -> IdentityHookResult:
        """Ask the sender to identify with ``inject``; the original message is not stored."""
        return cls(status=IdentificationStatus.CHALLENGE_SENT, inject=inject, message=message)

    @classmethod
    def reject(cls, reason: str = "Unknown sender") -> IdentityHookResult:
        """Refuse the message; nothing is stored."""
        return cls(status=IdentificationStatus.REJECTED, reason=reason)
