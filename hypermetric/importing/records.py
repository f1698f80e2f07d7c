"""What a log of another tool reads as, before anything is written: frozen and complete.

A reader (:mod:`hypermetric.importing.inspect_logs`, :mod:`hypermetric.importing.lmeval`)
turns a file into an :class:`ImportedLog` and validates it **whole**; only then does
:mod:`hypermetric.importing.writer` write it. So a malformed log writes nothing.

Each sample keeps its 0-based ``epoch`` and its dataset ``fields`` (input, target,
metadata...), what the ``epoch`` column of scores and calls and the ``examples`` dataset
are made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hypermetric.errors import DatasetError

__all__ = ["ImportedLog", "ImportedSample", "ImportedScore", "check_unique", "score_rows"]


@dataclass(frozen=True)
class ImportedScore:
    """One score row of a sample: a metric, its value, or the error that stood for it."""

    metric: str
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class ImportedSample:
    """One sample of a log (one epoch of one example): its call and its scores."""

    example_id: str
    #: 0-based, as Hypermetric counts epochs (Inspect's are 1-based)
    epoch: int
    #: the example's own fields: input, target, metadata, choices...
    fields: dict[str, Any]
    #: the call's inputs and output, stored as JSON text in ``calls``
    inputs: Any
    output: Any
    scores: tuple[ImportedScore, ...]
    error: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class ImportedLog:
    """One log (or one task of an lm-eval results file), ready to become one run."""

    #: ``inspect`` or ``lm-eval``
    tool: str
    #: the file read, for messages and the run's ``dataset``
    source: str
    #: unique per log: importing the same log again finds this key
    key: str
    evaluation: str
    version: str | None
    logical_date: datetime
    params: dict[str, Any]
    #: each metric's direction: True when higher is better
    directions: dict[str, bool]
    samples: tuple[ImportedSample, ...]
    #: what else the tool recorded of the log worth keeping in the run's ``versions``
    origin: dict[str, Any] = field(default_factory=dict)

    def versions(self) -> dict[str, Any]:
        """The run's ``versions``: each metric's direction, read by compare and history
        (``versions["evals"][NAME]["higher_is_better"]``), and where the run came from."""
        return {
            "imported": {"tool": self.tool, "source": self.source, **self.origin},
            "components": {},
            # as an engine run records them: readers take a missing count as 1
            "epochs": 1 + max((s.epoch for s in self.samples), default=0),
            "evals": {
                name: {"higher_is_better": up, "components": [self.evaluation]}
                for name, up in sorted(self.directions.items())
            },
        }


def score_rows(name: str, value: Any, to_float: Any) -> list[ImportedScore]:
    """The score rows of one named value: a number (``to_float`` converts it), or a dict
    of them, one ``name.key`` row each (as a dict-returning eval's). A value that is not
    a number is an error row that says so."""
    if isinstance(value, dict):
        rows: list[ImportedScore] = []
        for key, part in value.items():
            rows.extend(score_rows(f"{name}.{key}", part, to_float))
        return rows
    if value is None:
        return [ImportedScore(name, None, "no value recorded")]
    try:
        number = to_float(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return [ImportedScore(name, None, f"score value {shown} is not a number")]
    if math.isnan(number):
        return [ImportedScore(name, None, "score value is NaN")]
    return [ImportedScore(name, number, None)]


def check_unique(samples: list[ImportedSample], source: str) -> None:
    """DatasetError naming the first (example, epoch) a log holds twice."""
    seen: set[tuple[str, int]] = set()
    for sample in samples:
        key = (sample.example_id, sample.epoch)
        if key in seen:
            raise DatasetError(
                f"{source}: sample {sample.example_id!r} appears twice in epoch {sample.epoch}"
            )
        seen.add(key)
