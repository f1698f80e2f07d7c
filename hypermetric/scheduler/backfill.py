"""Backfill: the runs of every interval of a schedule within a date range, idempotently.

An interval without a run gets a ``backfill`` run. One with a run is left alone unless
asked: ``reprocess="failed"`` starts failed (and canceled) runs over, ``"all"`` every
finished run; a queued or running run is never touched. An interval that overlaps another
scheduled or backfill run's interval (the schedule was edited since) is skipped, with that
run in the reason: no two runs cover the same time. Running the same backfill twice
creates nothing the second time. Only complete intervals (due by now) are backfilled.
The runs are executed by the scheduler like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypermetric.catalog.backfills import (
    count_unfinished,
    create_backfill_run,
    reprocess_run,
    runs_at,
)
from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import CoveredInterval, covered_between, get_evaluation
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.config import get_settings
from hypermetric.errors import ConflictError, DefinitionError, ScheduleError
from hypermetric.scheduler.clock import Clock, SystemClock
from hypermetric.scheduler.definitions import timetable_for
from hypermetric.scheduler.triggers import Interval, parse_zone

__all__ = [
    "MAX_INTERVALS",
    "REPROCESS",
    "BackfillAction",
    "BackfillPlan",
    "BackfillResult",
    "backfill",
    "parse_when",
    "plan_backfill",
]

REPROCESS = ("none", "failed", "all")
#: the most intervals one backfill may cover
MAX_INTERVALS = 10_000
_REDO = {"none": (), "failed": ("failed", "canceled"), "all": ("success", "failed", "canceled")}


@dataclass(frozen=True)
class BackfillAction:
    """What backfill does with one interval: ``create``, ``reprocess`` or ``skip``."""

    logical_date: datetime
    data_interval: tuple[datetime, datetime]
    action: str
    reason: str
    run_id: int | None = None


@dataclass(frozen=True)
class BackfillPlan:
    """Every interval in the range and what happens to it."""

    evaluation: str
    start: datetime
    end: datetime
    reprocess: str
    actions: tuple[BackfillAction, ...]

    def count(self, action: str) -> int:
        """How many intervals get ``action``."""
        return sum(1 for a in self.actions if a.action == action)


@dataclass(frozen=True)
class BackfillResult:
    """A backfill's plan and the runs it queued (created or reprocessed)."""

    plan: BackfillPlan
    run_ids: tuple[int, ...]
    dry_run: bool = False


