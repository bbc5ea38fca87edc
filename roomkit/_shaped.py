"""Parts shaped like a contract: an object with every abstract method of one of the kit's ABCs
(a store, a realtime backend) without deriving from it, which 0.3.0 took.

The kit calls methods the contracts have besides their abstract ones, with defaults built on
those (a store's ``add_event_envelope``, a realtime backend's ``publish_to_room`` and
``close``); such an object may lack them. A wrapper deriving from the contract stands in for
it: each abstract method forwards to the object, and each method with a default is the
object's own where it has one, else the contract's default, which calls back into the
abstract ones. ``ShapedStore`` and ``ShapedRealtime`` are those wrappers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["forward_abstract_methods", "methods_with_defaults", "take_own_methods"]


class _Wrapper(Protocol):
    shaped: object


def methods_with_defaults(contract: type) -> frozenset[str]:
    """The public methods of ``contract`` that are not abstract: a shaped object may lack them."""
    abstract: frozenset[str] = getattr(contract, "__abstractmethods__", frozenset())
    return frozenset(
        name
        for name, value in vars(contract).items()
        if callable(value) and not name.startswith("_") and name not in abstract
    )


def forward_abstract_methods(wrapper: type, contract: type) -> None:
    """Give ``wrapper`` (a subclass of ``contract`` whose instances hold the shaped object as
    ``shaped``) each abstract method of ``contract``, awaiting the shaped object's own."""
    abstract: frozenset[str] = getattr(contract, "__abstractmethods__", frozenset())
    for name in abstract:
        setattr(wrapper, name, _forward(name))
    wrapper.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]


def take_own_methods(wrapper: object, shaped: object, names: frozenset[str]) -> None:
    """Set on ``wrapper`` the ones of ``names`` that ``shaped`` has: an instance attribute is
    found before the contract's default."""
    for name in names:
        own = getattr(shaped, name, None)
        if callable(own):
            setattr(wrapper, name, own)


def _forward(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def forward(self: _Wrapper, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.shaped, name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    return forward
