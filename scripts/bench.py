#!/usr/bin/env python
"""Hypermetric's benchmarks, one subcommand per area; each prints its figures and ratios.

    python scripts/bench.py engine      # issue: the distributed evaluation engine
    python scripts/bench.py query       # SQL over history, compaction, compare
    python scripts/bench.py scheduler   # trigger latency, loop time vs history size
    python scripts/bench.py ui          # the web view's server time per page, 1,000 runs
    python scripts/bench.py api         # rate limits against a fake model API, the call cache

Benchmarks are measured runs, never timed tests: run them on a quiet machine and read the
ratios (the baselines run in the same process, so machine noise affects both sides).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

AREAS = {
    "engine": "benchmarks.engine",
    "query": "benchmarks.query",
    "scheduler": "benchmarks.scheduler",
    "ui": "benchmarks.ui",
    "api": "benchmarks.api",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="area", required=True)
    modules = {}
    for area, module_name in AREAS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        modules[area] = module
        module.add_arguments(sub.add_parser(area, help=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    return int(modules[args.area].run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
