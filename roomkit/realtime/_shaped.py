"""``ShapedRealtime``: a realtime backend that has ``RealtimeBackend``'s abstract methods
(``publish``, ``subscribe``, ``unsubscribe``) without deriving from it, which the kit takes as
0.3.0 did. The kit also calls ``publish_to_room``, ``subscribe_to_room`` and ``close``, which
such a backend may lack: each is its own where it has one, else the contract's default (see
``roomkit._shaped``). Without this, every publish and subscribe failed with an
``AttributeError``, and so did closing the kit.
"""

from __future__ import annotations

from roomkit._shaped import forward_abstract_methods, methods_with_defaults, take_own_methods
from roomkit.realtime.base import RealtimeBackend

__all__ = ["ShapedRealtime", "as_realtime_backend"]

_OPTIONAL = methods_with_defaults(RealtimeBackend)


class ShapedRealtime(RealtimeBackend):
    """``shaped`` as a ``RealtimeBackend``; see the module docstring."""

    def __init__(self, shaped: object) -> None:
        self.shaped = shaped
        take_own_methods(self, shaped, _OPTIONAL)

    def __repr__(self) -> str:
        return f"ShapedRealtime({self.shaped!r})"


forward_abstract_methods(ShapedRealtime, RealtimeBackend)


def as_realtime_backend(backend: object) -> RealtimeBackend:
    """``backend`` itself if it is a ``RealtimeBackend``, else a ``ShapedRealtime`` around it."""
    if isinstance(backend, RealtimeBackend):
        return backend
    return ShapedRealtime(backend)  # type: ignore[abstract]  # its methods are set above
