"""Stored definitions: register a runtime, plan its due intervals, pause it, trigger it.

A definition is validated whole before anything is written: a bad cron expression, an
unknown timezone, an import path that does not import or an end date before the start
date is one clear error and leaves the DB as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hypermetric.api.component import working_dir_importable
from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation, set_paused, store_evaluation
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.catalog.runs import create_run
from hypermetric.catalog.scheduling import DuePlan, PlannedRun
from hypermetric.errors import DefinitionError, ScheduleError
from hypermetric.scheduler.clock import Clock, SystemClock
from hypermetric.scheduler.triggers import CronSchedule, Interval, Timetable, parse_zone

if TYPE_CHECKING:
    from hypermetric.api.runtime import Runtime

__all__ = [
    "Registration",
    "load_definition",
    "pause",
    "plan_due",
    "register",
    "store_definition",
    "timetable_for",
    "trigger",
    "unpause",
]

#: the fields whose change moves a definition's next scheduled interval
_SCHEDULE_FIELDS = ("schedule", "timezone", "catchup", "start_date", "end_date")


@dataclass(frozen=True)
class Registration:
    """What ``register`` stored, and whether the definition was new."""

    evaluation: EvaluationRecord
    created: bool


def _normalise(import_path: str) -> str:
    module, sep, name = import_path.rpartition(":")
    if sep and (module.endswith(".py") or os.sep in module):
        return f"{os.path.abspath(os.path.expanduser(module))}:{name}"
    return import_path


def load_definition(import_path: str) -> tuple[str, Runtime]:
    """Import the ``@hm.runtime`` at MODULE:NAME or FILE.py:NAME (the current directory is
    importable, as under ``python -m``); returns the path to store and the runtime."""
    from hypermetric.engine.runner import load_runtime  # imports Ray: only when registering

    working_dir_importable()
    path = _normalise(import_path.strip())
    return path, load_runtime(path)


def timetable_for(ev: EvaluationRecord) -> Timetable | None:
    """The timetable of a stored definition (None when it has no schedule)."""
    if not ev.schedule:
        return None
    return Timetable(CronSchedule.parse(ev.schedule, ev.timezone), ev.start_date, ev.end_date)


def _validate(fields: Mapping[str, Any]) -> None:
    timezone = fields.get("timezone") or "UTC"
    parse_zone(timezone)
    if fields.get("schedule"):
        CronSchedule.parse(fields["schedule"], timezone)
    start, end = fields.get("start_date"), fields.get("end_date")
    if start and end and end < start:
        raise ScheduleError(
            f"end_date {end.isoformat()} is before start_date {start.isoformat()}; "
            "fix the runtime's dates"
        )


def _fields(path: str, runtime: Runtime) -> dict[str, Any]:
    spec = runtime.schedule
    params = dict(runtime.params)
    try:
        json.dumps(params)
    except (TypeError, ValueError):
        raise DefinitionError(
            f"runtime {runtime.name!r}: params must be JSON values (text, numbers, lists, dicts) "
            "to be stored"
        ) from None
    return {
        "import_path": path,
        "description": runtime.description,
        "schedule": spec.schedule,
        "timezone": spec.timezone,
        "catchup": spec.catchup,
        "start_date": spec.start_date,
        "end_date": spec.end_date,
        "max_active_runs": spec.max_active_runs,
        "retries": spec.retries,
        "retry_delay_s": spec.retry_delay,
        "retry_exponential": spec.retry_exponential,
        "timeout_s": spec.timeout,
        "max_error_rate": runtime.max_error_rate,
        "params": params,
        "version_label": runtime.version,
        "code_version": runtime.versions()["code_version"],
    }


def _cursor(interval: Interval | None) -> dict[str, datetime | None]:
    """The fields that say where a definition's schedule goes next."""
    if interval is None:
        return {"next_logical_date": None, "next_due_at": None}
    return {"next_logical_date": interval.logical_date, "next_due_at": interval.due_at}


