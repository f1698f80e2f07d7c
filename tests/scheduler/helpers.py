"""Helpers for scheduler tests: runtime modules written on the fly, run rows by SQL."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Evaluation, Run

RUNTIME = """
import hypermetric as hm

def exact(output, answer):
    return float(output == answer)

DATA = [{{"id": i, "q": str(i), "answer": str(i)}} for i in range(10)]

@hm.runtime(name={name!r}, dataset=DATA, evals=[exact], {options})
def runtime(example):
    return example["q"]
"""


def write_runtime(folder: Path, name: str = "nightly", **options: Any) -> str:
    """A module with one ``@hm.runtime`` named ``name``; returns its FILE.py:NAME path."""
    text = ", ".join(f"{k}={v!r}" for k, v in options.items())
    path = folder / f"hm_rt_{uuid.uuid4().hex[:10]}.py"
    path.write_text(RUNTIME.format(name=name, options=text))
    return f"{path}:runtime"


def logical_dates(db: Database, name: str, run_type: str | None = None) -> list[datetime]:
    """The logical dates of an evaluation's runs, in order (duplicates would show twice)."""
    stmt = (
        select(Run.logical_date)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(Evaluation.name == name)
        .order_by(Run.logical_date)
    )
    if run_type is not None:
        stmt = stmt.where(Run.run_type == run_type)
    with db.session() as session:
        return list(session.scalars(stmt))


def count_active(db: Database, name: str) -> int:
    """Runs of ``name`` running or being launched (what max_active_runs limits)."""
    stmt = (
        select(func.count())
        .select_from(Run)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(
            Evaluation.name == name,
            (Run.state == "running") | ((Run.state == "queued") & Run.owner.is_not(None)),
        )
    )
    with db.session() as session:
        return int(session.scalar(stmt) or 0)


def stop_scheduler(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait for a clean exit; a scheduler that hangs prints its stacks first."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to its log
        time.sleep(2)
        raise
    assert code == 0, "the scheduler did not stop cleanly; see its log"


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` until it holds; fail saying what was awaited after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds}s for {what}"
        time.sleep(0.2)
