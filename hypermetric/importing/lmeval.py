"""lm-evaluation-harness output: ``results_<date>.json`` and its ``samples_<task>_<date>.jsonl``.

``lm_eval --output_path DIR --log_samples`` writes, in DIR or in a subfolder named after the
model, one results file per invocation and one samples file per task, with the same date
in their names. Read with the standard library (no dependency on lm-eval):

* each task of a results file (not its groups) becomes one run of the evaluation named
  after the task, versioned by the model, dated by the results' ``date``;
* each document gives one call row (its request ``arguments`` and the model's
  ``filtered_resps``) and one score row per metric, keyed by ``doc_hash`` (``doc_id``
  for files without it; identical documents get ``~2``, ``~3``... by ``doc_id``). A task
  with several filters gives ``METRIC.FILTER`` rows for the filters other than ``none``;
* each metric's direction comes from the results' ``higher_is_better``.

A samples file without its results file, or a task of a results file without its samples
file, is refused: nothing is imported from a directory until all of it reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypermetric.errors import DatasetError
from hypermetric.importing.records import ImportedLog, ImportedSample, check_unique, score_rows

__all__ = ["lmeval_float", "read_lmeval_dir"]

#: the configuration of a task worth keeping with its run (its prompts and code are not)
_CONFIG_KEYS = (
    "task",
    "tag",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "num_fewshot",
    "output_type",
    "generation_kwargs",
    "metric_list",
    "repeats",
    "metadata",
)
_STAMP = re.compile(r"^results_(.+)$")


def lmeval_float(value: Any) -> float:
    """A per-sample metric value as a number (bools and numeric strings too); TypeError
    for what lm-eval aggregates later (a bleu pair, a list), which is not a sample's score."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    raise TypeError(type(value).__name__)


@dataclass(frozen=True)
class _Results:
    path: Path
    stamp: str
    data: dict[str, Any]
    digest: str


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
        return json.loads(raw), hashlib.sha256(raw).hexdigest()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not JSON ({exc})") from None


def _results(path: Path) -> _Results:
    data, digest = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise DatasetError(f'{path}: not an lm-eval results file (no "results" object)')
    for name in ("configs", "higher_is_better", "versions", "n-shot", "config"):
        if name in data and not isinstance(data[name], dict):
            raise DatasetError(f"{path}: its {name!r} is not an object")
    match = _STAMP.match(path.stem)
    assert match is not None  # found by the results_*.json pattern
    return _Results(path, match.group(1), data, digest)


def _tasks(results: _Results) -> list[str]:
    """The leaf tasks of a results file: its groups are aggregates of their tasks' rows."""
    data = results.data
    groups = set(data.get("groups") or {})
    groups |= {g for g, subtasks in (data.get("group_subtasks") or {}).items() if subtasks}
    return [t for t in data["results"] if t not in groups]


def _date(results: _Results) -> datetime:
    date = results.data.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return datetime.fromtimestamp(float(date), UTC)
    try:
        return datetime.strptime(results.stamp, "%Y-%m-%dT%H-%M-%S.%f").replace(tzinfo=UTC)
    except ValueError:
        raise DatasetError(
            f'{results.path}: no "date" and no date in its name; cannot date the run'
        ) from None


def _model(data: dict[str, Any]) -> str | None:
    """The model: ``model_name``, else ``pretrained=`` of the model args, else the backend."""
    if data.get("model_name"):
        return str(data["model_name"])
    config = data.get("config") or {}
    args = config.get("model_args")
    if isinstance(args, dict) and args.get("pretrained"):
        return str(args["pretrained"])
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model") and value.strip():
                return value.strip()
    return str(config["model"]) if config.get("model") else None


def _params(data: dict[str, Any], task: str) -> dict[str, Any]:
    config = (data.get("configs") or {}).get(task) or {}
    kept = {k: config[k] for k in _CONFIG_KEYS if k in config}
    run_config = data.get("config") or {}
    params: dict[str, Any] = {
        "task_config": kept,
        "task_version": (data.get("versions") or {}).get(task),
        "n_shot": (data.get("n-shot") or {}).get(task),
        "n_samples": (data.get("n-samples") or {}).get(task),
        "model": run_config.get("model"),
        "model_args": run_config.get("model_args"),
        "limit": run_config.get("limit"),
        "lm_eval_version": data.get("lm_eval_version"),
    }
    return json.loads(json.dumps({k: v for k, v in params.items() if v is not None}, default=str))


def _metric_names(data: dict[str, Any], task: str) -> list[str]:
    """The task's metrics as its results name them (``acc,none``: metric ``acc``)."""
    names = []
    for key in data["results"][task]:
        metric, comma, _filter = key.partition(",")
        if comma and not metric.endswith("_stderr") and metric != "alias":
            names.append(metric)
    return list(dict.fromkeys(names))


