"""``hypermetric scheduler`` and ``hypermetric backfill``."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from dataclasses import replace

import click

from hypermetric.catalog.db import database
from hypermetric.cli.render import console, fmt_time, print_table
from hypermetric.config import LAUNCHERS, get_settings
from hypermetric.errors import SchedulerError
from hypermetric.masking import MaskingFormatter

__all__ = ["backfill_cmd", "register", "scheduler_cmd"]


def _launcher_factory(path: str) -> object:
    from hypermetric.api.component import resolve_import

    module, _, name = path.rpartition(":")
    if not module:
        raise SchedulerError(f"--launcher {path}: give {' or '.join(LAUNCHERS)}, or MODULE:FACTORY")
    try:
        return resolve_import(module, name)
    except Exception as exc:
        raise SchedulerError(
            f"cannot import the launcher {path}: {exc}; give MODULE:FACTORY"
        ) from None


@click.command("scheduler")
@click.option(
    "--once",
    is_flag=True,
    help="Do one pass and a compaction (unless --compact-every 0), then exit; launched runs go on.",
)
@click.option(
    "--parallelism",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Run processes this scheduler keeps alive at once.",
)
@click.option(
    "--tick",
    "tick_seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between passes.",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0.1),
    help="Seconds without a heartbeat before a run or scheduler counts as lost "
    "[default: 6 run heartbeats].",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    help="The Ray cluster for the runs; default: a local one started once.",
)
@click.option(
    "--launcher",
    "launcher_path",
    metavar="local|ray-jobs|MODULE:FACTORY",
    help="How runs start: local processes (default, or HYPERMETRIC_LAUNCHER), Ray jobs on "
    "the cluster at RAY_ADDRESS=http://HEAD:8265, or FACTORY(settings) -> Launcher.",
)
@click.option(
    "--compact-every",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between background compactions of finished runs' shards (0: never; "
    "with --once, any other number compacts after the pass).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
def scheduler_cmd(
    once: bool,
    parallelism: int,
    tick_seconds: float,
    stale_after: float | None,
    ray_address: str | None,
    launcher_path: str | None,
    compact_every: float,
    log_level: str,
) -> None:
    """Run the scheduler: create runs as their intervals come due, launch and watch them.

    The metadata DB is the only state: stop and restart it at any time. On SQLite one
    scheduler may run; on PostgreSQL several may share the work.
    """
    from hypermetric.scheduler.launcher import Launcher
    from hypermetric.scheduler.options import SchedulerOptions
    from hypermetric.scheduler.service import Scheduler

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(handlers=[handler], force=True)
    logging.getLogger("hypermetric").setLevel(log_level)
    settings = get_settings()
    if ray_address:
        settings = replace(settings, ray_address=ray_address)
    launcher = None
    if launcher_path in LAUNCHERS:
        settings = replace(settings, launcher=launcher_path)
    elif launcher_path:
        launcher = _launcher_factory(launcher_path)(settings)  # type: ignore[operator]
        if not isinstance(launcher, Launcher):
            raise SchedulerError(f"{launcher_path} did not return a Launcher")
    options = SchedulerOptions(
        tick_seconds=tick_seconds,
        parallelism=parallelism,
        stale_after=stale_after,
        once=once,
        compact_every=compact_every,
    )
    service = Scheduler(settings, options=options, launcher=launcher)
    if once:
        report, maintenance = service.serve_once()
        counts = ", ".join(f"{len(v)} {k}" for k, v in vars(report).items())
        click.echo(f"one pass: {counts}")
        if maintenance is not None and maintenance.shards_merged:
            files = maintenance.files_written
            click.echo(
                f"compaction: packed {maintenance.shards_merged} shards into {files} "
                + ("file" if files == 1 else "files")
                + ("" if maintenance.complete else " (more at the next pass)")
            )
        return
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack
    service.serve(handle_signals=True)


@click.command("backfill")
@click.argument("name")
@click.option("--start", required=True, help="First logical date (a date or ISO datetime).")
@click.option("--end", required=True, help="Last logical date (a date means the whole day).")
@click.option(
    "--reprocess",
    type=click.Choice(["none", "failed", "all"]),
    default="none",
    show_default=True,
    help="Start over intervals that have a failed run, or any.",
)
@click.option("--dry-run", is_flag=True, help="List what would be done; change nothing.")
@click.option(
    "--max-active-runs",
    type=click.IntRange(min=1),
    help="Keep at most N of these runs queued or running; wait to queue the rest.",
)
def backfill_cmd(
    name: str, start: str, end: str, reprocess: str, dry_run: bool, max_active_runs: int | None
) -> None:
    """Queue runs for every interval of NAME's schedule from START to END.

    Intervals that have a run are skipped (unless --reprocess), so running it twice
    queues nothing new. A running `hypermetric scheduler` executes the runs.
    """
    from hypermetric.scheduler.backfill import backfill

    def _queued(action: object, run_id: int) -> None:
        if max_active_runs is not None:
            click.echo(f"queued run {run_id}")

    result = backfill(
        database(),
        name,
        start,
        end,
        reprocess=reprocess,
        dry_run=dry_run,
        max_active_runs=max_active_runs,
        on_queued=_queued,
    )
    plan = result.plan
    if dry_run:
        rows = [
            (fmt_time(a.logical_date), fmt_time(a.data_interval[1]), a.action, a.reason)
            for a in plan.actions
        ]
        print_table(
            f"backfill of {name} (dry run)", ["logical date (UTC)", "until", "action", "why"], rows
        )
    summary = (
        f"{plan.count('create')} to create, {plan.count('reprocess')} to reprocess, "
        f"{plan.count('skip')} skipped of {len(plan.actions)} intervals"
    )
    if dry_run:
        click.echo(f"dry run: {summary}; nothing was changed")
    else:
        console().print(
            f"backfill of {name!r}: {summary}; queued {len(result.run_ids)} runs", highlight=False
        )


def register(root: click.Group) -> None:
    """Add ``scheduler`` and ``backfill`` to the root command."""
    root.add_command(scheduler_cmd)
    root.add_command(backfill_cmd)
