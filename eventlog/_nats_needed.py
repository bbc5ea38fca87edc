"""What importing a NATS module says when nats-py, an optional dependency, is missing."""

from __future__ import annotations

__all__ = ["nats_needed"]

INSTALL = "pip install 'roomkit[nats]'"


def nats_needed(error: ModuleNotFoundError, what: str) -> ModuleNotFoundError:
    """The error to raise for ``error``, raised importing ``what`` (a NATS module): with the
    extra to install when nats-py is what is missing (a bare "No module named 'nats'",
    raised by a module itself named ``nats``, left users guessing), else ``error`` itself."""
    if (error.name or "").split(".")[0] != "nats":
        return error
    return ModuleNotFoundError(
        f"{what} needs nats-py, an optional dependency: {INSTALL} ({error})", name=error.name
    )
