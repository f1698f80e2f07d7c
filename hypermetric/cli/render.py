"""Shared terminal output: tables, times, durations."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "fmt_duration", "fmt_time", "print_table"]


def console(stderr: bool = False) -> Console:
    """A rich console on the current stdout or stderr (which CLI test runners replace)."""
    stream: IO[str] = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(file=stream, soft_wrap=False, width=width)


def fmt_time(value: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS`` (blank for None)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    """The seconds between two times, or blank."""
    if not start or not end:
        return ""
    return f"{(end - start).total_seconds():.1f}s"


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table; an empty one says so in a line."""
    out = console()
    if not rows:
        out.print(f"no {title or 'rows'}")
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)
