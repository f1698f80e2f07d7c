#!/usr/bin/env python
"""Queue the runs of a schedule's intervals in a date range (admin script).

    python scripts/backfill.py qa-nightly --start 2026-10-01 --end 2026-10-31
    python scripts/backfill.py qa-nightly --start 2026-10-01 --end 2026-10-31 --reprocess failed
    python scripts/backfill.py qa-nightly --start 2026-10-01 --end 2026-10-03 --dry-run

The same library function as ``hypermetric backfill``: intervals that have a run are
skipped unless reprocessed, so running it twice queues nothing new. Settings come from
the environment (HYPERMETRIC_HOME, HYPERMETRIC_DB_URL).
"""

from __future__ import annotations

import argparse
import sys

from hypermetric.catalog.db import database
from hypermetric.errors import HypermetricError
from hypermetric.scheduler.backfill import REPROCESS, backfill


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, backfill, print one line per queued run and a summary."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="the evaluation")
    parser.add_argument("--start", required=True, help="first logical date (date or datetime)")
    parser.add_argument("--end", required=True, help="last logical date (a date: the whole day)")
    parser.add_argument("--reprocess", choices=REPROCESS, default="none")
    parser.add_argument("--dry-run", action="store_true", help="list, change nothing")
    parser.add_argument("--max-active-runs", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        result = backfill(
            database(),
            args.name,
            args.start,
            args.end,
            reprocess=args.reprocess,
            dry_run=args.dry_run,
            max_active_runs=args.max_active_runs,
        )
    except HypermetricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for action in result.plan.actions:
        if args.dry_run or action.action != "skip":
            print(f"{action.logical_date.isoformat()}  {action.action:<9}  {action.reason}")
    plan = result.plan
    todo = plan.count("create") + plan.count("reprocess")
    done = f"would queue {todo}" if args.dry_run else f"queued {len(result.run_ids)}"
    print(f"{plan.evaluation}: {len(plan.actions)} intervals, {done}, skipped {plan.count('skip')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
