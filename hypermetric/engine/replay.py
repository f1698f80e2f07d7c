"""Rescoring: a run whose component calls are replayed from another run's stored calls and
scored by the evals of the current code. Nothing the user wrote runs but the evals.

:func:`source_calls` reads the stored run's calls as its current dataset holds them (a
retry's superseded rows left out); a :class:`Replay` of them travels to the drivers in
place of the runtime, and :func:`replay_unit` builds each unit's calls from it (inputs and
outputs read back from their JSON text) for the usual scorer. An example with no stored
call is an error row that says so.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hypermetric.api.datasets import Chunk
from hypermetric.api.runtime import Runtime
from hypermetric.engine.scoring import ScoredUnit, Scorer
from hypermetric.engine.worker import UnitPayload
from hypermetric.errors import DatasetError
from hypermetric.storage.files import ShardStore

if TYPE_CHECKING:
    from hypermetric.catalog.db import Database
    from hypermetric.catalog.records import RunRecord

__all__ = ["Replay", "replay_of", "replay_unit", "source_calls"]

_COLUMNS = (
    "example_id",
    "component",
    "call_index",
    "inputs",
    "output",
    "latency_ms",
    "error",
    "attempts",
    "cached",
    "epoch",
)
_TYPES = {"attempts": pa.int32(), "cached": pa.bool_(), "epoch": pa.int32()}


def source_calls(db: Database, store: ShardStore, run_id: int) -> pa.Table:
    """The calls run ``run_id`` holds now, in the columns a replay needs."""
    # the catalog (SQLAlchemy and its models, ~0.4 s of import) stays out of the pool
    # actors, which import this module for Replay and replay_unit only
    from hypermetric.catalog.shards import live_retractions, live_shards

    tables = []
    for shard in live_shards(db, "calls", run_ids=[run_id]):
        table = store.read(shard.path)
        for name, kind in _TYPES.items():
            if name not in table.column_names:  # written before calls had the column
                table = table.append_column(name, pa.nulls(table.num_rows, kind))
        tables.append(table.select([*_COLUMNS, "run_attempt"]))
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in _COLUMNS})
    calls = pa.concat_tables(tables, promote_options="default")
    retracted = live_retractions(db, "calls", run_ids=[run_id])
    if retracted:
        latest = {example: attempt for _, example, attempt in retracted}
        keep = [
            (latest.get(e, 0) <= (a or 0))
            for e, a in zip(
                calls["example_id"].to_pylist(), calls["run_attempt"].to_pylist(), strict=True
            )
        ]
        calls = calls.filter(pa.array(keep))
    return calls.drop_columns(["run_attempt"])


@dataclass(frozen=True)
class Replay:
    """The stored calls of ``source_run_id`` to score with ``runtime``'s current evals
    (``components``: the components of the current code, by name)."""

    runtime: Runtime
    source_run_id: int
    calls: pa.Table
    components: dict[str, Any]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def replay_of(db: Database, store: ShardStore, run: RunRecord, runtime: Runtime) -> Replay:
    """What the drivers of rescore ``run`` replay: its source run's stored calls."""
    from hypermetric.api.versions import discover_components

    source = run.source_run_id
    assert source is not None
    calls = source_calls(db, store, source)
    if calls.num_rows == 0:
        raise DatasetError(f"run {source} stored no calls: there is nothing to rescore")
    return Replay(runtime, source, calls, discover_components(runtime.fn))


#: a driver process's index of the replay it serves: token -> example id -> call rows
_index: dict[str, dict[str, list[int]]] = {}


def _rows_of(replay: Replay) -> dict[str, list[int]]:
    found = _index.get(replay.token)
    if found is None:
        _index.clear()  # one replay at a time per driver process
        found = {}
        for row, example in enumerate(replay.calls["example_id"].to_pylist()):
            found.setdefault(example, []).append(row)
        _index[replay.token] = found
    return found


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def replay_unit(replay: Replay, chunk: Chunk, unit_id: int, scorer: Scorer) -> ScoredUnit:
    """A unit of a rescore: its examples' stored calls, scored by ``scorer``."""
    payload = UnitPayload.of(chunk, unit_id, scorer)
    ids = payload.example_ids
    index = _rows_of(replay)
    wanted = [(position, row) for position, e in enumerate(ids) for row in index.get(e, ())]
    calls = replay.calls.take(pa.array([row for _, row in wanted], pa.int64()))
    columns = {name: calls[name].to_pylist() for name in _COLUMNS[1:]}
    # calls stored before these columns existed made one attempt and were not cached
    columns["cached"] = [bool(c) for c in columns["cached"]]
    columns["attempts"] = [1 if a is None else a for a in columns["attempts"]]
    # each call keeps the epoch it was made in (calls stored before epochs: epoch 0)
    columns["epoch"] = [e or 0 for e in columns["epoch"]]
    seen = set()
    runtime_name = replay.runtime.name
    for i, (position, _) in enumerate(wanted):
        payload.position, payload.epoch = position, columns["epoch"][i]
        seen.add(position)
        name = columns["component"][i]
        if name != runtime_name and name in replay.components:
            payload.components.setdefault(name, replay.components[name])
        payload.add(
            name,
            columns["call_index"][i],
            _json(columns["inputs"][i]),
            _json(columns["output"][i]),
            columns["error"][i],
            columns["latency_ms"][i] or 0.0,
        )
        payload.mark(columns["attempts"][i], columns["cached"][i])
    for position in range(len(ids)):
        if position not in seen:
            payload.position, payload.epoch = position, 0
            error = f"run {replay.source_run_id} stored no call of this example to rescore"
            payload.add(runtime_name, 0, None, None, error, 0.0)
    return scorer.score(payload)
