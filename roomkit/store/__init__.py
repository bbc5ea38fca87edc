"""Conversation stores: the ``ConversationStore`` interface and the in-memory default."""

from __future__ import annotations

from roomkit.store.base import ConversationStore
from roomkit.store.memory import InMemoryStore

__all__ = ["ConversationStore", "InMemoryStore"]