def _lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not JSON ({exc})") from None
                if not isinstance(row, dict) or not isinstance(row.get("doc_id"), int):
                    raise DatasetError(f"{path}:{number}: not an lm-eval sample (no doc_id)")
                rows.append(row)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    if not rows:
        raise DatasetError(f"{path}: holds no samples")
    return rows


def _ids(by_doc: dict[int, list[dict[str, Any]]]) -> dict[int, str]:
    """Each document's id: its ``doc_hash`` (its ``doc_id`` without one), with ``~k`` on
    the k-th document of identical contents, by ``doc_id``."""
    ids: dict[int, str] = {}
    seen: dict[str, int] = {}
    for doc_id in sorted(by_doc):
        base = by_doc[doc_id][0].get("doc_hash") or str(doc_id)
        count = seen[str(base)] = seen.get(str(base), 0) + 1
        ids[doc_id] = str(base) if count == 1 else f"{base}~{count}"
    return ids


def _unwrap(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _sample(example_id: str, lines: list[dict[str, Any]], metrics: list[str]) -> ImportedSample:
    first = lines[0]
    rows = []
    outputs: dict[str, Any] = {}
    for line in lines:
        name = str(line.get("filter") or "none")
        outputs[name] = _unwrap(line.get("filtered_resps"))
        for metric in line.get("metrics") or metrics:
            column = metric if name == "none" else f"{metric}.{name}"
            rows.extend(score_rows(column, line.get(metric), lmeval_float))
    doc = first.get("doc")
    fields = dict(doc) if isinstance(doc, dict) else {"doc": doc}
    fields.setdefault("target", first.get("target"))
    return ImportedSample(
        example_id=example_id,
        epoch=0,
        fields=fields,
        inputs=first.get("arguments"),
        output=outputs["none"] if list(outputs) == ["none"] else outputs,
        scores=tuple(rows),
    )


def _directions(data: dict[str, Any], task: str, samples: list[ImportedSample]) -> dict[str, bool]:
    declared = (data.get("higher_is_better") or {}).get(task) or {}
    out: dict[str, bool] = {}
    for sample in samples:
        for score in sample.scores:
            base = score.metric.split(".")[0]
            if base in declared and declared[base] is not None:
                out[base] = bool(declared[base])
    return out


def _task_log(
    results: _Results, task: str, samples_path: Path, evaluation: str | None, version: str | None
) -> ImportedLog:
    data = results.data
    by_doc: dict[int, list[dict[str, Any]]] = {}
    for line in _lines(samples_path):
        by_doc.setdefault(line["doc_id"], []).append(line)
    ids = _ids(by_doc)
    metrics = _metric_names(data, task)
    samples = [_sample(ids[d], by_doc[d], metrics) for d in sorted(by_doc)]
    check_unique(samples, str(samples_path))
    return ImportedLog(
        tool="lm-eval",
        source=str(samples_path.resolve()),
        key=f"lm-eval:{results.digest[:32]}:{task}",
        evaluation=evaluation or task,
        version=version or _model(data),
        logical_date=_date(results),
        params=_params(data, task),
        directions=_directions(data, task, samples),
        samples=tuple(samples),
        origin={"task": task, "results": str(results.path.resolve())},
    )


def read_lmeval_dir(
    path: str | Path, *, evaluation: str | None = None, version: str | None = None
) -> list[ImportedLog]:
    """Read and validate every task of every results file under ``path``; DatasetError
    (one line naming the file) for the first thing that is wrong, before anything is
    written."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory; give the --output_path lm-eval wrote to")
    found = sorted(root.rglob("results_*.json"))
    sample_files = sorted(root.rglob("samples_*.jsonl"))
    if not found:
        what = f"{sample_files[0]}: a samples file without" if sample_files else f"{root}: no"
        raise DatasetError(f"{what} results_*.json file; import the folder lm-eval wrote whole")
    logs: list[ImportedLog] = []
    used: set[Path] = set()
    for results in map(_results, found):
        tasks = _tasks(results)
        if not tasks:
            raise DatasetError(f'{results.path}: its "results" hold no task')
        for task in tasks:
            samples_path = results.path.with_name(f"samples_{task}_{results.stamp}.jsonl")
            if not samples_path.is_file():
                raise DatasetError(
                    f"{results.path}: task {task!r} has no {samples_path.name}; "
                    "run lm-eval with --log_samples"
                )
            used.add(samples_path)
            logs.append(_task_log(results, task, samples_path, evaluation, version))
    for orphan in sample_files:
        if orphan not in used:
            raise DatasetError(f"{orphan}: a samples file without its results_*.json file")
    return logs
