"""Rows and their printing: every benchmark returns rows, the runner prints them as a table."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TypedDict


class Row(TypedDict):
    """One measured figure."""

    backend: str
    workload: str
    value: float
    unit: str
    note: str


def row(backend: str, workload: str, value: float, unit: str, note: str = "") -> Row:
    return Row(backend=backend, workload=workload, value=value, unit=unit, note=note)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"


def print_table(title: str, rows: Iterable[Row]) -> None:
    rows = list(rows)
    headers = ("backend", "workload", "value", "unit", "note")
    cells = [(r["backend"], r["workload"], _fmt(r["value"]), r["unit"], r["note"]) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    out = sys.stdout
    out.write(f"\n## {title}\n\n")
    out.write("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |\n")
    out.write("|" + "|".join("-" * (w + 2) for w in widths) + "|\n")
    for c in cells:
        out.write("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |\n")
    out.flush()
