"""A progress bar for long runs: examples done/total, scores per second, errors."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:  # the coordinator imports Ray; a CLI that only lists runs should not
    from hypermetric.engine.coordinator import Progress as RunProgress

__all__ = ["progress_display"]


@contextmanager
def progress_display(
    enabled: bool, label: str, *, force_terminal: bool | None = None
) -> Iterator[Callable[[RunProgress], None] | None]:
    """Yield a progress callback drawing a bar on stderr (None when disabled or no terminal)."""
    console = Console(file=sys.stderr, force_terminal=force_terminal)
    if not enabled or not console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("examples  {task.fields[rate]:>9} scores/s  {task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task(label, total=None, rate="-", errors=0)

    def update(p: RunProgress) -> None:
        elapsed = max(1e-6, time.monotonic() - p.started)
        bar.update(
            task,
            completed=p.examples_done,
            total=p.examples_total,
            rate=f"{p.scores / elapsed:,.0f}",
            errors=p.errors,
        )

    with bar:
        yield update
