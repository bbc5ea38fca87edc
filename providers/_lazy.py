"""Lazy re-exports for provider packages (PEP 562).

A kind's package (``providers.messenger``, ...) imports its contract and mock eagerly and its
vendor implementations on first access, so that importing it (and ``providers``) needs no
optional dependency (httpx, cryptography)::

    __getattr__, __dir__ = lazy_exports(
        __name__, {"FacebookMessengerProvider": "providers.messenger.facebook"}
    )
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``.

    Args:
        package: The package's ``__name__``.
        exports: Each lazily exported name and the module that defines it.

    Returns:
        ``__getattr__``, which imports a name's module on first access and caches the value in
        the package (later accesses are plain lookups), and ``__dir__``, which lists the lazy
        names with the loaded ones.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return getattr_, dir_
