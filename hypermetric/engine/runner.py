"""The life of a run: create it, drive an attempt on Ray, and end it success or failed.

``run_runtime`` is what ``Runtime.run()`` calls; ``resume_run`` continues a run whose
driver died (or starts a queued one: the scheduler launches ``hypermetric runs resume``),
re-running only the units the ledger does not hold; ``retry_run`` runs a failed run's
failed work again; ``rescore_run`` makes a run that scores a stored run's calls again with
the current evals (its attempts replay them, :mod:`hypermetric.engine.replay`). Each is a
new attempt of the run, whose every write is fenced by its attempt number
(:mod:`hypermetric.catalog.attempts`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from hypermetric.api.component import resolve_import
from hypermetric.api.context import RunContext
from hypermetric.api.datasets import OpenedPath, check_path, resolve_source
from hypermetric.api.identity import Survey, survey
from hypermetric.api.runtime import Runtime, check_epochs
from hypermetric.catalog.attempts import (
    RunNotRunning,
    finish_attempt,
    heartbeat,
    update_attempt,
)
from hypermetric.catalog.db import Database, database
from hypermetric.catalog.evaluations import get_evaluation, upsert_evaluation
from hypermetric.catalog.ledger import plan_units
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import check_startable, create_run, get_run, start_run
from hypermetric.catalog.shards import ledger_totals
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings, get_settings
from hypermetric.engine.calls import RunServices
from hypermetric.engine.cluster import connect
from hypermetric.engine.coordinator import Coordinator, Progress
from hypermetric.engine.replay import replay_of
from hypermetric.errors import (
    ConflictError,
    DatasetError,
    DefinitionError,
    HypermetricError,
    RunFailedError,
    SupersededError,
)
from hypermetric.liveness import pid_alive
from hypermetric.masking import masked
from hypermetric.storage.files import store_for

__all__ = ["load_runtime", "rescore_run", "resume_run", "retry_run", "run_runtime"]

ProgressFn = Callable[[Progress], None]
_RUNTIME_DATASET = "runtime"
_MEMORY = "memory:"


def load_runtime(import_path: str) -> Runtime:
    """Import the ``module:qualname`` (or ``path/to/file.py:name``) of an ``@hm.runtime``."""
    module, _, qualname = import_path.rpartition(":")
    if not module or not qualname:
        raise DefinitionError(f"{import_path!r} is not MODULE:NAME (e.g. evals.qa:qa_nightly)")
    if module.endswith(".py") or os.sep in module:
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise DefinitionError(
                f"{module} is not a Python file; give MODULE:NAME or FILE.py:NAME"
            )
        # import it under its own name, from its folder, so workers can import it the same way
        import sys

        sys.path.insert(0, str(path.parent))
        module = path.stem
    try:
        obj = resolve_import(module, qualname)
    except HypermetricError:
        raise  # the module's own declaration is wrong (a bad timezone...): say so as it is
    except Exception as exc:
        raise DefinitionError(
            f"cannot import {import_path}: {type(exc).__name__}: {exc}; "
            "check the module is importable from here (PYTHONPATH)"
        ) from None
    if not isinstance(obj, Runtime):
        raise DefinitionError(f"{import_path} is a {type(obj).__name__}, not an @hm.runtime")
    return obj


def _describe(dataset: Any, own: bool) -> str:
    if isinstance(dataset, (str, Path)):
        return str(dataset)
    if own:
        return _RUNTIME_DATASET
    if isinstance(dataset, pa.Table):
        return f"{_MEMORY}pyarrow Table of {dataset.num_rows} rows"
    if callable(dataset):
        return f"{_MEMORY}{getattr(dataset, '__qualname__', repr(dataset))}"
    size = len(dataset) if hasattr(dataset, "__len__") else "?"
    return f"{_MEMORY}{type(dataset).__name__} of {size} examples"


def _check_source(dataset: Any) -> Any:
    """The dataset ready for the run; a bad path fails here, before the run is created."""
    if dataset is None:
        raise DatasetError("no dataset: give @hm.runtime(dataset=...) or .run(dataset=...)")
    if isinstance(dataset, (str, Path)):
        return check_path(str(dataset))  # opened once: the run counts and reads it
    return dataset


def run_runtime(
    runtime: Runtime,
    *,
    version: str | None = None,
    params: Mapping[str, Any] | None = None,
    dataset: Any = None,
    ray_address: str | None = None,
    logical_date: datetime | None = None,
    progress: ProgressFn | None = None,
    run_type: str = "manual",
    cache: bool | None = None,
    epochs: int | None = None,
) -> RunRecord:
    """Create a run of ``runtime`` and drive it to the end; RunFailedError if it fails.

    ``cache``: True caches every component's calls, False bypasses the call cache, None
    (the default) caches the components declared with ``cache=True``. ``epochs``
    overrides the runtime's (each example runs that many times)."""
    if epochs is not None:
        check_epochs(epochs)
    settings = get_settings()
    db = database(settings)
    source = dataset if dataset is not None else runtime.dataset
    opened = _check_source(source)
    info = {**runtime.versions(), "epochs": epochs or runtime.epochs}
    fields: dict[str, Any] = {"code_version": info["code_version"]}
    if runtime.import_path:
        fields["import_path"] = runtime.import_path
    evaluation = upsert_evaluation(db, runtime.name, **fields)
    run = create_run(
        db,
        evaluation.id,
        run_type=run_type,
        logical_date=logical_date or utcnow(),
        version_label=version or runtime.version,
        code_version=info["code_version"],
        versions=info,
        params={**runtime.params, **(params or {})},
        dataset=_describe(source, own=dataset is None),
        unit_size=settings.unit_size,
    )
    return _attempt(db, settings, run, runtime, opened, ray_address, progress, cache=cache)


