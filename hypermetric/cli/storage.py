"""``hypermetric compact``, ``clean`` and ``versions``: storage and metadata hygiene."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click

from hypermetric.cli.render import console, fmt_time, print_table

__all__ = [
    "clean_cmd",
    "compact_cmd",
    "parse_before",
    "parse_duration",
    "register",
    "versions_cmd",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` or ``2w`` as a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 12h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_before(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or datetime (UTC when it names no zone), or a duration ago (``30d``)."""
    if _DURATION.match(text):
        return (now or datetime.now(UTC)) - parse_duration(text)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date; use e.g. 2026-01-31, 2026-01-31T12:00 or 30d"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _size(num: int) -> str:
    value = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{num} B"


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not sys.stdout.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(console=console()) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


@click.command("compact")
@click.option("--evaluation", "-e", help="Only shards of this evaluation's runs.")
@click.option(
    "--dataset", type=click.Choice(["scores", "calls", "examples"]), help="Only this dataset."
)
@click.option(
    "--target-rows",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(min=2),
    help="Rows per packed file; shards (and packed files) under half of it are packed.",
)
def compact_cmd(evaluation: str | None, dataset: str | None, target_rows: int) -> None:
    """Pack small shards of finished runs into large files now, in one new version.

    A running `hypermetric scheduler` does this by itself every few minutes; this is for
    a home without one, or after a big import. Files may hold many runs, sorted by
    evaluation, run and metric. Older versions keep reading the old files until
    `hypermetric clean` expires them.
    """
    from hypermetric.catalog.shards import DATASETS
    from hypermetric.query.compaction import compact

    datasets = (dataset,) if dataset else DATASETS
    with _progress("compacting") as progress:
        reports = compact(
            evaluation=evaluation, datasets=datasets, target_rows=target_rows, progress=progress
        )
    rows = [
        (
            r.dataset,
            r.version_id or "",
            r.shards_merged,
            r.files_written,
            r.rows,
            _size(r.bytes_before),
            _size(r.bytes_after),
        )
        for r in reports
    ]
    columns = ["dataset", "version", "shards merged", "files written", "rows", "before", "after"]
    print_table("compaction", columns, rows)


@click.command("clean")
@click.option("--before", "before_text", required=True, metavar="DATE", help="ISO date or 30d.")
@click.option("--dry-run", is_flag=True, help="Show what would go, change nothing.")
@click.option(
    "--prune-runs",
    is_flag=True,
    help="Also delete finished runs that ended before DATE, and their shards.",
)
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    help="Unregistered files younger than this are kept.",
)
def clean_cmd(before_text: str, dry_run: bool, prune_runs: bool, grace: str) -> None:
    """Expire versions older than DATE and delete files no readable version needs.

    Also deletes orphan files (never registered, older than --grace). The newest version
    never expires, and nothing a live version reads is ever deleted.
    """
    from hypermetric.query.retention import clean

    before = parse_before(before_text)
    report = clean(
        before=before, dry_run=dry_run, prune_runs=prune_runs, grace=parse_duration(grace)
    )
    verb = "would" if dry_run else "did"
    out = console()
    out.print(f"clean --before {fmt_time(before)} UTC ({'dry run' if dry_run else 'done'}):")
    lines = [
        ("expire versions", report.expired_versions),
        ("prune runs", report.pruned_runs),
        ("delete shard files", report.deleted_shards),
        ("delete orphan files", report.orphans),
    ]
    for label, items in lines:
        shown = ", ".join(str(i) for i in items[:10]) + (" ..." if len(items) > 10 else "")
        out.print(f"  {verb} {label}: {len(items)}" + (f" ({shown})" if items else ""))
    out.print(f"  space {'to free' if dry_run else 'freed'}: {_size(report.bytes_freed)}")


@click.command("versions")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(min=1))
def versions_cmd(limit: int) -> None:
    """List dataset versions, newest first (what --as-of reads)."""
    from hypermetric.catalog.db import database
    from hypermetric.catalog.shards import list_versions

    rows = [
        (
            v.id,
            v.dataset,
            v.kind,
            v.run_id or "",
            fmt_time(v.created_at),
            "expired" if v.expired else "",
            v.message or "",
        )
        for v in list_versions(database(), limit=limit)
    ]
    columns = ["version", "dataset", "kind", "run", "created (UTC)", "state", "message"]
    print_table("dataset versions", columns, rows)


def register(root: click.Group) -> None:
    """Add ``compact``, ``clean`` and ``versions`` to the root command."""
    for command in (compact_cmd, clean_cmd, versions_cmd):
        root.add_command(command)
