"""RoomKit 0.3.0's provider import paths: ``roomkit.providers.X`` *is* ``providers.X``.

RoomKit 0.3.0 shipped its providers inside the package (``from roomkit.providers.sms.mock import
MockSMSProvider``). Here they are the separate top-level package ``providers`` (DESIGN.md §1), so
that 0.3.0 code keeps working without a rewrite this package:

* re-exports the public names of ``providers`` on first access (PEP 562), and
* puts a finder on ``sys.meta_path`` that answers every ``roomkit.providers.X`` import with the
  module object ``providers.X`` itself, registered under both names in ``sys.modules``.

Both spellings therefore give the very same modules and classes (``isinstance`` and ``except
ProviderError`` work across them) and no provider module is executed twice. A path that
``providers`` lacks fails the usual way: ``ModuleNotFoundError: No module named
'roomkit.providers.X'``. Nothing is imported from ``providers`` until a name or a submodule is
used, and ``import roomkit`` does not import this package at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from types import ModuleType

    # The static view of the lazy re-exports below.
    from providers import *  # noqa: F403
else:
    # ``importlib.abc`` costs ~20 ms at import (it loads ``importlib.resources``); the import
    # system only needs the two loader methods, so the base class is for type checkers only.
    Loader = object

_TARGET = "providers"
_PREFIX = __name__ + "."  # "roomkit.providers."


class _AliasLoader(Loader):
    """Loads ``roomkit.providers.X`` as the module ``providers.X`` (imported once, shared)."""

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(_TARGET + spec.name[len(__name__) :])
        # The import system now sets ``module.__spec__`` to the alias spec, even on a module
        # returned from here; keep the real one to put back in ``exec_module``.
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its own name: only undo the ``__spec__`` overwrite, so that
        # reload and introspection keep seeing ``providers.X``.
        alias_spec = module.__spec__
        if alias_spec is not None and alias_spec.loader is self:
            module.__spec__ = alias_spec.loader_state


class _AliasFinder:
    """Meta path finder for ``roomkit.providers.X``; must run before the path-based finder.

    Otherwise, once ``roomkit.providers.sms`` is ``providers.sms`` (whose ``__path__`` is the
    ``providers/sms`` folder), the path finder would load ``providers/sms/mock.py`` a second
    time as a new module ``roomkit.providers.sms.mock``, with classes distinct from the real ones.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith(_PREFIX):
            return None
        # Imports the target's parent package (as importing the target would) but not the target.
        real = importlib.util.find_spec(_TARGET + fullname[len(__name__) :])
        if real is None:
            return None  # no such provider module: "No module named 'roomkit.providers.X'"
        is_package = real.submodule_search_locations is not None
        return ModuleSpec(fullname, _LOADER, is_package=is_package)


_LOADER = _AliasLoader()


def _install_finder() -> None:
    # Replace a finder left by an earlier import of this module (tests that drop it from
    # sys.modules), so that there is exactly one.
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if not (type(finder).__module__ == __name__ and type(finder).__name__ == "_AliasFinder")
    ]
    sys.meta_path.insert(0, _AliasFinder())


_install_finder()


def __getattr__(name: str) -> Any:
    # Dunder probes (copy, inspect, pytest, ...) must not import the providers; ``__all__`` is
    # the one dunder that is re-exported (``from roomkit.providers import *``).
    if name.startswith("__") and name != "__all__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(_TARGET), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *importlib.import_module(_TARGET).__all__})
