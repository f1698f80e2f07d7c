"""The unit ledger: what each work unit of a run committed, what a retry drives again, and
the row-level retractions a retry makes.

A unit is committed once when it is first driven (a new ledger row). A retry (``runs
retry``, or a scheduler's automatic retry) sets the run's ``redo_from`` to its attempt:
every unit committed by an earlier attempt that has failed examples drives those examples
again, and its commit **updates** the unit's ledger row in place (its totals after the
retry, its new failed examples) and **retracts** the superseded rows: one retraction per
example and dataset, effective from the commit's dataset versions. The update is allowed
once per round (the row's ``attempt`` moves to the retrying attempt), so a retried unit,
like a new one, commits at most once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Retraction, Run, UnitCommit
from hypermetric.catalog.records import FailedExample, UnitSummary
from hypermetric.errors import NotFoundError

__all__ = [
    "LedgerSplit",
    "UnitPlan",
    "failed_json",
    "failed_of",
    "plan_units",
    "record_units",
    "split_units",
]


def failed_json(failed: Iterable[FailedExample]) -> list[list[Any]] | None:
    """Failed examples as the ledger stores them (None for none)."""
    out = [[f.position, f.example_id, f.rows, f.calls, f.errors] for f in failed]
    return out or None


def failed_of(stored: list[Any] | None) -> tuple[FailedExample, ...]:
    """The failed examples a ledger row stores."""
    return tuple(
        FailedExample(int(p), str(e), int(r), int(c), int(x)) for p, e, r, c, x in stored or ()
    )


@dataclass(frozen=True)
class UnitPlan:
    """What an attempt has to drive: every unit not in ``done``; of the units in ``redo``
    only their failed examples, whose rows it retracts."""

    done: frozenset[int] = frozenset()
    redo: dict[int, tuple[FailedExample, ...]] = field(default_factory=dict)

    @property
    def committed(self) -> frozenset[int]:
        """Units in the ledger (done, or with failed examples to drive again)."""
        return self.done | frozenset(self.redo)


def plan_units(db: Database, run_id: int) -> UnitPlan:
    """The plan of the run's next attempt, from its ledger and its ``redo_from``."""
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}; `hypermetric runs list` shows the runs")
        rows = session.execute(
            select(UnitCommit.unit_id, UnitCommit.attempt, UnitCommit.failed).where(
                UnitCommit.run_id == run_id
            )
        ).all()
    done: set[int] = set()
    redo: dict[int, tuple[FailedExample, ...]] = {}
    for unit_id, attempt, failed in rows:
        if run.redo_from is not None and attempt < run.redo_from and failed:
            redo[unit_id] = failed_of(failed)
        else:
            done.add(unit_id)
    return UnitPlan(frozenset(done), redo)


@dataclass(frozen=True)
class LedgerSplit:
    """A flush's units by what their commit does: insert, update in place, or nothing."""

    new: tuple[UnitSummary, ...]
    redo: tuple[tuple[UnitSummary, UnitCommit], ...]
    done: frozenset[int]


def split_units(session: Session, run: Run, units: Sequence[UnitSummary]) -> LedgerSplit:
    """Sort ``units`` against the ledger (read in the commit's transaction, under its lock)."""
    rows: dict[int, UnitCommit] = {}
    ids = [u.unit_id for u in units]
    for start in range(0, len(ids), 500):
        stmt = select(UnitCommit).where(
            UnitCommit.run_id == run.id, UnitCommit.unit_id.in_(ids[start : start + 500])
        )
        rows.update((row.unit_id, row) for row in session.scalars(stmt))
    new, redo, done = [], [], set()
    for unit in units:
        row = rows.get(unit.unit_id)
        if row is None:
            new.append(unit)
        elif run.redo_from is not None and row.attempt < run.redo_from and row.failed:
            redo.append((unit, row))
        else:
            done.add(unit.unit_id)
    return LedgerSplit(tuple(new), tuple(redo), frozenset(done))


def record_units(
    session: Session,
    run: Run,
    split: LedgerSplit,
    shard_ids: dict[str, int],
    versions: dict[str, int],
    now: Any,
) -> None:
    """Write the ledger side of a commit: new rows, retried rows, retractions, run totals."""
    for unit in split.new:
        session.add(
            UnitCommit(
                run_id=run.id,
                unit_id=unit.unit_id,
                scores_shard_id=shard_ids.get("scores"),
                calls_shard_id=shard_ids.get("calls"),
                examples=unit.examples,
                rows=unit.rows,
                calls=unit.calls,
                errors=unit.errors,
                failed_examples=len(unit.failed) or unit.failed_examples,
                committed_at=now,
                attempt=run.attempt,
                failed=failed_json(unit.failed),
            )
        )
        _count(run, unit.rows, unit.calls, unit.errors, unit.examples)
    for unit, row in split.redo:
        old = failed_of(row.failed)
        rows = unit.rows - sum(f.rows for f in old)
        calls = unit.calls - sum(f.calls for f in old)
        errors = unit.errors - sum(f.errors for f in old)
        row.rows, row.calls, row.errors = row.rows + rows, row.calls + calls, row.errors + errors
        row.failed_examples = len(unit.failed)
        row.failed = failed_json(unit.failed)
        row.attempt, row.committed_at = run.attempt, now
        _count(run, rows, calls, errors, 0)
        for dataset, version_id in versions.items():
            session.add_all(
                Retraction(
                    dataset=dataset,
                    run_id=run.id,
                    example_id=f.example_id,
                    attempt=run.attempt,
                    added_version_id=version_id,
                )
                for f in old
            )


def _count(run: Run, rows: int, calls: int, errors: int, examples: int) -> None:
    run.rows_count += rows
    run.calls_count += calls
    run.errors_count += errors
    run.examples_done += examples
