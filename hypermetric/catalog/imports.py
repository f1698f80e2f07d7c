"""Imported runs: a log of another evaluation tool becomes one run, once.

An imported run is created **already running** at its first attempt, in one transaction
with its ``import_key`` (unique across the DB, migration 0006): a scheduler never sees it
queued (it would try to launch it), and two processes importing the same log at once
create one run, the other one finding it. Its rows are then committed through the unit
ledger like an engine run's (:func:`hypermetric.catalog.shards.commit_units`) and the
attempt ends success. An import that fails ends its run failed and **releases** the key,
so the log can be imported again once it is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Run
from hypermetric.catalog.records import RunRecord
from hypermetric.catalog.runs import create_run, get_run, open_attempt
from hypermetric.catalog.types import utcnow
from hypermetric.errors import ConflictError

__all__ = ["ImportSlot", "begin_import", "find_import", "release_import"]

#: how many later microseconds an import tries when its evaluation has a run at the log's
#: own instant already (logs stamped to the second, several tasks of one results file)
_MAX_SHIFTS = 1000


@dataclass(frozen=True)
class ImportSlot:
    """The run of an import key: ``created`` by this call, or found (imported before, or
    being imported by another process right now)."""

    run: RunRecord
    created: bool


def find_import(db: Database, key: str) -> RunRecord | None:
    """The run imported from the log with this key, if any."""
    with db.session() as session:
        run_id = session.scalar(select(Run.id).where(Run.import_key == key))
        return None if run_id is None else get_run(db, run_id, session)


def begin_import(
    db: Database,
    evaluation_id: int,
    *,
    key: str,
    logical_date: datetime,
    owner: str,
    pid: int,
    host: str,
    examples: int,
    **fields: Any,
) -> ImportSlot:
    """Create the running run of import ``key`` (or find the one that exists).

    ``fields`` are :func:`~hypermetric.catalog.runs.create_run`'s (version label, versions,
    params, dataset...). The logical date is the log's; if the evaluation has a run at that
    instant already, the next free microsecond is taken (a run's date is unique per
    evaluation, and two logs can share a second).
    """
    for shift in range(_MAX_SHIFTS):
        found = find_import(db, key)
        if found is not None:
            return ImportSlot(found, created=False)
        date = logical_date + timedelta(microseconds=shift)
        try:
            return ImportSlot(
                _insert(db, evaluation_id, key, date, owner, pid, host, examples, fields),
                created=True,
            )
        except IntegrityError:
            continue  # the key was just taken (found above next time), or the date was
    raise ConflictError(
        f"evaluation {evaluation_id} has runs at every microsecond after "
        f"{logical_date.isoformat()}; import into another evaluation with --evaluation"
    )


def _insert(
    db: Database,
    evaluation_id: int,
    key: str,
    date: datetime,
    owner: str,
    pid: int,
    host: str,
    examples: int,
    fields: dict[str, Any],
) -> RunRecord:
    now = utcnow()
    with db.session() as session:
        created = create_run(
            db, evaluation_id, run_type="import", logical_date=date, session=session, **fields
        )
        row = session.get(Run, created.id)
        assert row is not None
        row.import_key = key
        open_attempt(session, row, 1, "start", owner, pid, host, now, examples)
        session.flush()
        return get_run(db, row.id, session)


def release_import(db: Database, run_id: int) -> None:
    """Free the import key of a run whose import failed: the log may be imported again."""
    with db.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(import_key=None))
