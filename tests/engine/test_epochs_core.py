"""Epochs and example fields without Ray: driving each example K times, the epoch column,
the call cache keyed by epoch, and the examples rows a unit carries."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyarrow.fs import LocalFileSystem

import hypermetric as hm
from hypermetric.api.calls import cache_key
from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.types import utcnow
from hypermetric.engine.evaluator import EvaluatorCore, Thresholds
from hypermetric.engine.examples import FieldPolicy, example_rows, fields_text
from hypermetric.engine.scoring import ScoredUnit, Scorer, complete_calls, complete_scores
from hypermetric.engine.worker import drive_unit
from hypermetric.errors import DefinitionError
from hypermetric.storage.cache import StoreCache
from hypermetric.storage.files import ShardStore
from hypermetric.storage.schemas import SCHEMAS
from tests.api.test_calls import Services
from tests.engine import epochs_sample


def _ctx(epochs: int = 1) -> RunContext:
    return RunContext(evaluation="t", logical_date=utcnow(), epochs=epochs)


def _drive(
    runtime: Any, rows: list[dict[str, Any]], epochs: int, unit: int = 0, **kw: Any
) -> ScoredUnit:
    return drive_unit(runtime, next(iter_chunks(rows, len(rows))), unit, _ctx(epochs), **kw)


def _store(path: Path) -> ShardStore:
    return ShardStore(uri=str(path), fs=LocalFileSystem(), root=str(path))


@pytest.mark.parametrize("runtime", [epochs_sample.sampled, epochs_sample.sampled_async])
def test_each_example_is_driven_once_per_epoch_with_its_epoch(runtime: hm.Runtime) -> None:
    scored = _drive(runtime, epochs_sample.rows(4), 3)
    scores = complete_scores(scored.scores).to_pydict()
    keys = sorted(zip(scores["example_id"], scores["epoch"], strict=True))
    assert keys == [(str(i), e) for i in range(4) for e in range(3)]
    for example_id, epoch, value in zip(
        scores["example_id"], scores["epoch"], scores["value"], strict=True
    ):
        assert value == epochs_sample.seeded(example_id, epoch)  # context.epoch reached it
    calls = complete_calls(scored.calls).to_pydict()
    assert sorted(zip(calls["example_id"], calls["component"], calls["epoch"], strict=True)) == [
        (str(i), c, e)
        for i in range(4)
        for c in sorted([runtime.name, "sampler"])
        for e in range(3)
    ]
    # each epoch numbers its calls from 0; the example is one example (one examples row)
    assert set(calls["call_index"]) == {0}
    assert scored.unit.examples == 4 and scored.examples is not None
    assert scored.examples.num_rows == 4


def test_a_run_of_one_epoch_sends_no_epoch_column_and_reads_epoch_zero() -> None:
    scored = _drive(epochs_sample.sampled, epochs_sample.rows(3), 1)
    assert "epoch" not in scored.scores.schema.names  # the usual case travels lighter
    assert "epoch" not in scored.calls.schema.names
    assert complete_scores(scored.scores)["epoch"].to_pylist() == [0, 0, 0]
    assert set(complete_calls(scored.calls)["epoch"].to_pylist()) == {0}


def test_a_failed_epoch_fails_its_example_with_the_rows_of_every_epoch(tmp_path: Path) -> None:
    rows = epochs_sample.rows(3, marker=str(tmp_path / "absent"))
    scored = _drive(epochs_sample.flaky_sampled, rows, 3)
    (failed,) = scored.unit.failed  # example 0 failed in epoch 1 only
    # a retry drives the example again, all its epochs, and retracts all its rows
    assert (failed.example_id, failed.rows, failed.calls, failed.errors) == ("0", 3, 6, 1)
    errors = [
        (e, err is not None)
        for e, err in zip(
            complete_scores(scored.scores)["epoch"].to_pylist(),
            scored.scores["error"].to_pylist(),
            strict=True,
        )
    ]
    assert errors.count((1, True)) == 1 and sum(bad for _, bad in errors) == 1


_draws: dict[str, int] = {}


@hm.component(name="sampling-model", cache=True)
def sampling_model(prompt: str) -> float:
    _draws[prompt] = _draws.get(prompt, 0) + 1
    return random.random()


@hm.runtime(name="rt-sampling-model", epochs=3)
def sampling(example: dict) -> float:
    return sampling_model(example["prompt"])


def test_the_call_cache_keeps_one_entry_per_epoch(tmp_path: Path) -> None:
    services = Services(StoreCache(_store(tmp_path)))
    rows = [{"id": 0, "prompt": "a"}]
    first = complete_calls(_drive(sampling, rows, 3, services=services).calls).to_pydict()
    again = complete_calls(_drive(sampling, rows, 3, services=services).calls).to_pydict()

    def model(calls: dict[str, list[Any]]) -> list[tuple[int, str, bool]]:
        return sorted(
            (e, o, c)
            for n, e, o, c in zip(
                calls["component"], calls["epoch"], calls["output"], calls["cached"], strict=True
            )
            if n == "sampling-model"
        )

    # three epochs, three samples: no epoch is served another epoch's output
    assert [c for _, _, c in model(first)] == [False] * 3
    assert len({o for _, o, _ in model(first)}) == 3 and _draws == {"a": 3}
    # the next run's epochs each hit their own entry
    assert model(again) == [(e, o, True) for e, o, _ in model(first)]
    assert _draws == {"a": 3}


def test_the_cache_key_of_epoch_zero_is_the_key_from_before_epochs() -> None:
    base = cache_key("h", {"prompt": "a"}, {"t": 0})
    assert cache_key("h", {"prompt": "a"}, {"t": 0}, 0) == base
    assert len({base, *(cache_key("h", {"prompt": "a"}, {"t": 0}, e) for e in (1, 2))}) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_epochs_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(DefinitionError, match=r"runtime 'x': epochs must be an integer ≥ 1"):
        hm.runtime(name="x", epochs=bad)(lambda example: None)


def test_field_names_must_be_a_list_of_names() -> None:
    with pytest.raises(DefinitionError, match=r"example_fields must be a list of field names"):
        hm.runtime(name="x", example_fields="topic")(lambda example: None)
    with pytest.raises(DefinitionError, match=r"omit_fields must be a list of field names"):
        hm.runtime(name="x", omit_fields=[1])(lambda example: None)


def test_fields_are_strict_json_in_the_example_order() -> None:
    when = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    text = fields_text({"b": 1, "a": [1.5, math.nan], "when": when, "raw": b"x"}, 0)
    assert text.index('"b"') < text.index('"a"')
    assert json.loads(text) == {"b": 1, "a": [1.5, None], "when": when.isoformat(), "raw": "x"}
    assert json.loads(fields_text({"x": math.inf}, 0)) == {"x": None}


def test_a_field_over_the_size_limit_is_null_and_the_others_stay() -> None:
    # 40 'é' are 80 bytes of UTF-8 (82 with the quotes), 40 'e' 42: the limit is in bytes
    example = {"id": 7, "long": "é" * 40, "short": "e" * 40}
    assert json.loads(fields_text(example, 64)) == {"id": 7, "long": None, "short": "e" * 40}
    assert json.loads(fields_text(example, 82)) == example
    assert json.loads(fields_text(example, 0)) == example  # 0: any size


def test_a_policy_keeps_or_omits_fields_by_name() -> None:
    examples = [{"id": 1, "topic": "t", "secret": "s"}]
    keep = example_rows(["1"], examples, FieldPolicy(keep=("topic",)))
    omit = example_rows(["1"], examples, FieldPolicy(omit=("secret",)))
    assert json.loads(keep["fields"][0].as_py()) == {"topic": "t"}
    assert json.loads(omit["fields"][0].as_py()) == {"id": 1, "topic": "t"}
    assert keep["example_id"].to_pylist() == ["1"]
    policy = FieldPolicy.of(epochs_sample.with_fields, 1024)
    assert (policy.keep, policy.omit, policy.max_bytes) == (None, ("secret",), 1024)


def test_the_stored_fields_are_the_example_before_the_runtime_ran() -> None:
    rows = [{"id": 3, "question": "q3", "secret": "token"}]
    scorer = Scorer(epochs_sample.with_fields, FieldPolicy.of(epochs_sample.with_fields, 1024))
    scored = _drive(epochs_sample.with_fields, rows, 1, scorer=scorer)
    assert scored.examples is not None
    assert json.loads(scored.examples["fields"][0].as_py()) == {"id": 3, "question": "q3"}


def test_a_flush_writes_the_examples_shard_with_the_run_columns(tmp_path: Path) -> None:
    store = _store(tmp_path)
    core = EvaluatorCore(
        run_id=5, evaluation="t", version="v", store=store, thresholds=Thresholds(), attempt=2
    )
    core.evaluate(_drive(epochs_sample.sampled, epochs_sample.rows(4), 3))
    # a unit that carries no examples rows adds none
    core.evaluate(
        replace(_drive(epochs_sample.sampled, epochs_sample.rows(2), 1, 1), examples=None)
    )
    flush = core.flush()
    assert flush is not None
    files = {f.dataset: f for f in flush.files}
    assert set(files) == {"scores", "calls", "examples"}
    examples = store.read(files["examples"].path)
    assert examples.schema == SCHEMAS["examples"]
    assert examples["example_id"].to_pylist() == ["0", "1", "2", "3"]
    assert set(examples["run_attempt"].to_pylist()) == {2}
    assert json.loads(examples["fields"][1].as_py()) == {
        "id": 1,
        "question": "q1",
        "topic": "math",
    }
    scores = store.read(files["scores"].path)
    assert scores.schema == SCHEMAS["scores"]
    # the unit of one epoch reads epoch 0 beside the unit of three
    assert pa.compute.value_counts(scores["epoch"]).to_pylist() == [
        {"values": 0, "counts": 6},
        {"values": 1, "counts": 4},
        {"values": 2, "counts": 4},
    ]
    assert (flush.ranges[0][4:], flush.ranges[1][4:]) == ((0, 4), (4, 4))