def resume_run(
    run_id: int,
    *,
    ray_address: str | None = None,
    dataset: Any = None,
    progress: ProgressFn | None = None,
    force: bool = False,
) -> RunRecord:
    """Continue (or start) run ``run_id`` as a new attempt: only uncommitted units run again.

    Refused while another live process drives the run (its pid alive on this host, or a
    fresh heartbeat from another host), unless ``force``: then this attempt takes the run
    over, and the other one's writes are refused from now on. A failed run is retried with
    :func:`retry_run`.
    """
    settings = get_settings()
    db = database(settings)
    run = get_run(db, run_id)
    check_startable(run.id, run.state, run.error, "resume")
    if run.state == "running" and not force:
        _refuse_if_alive(run, settings)
    runtime, source = _rerun(db, run, dataset)
    mode = "force" if run.state == "running" else "resume"
    return _attempt(db, settings, run, runtime, source, ray_address, progress, mode)


def retry_run(
    run_id: int,
    *,
    ray_address: str | None = None,
    dataset: Any = None,
    progress: ProgressFn | None = None,
) -> RunRecord:
    """Run a failed (or canceled) run's failed work again, now, as a new attempt.

    Every example that had an error (a component call or an eval raised) is driven again
    and its old rows are retracted; every unit never committed runs; the other examples
    keep their scores. RunFailedError if the retry fails too.
    """
    settings = get_settings()
    db = database(settings)
    run = get_run(db, run_id)
    if run.state not in ("failed", "canceled"):
        raise ConflictError(
            f"run {run_id} is {run.state}; only a failed or canceled run is retried"
        )
    runtime, source = _rerun(db, run, dataset)
    return _attempt(db, settings, run, runtime, source, ray_address, progress, "retry")


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
    new run's label (default: the stored run's). RunFailedError if it fails.

    The new run is an ordinary run with ``source_run_id`` set: its attempts (and a resume
    or a retry of it) replay instead of driving the runtime."""
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


def _rerun(db: Database, run: RunRecord, dataset: Any) -> tuple[Runtime, Any]:
    """The runtime and dataset of a stored run, imported again."""
    evaluation = get_evaluation(db, run.evaluation_id)
    if not evaluation.import_path:
        raise DefinitionError(
            f"evaluation {evaluation.name!r} has no import path; register it with "
            "`hypermetric evals register MODULE:NAME` (runtimes defined in __main__ cannot resume)"
        )
    runtime = load_runtime(evaluation.import_path)
    return runtime, _source_for(run, runtime, dataset)


def _source_for(run: RunRecord, runtime: Runtime, dataset: Any) -> Any:
    if dataset is not None:
        return dataset
    if run.dataset is None or run.dataset == _RUNTIME_DATASET:
        return runtime.dataset
    if run.dataset.startswith(_MEMORY):
        raise DatasetError(
            f"run {run.id} read an in-memory dataset ({run.dataset[len(_MEMORY) :]}); "
            "pass the same data again: hm.resume(run_id, dataset=...)"
        )
    return run.dataset


def _refuse_if_alive(run: RunRecord, settings: Settings) -> None:
    if run.pid is None:
        return
    if run.host == socket.gethostname():
        if not pid_alive(run.pid, created_before=run.started_at):
            return
        raise ConflictError(
            f"run {run.id} is being driven by process {run.pid}; wait for it, stop it, "
            "or pass --force"
        )
    fresh = run.heartbeat_at and utcnow() - run.heartbeat_at < timedelta(
        seconds=3 * settings.heartbeat_seconds
    )
    if fresh:
        raise ConflictError(
            f"run {run.id} is being driven on {run.host} (heartbeat {run.heartbeat_at}); "
            "wait for it, or pass --force"
        )


def run_epochs(run: RunRecord, runtime: Runtime) -> int:
    """The epochs a run drives each example: what its versions recorded (a resume or a
    retry drives as many as its first attempt, whatever the code says now), else the
    runtime's (a run the scheduler queued records them when it starts)."""
    recorded = (run.versions or {}).get("epochs")
    return int(recorded) if recorded else runtime.epochs


