"""``hypermetric evals``: the stored evaluation definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation, list_evaluations
from hypermetric.catalog.records import EvaluationRecord
from hypermetric.catalog.scheduling import recent_runs
from hypermetric.cli.render import console, fmt_time, print_table

__all__ = ["evals_group", "register"]


@click.group("evals")
def evals_group() -> None:
    """List and manage evaluation definitions and their schedules."""


def _last_run_text(ev: EvaluationRecord) -> str:
    last = recent_runs(database(), ev.id, limit=1)
    return f"#{last[0].id} {last[0].state} {fmt_time(last[0].logical_date)}" if last else ""


@evals_group.command("list")
def list_cmd() -> None:
    """List evaluations with their schedule, next due time and last run."""
    rows = [
        (
            ev.name,
            ev.schedule or "",
            ev.timezone,
            "yes" if ev.paused else "no",
            fmt_time(ev.next_due_at) if not ev.paused else "",
            _last_run_text(ev),
        )
        for ev in list_evaluations(database())
    ]
    print_table(
        "evaluations", ["name", "schedule", "tz", "paused", "next due (UTC)", "last run"], rows
    )


def _next_text(ev: EvaluationRecord) -> str:
    if not ev.schedule:
        return "no schedule: `hypermetric evals trigger` queues a run"
    if ev.next_due_at is None:
        return "none: the schedule has ended"
    # a new or unpaused definition's latest complete interval is due already
    due = "now" if ev.next_due_at <= datetime.now(UTC) else f"{fmt_time(ev.next_due_at)} UTC"
    return f"due {due} for the interval starting {fmt_time(ev.next_logical_date)}" + (
        " (paused)" if ev.paused else ""
    )


@evals_group.command("register")
@click.argument("target")
def register_cmd(target: str) -> None:
    """Store (or update) the definition of the @hm.runtime TARGET (MODULE:NAME or FILE.py:NAME).

    Its schedule, timezone, dates, catchup, limits, retries, timeout and params are read
    from the decorator; registering again updates them.
    """
    from hypermetric.scheduler.definitions import register

    done = register(database(), target)
    ev = done.evaluation
    what = "registered" if done.created else "updated"
    click.echo(f"{what} {ev.name!r} from {ev.import_path}; next run: {_next_text(ev)}")


def _fields(ev: EvaluationRecord) -> list[tuple[str, Any]]:
    delay = f"{ev.retry_delay_s:g}s" + (" doubling each attempt" if ev.retry_exponential else "")
    return [
        ("name", ev.name),
        ("import path", ev.import_path or ""),
        ("description", (ev.description or "").splitlines()[0] if ev.description else ""),
        ("schedule", f"{ev.schedule} ({ev.timezone})" if ev.schedule else ""),
        ("catchup", "yes" if ev.catchup else "no"),
        ("start / end", f"{fmt_time(ev.start_date)} .. {fmt_time(ev.end_date)}"),
        ("paused", "yes" if ev.paused else "no"),
        ("next run", _next_text(ev)),
        ("max active runs", ev.max_active_runs),
        ("retries", f"{ev.retries}, after {delay}" if ev.retries else "0"),
        ("timeout", f"{ev.timeout_s:g}s" if ev.timeout_s else ""),
        ("max error rate", f"{ev.max_error_rate:.1%}"),
        ("params", ev.params),
        ("version", ev.version_label or ""),
        ("code version", ev.code_version or ""),
    ]


@evals_group.command("show")
@click.argument("name")
@click.option("--runs", "run_count", default=10, show_default=True, type=click.IntRange(min=0))
def show_cmd(name: str, run_count: int) -> None:
    """Show a definition and its latest runs."""
    db = database()
    ev = get_evaluation(db, name)
    print_table(f"evaluation {ev.name}", ["field", "value"], _fields(ev))
    if run_count:
        rows = [
            (r.id, r.run_type, r.state, fmt_time(r.logical_date), r.attempt, r.error or "")
            for r in recent_runs(db, ev.id, limit=run_count)
        ]
        columns = ["id", "type", "state", "logical date (UTC)", "attempt", "error"]
        print_table("runs", columns, rows)


@evals_group.command("pause")
@click.argument("name")
def pause_cmd(name: str) -> None:
    """Stop creating and launching runs of NAME (running ones go on)."""
    from hypermetric.scheduler.definitions import pause

    pause(database(), name)
    click.echo(f"paused {name!r}")


@evals_group.command("unpause")
@click.argument("name")
def unpause_cmd(name: str) -> None:
    """Resume NAME's schedule; missed intervals follow its catchup setting."""
    from hypermetric.scheduler.definitions import unpause

    ev = unpause(database(), name)
    click.echo(f"unpaused {name!r}; next run: {_next_text(ev)}")


@evals_group.command("trigger")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="K=V", help="A run parameter.")
@click.option("--version", "version_label", help="The version label of this run.")
def trigger_cmd(name: str, params: tuple[str, ...], version_label: str | None) -> None:
    """Queue a manual run of NAME now; a running `hypermetric scheduler` launches it."""
    from hypermetric.cli.run import parse_params
    from hypermetric.scheduler.definitions import trigger

    run = trigger(database(), name, params=parse_params(params), version_label=version_label)
    note = "; the evaluation is paused: it starts after `evals unpause`" if _paused(name) else ""
    console().print(f"queued manual run {run.id} of {name!r}{note}", highlight=False)


def _paused(name: str) -> bool:
    return get_evaluation(database(), name).paused


def register(root: click.Group) -> None:
    """Add ``evals`` to the root command."""
    root.add_command(evals_group)
