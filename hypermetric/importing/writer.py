"""Writing an imported log: one run, its rows through the same path as an engine run's.

The rows are written as shards by the :class:`~hypermetric.storage.files.ShardStore` and
registered with the unit ledger in one transaction (the whole log is one work unit), so
SQL, ``history``, ``compare``, retention and compaction see an imported run like any
other. Its run is created running in one transaction with the log's unique key
(:mod:`hypermetric.catalog.imports`): a log imported twice, or by two processes at once,
is one run.

An import is all or nothing: the log was validated whole before this runs; if writing
fails, the files are deleted (never registered, so never read) and the run ends failed
with its key released, so the log can be imported again.

The rows of a sample, dataset by dataset:

* ``scores``: one row per (sample, scorer or metric[.key]); ``component`` is the
  evaluation's name, as a runtime's own evals are stored, and ``epoch`` the sample's
  0-based epoch (compare and summaries reduce an example's epochs first);
* ``calls``: one row per sample, its inputs and output as JSON text;
* ``examples``: one row per example, its fields (input, target, metadata...) as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hypermetric.catalog.attempts import finish_attempt, update_attempt
from hypermetric.catalog.db import Database, database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.imports import ImportSlot, begin_import, release_import
from hypermetric.catalog.records import RunRecord, ShardFile, UnitSummary
from hypermetric.catalog.runs import finish_run, get_run
from hypermetric.catalog.shards import commit_units
from hypermetric.config import Settings, get_settings
from hypermetric.engine.examples import fields_text
from hypermetric.importing.records import ImportedLog, ImportedSample
from hypermetric.liveness import pid_alive
from hypermetric.masking import masked
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import CALLS_SCHEMA, EXAMPLES_SCHEMA, SCORES_SCHEMA

__all__ = ["ImportOutcome", "calls_table", "scores_table", "store_logs"]

#: the one work unit an imported log is committed as
_UNIT = 0


@dataclass(frozen=True)
class ImportOutcome:
    """What importing one log did: ``created`` its run, or found it imported already."""

    log: ImportedLog
    run: RunRecord
    created: bool


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def _constants(run: RunRecord, log: ImportedLog) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "evaluation": log.evaluation,
        "version": run.version_label,
        "run_attempt": run.attempt,
        "created_at": run.logical_date,
    }


def _table(schema: pa.Schema, columns: dict[str, list[Any]], constants: dict[str, Any]) -> pa.Table:
    n = len(next(iter(columns.values())))
    arrays = [
        pa.array(columns[f.name], f.type)
        if f.name in columns
        else pa.array([constants[f.name]] * n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def scores_table(log: ImportedLog, run: RunRecord) -> pa.Table:
    """The ``scores`` rows of a log: one per (sample, metric)."""
    columns: dict[str, list[Any]] = {
        k: []
        for k in ("example_id", "component", "call_index", "metric", "value", "error", "epoch")
    }
    for sample in log.samples:
        for score in sample.scores:
            columns["example_id"].append(sample.example_id)
            columns["component"].append(log.evaluation)
            columns["call_index"].append(0)
            columns["metric"].append(score.metric)
            columns["value"].append(score.value)
            columns["error"].append(score.error)
            columns["epoch"].append(sample.epoch)
    return _table(SCORES_SCHEMA, columns, _constants(run, log))


def calls_table(log: ImportedLog, run: RunRecord) -> pa.Table:
    """The ``calls`` rows of a log: one per sample, its inputs and output as JSON text."""
    samples = log.samples
    columns: dict[str, list[Any]] = {
        "example_id": [s.example_id for s in samples],
        "component": [log.evaluation] * len(samples),
        "call_index": [0] * len(samples),
        "inputs": [_json(s.inputs) for s in samples],
        "output": [_json(s.output) for s in samples],
        "latency_ms": [s.latency_ms for s in samples],
        "error": [s.error for s in samples],
        "attempts": [1] * len(samples),
        "cached": [False] * len(samples),
        "epoch": [s.epoch for s in samples],
    }
    return _table(CALLS_SCHEMA, columns, _constants(run, log))


def examples_table(log: ImportedLog, run: RunRecord, field_bytes: int) -> pa.Table:
    """The ``examples`` rows of a log: one per example (its first epoch's fields), encoded
    as an engine run encodes its examples' (strict JSON, a value over the configured size
    stored as null: ``field_bytes``, the ``example_field_bytes`` setting)."""
    first: dict[str, ImportedSample] = {}
    for sample in sorted(log.samples, key=lambda s: s.epoch):
        first.setdefault(sample.example_id, sample)
    columns: dict[str, list[Any]] = {
        "example_id": list(first),
        "fields": [fields_text(s.fields, field_bytes) for s in first.values()],
    }
    return _table(EXAMPLES_SCHEMA, columns, _constants(run, log))


def _tables(log: ImportedLog, run: RunRecord, field_bytes: int) -> dict[str, pa.Table]:
    """The tables an imported run writes, by dataset."""
    return {
        "scores": scores_table(log, run),
        "calls": calls_table(log, run),
        "examples": examples_table(log, run, field_bytes),
    }


def _unit(log: ImportedLog, tables: dict[str, pa.Table]) -> UnitSummary:
    examples = {s.example_id for s in log.samples}
    failed = {s.example_id for s in log.samples if s.error or any(x.error for x in s.scores)}
    scores = tables["scores"]
    return UnitSummary(
        unit_id=_UNIT,
        examples=len(examples),
        rows=scores.num_rows,
        calls=tables["calls"].num_rows,
        errors=scores.num_rows - scores["error"].null_count,
        failed_examples=len(failed),
    )


def _write(
    db: Database, store: ShardStore, log: ImportedLog, run: RunRecord, field_bytes: int
) -> None:
    """Write the run's shards and commit them as its one unit, then end it success."""
    files: list[ShardFile] = []
    committed = False
    try:
        tables = _tables(log, run, field_bytes)
        for name, table in tables.items():
            if table.num_rows:
                files.append(store.write(name, run.id, table, f"import-u{_UNIT:07d}"))
        commit_units(db, run.id, files, [_unit(log, tables)], attempt=run.attempt)
        committed = True
        update_attempt(db, run.id, run.attempt, units_total=1)
        finish_attempt(db, run.id, run.attempt, "success")
    except BaseException as exc:
        _abandon(db, store, run, [] if committed else files, exc)
        raise


