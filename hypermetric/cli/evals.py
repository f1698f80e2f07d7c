"""``hypermetric evals``: the stored evaluation definitions."""

from __future__ import annotations

import click

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import list_evaluations
from hypermetric.catalog.runs import list_runs
from hypermetric.cli.render import fmt_time, print_table

__all__ = ["evals_group", "register"]


@click.group("evals")
def evals_group() -> None:
    """List and manage evaluation definitions and their schedules."""


@evals_group.command("list")
def list_cmd() -> None:
    """List evaluations with their schedule, next due time and last run."""
    db = database()
    rows = []
    for ev in list_evaluations(db):
        last = list_runs(db, evaluation=ev.name, limit=1)
        last_text = (
            f"#{last[0].id} {last[0].state} {fmt_time(last[0].logical_date)}" if last else ""
        )
        rows.append(
            (
                ev.name,
                ev.schedule or "",
                ev.timezone,
                "yes" if ev.paused else "no",
                fmt_time(ev.next_due_at),
                last_text,
            )
        )
    print_table(
        "evaluations", ["name", "schedule", "tz", "paused", "next due (UTC)", "last run"], rows
    )


def register(root: click.Group) -> None:
    """Add ``evals`` to the root command."""
    root.add_command(evals_group)