def parse_when(text: str | datetime | date, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A date or ISO datetime, read in ``zone`` when it has no offset, as aware UTC.

    A bare date means the start of that day, or with ``end`` its last instant, so
    ``--start 2026-11-01 --end 2026-11-05`` covers five whole days.
    """
    value: datetime | date
    if isinstance(text, str):
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ScheduleError(
                f"{text!r} is not a date or datetime; use e.g. 2026-11-01 or 2026-11-01T02:00"
            ) from None
        bare = len(text.strip()) == 10
    else:
        value, bare = text, not isinstance(text, datetime)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if bare and end:
        value = value + timedelta(days=1) - timedelta(microseconds=1)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _intervals(
    ev: EvaluationRecord, start: datetime, end: datetime, now: datetime
) -> list[Interval]:
    table = timetable_for(ev)
    if table is None:
        raise ScheduleError(
            f"evaluation {ev.name!r} has no schedule, so it has no intervals to backfill; "
            "use `hypermetric evals trigger` for a run now"
        )
    found: list[Interval] = []
    for interval in table.intervals(start, end):
        if interval.due_at > now:
            break
        found.append(interval)
        if len(found) > MAX_INTERVALS:
            raise ScheduleError(
                f"{ev.name!r} has more than {MAX_INTERVALS} intervals between {start.isoformat()} "
                f"and {end.isoformat()}; backfill a narrower range at a time"
            )
    return found


def _decide(
    interval: Interval, run: RunRecord | None, covered: list[CoveredInterval], reprocess: str
) -> BackfillAction:
    window = (interval.logical_date, interval.end)
    if run is not None and run.data_interval_end in (None, interval.end):  # its own run
        reason = f"{run.state} (run {run.id})"
        action = "reprocess" if run.state in _REDO[reprocess] else "skip"
        return BackfillAction(interval.logical_date, window, action, reason, run.id)
    clash = next((c for c in covered if c.overlaps(*window)), None)
    if clash is not None:
        span = f"{clash.start:%Y-%m-%d %H:%M} .. {clash.end:%Y-%m-%d %H:%M} UTC"
        reason = f"overlaps run {clash.run_id} ({span})"
        return BackfillAction(interval.logical_date, window, "skip", reason, clash.run_id)
    if run is not None:  # a manual run that started at this very instant
        reason = f"{run.run_type} run {run.id} has this logical date"
        return BackfillAction(interval.logical_date, window, "skip", reason, run.id)
    return BackfillAction(interval.logical_date, window, "create", "no run yet")


def plan_backfill(
    db: Database,
    name: str,
    start: str | datetime | date,
    end: str | datetime | date,
    *,
    reprocess: str = "none",
    clock: Clock | None = None,
) -> BackfillPlan:
    """What a backfill of ``name`` over ``[start, end]`` would do (nothing is written)."""
    if reprocess not in REPROCESS:
        raise ScheduleError(f"reprocess must be one of {', '.join(REPROCESS)}, not {reprocess!r}")
    ev = get_evaluation(db, name)
    if not ev.import_path:
        raise DefinitionError(
            f"evaluation {name!r} has no import path, so no process can run it; register it "
            "with `hypermetric evals register MODULE:NAME`"
        )
    zone = parse_zone(ev.timezone)
    first, last = parse_when(start, zone), parse_when(end, zone, end=True)
    if last < first:
        raise ScheduleError(
            f"the end {last.isoformat()} is before the start {first.isoformat()}; swap them"
        )
    intervals = _intervals(ev, first, last, (clock or SystemClock()).now())
    existing = runs_at(db, ev.id, [i.logical_date for i in intervals])
    covered = (
        covered_between(db, ev.id, intervals[0].logical_date, intervals[-1].end)
        if intervals
        else []
    )
    actions = tuple(_decide(i, existing.get(i.logical_date), covered, reprocess) for i in intervals)
    return BackfillPlan(ev.name, first, last, reprocess, actions)


def _apply(db: Database, ev: EvaluationRecord, action: BackfillAction, now: datetime) -> int | None:
    if action.action == "create":
        run = create_backfill_run(
            db,
            ev.id,
            logical_date=action.logical_date,
            data_interval=action.data_interval,
            version_label=ev.version_label,
            code_version=ev.code_version,
            params=dict(ev.params),
            unit_size=get_settings().unit_size,
        )
        return None if run is None else run.id
    if action.action == "reprocess" and action.run_id is not None:
        try:
            redo = reprocess_run(
                db,
                action.run_id,
                now,
                version_label=ev.version_label,
                code_version=ev.code_version,
                params=dict(ev.params),
            )
        except ConflictError:
            return None  # it started meanwhile: leave it alone
        return redo.id
    return None


def backfill(
    db: Database,
    name: str,
    start: str | datetime | date,
    end: str | datetime | date,
    *,
    reprocess: str = "none",
    dry_run: bool = False,
    max_active_runs: int | None = None,
    clock: Clock | None = None,
    poll_seconds: float = 5.0,
    on_queued: Callable[[BackfillAction, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillResult:
    """Queue the runs of every interval of ``name`` in ``[start, end]``; see the module.

    With ``max_active_runs``, at most that many of this backfill's runs are queued or
    running at once: the call feeds them in as earlier ones finish (interrupt it and run
    it again to continue; what was queued stays queued).
    """
    clock = clock or SystemClock()
    plan = plan_backfill(db, name, start, end, reprocess=reprocess, clock=clock)
    if dry_run:
        return BackfillResult(plan, (), dry_run=True)
    if max_active_runs is not None and max_active_runs < 1:
        raise ScheduleError("--max-active-runs must be at least 1")
    ev = get_evaluation(db, name)
    queued: list[int] = []
    for action in plan.actions:
        if action.action == "skip":
            continue
        while (
            max_active_runs is not None and count_unfinished(db, ev.id, queued) >= max_active_runs
        ):
            sleep(poll_seconds)
        run_id = _apply(db, ev, action, clock.now())
        if run_id is not None:
            queued.append(run_id)
            if on_queued is not None:
                on_queued(action, run_id)
    return BackfillResult(plan, tuple(queued))
