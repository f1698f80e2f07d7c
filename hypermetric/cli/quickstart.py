"""``hypermetric quickstart``: the whole story in one command, on the embedded defaults.

Each step prints the command a user would type and runs exactly that command in this
process (so Ray starts once): migrate, register a nightly evaluation, run two versions,
compare them, ask SQL of the history, backfill three nights and run them.
"""

from __future__ import annotations

import shlex
import time
from datetime import date, datetime, timedelta

import click

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.runs import list_runs
from hypermetric.catalog.types import utcnow
from hypermetric.cli.render import console
from hypermetric.scheduler.definitions import timetable_for
from hypermetric.scheduler.triggers import Timetable, parse_zone

__all__ = ["quickstart_cmd", "register"]

DEMO = "hypermetric.examples.qa"
NIGHTLY = "demo-qa-nightly"
#: the last line the quickstart prints: the web view over what it made
UI_COMMAND = "hypermetric ui"
UI_URL = "http://127.0.0.1:8765/"
NEXT_STEPS = [
    ("history of a metric across runs", "hypermetric history demo-qa --metric exact_match"),
    (
        "examples needed to see a change",
        "hypermetric power demo-qa --metric exact_match --delta 0.05",
    ),
    ("one run in detail", "hypermetric runs show {run_id}"),
    ("any question in SQL", 'hypermetric sql "SELECT * FROM calls LIMIT 5"'),
    (
        "gate a CI job on regressions",
        "hypermetric compare demo-qa@v1 demo-qa@v2 --fail-on-regression 0.01",
    ),
    ("run the nightly schedule", "hypermetric scheduler"),
    ("merge small shards", "hypermetric compact"),
]


def _step(root: click.Group, title: str, args: list[str]) -> None:
    out = console()
    out.print()
    out.print(f"[bold cyan]» {title}[/]")
    out.print(f"[dim]$ hypermetric {' '.join(shlex.quote(a) for a in args)}[/]")
    root.main(args=args, prog_name="hypermetric", standalone_mode=False)


def _sql_over(v1: int, v2: int) -> str:
    return (
        "SELECT version, component, metric, count(value) AS n, round(avg(value), 4) AS mean "
        f"FROM scores WHERE run_id IN ({v1}, {v2}) GROUP BY ALL ORDER BY component, metric, version"
    )


@click.command("quickstart")
@click.pass_context
def quickstart_cmd(ctx: click.Context) -> None:
    """Run the demo end to end: two versions, a comparison, SQL, and a 3-night backfill."""
    from hypermetric.examples.qa import VERSIONS

    root = ctx.find_root().command
    assert isinstance(root, click.Group)
    started = time.monotonic()
    _step(root, "Create or upgrade the metadata DB", ["db", "upgrade"])
    _step(
        root,
        "Register the nightly evaluation (cron 0 2 * * *, UTC)",
        ["evals", "register", f"{DEMO}:qa_nightly"],
    )
    ids = []
    for label, params in VERSIONS.items():
        args = ["run", f"{DEMO}:qa", "--version", label]
        for key, value in params.items():
            args += ["--param", f"{key}={str(value).lower()}"]
        _step(
            root, f"Run version {label} ({', '.join(f'{k}={v}' for k, v in params.items())})", args
        )
        ids.append(list_runs(database(), evaluation="demo-qa", limit=1)[0].id)
    _step(
        root,
        "Compare the versions, example by example (CIs, Holm-adjusted p-values, MDE)",
        ["compare", "demo-qa@v1", "demo-qa@v2", "--show", "regressions", "--limit", "5"],
    )
    _step(
        root,
        "Ask SQL of every score ever stored (these means match the summaries)",
        ["sql", _sql_over(ids[0], ids[1])],
    )
    _backfill(root)
    console().print()
    console().print(f"[bold green]Done in {time.monotonic() - started:.0f}s.[/] Try next:")
    for what, command in NEXT_STEPS:
        console().print(f"  {command.format(run_id=ids[1]):<72} [dim]# {what}[/]")
    console().print()
    console().print(
        f"[bold]Look at it all in a browser:[/] {UI_COMMAND}  [dim]# then open {UI_URL}[/]"
    )


def last_nights(table: Timetable, now: datetime, count: int = 3) -> tuple[date, date]:
    """The first and last day of the ``count`` latest nights whose intervals have ended.

    Before the night's fire time (02:00 UTC) the night that began yesterday has not
    ended yet, so the window is a day earlier than just after it.
    """
    latest = table.latest_complete(now)
    if latest is None:
        raise click.ClickException("the demo's schedule has no complete night to backfill")
    last = latest.logical_date.astimezone(parse_zone(table.schedule.timezone)).date()
    return last - timedelta(days=count - 1), last


def _backfill(root: click.Group) -> None:
    table = timetable_for(get_evaluation(database(), NIGHTLY))
    assert table is not None, "the nightly demo has a schedule"
    start, end = last_nights(table, utcnow())
    _step(
        root,
        "Backfill the last three nights of the schedule",
        ["backfill", NIGHTLY, "--start", start.isoformat(), "--end", end.isoformat()],
    )
    queued = list_runs(database(), evaluation=NIGHTLY, state="queued")
    for run in sorted(queued, key=lambda r: r.logical_date):
        _step(
            root,
            f"Run the backfilled night {run.logical_date:%Y-%m-%d} "
            "(the scheduler does this by itself)",
            ["runs", "resume", str(run.id), "--no-progress"],
        )
    _step(
        root,
        "The nightly runs, newest first",
        ["runs", "list", "--evaluation", NIGHTLY, "--limit", "5"],
    )


def register(root: click.Group) -> None:
    """Add ``quickstart`` to the root command."""
    root.add_command(quickstart_cmd)
