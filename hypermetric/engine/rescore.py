"""``rescore``: a new run of a stored run's evaluation that replays its component calls
and scores them with the evals of the current code (:mod:`hypermetric.engine.replay`).

The run is an ordinary run with ``source_run_id`` set: its attempts (and a resume or a
retry of it) go through the runner, which replays instead of driving the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypermetric.api.datasets import check_path
from hypermetric.api.runtime import Runtime
from hypermetric.catalog.db import database
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import create_run, get_run
from hypermetric.catalog.types import utcnow
from hypermetric.config import get_settings
from hypermetric.engine.runner import _MEMORY, ProgressFn, _attempt, _rerun, _source_for
from hypermetric.errors import ConflictError, DatasetError

__all__ = ["rescore_run"]


def rescore_run(
    run_id: int,
    *,
    version: str | None = None,
    runtime: Runtime | None = None,
    dataset: Any = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> RunRecord:
    """A new run of run ``run_id``'s evaluation that replays its stored component calls and
    scores them with the current code's evals; no component runs. ``runtime`` is the
    current code (default: the evaluation's import path, imported again), ``version`` the
    new run's label (default: the stored run's). RunFailedError if it fails."""
    settings = get_settings()
    db = database(settings)
    source = get_run(db, run_id)
    if not source.finished:
        raise ConflictError(
            f"run {run_id} is {source.state}; rescore a run that ended (success or failed)"
        )
    described = source.dataset or ""
    if dataset is None and described.startswith(_MEMORY):
        raise DatasetError(
            f"run {run_id} read an in-memory dataset ({described[len(_MEMORY) :]}); "
            f"pass the same data again: hm.rescore({run_id}, dataset=...)"
        )
    if runtime is None:
        runtime, opened = _rerun(db, source, dataset)
    else:
        opened = _source_for(source, runtime, dataset)
    # its calls keep their epochs: the rescore has as many as the stored run
    info = {**runtime.versions(), "epochs": (source.versions or {}).get("epochs") or 1}
    run = create_run(
        db,
        source.evaluation_id,
        run_type="manual",
        logical_date=utcnow(),
        version_label=version or source.version_label,
        code_version=info["code_version"],
        versions=info,
        params=dict(source.params),
        dataset=source.dataset,
        unit_size=settings.unit_size,
        source_run_id=source.id,
    )
    source_path = opened if not isinstance(opened, (str, Path)) else check_path(str(opened))
    return _attempt(db, settings, run, runtime, source_path, ray_address, progress)
