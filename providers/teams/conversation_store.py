"""RoomKit 0.3.0's module path ``roomkit.providers.teams.conversation_store``; its names live in
``providers.teams.references``."""

from __future__ import annotations

from providers.teams.references import (
    ConversationReferenceStore,
    InMemoryConversationReferenceStore,
)

__all__ = ["ConversationReferenceStore", "InMemoryConversationReferenceStore"]
