"""``python -m bench [name ...]``: run the benchmarks and print one table per suite.

Suites: ``eventlog`` (memory and NATS backends), ``actors``, ``roomkit`` (inbound workloads),
``ingress`` (the NATS ingress).
Each suite is a module exposing ``async def suite() -> list[tuple[str, list[Row]]]``.
"""

from __future__ import annotations

import argparse
import importlib

import anyio

from bench._table import print_table

SUITES = {
    "eventlog": "bench.suite_eventlog",
    "actors": "bench.actors",
    "roomkit": "bench.suite_roomkit",
    "ingress": "bench.ingress_nats",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    for name in args.suites or list(SUITES):
        module = importlib.import_module(SUITES[name])
        for title, rows in anyio.run(module.suite):
            print_table(title, rows)


if __name__ == "__main__":
    main()
