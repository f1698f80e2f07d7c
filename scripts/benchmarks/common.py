"""What several benchmarks share: a temporary home, and the scheduler's maintenance pass."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hypermetric.config import Settings


@contextlib.contextmanager
def temporary_home(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh folder for one benchmark's data, removed at the end unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Maintained:
    passes: int
    merged: int
    written: int
    seconds: float


def maintain(settings: Settings) -> Maintained:
    """The scheduler's maintenance pass with its default options (what `hypermetric
    scheduler` does), called until it has nothing left."""
    from hypermetric.scheduler.service import Scheduler

    scheduler = Scheduler(settings)
    started, passes, merged, written = time.perf_counter(), 0, 0, 0
    while True:
        report = scheduler.run_maintenance()
        passes += 1
        merged, written = merged + report.shards_merged, written + report.files_written
        if report.complete:
            return Maintained(passes, merged, written, time.perf_counter() - started)
