"""``ShapedStore``: a store that has ``ConversationStore``'s abstract methods without deriving
from it (0.3.0 took such a store), made a ``ConversationStore`` for the kit's projection.

The projection calls methods the contract gained since 0.3.0, with defaults built on the
abstract ones (``add_event_envelope``, ``count_event``, ``clear``...). Such a store has none
of them, and every recorded message failed on the first (it was missing from the read model).
Here each is the store's own where it has one, else the contract's default, which calls back
into the store's abstract methods (see ``roomkit._shaped``).
"""

from __future__ import annotations

from roomkit._shaped import forward_abstract_methods, methods_with_defaults, take_own_methods
from roomkit.store.base import ConversationStore

__all__ = ["ShapedStore", "as_conversation_store"]

# The contract's methods with a default, which a shaped store may have or lack.
_OPTIONAL = methods_with_defaults(ConversationStore)


class ShapedStore(ConversationStore):
    """``shaped`` as a ``ConversationStore``; see the module docstring."""

    def __init__(self, shaped: object) -> None:
        self.shaped = shaped
        take_own_methods(self, shaped, _OPTIONAL)

    def __repr__(self) -> str:
        return f"ShapedStore({self.shaped!r})"


forward_abstract_methods(ShapedStore, ConversationStore)


def as_conversation_store(store: object) -> ConversationStore:
    """``store`` itself if it is a ``ConversationStore``, else a ``ShapedStore`` around it."""
    if isinstance(store, ConversationStore):
        return store
    return ShapedStore(store)  # type: ignore[abstract]  # its methods are set above
