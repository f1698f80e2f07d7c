"""Inspect AI eval logs (``.eval`` or ``.json``), read with ``inspect_ai.log.read_eval_log``.

A log is one task run on one model: it becomes one run of the evaluation named after the
task, versioned by the model, dated by the log's creation time. Each sample (one epoch of
one dataset sample) gives one call row (its input and the model's completion) and one
score row per scorer, keyed by the sample's id:

* a score's value converts as Inspect's ``value_to_float`` does ("C" 1, "P" 0.5, "I" and
  "N" 0, yes/true 1, no/false 0, numbers and numeric strings as numbers); a dict value
  gives one ``SCORER.key`` row per key, like a dict-returning eval; a value that is none
  of these (a list, free text) is an error row that says so, never a silent 0;
* a sample that failed gives an error row for each scorer, with Inspect's error message;
* every scorer counts as higher-is-better: Inspect's scorers (match, includes,
  model_graded_qa, choice...) score correctness, and a log does not record a direction.

Only a finished log (status ``success``) with its samples is imported.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypermetric.errors import ConfigError, DatasetError
from hypermetric.importing.records import (
    ImportedLog,
    ImportedSample,
    ImportedScore,
    check_unique,
    score_rows,
)

__all__ = ["INSTALL_HINT", "inspect_float", "read_inspect_log"]

INSTALL_HINT = 'importing Inspect logs needs inspect_ai: pip install "hypermetric[inspect]"'

_SENTINELS = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}
_WORDS = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}


def inspect_float(value: Any) -> float:
    """A score value as a number, the way Inspect's ``value_to_float`` converts it;
    ValueError (TypeError for a list) where Inspect would warn and give 0."""
    if isinstance(value, str):
        if value in _SENTINELS:
            return _SENTINELS[value]
        if value.lower() in _WORDS:
            return _WORDS[value.lower()]
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    if isinstance(value, (bool, int, float)):
        return float(value)
    raise TypeError(type(value).__name__)


def _reader() -> Any:
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return read_eval_log


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "no message"


def _reason(exc: Exception) -> str:
    """What is wrong, in one line: a pydantic error names the first bad field."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return f"{where}: {first['msg']}"
        except (TypeError, LookupError, ValueError):
            pass
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _load(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix not in (".eval", ".json"):
        raise DatasetError(f"{path}: not an Inspect log (expected a .eval or .json file)")
    read_eval_log = _reader()
    try:
        return read_eval_log(str(path))
    except Exception as exc:  # zip, JSON, version and pydantic errors alike: not a log
        raise DatasetError(f"{path}: not a readable Inspect log ({_reason(exc)})") from None


def _created(path: Path, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: its creation time {text!r} is not an ISO date") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _check(path: Path, log: Any) -> None:
    if log.status != "success":
        raise DatasetError(
            f"{path}: the eval did not finish (status {log.status}); import a finished log"
        )
    if not log.samples:
        raise DatasetError(
            f"{path}: the log holds no samples (written with log_samples=False?); "
            "only logs with their samples can be imported"
        )


def _json(value: Any) -> Any:
    """A pydantic value (chat messages, choices) as plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _input(sample: Any) -> Any:
    """A sample's input: its text, or its chat messages as role and text."""
    if isinstance(sample.input, str):
        return sample.input
    return [{"role": m.role, "content": m.text} for m in sample.input]


def _scorer_names(log: Any) -> list[str]:
    names = [s.name for s in log.eval.scorers or ()]
    for sample in log.samples:
        names.extend(k for k in (sample.scores or {}) if k not in names)
    return list(dict.fromkeys(names))


def _scores(sample: Any, scorers: list[str], error: str | None) -> tuple[ImportedScore, ...]:
    rows: list[ImportedScore] = []
    found = sample.scores or {}
    for name in scorers:
        score = found.get(name)
        if score is not None:
            rows.extend(score_rows(name, score.value, inspect_float))
        elif error is not None:
            rows.append(ImportedScore(name, None, f"not scored: the sample failed ({error})"))
        else:
            rows.append(ImportedScore(name, None, "not scored by this scorer"))
    return tuple(rows)


def _sample(path: Path, sample: Any, scorers: list[str]) -> ImportedSample:
    if sample.id is None or not isinstance(sample.epoch, int) or sample.epoch < 1:
        raise DatasetError(f"{path}: a sample has no id or no epoch (id {sample.id!r})")
    error = _first_line(sample.error.message) if sample.error else None
    text = _input(sample)
    fields: dict[str, Any] = {"input": text, "target": _json(sample.target)}
    if sample.choices:
        fields["choices"] = _json(sample.choices)
    fields["metadata"] = _json(sample.metadata or {})
    output = sample.output.completion if sample.output is not None else None
    seconds = getattr(sample, "total_time", None)
    return ImportedSample(
        example_id=str(sample.id),
        epoch=sample.epoch - 1,
        fields=fields,
        inputs={"input": text},
        output=output or None,
        scores=_scores(sample, scorers, error),
        error=error,
        latency_ms=seconds * 1e3 if isinstance(seconds, (int, float)) else None,
    )


def _params(log: Any) -> dict[str, Any]:
    spec = log.eval
    params: dict[str, Any] = {
        "task_args": _json(spec.task_args or {}),
        "model": spec.model,
        "model_args": {k: v for k, v in (spec.model_args or {}).items() if v is not None},
        "generate_config": _json(spec.model_generate_config),
        "epochs": spec.config.epochs,
    }
    if spec.dataset is not None:
        params["dataset"] = {
            k: v for k, v in _json(spec.dataset).items() if k not in ("sample_ids",)
        }
    if log.plan is not None:
        params["solvers"] = [step.solver for step in log.plan.steps]
    # a value JSON cannot hold (a callable model arg) is kept as its text
    return json.loads(json.dumps(params, default=str))


def _key(spec: Any) -> str:
    if getattr(spec, "eval_id", None):
        return f"inspect:{spec.eval_id}"
    return f"inspect:{spec.run_id}:{spec.task_id}"


def read_inspect_log(
    path: str | Path, *, evaluation: str | None = None, version: str | None = None
) -> ImportedLog:
    """Read and validate one Inspect log; DatasetError (one line naming the file) if it is
    not a finished log with its samples."""
    path = Path(path)
    log = _load(path)
    _check(path, log)
    spec = log.eval
    scorers = _scorer_names(log)
    samples = [_sample(path, s, scorers) for s in log.samples]
    check_unique(samples, str(path))
    return ImportedLog(
        tool="inspect",
        source=str(path.resolve()),
        key=_key(spec),
        evaluation=evaluation or spec.task,
        version=version or spec.model,
        logical_date=_created(path, spec.created),
        params=_params(log),
        directions=dict.fromkeys(scorers, True),
        samples=tuple(samples),
        origin={
            "task": spec.task,
            "task_version": _json(spec.task_version),
            "model": spec.model,
            "eval_id": getattr(spec, "eval_id", None),
            "run_id": spec.run_id,
            "inspect_ai": (spec.packages or {}).get("inspect_ai"),
        },
    )