def _abandon(
    db: Database, store: ShardStore, run: RunRecord, files: list[ShardFile], exc: BaseException
) -> None:
    """After a failed write: delete the unregistered files, end the run failed, release its
    key. Best effort: the error the user sees is the write's, not a cleanup's (an
    unregistered file is never read, and ``clean`` sweeps what is left)."""
    reason = f"import failed: {type(exc).__name__}: {exc}".splitlines()[0]
    with contextlib.suppress(Exception):
        for file in files:
            store.delete(file.path)
    with contextlib.suppress(Exception):
        finish_attempt(db, run.id, run.attempt, "failed", masked(reason))
    with contextlib.suppress(Exception):
        release_import(db, run.id)


def _abandoned(run: RunRecord) -> bool:
    """True for the run of an import that will never finish: it ended without releasing
    its key, or was queued (a scheduler found it lost: an import is created running and
    cannot be resumed), or its process on this host is gone (its pid free, or given to a
    process started since)."""
    if run.state in ("queued", "failed", "canceled"):
        return True
    return (
        run.state == "running"
        and run.host == socket.gethostname()
        and run.pid is not None
        and not pid_alive(run.pid, created_before=run.started_at)
    )


def _begin(db: Database, log: ImportedLog) -> ImportSlot:
    """The run of ``log``: a new one, or the one imported before (an abandoned import's
    run is failed and its key released first, so the log is imported again)."""
    slot = _claim(db, log)
    if not slot.created and _abandoned(slot.run):
        if slot.run.state in ("queued", "running"):
            finish_run(db, slot.run.id, "failed", "the import process died before it finished")
        release_import(db, slot.run.id)
        slot = _claim(db, log)
    return slot


def _claim(db: Database, log: ImportedLog) -> ImportSlot:
    evaluation = upsert_evaluation(db, log.evaluation)
    host = socket.gethostname()
    return begin_import(
        db,
        evaluation.id,
        key=log.key,
        logical_date=log.logical_date,
        owner=f"import:{host}:{os.getpid()}",
        pid=os.getpid(),
        host=host,
        examples=len({s.example_id for s in log.samples}),
        version_label=log.version,
        versions=log.versions(),
        params=log.params,
        dataset=f"{log.tool}:{log.source}",
        unit_size=len(log.samples),
    )


def store_logs(
    logs: Sequence[ImportedLog], *, settings: Settings | None = None
) -> Iterator[ImportOutcome]:
    """Import each log (validated already) as one successful run, in order; a log
    imported before is found, not imported again."""
    settings = settings or get_settings()
    db = database(settings)
    store = store_for(settings)
    for log in logs:
        slot = _begin(db, log)
        if slot.created:
            _write(db, store, log, slot.run, settings.example_field_bytes)
        yield ImportOutcome(log=log, run=get_run(db, slot.run.id), created=slot.created)
