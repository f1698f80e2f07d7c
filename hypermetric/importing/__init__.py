"""Bringing history in: logs of other evaluation tools become Hypermetric runs.

``hypermetric import inspect LOG...`` reads Inspect AI eval logs
(:mod:`~hypermetric.importing.inspect_logs`) and ``hypermetric import lm-eval DIR`` the
output of lm-evaluation-harness (:mod:`~hypermetric.importing.lmeval`). Each log is read and
validated whole into frozen records (:mod:`~hypermetric.importing.records`) and then written
as one successful run through the shard store and the unit ledger
(:mod:`~hypermetric.importing.writer`), so its scores are in SQL, ``history`` and
``compare`` like any run's. Importing the same log again adds nothing.

A layer above ``catalog/`` and ``storage/``, below ``cli/``; no Ray, no DuckDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hypermetric.config import Settings
from hypermetric.importing.inspect_logs import read_inspect_log
from hypermetric.importing.lmeval import read_lmeval_dir
from hypermetric.importing.records import ImportedLog
from hypermetric.importing.writer import ImportOutcome, store_logs

__all__ = ["ImportOutcome", "import_inspect", "import_lmeval", "read_inspect_logs"]


def read_inspect_logs(
    paths: Sequence[str | Path], *, evaluation: str | None = None, version: str | None = None
) -> list[ImportedLog]:
    """Read and validate every Inspect log of ``paths`` (nothing is written)."""
    return [read_inspect_log(p, evaluation=evaluation, version=version) for p in paths]


def import_inspect(
    paths: Sequence[str | Path],
    *,
    evaluation: str | None = None,
    version: str | None = None,
    settings: Settings | None = None,
) -> list[ImportOutcome]:
    """Import Inspect AI logs (``.eval`` or ``.json``), one run each. Every log is read and
    validated before any is written: a malformed one raises DatasetError and imports none."""
    logs = read_inspect_logs(paths, evaluation=evaluation, version=version)
    return list(store_logs(logs, settings=settings))


def import_lmeval(
    path: str | Path,
    *,
    evaluation: str | None = None,
    version: str | None = None,
    settings: Settings | None = None,
) -> list[ImportOutcome]:
    """Import an lm-evaluation-harness output folder, one run per task of each results
    file, validated whole first (DatasetError imports none)."""
    logs = read_lmeval_dir(path, evaluation=evaluation, version=version)
    return list(store_logs(logs, settings=settings))