def _record_epochs(db: Database, run: RunRecord, runtime: Runtime) -> RunRecord:
    """A run created without its epochs (queued by the scheduler) records its runtime's
    in its versions before anything is driven, for its next attempts and its readers."""
    if "epochs" in (run.versions or {}):
        return run
    versions = {**(run.versions or {}), "epochs": runtime.epochs}
    update_attempt(db, run.id, run.attempt, versions=versions)
    return get_run(db, run.id)


def _context(run: RunRecord, runtime: Runtime) -> RunContext:
    return RunContext(
        evaluation=run.evaluation,
        logical_date=run.logical_date,
        params=dict(run.params),
        run_id=run.id,
        version=run.version_label,
        run_type=run.run_type,
        data_interval_start=run.data_interval_start,
        data_interval_end=run.data_interval_end,
        epochs=run_epochs(run, runtime),
    )


def _attempt(
    db: Database,
    settings: Settings,
    run: RunRecord,
    runtime: Runtime,
    source: Any,
    ray_address: str | None,
    on_progress: ProgressFn | None,
    mode: str = "resume",
    cache: bool | None = None,
) -> RunRecord:
    context = _context(run, runtime)
    store = store_for(settings)
    services = RunServices(cache_mode=cache, params=dict(run.params), store=store)
    resolved = resolve_source(source, context)
    run = start_run(
        db,
        run.id,
        owner=f"{socket.gethostname()}:{os.getpid()}",
        pid=os.getpid(),
        host=socket.gethostname(),
        mode=mode,
    )
    try:
        run = _record_epochs(db, run, runtime)
        survey = _survey(db, settings, run, resolved)
        if survey is not None and survey.count != run.examples_total:
            update_attempt(db, run.id, run.attempt, examples_total=survey.count)
            run = get_run(db, run.id)
        replay = replay_of(db, store, run, runtime) if run.source_run_id else None
        connect(ray_address)
        units = Coordinator(
            db=db,
            store=store,
            run=run,
            runtime=runtime,
            context=context,
            settings=settings,
            source=resolved,
            plan=plan_units(db, run.id),
            survey=survey,
            on_progress=on_progress,
            timeout=runtime.schedule.timeout,
            services=services,
            replay=replay,
        ).execute()
    except SupersededError:
        raise  # the run belongs to another attempt now: write nothing more
    except BaseException as exc:
        _fail(db, run, exc)
        raise
    return _finish(db, run, runtime, units)


def _survey(db: Database, settings: Settings, run: RunRecord, source: Any) -> Survey | None:
    """The ids and count of a dataset that can be read again, read once now (a one-shot
    iterator gets its ids as the run reads it); the run's heartbeat goes on meanwhile."""
    if not isinstance(source, (list, tuple, pa.Table, OpenedPath)):
        return None
    last = time.monotonic()

    def beat(_count: int) -> None:
        nonlocal last
        if time.monotonic() - last >= settings.heartbeat_seconds:
            last = time.monotonic()
            heartbeat(db, run.id, run.attempt)

    return survey(source, on_chunk=beat)


def _fail(db: Database, run: RunRecord, exc: BaseException) -> None:
    if isinstance(exc, HypermetricError):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    elif isinstance(exc, KeyboardInterrupt):
        reason = "interrupted"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    # canceled, failed or taken over by someone else meanwhile: keep their word
    with contextlib.suppress(RunNotRunning, SupersededError):
        finish_attempt(db, run.id, run.attempt, "failed", masked(reason))


def _finish(db: Database, run: RunRecord, runtime: Runtime, units: int) -> RunRecord:
    totals = ledger_totals(db, run.id)
    update_attempt(db, run.id, run.attempt, units_total=units, examples_total=totals.examples)
    if totals.unit_id != units:
        reason = f"only {totals.unit_id} of {units} units were committed"
        finish_attempt(db, run.id, run.attempt, "failed", reason)
        raise RunFailedError(f"run {run.id} failed: {reason}", run.id)
    rate = totals.failed_examples / totals.examples if totals.examples else 0.0
    if rate > runtime.max_error_rate:
        reason = (
            f"{totals.failed_examples} of {totals.examples} examples had errors "
            f"({rate:.1%}), above max_error_rate {runtime.max_error_rate:.1%}; "
            f"the error column of scores and calls says why; `hypermetric runs retry "
            f"{run.id}` runs them again"
        )
        finish_attempt(db, run.id, run.attempt, "failed", reason)
        raise RunFailedError(f"run {run.id} failed: {reason}", run.id)
    finish_attempt(db, run.id, run.attempt, "success")
    return get_run(db, run.id)
