"""``ShapedStore``: a store that has ``ConversationStore``'s abstract methods without deriving
from it (0.3.0 took such a store), made a ``ConversationStore`` for the kit's projection.

The projection calls methods the contract gained since 0.3.0, with defaults built on the
abstract ones (``add_event_envelope``, ``count_event``, ``clear``...). Such a store has none
of them, and every recorded message failed on the first (it was missing from the read model).
Here each is the store's own where it has one, else the contract's default, which calls back
into the store's abstract methods.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from roomkit.store.base import ConversationStore

__all__ = ["ShapedStore", "as_conversation_store"]

# The contract's methods with a default, which a shaped store may have or lack.
_OPTIONAL = frozenset(
    name
    for name, value in vars(ConversationStore).items()
    if callable(value)
    and not name.startswith("_")
    and name not in ConversationStore.__abstractmethods__
)


def _forward(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def forward(self: ShapedStore, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.shaped, name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    return forward


class ShapedStore(ConversationStore):
    """``shaped`` as a ``ConversationStore``; see the module docstring."""

    def __init__(self, shaped: object) -> None:
        self.shaped = shaped
        for name in _OPTIONAL:
            own = getattr(shaped, name, None)
            if callable(own):
                # An instance attribute: found before the class's default.
                setattr(self, name, own)

    def __repr__(self) -> str:
        return f"ShapedStore({self.shaped!r})"


for _name in ConversationStore.__abstractmethods__:
    setattr(ShapedStore, _name, _forward(_name))
ShapedStore.__abstractmethods__ = frozenset()


def as_conversation_store(store: object) -> ConversationStore:
    """``store`` itself if it is a ``ConversationStore``, else a ``ShapedStore`` around it."""
    if isinstance(store, ConversationStore):
        return store
    return ShapedStore(store)  # type: ignore[abstract]  # its methods are set above
