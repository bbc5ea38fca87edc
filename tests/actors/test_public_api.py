"""The public surface of ``actors``: an explicit, sorted ``__all__``, and no room in sight."""

from __future__ import annotations

import inspect
import subprocess
import sys

import actors


def test_all_is_sorted_and_complete() -> None:
    assert actors.__all__ == sorted(actors.__all__)
    for name in actors.__all__:
        obj = getattr(actors, name)
        assert obj.__module__.startswith("actors."), name
        assert not obj.__module__.split(".")[1].startswith("_"), (
            f"{name} lives in a private module"
        )
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_names_are_the_ones_the_room_actor_uses() -> None:
    expected = {
        "ActorSystem",
        "Actor",
        "EventSourcedActor",
        "ActorRef",
        "Effect",
        "ActorError",
        "AskTimeout",
        "MailboxFull",
        "ActorDeadError",
        "ConcurrencyConflict",
        "SupervisionPolicy",
    }
    assert expected <= set(actors.__all__)


def test_errors_share_one_root() -> None:
    for name in actors.__all__:
        obj = getattr(actors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, actors.ActorError), name


def test_import_actors_imports_neither_roomkit_nor_nats() -> None:
    code = (
        "import sys, actors\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('roomkit', 'nats'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
