"""``hypermetric runs``: list and inspect runs."""

from __future__ import annotations

import click

from hypermetric.catalog.db import database
from hypermetric.catalog.records import RUN_STATES, RUN_TYPES
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.cli.render import fmt_duration, fmt_time, print_table

__all__ = ["register", "runs_group"]


@click.group("runs")
def runs_group() -> None:
    """List, inspect, resume and cancel runs."""


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
        ("code version", run.code_version or ""),
        ("params", run.params),
        ("attempt", run.attempt),
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
        ("error", run.error or ""),
    ]
    print_table(f"run {run.id}", ["field", "value"], fields)


@runs_group.command("resume")
@click.argument("run_id", type=int)
@click.option("--ray-address", envvar="RAY_ADDRESS", help="A Ray cluster; default: local Ray.")
@click.option("--force", is_flag=True, help="Resume even if another process seems to drive it.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def resume_cmd(run_id: int, ray_address: str | None, force: bool, progress: bool) -> None:
    """Continue (or start) RUN_ID: only the work units not committed yet run again.

    This is also how the scheduler starts a queued run. A run driven by a live process
    (its pid alive on this host, or a fresh heartbeat from another host) is refused.
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
