"""The engine's logic without Ray: driving units, scoring, buffering, flushing, committing."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from pyarrow.fs import LocalFileSystem

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.runs import create_run, start_run
from hypermetric.catalog.shards import DATASETS, committed_unit_ids, live_shards
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings
from hypermetric.engine.actors import DriverActor
from hypermetric.engine.commit import commit_flush
from hypermetric.engine.evaluator import EvaluatorCore, Thresholds
from hypermetric.engine.examples import FieldPolicy
from hypermetric.engine.pool import spread
from hypermetric.engine.scoring import ScoredUnit, Scorer, json_text
from hypermetric.engine.worker import drive_unit
from hypermetric.errors import BindingError, EngineError
from hypermetric.storage.files import ShardStore, store_for
from tests.engine import sample


def _local(path: Path) -> ShardStore:
    return ShardStore(uri=str(path), fs=LocalFileSystem(), root=str(path))


def _ctx() -> RunContext:
    return RunContext(evaluation="t", logical_date=utcnow())


def _core(
    store: ShardStore, clock: Callable[[], float] | None = None, **limits: float
) -> EvaluatorCore:
    ticks = iter(range(1_000_000))
    return EvaluatorCore(
        run_id=1,
        evaluation="t",
        version="v",
        store=store,
        thresholds=Thresholds(**limits),  # type: ignore[arg-type]
        clock=clock or (lambda: float(next(ticks))),
    )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _payloads(runtime: object, rows: list[dict], size: int) -> list[ScoredUnit]:
    return [
        drive_unit(runtime, chunk, i, _ctx())  # type: ignore[arg-type]
        for i, chunk in enumerate(iter_chunks(rows, size))
    ]


def test_driving_records_every_call_with_its_example(tmp_path: Path) -> None:
    (scored,) = _payloads(sample.basic, sample.rows(5), 5)
    calls = scored.calls.to_pydict()
    # each example: the component call, then the runtime's own call
    assert calls["example_id"] == [str(i) for i in range(5) for _ in range(2)]
    assert calls["component"] == ["answer", "engine-basic"] * 5
    assert json.loads(calls["inputs"][2]) == {"question": "q1", "id": 1}
    assert json.loads(calls["output"][2]) == "q1:1" and calls["call_index"][2] == 0
    assert scored.unit.examples == 5 and scored.unit.calls == 10


def test_a_scored_unit_carries_its_rows_and_its_examples_fields_once(tmp_path: Path) -> None:
    wide = pa.Table.from_pylist(sample.rows(6, context="a long retrieved document " * 200))
    chunk = next(iter_chunks(wide, 6))
    narrow = Scorer(sample.crash_evaluator, FieldPolicy(max_bytes=1024))
    scored = drive_unit(sample.crash_evaluator, chunk, 0, _ctx(), scorer=narrow)
    # scored where it was driven: an eval that takes the whole example had it, and what
    # travels to an evaluator is the unit's score and call rows and its examples' fields
    # as stored: a field over the size limit (null) does not travel
    assert scored.scores.to_pydict()["value"] == [1.0] * 6
    assert len(pickle.dumps(scored, protocol=5)) < wide.nbytes / 8
    assert json.loads(scored.examples["fields"][0].as_py())["context"] is None
    # within the limit, each example's fields travel once, as JSON text
    scored = drive_unit(sample.crash_evaluator, chunk, 0, _ctx())
    assert wide.nbytes < len(pickle.dumps(scored, protocol=5)) < wide.nbytes * 1.3
    core = _core(_local(tmp_path), seconds=1e9)
    core.evaluate(drive_unit(sample.basic, chunk, 0, _ctx()))
    flush = core.flush()
    assert flush is not None
    table = _local(tmp_path).read(next(f for f in flush.files if f.dataset == "scores").path)
    metrics, values = table["metric"].to_pylist(), table["value"].to_pylist()
    exact = [v for m, v in zip(metrics, values, strict=True) if m == "exact"]
    assert exact == [1.0] * 6


def test_scores_line_up_with_their_examples_and_flush_at_the_row_threshold(tmp_path: Path) -> None:
    store = _local(tmp_path)
    core = _core(store, rows=30, seconds=1e9)
    done = [core.evaluate(p) for p in _payloads(sample.basic, sample.rows(40), 10)]
    # 10 examples x 2 evals = 20 score rows (and 20 call rows) a unit: a flush every 2 units
    flushes = [d.flush for d in done if d.flush]
    assert [len(f.units) for f in flushes] == [2, 2]
    table = store.read(next(f for f in flushes[0].files if f.dataset == "scores").path)
    rows = table.to_pylist()
    assert len(rows) == 40
    assert all(r["value"] == 0.0 for r in rows if r["metric"] == "echo_id")
    assert {r["run_id"] for r in rows} == {1} and rows[0]["created_at"].tzinfo is not None
    assert core.flush() is None  # nothing left: the last unit flushed with its pair


def test_final_flush_keeps_the_tail(tmp_path: Path) -> None:
    core = _core(_local(tmp_path), clock=Clock(), rows=10_000, seconds=3)
    first = core.evaluate(_payloads(sample.basic, sample.rows(3), 3)[0])
    assert first.flush is None and core.buffered_units == [0]
    assert core.flush_if_old() is None  # the clock stands still: never old
    tail = core.flush()
    assert tail is not None and tail.units[0].examples == 3
    assert core.buffered_units == [] and core.flush() is None


def test_the_age_threshold_flushes_at_its_seconds_and_not_before(tmp_path: Path) -> None:
    clock = Clock()
    core = _core(_local(tmp_path), clock=clock, rows=10_000, seconds=30)
    units = iter(_payloads(sample.basic, sample.rows(40), 5))
    assert core.evaluate(next(units)).flush is None  # t = 0: the buffer's oldest unit
    clock.now = 20.0
    assert core.evaluate(next(units)).flush is None
    clock.now = 29.999
    assert core.flush_if_old() is None and core.buffered_units == [0, 1]
    clock.now = 30.0  # the age counts from the oldest buffered unit, not the newest
    aged = core.flush_if_old()
    assert aged is not None and [u.unit_id for u in aged.units] == [0, 1]
    assert core.flush_if_old() is None  # nothing buffered: nothing to flush however late
    # the next buffer's age starts with its own first unit
    clock.now = 100.0
    assert core.evaluate(next(units)).flush is None
    clock.now = 129.0
    assert core.flush_if_old() is None
    clock.now = 131.0  # a unit arriving after the age flushes with the buffer at once
    late = core.evaluate(next(units)).flush
    assert late is not None and [u.unit_id for u in late.units] == [2, 3]
    assert core.buffered_units == []


def _text(size: int, unit_id: int) -> ScoredUnit:
    """A one-example unit whose two calls carry ``size`` characters each way."""
    chunk = next(iter_chunks([{"id": unit_id, "text": "x" * size}], 1))
    return drive_unit(sample.sized, chunk, unit_id, _ctx())


def _json_bytes(core: EvaluatorCore) -> int:
    """What the buffered calls' inputs and outputs and the examples' fields take as JSON."""
    columns = [b.column(n).to_pylist() for b in core.calls.batches for n in ("inputs", "output")]
    columns += [b.column("fields").to_pylist() for b in core.examples.batches]
    return sum(len(text.encode()) for column in columns for text in column if text)


def test_the_bytes_threshold_flushes_a_unit_whose_calls_pass_it(tmp_path: Path) -> None:
    limit = 130_000
    core = _core(_local(tmp_path), clock=Clock(), rows=10_000, bytes=limit, seconds=1e9)
    # each unit: one call of echo_text and one of the runtime, ~3 x 10,000 bytes of JSON,
    # and its example's fields, ~10,000 more
    done = [core.evaluate(_text(10_000, unit)) for unit in range(3)]
    assert [d.flush for d in done] == [None] * 3
    assert 0.85 * limit < _json_bytes(core) < limit  # close below: still buffered
    crossing = core.evaluate(_text(10_000, 3)).flush
    assert crossing is not None and [u.unit_id for u in crossing.units] == [0, 1, 2, 3]
    # after a flush the count starts again: a small unit stays, one past the limit flushes
    assert core.evaluate(_text(100, 4)).flush is None
    big = core.evaluate(_text(40_000, 5)).flush
    assert big is not None and [u.unit_id for u in big.units] == [4, 5]


def test_the_bytes_threshold_counts_utf8_bytes(tmp_path: Path) -> None:
    core = _core(_local(tmp_path), clock=Clock(), rows=10_000, bytes=60_000, seconds=1e9)
    # 10,000 CJK characters are 30,000 bytes in UTF-8 (and in the Parquet file): ~90 kB
    chunk = next(iter_chunks([{"id": 0, "text": "東" * 10_000}], 1))
    done = core.evaluate(drive_unit(sample.sized, chunk, 0, _ctx()))
    assert done.flush is not None


def test_an_eval_that_raises_is_an_error_row_and_the_batch_stays_whole(tmp_path: Path) -> None:
    store = _local(tmp_path)
    core = _core(store)
    (payload,) = _payloads(sample.raising_eval, sample.rows(12), 12)
    done = core.evaluate(payload)
    # ids 0, 3, 6, 9 raise in `picky`: one error row each, the examples count as failed
    assert (done.unit.rows, done.unit.errors, done.unit.failed_examples) == (36, 4, 4)
    flush = core.flush()
    assert flush is not None
    rows = store.read(next(f for f in flush.files if f.dataset == "scores").path).to_pylist()
    by_metric: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], {})[r["example_id"]] = r
    failed = {str(i) for i in (0, 3, 6, 9)}
    for example_id, row in by_metric["picky"].items():
        if example_id in failed:
            assert row["value"] is None
            assert row["error"] == f"ValueError: cannot score example {example_id}"
        else:
            assert (row["value"], row["error"]) == (1.0, None)
    # the evals before and after the one that raised scored every example
    for metric in ("echo_id", "exact"):
        assert len(by_metric[metric]) == 12
        scored = by_metric[metric].values()
        assert all(r["error"] is None and r["value"] is not None for r in scored)
    calls = store.read(next(f for f in flush.files if f.dataset == "calls").path)
    assert calls.num_rows == 24 and set(calls["error"].to_pylist()) == {None}


def test_mixed_eval_outputs_do_not_poison_the_batch(tmp_path: Path) -> None:
    store = _local(tmp_path)
    core = _core(store)
    for payload in _payloads(sample.mixed_outputs, sample.rows(20), 20):
        core.evaluate(payload)
    flush = core.flush()
    assert flush is not None
    rows = store.read(next(f for f in flush.files if f.dataset == "scores").path).to_pylist()
    by_metric: dict[str, list[dict]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    assert all(r["value"] == 1.0 for r in by_metric["mixed"] if r["error"] is None)
    assert {r["value"] for r in by_metric["mixed.a"]} == {1.0}
    assert {r["value"] for r in by_metric["mixed.b"]} == {1.0}
    strings = [r for r in by_metric["mixed"] if r["error"] and "returned str" in r["error"]]
    failed_calls = [r for r in by_metric["mixed"] if r["error"] and "call failed" in r["error"]]
    assert len(strings) == 4 and all(r["value"] is None for r in strings)  # ids 3,7,11,15
    assert len(failed_calls) == 2  # ids 9 and 19 raised in the component
    assert flush.units[0].failed_examples == 6


def test_score_rows_keep_the_order_of_the_calls_whatever_each_eval_returned() -> None:
    # plain floats are added in runs, other results row by row: the rows still follow the
    # calls (ids 0..19: a float, a dict of two, nothing, a string, and 9 and 19 failed)
    (scored,) = _payloads(sample.mixed_outputs, sample.rows(20), 20)
    rows = scored.scores.to_pydict()
    order = [(int(i), m) for i, m in zip(rows["example_id"], rows["metric"], strict=True)]
    kinds = {0: ["mixed"], 1: ["mixed.a", "mixed.b"], 2: [], 3: ["mixed"]}
    metrics = {i: ["mixed"] if i % 10 == 9 else kinds[i % 4] for i in range(20)}
    expected = [(i, m) for i in range(20) for m in metrics[i]]
    assert order == expected


def test_first_unbindable_call_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(BindingError, match=r"'gold'.*available: output, question"):
        _payloads(sample.unbindable, sample.rows(2), 2)


def test_an_output_that_cannot_be_pickled_is_scored_where_it_was_made(tmp_path: Path) -> None:
    (scored,) = _payloads(sample.opaque_outputs, sample.rows(10), 10)
    # nothing carries the lock out of the driver: its eval scored it, its call stores a repr
    assert scored.unit.errors == 0 and scored.calls["error"].null_count == 20
    lock = json.loads(scored.calls["output"][14].as_py())  # q7's component call
    assert lock.startswith("<unlocked _thread.lock object")
    core = _core(_local(tmp_path))
    core.evaluate(scored)
    assert core.flush() is not None


def test_call_outputs_are_stored_as_json_or_their_repr(tmp_path: Path) -> None:
    core = _core(_local(tmp_path))
    for data in _payloads(sample.odd_outputs, sample.rows(8), 8):
        core.evaluate(data)
    outputs = [o for b in core.calls.batches for o in b["output"].to_pylist()]
    # a circular value in one call leaves the next call's encoding unharmed
    assert outputs[:4] * 2 == outputs
    assert json.loads(outputs[0]) == {"scores": [1, 2.5, None], "label": "é"}
    assert json.loads(outputs[1]) == "datetime.date(2026, 11, 26)"
    assert json.loads(outputs[2]) == "[1, [...]]"
    assert json.loads(outputs[3]) == "{(1, 2): 'tuple key'}"


def _running(db: Database) -> int:
    ev = upsert_evaluation(db, "t")
    run = create_run(db, ev.id, run_type="manual")
    start_run(db, run.id, owner="t", pid=1, host="h")
    return run.id


def test_a_unit_evaluated_twice_is_committed_once(settings: Settings, db: Database) -> None:
    store = store_for(settings)
    run_id = _running(db)
    payloads = _payloads(sample.basic, sample.rows(30), 10)
    first, second = _core(store), _core(store)
    for p in payloads[:2]:
        first.evaluate(p)
    for p in payloads[1:]:  # unit 1 evaluated by both (an evaluator thought lost)
        second.evaluate(p)
    flush_a, flush_b = first.flush(), second.flush()
    assert flush_a and flush_b
    assert [u.unit_id for u in commit_flush(db, store, run_id, 1, flush_a)] == [0, 1]
    assert [u.unit_id for u in commit_flush(db, store, run_id, 1, flush_b)] == [2]
    assert committed_unit_ids(db, run_id) == {0, 1, 2}
    shards = live_shards(db, "scores", run_ids=[run_id])
    ids = [r["example_id"] for s in shards for r in store.read(s.path).to_pylist()]
    assert sorted(ids, key=int) == [str(i) for i in range(30) for _ in range(2)]
    # the examples rows of the unit committed twice were cut out of the rewrite as well
    shards = live_shards(db, "examples", run_ids=[run_id])
    ids = [r["example_id"] for s in shards for r in store.read(s.path).to_pylist()]
    assert sorted(ids, key=int) == [str(i) for i in range(30)]
    third = _core(store)
    third.evaluate(payloads[2])
    late = third.flush()
    assert late is not None
    assert commit_flush(db, store, run_id, 1, late) == []  # everything in it is committed
    # rewritten and dropped files are gone: what is on disk is exactly what is registered
    registered = {s.path for d in DATASETS for s in live_shards(db, d)}
    assert {f.path for f in store.files()} == registered


def test_actors_are_spread_over_nodes_by_their_cpus() -> None:
    assert spread([("a", 2), ("b", 1)], 3) == ["a", "b", "a"]
    assert spread([("a", 2), ("b", 1)], 5) == ["a", "b", "a", "a", "b"]
    assert spread([("a", 1), ("b", 4)], 4) == ["a", "b", "b", "b"]
    assert spread([("a", 8)], 2) == ["a", "a"]


def test_a_warm_driver_scores_each_attempt_with_its_own_evals_when_run_ids_repeat() -> None:
    """A driver actor keeps the scorer it bound for the attempt it serves. Two attempts of
    the same evaluation and run id (two catalogs opened by one process number their runs
    alike) must not share it: the second would be scored with the first's evals."""
    driver = DriverActor.__ray_actor_class__([])  # the actor's class, run in this process
    chunk = pickle.dumps(next(iter_chunks(sample.rows(3), 3)))
    ctx = RunContext(evaluation="engine-warm-scorer", logical_date=utcnow(), run_id=2)
    driver.bind("attempt-a", sample.echoed, ctx, 1, None, None)
    _, first = driver.drive("attempt-a", chunk, 0)
    driver.bind("attempt-b", sample.echoed_fixed, ctx, 1, None, None)
    _, second = driver.drive("attempt-b", chunk, 0)
    with pytest.raises(EngineError, match="not bound"):  # a unit of an attempt it left
        driver.drive("attempt-a", chunk, 1)
    sizes = [
        [v for m, v in zip(s["metric"], s["value"], strict=True) if m == "size"]
        for s in (first.scores.to_pydict(), second.scores.to_pydict())
    ]
    assert sizes == [[2.0, 2.0, 2.0], [4.0, 4.0, 4.0]]  # "q0".."q2", then doubled


def test_call_texts_hold_no_nan_for_sql_to_trip_on() -> None:
    # DuckDB's JSON functions refuse NaN: a classifier's NaN probability is stored as null
    assert json_text({"p": [0.5, math.nan, math.inf]}) == '{"p":[0.5,null,null]}'
    assert json_text({1: math.nan}) is not None  # what orjson refuses still gets a text
