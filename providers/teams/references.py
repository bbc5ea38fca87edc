"""Where the Teams provider keeps conversation references (how to reach a conversation later).

A Bot Framework bot cannot message a conversation out of the blue: it needs the conversation's
``serviceUrl`` (the regional Bot Connector endpoint), which only arrives with an incoming
activity. A conversation reference stores it, keyed by conversation id, in the Bot Framework's own
JSON shape (camelCase), so references serialise as they come::

    {"activityId": "...", "channelId": "msteams", "serviceUrl": "https://smba.../",
     "conversation": {"id": "a:1...", "conversationType": "personal", "tenantId": "..."},
     "user": {"id": "29:...", "name": "..."}, "bot": {"id": "28:<app id>", "name": "..."},
     "locale": "en-US"}
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["ConversationReferenceStore", "InMemoryConversationReferenceStore"]


class ConversationReferenceStore(ABC):
    """Keeps one conversation reference per conversation id.

    Implementations must not share mutable state with callers: a reference returned by
    :meth:`get` may be modified by the caller without changing the stored one.
    """

    @abstractmethod
    async def save(self, conversation_id: str, reference: dict[str, Any]) -> None:
        """Store ``reference`` for ``conversation_id``, replacing any previous one."""

    @abstractmethod
    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        """The reference of ``conversation_id``, or None when none was saved."""

    @abstractmethod
    async def delete(self, conversation_id: str) -> bool:
        """Forget ``conversation_id``'s reference; False when there was none."""

    @abstractmethod
    async def list_all(self) -> dict[str, dict[str, Any]]:
        """Every stored reference by conversation id, in the order they were first saved
        (a mapping, as in RoomKit 0.3.0)."""


class InMemoryConversationReferenceStore(ConversationReferenceStore):
    """A process-local store: references are lost on restart (use a durable one in production)."""

    def __init__(self) -> None:
        self._references: dict[str, dict[str, Any]] = {}

    async def save(self, conversation_id: str, reference: dict[str, Any]) -> None:
        """Store a deep copy of ``reference``."""
        self._references[conversation_id] = copy.deepcopy(reference)

    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        """A deep copy of the stored reference, or None."""
        reference = self._references.get(conversation_id)
        return None if reference is None else copy.deepcopy(reference)

    async def delete(self, conversation_id: str) -> bool:
        """Forget the reference; False when there was none."""
        return self._references.pop(conversation_id, None) is not None

    async def list_all(self) -> dict[str, dict[str, Any]]:
        """Deep copies of every reference by conversation id, in first-save order."""
        return copy.deepcopy(self._references)

    def __len__(self) -> int:
        return len(self._references)
