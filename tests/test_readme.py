"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example-{n}" for n in range(len(EXAMPLES))])
def test_readme_example_runs(code: str, request: pytest.FixtureRequest) -> None:
    env = dict(os.environ)
    if "PostgresStore" in code:
        # The example finds its database through libpq's variables: the tests' server's.
        uri = urlsplit(request.getfixturevalue("postgres_uri"))
        env["PGHOST"] = parse_qs(uri.query)["host"][0]  # its Unix socket's directory
        env["PGUSER"] = uri.username or "postgres"
        env["PGDATABASE"] = uri.path.lstrip("/")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    _check_what_it_says(code, result.stdout)


def _check_what_it_says(code: str, printed: str) -> None:
    """What the README says an example prints, beyond that it runs."""
    lines = printed.splitlines()
    if "SM123" in code:  # the first example: a reply sent back by SMS, spam blocked
        assert lines[:2] == ["['Hello! How can I help?']", "True spam"], lines
        timeline = [line.split(" ", 1)[1] for line in lines[2:]]  # past each index
        for said in ("message Hi!", "message Hello! How can I help?", "message buy spam now"):
            assert said in timeline, lines
    if "print(ownership)" in code:
        assert re.search(r"<NatsOwnership member=\S+-\d+-\S+ partitions=64>", printed), printed


def test_the_files_the_readme_names_ship_in_the_sdist() -> None:
    # docs/ was left out: an sdist's README sent readers to files it did not hold.
    import tomllib

    root = README.parent
    include = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "hatch"
    ]["build"]["targets"]["sdist"]["include"]
    named = set(
        re.findall(
            r"`((?:docs|bench|roomkit|eventlog|actors|providers)/[\w./-]+)`",
            README.read_text(encoding="utf-8"),
        )
    )
    assert named, "the README names no file of the repository"
    for path in sorted(named):
        assert (root / path).exists(), path
        assert path.split("/")[0] in include, path
