"""``hypermetric runs``: list and inspect runs."""

from __future__ import annotations

from dataclasses import replace

import click

from hypermetric.catalog.attempts import list_attempts
from hypermetric.catalog.db import database
from hypermetric.catalog.records import RUN_STATES, RUN_TYPES
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.cli.render import fmt_duration, fmt_time, print_table
from hypermetric.config import LAUNCHERS, get_settings
from hypermetric.masking import masked

__all__ = ["register", "runs_group"]


@click.group("runs")
def runs_group() -> None:
    """List, inspect, resume, retry and cancel runs; print their logs."""


@runs_group.command("list")
@click.option("--evaluation", "-e", help="Only runs of this evaluation.")
@click.option("--state", type=click.Choice(RUN_STATES), help="Only runs in this state.")
@click.option("--type", "run_type", type=click.Choice(RUN_TYPES), help="Only runs of this type.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def list_cmd(evaluation: str | None, state: str | None, run_type: str | None, limit: int) -> None:
    """List runs, newest first."""
    runs = list_runs(database(), evaluation=evaluation, state=state, run_type=run_type, limit=limit)
    rows = [
        (
            r.id,
            r.evaluation,
            r.run_type,
            r.state,
            fmt_time(r.logical_date),
            r.version_label or "",
            r.attempt,
            r.rows_count,
            fmt_duration(r.started_at, r.ended_at),
        )
        for r in runs
    ]
    columns = ["id", "evaluation", "type", "state", "logical date (UTC)", "version", "attempt"]
    print_table("runs", [*columns, "scores", "took"], rows)


@runs_group.command("show")
@click.argument("run_id", type=int)
def show_cmd(run_id: int) -> None:
    """Show every field of one run."""
    run = get_run(database(), run_id)
    fields = [
        ("id", run.id),
        ("evaluation", run.evaluation),
        ("run key", run.run_key),
        ("type", run.run_type),
        ("state", run.state),
        ("logical date", fmt_time(run.logical_date)),
        (
            "data interval",
            f"{fmt_time(run.data_interval_start)} .. {fmt_time(run.data_interval_end)}",
        ),
        ("version", run.version_label or ""),
        ("rescore of run", run.source_run_id or ""),
        ("code version", run.code_version or ""),
        ("params", masked(str(run.params))),
        ("dataset", masked(run.dataset or "")),
        ("attempt", run.attempt),
        ("retry round from", run.attempt_base + 1 if run.attempt_base else ""),
        ("queued", fmt_time(run.queued_at)),
        ("started", fmt_time(run.started_at)),
        ("ended", fmt_time(run.ended_at)),
        ("heartbeat", fmt_time(run.heartbeat_at)),
        ("owner", run.owner or ""),
        (
            "examples",
            f"{run.examples_done}" + (f"/{run.examples_total}" if run.examples_total else ""),
        ),
        ("scores", run.rows_count),
        ("calls", run.calls_count),
        ("errors", run.errors_count),
        ("shards", run.shard_count),
        ("error", masked(run.error or "")),
    ]
    print_table(f"run {run.id}", ["field", "value"], fields)
    attempts = [
        (
            a.attempt,
            a.kind,
            a.state,
            fmt_time(a.started_at),
            fmt_time(a.ended_at),
            f"{a.host or ''}:{a.pid or ''}",
            masked(a.reason or ""),
        )
        for a in list_attempts(database(), run_id)
    ]
    if attempts:
        columns = ["attempt", "began as", "ended", "started", "ended at", "where", "why"]
        print_table("attempts", columns, attempts)


@runs_group.command("resume")
@click.argument("run_id", type=int)
@click.option("--ray-address", envvar="RAY_ADDRESS", help="A Ray cluster; default: local Ray.")
@click.option("--force", is_flag=True, help="Resume even if another process seems to drive it.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def resume_cmd(run_id: int, ray_address: str | None, force: bool, progress: bool) -> None:
    """Continue (or start) RUN_ID: only the work units not committed yet run again.

    This is also how the scheduler starts a queued run. A run driven by a live process
    (its pid alive on this host, or a fresh heartbeat from another host) is refused; with
    --force this process takes it over as a new attempt, and the other one's writes are
    refused from then on. A failed run is retried with `runs retry`.
    """
    from hypermetric.cli.run import drive_and_report
    from hypermetric.engine.runner import resume_run

    drive_and_report(
        f"run {run_id}",
        progress,
        lambda on_progress: resume_run(
            run_id, ray_address=ray_address, force=force, progress=on_progress
        ),
    )


@runs_group.command("retry")
@click.argument("run_id", type=int)
@click.option(
    "--queue", is_flag=True, help="Queue the retry for the scheduler; do not run it here."
)
@click.option("--ray-address", envvar="RAY_ADDRESS", help="A Ray cluster; default: local Ray.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def retry_cmd(run_id: int, queue: bool, ray_address: str | None, progress: bool) -> None:
    """Run the failed work of RUN_ID (failed or canceled) again, as a new attempt.

    Every example that had an error (a component call or an eval raised) is driven again
    and its old rows leave the current dataset (--as-of an earlier version still shows
    them); every unit never committed runs; the other examples keep their scores.
    """
    if queue:
        from hypermetric.catalog.attempts import queue_retry

        run = queue_retry(database(), run_id)
        click.echo(f"run {run.id} queued for a retry; a running `hypermetric scheduler` starts it")
        return
    from hypermetric.cli.run import drive_and_report
    from hypermetric.engine.runner import retry_run

    drive_and_report(
        f"run {run_id}",
        progress,
        lambda on_progress: retry_run(run_id, ray_address=ray_address, progress=on_progress),
    )


@runs_group.command("logs")
@click.argument("run_id", type=int)
@click.option(
    "--launcher",
    type=click.Choice(LAUNCHERS),
    help="Where its processes ran [default: HYPERMETRIC_LAUNCHER, else local].",
)
@click.option(
    "--ray-address", envvar="RAY_ADDRESS", help="The Jobs API, http://HEAD:8265 (ray-jobs)."
)
def logs_cmd(run_id: int, launcher: str | None, ray_address: str | None) -> None:
    """Print what RUN_ID's processes printed: the log file of its local processes, or the
    logs of its Ray jobs, one per attempt."""
    from hypermetric.scheduler.launcher import launcher_for

    run = get_run(database(), run_id)
    settings = get_settings()
    settings = replace(settings, launcher=launcher or settings.launcher)
    if ray_address:
        settings = replace(settings, ray_address=ray_address)
    found = launcher_for(settings, check=False).logs(run)
    if not found:
        where = (
            "the cluster has no job for it (its head may have restarted since)"
            if settings.launcher == "ray-jobs"
            else f"no {settings.home / 'logs' / 'runs' / f'run-{run_id}.log'} (a run started "
            "by `hypermetric run` printed to its terminal; --launcher ray-jobs reads Ray jobs)"
        )
        click.echo(f"run {run_id} has no logs: {where}")
        return
    for where, text in found:
        click.echo(f"== {where} ==")
        click.echo(masked(text).rstrip("\n"))


@runs_group.command("cancel")
@click.argument("run_id", type=int)
def cancel_cmd(run_id: int) -> None:
    """Cancel a queued or running run (its driver stops at its next heartbeat)."""
    from hypermetric.catalog.runs import cancel_run

    run = cancel_run(database(), run_id)
    click.echo(f"run {run.id} canceled")


def register(root: click.Group) -> None:
    """Add ``runs`` to the root command."""
    root.add_command(runs_group)
