"""Documentation for AI coding assistants, shipped inside the package."""

from __future__ import annotations

from importlib import resources

__all__ = ["get_agents_md", "get_ai_context", "get_llms_txt"]


def _read(name: str) -> str:
    return resources.files("roomkit").joinpath("_docs", name).read_text(encoding="utf-8")


def get_agents_md() -> str:
    """Return AGENTS.md: how RoomKit is built and the rules for code that uses it."""
    return _read("AGENTS.md")


def get_llms_txt() -> str:
    """Return llms.txt: a short index of RoomKit's public API."""
    return _read("llms.txt")


def get_ai_context() -> str:
    """Return both documents in one string, ready to put in an assistant's context, each under
    a heading that names it (as 0.3.0's did)."""
    return (
        "# RoomKit: context for AI assistants\n\n"
        f"## Project guidelines (AGENTS.md)\n\n{get_agents_md()}\n\n"
        f"## Documentation index (llms.txt)\n\n{get_llms_txt()}"
    )