def _reschedule(
    fields: Mapping[str, Any],
    before: EvaluationRecord | None,
    last_end: datetime | None,
    now: datetime,
) -> dict[str, datetime | None]:
    """Where the schedule of ``fields`` starts, given the stored definition ``before``.

    Kept as it was unless the schedule, timezone, catchup or dates changed (or it had no
    next due time); else it continues from ``last_end``, the end of the last interval a
    scheduled or backfill run covers (see :meth:`Timetable.first_interval`).
    """
    # no next due time: the schedule ended, or the scheduler gave up on it (register again)
    unchanged = before is not None and before.next_due_at is not None
    if unchanged and all(getattr(before, k) == fields.get(k) for k in _SCHEDULE_FIELDS):
        return {}
    if not fields.get("schedule"):
        return _cursor(None)
    schedule = CronSchedule.parse(fields["schedule"], fields.get("timezone") or "UTC")
    table = Timetable(schedule, fields.get("start_date"), fields.get("end_date"))
    return _cursor(table.first_interval(now, bool(fields.get("catchup")), after=last_end))


def register(db: Database, import_path: str, *, clock: Clock | None = None) -> Registration:
    """Store (or update) the definition of the runtime at ``import_path``."""
    path, runtime = load_definition(import_path)
    return store_definition(db, runtime.name, _fields(path, runtime), clock=clock)


def store_definition(
    db: Database, name: str, fields: Mapping[str, Any], *, clock: Clock | None = None
) -> Registration:
    """Store (or update) definition ``name`` from evaluation ``fields``, validated first.

    A new definition starts at its first interval (see :meth:`Timetable.first_interval`);
    an edit of its schedule, timezone, catchup or dates continues from the end of the last
    interval its runs cover, never before it.
    """
    now = (clock or SystemClock()).now()
    values = dict(fields)
    _validate(values)
    record, created = store_evaluation(
        db, name, values, lambda before, last_end: _reschedule(values, before, last_end, now)
    )
    return Registration(record, created)


def plan_due(ev: EvaluationRecord, now: datetime, *, max_runs: int = 100) -> DuePlan:
    """The intervals of ``ev`` due at ``now`` (at most ``max_runs``) and its next interval.

    With catchup, every missed interval since the last one; without, only the latest.
    """
    table = timetable_for(ev)
    current = None
    if table is not None and ev.next_logical_date is not None:
        current = table.interval_at(ev.next_logical_date)
    if table is not None and current is not None and not ev.catchup:
        current = table.skip_to_latest(current, now)
    runs: list[PlannedRun] = []
    while table is not None and current is not None and current.due_at <= now:
        if len(runs) >= max_runs:
            break
        runs.append(PlannedRun(current.logical_date, (current.logical_date, current.end)))
        current = table.interval_after(current)
    if current is None:
        return DuePlan(tuple(runs), None, None)
    return DuePlan(tuple(runs), current.logical_date, current.due_at)


def pause(db: Database, name: str) -> EvaluationRecord:
    """Stop creating and launching runs of ``name`` (running ones go on)."""
    return set_paused(db, name, True)


def unpause(db: Database, name: str, *, clock: Clock | None = None) -> EvaluationRecord:
    """Resume ``name``'s schedule: with catchup every interval missed while it was paused
    is created, without it the latest complete one; either at the next pass."""
    now = (clock or SystemClock()).now()

    def skip_missed(ev: EvaluationRecord | None, _last_end: datetime | None) -> dict[str, Any]:
        # without catchup the next pass skips them anyway; moving the cursor now shows it
        table = None if ev is None or ev.catchup or ev.next_due_at is None else timetable_for(ev)
        if table is None or ev is None or ev.next_logical_date is None:
            return {}
        current = table.interval_at(ev.next_logical_date)
        return {} if current is None else _cursor(table.skip_to_latest(current, now))

    return store_evaluation(db, get_evaluation(db, name).name, {"paused": False}, skip_missed)[0]


def trigger(
    db: Database,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    version_label: str | None = None,
    clock: Clock | None = None,
) -> RunRecord:
    """Queue a manual run of ``name`` now; params are merged over the definition's.

    Its data interval is the latest complete interval of the schedule, if there is one.
    """
    ev = get_evaluation(db, name)
    if not ev.import_path:
        raise DefinitionError(
            f"evaluation {name!r} has no import path, so no process can run it; register it "
            "with `hypermetric evals register MODULE:NAME`"
        )
    now = (clock or SystemClock()).now()
    table = timetable_for(ev)
    latest = table.latest_complete(now) if table is not None else None
    return create_run(
        db,
        ev.id,
        run_type="manual",
        logical_date=now,
        data_interval=(latest.logical_date, latest.end) if latest else None,
        version_label=version_label or ev.version_label,
        code_version=ev.code_version,
        params={**ev.params, **dict(params or {})},
    )
