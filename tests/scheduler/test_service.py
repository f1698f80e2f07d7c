"""Scheduler passes on a hand-moved clock, with fake runs: creation, limits, recovery.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.catalog.runs import create_run, get_run, list_runs, start_run, update_run
from hypermetric.catalog.scheduling import DuePlan, create_due_runs
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import pause, plan_due, trigger, unpause
from tests.scheduler.conftest import T0, Maker, passes
from tests.scheduler.fakes import Behaviour
from tests.scheduler.helpers import count_active, logical_dates

Define = Callable[..., EvaluationRecord]


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_one_run_per_interval_for_thirty_seconds(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define()
    service, launcher = make_scheduler()
    passes(service, clock, 30)
    service.run_pass()  # reaps the last run
    # registered at T0: [T0-2s, T0) at once, then [T0, T0+2s) ... [T0+28s, T0+30s), each due
    # at its end
    assert logical_dates(db, "every2") == [T0 + seconds(2 * i) for i in range(-1, 15)]
    launched = [run_id for run_id, _ in launcher.launches]
    assert len(launched) == len(set(launched)) == 16
    runs = list_runs(db, evaluation="every2", limit=None)
    assert {r.state for r in runs} == {"success"} and {r.run_type for r in runs} == {"scheduled"}
    first = min(runs, key=lambda r: r.logical_date)
    assert (first.data_interval_start, first.data_interval_end) == (T0 - seconds(2), T0)
    assert first.params == {"k": 1} and first.code_version == "c0"


@pytest.mark.parametrize(("catchup", "expected"), [(True, 10), (False, 1)])
def test_catchup_after_ten_missed_intervals(
    db: Database,
    clock: ManualClock,
    define: Define,
    make_scheduler: Maker,
    catchup: bool,
    expected: int,
) -> None:
    define(catchup=catchup, start_date=T0)
    service, _ = make_scheduler(catchup_batch=4)
    clock.advance(20)  # down for ten intervals: due at T0+2s ... T0+20s
    for _ in range(4):
        service.run_pass()
    dates = logical_dates(db, "every2")
    assert len(dates) == expected
    assert dates[-1] == T0 + seconds(18)  # the latest complete interval, either way
    clock.advance(2)
    service.run_pass()
    assert logical_dates(db, "every2")[-1] == T0 + seconds(20)
    assert len(logical_dates(db, "every2")) == expected + 1


def test_max_active_runs_and_parallelism_hold_at_every_moment(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define("a", max_active_runs=2)
    define("b", max_active_runs=2)
    service, _ = make_scheduler(lambda run: Behaviour("success", 5.0), parallelism=3)
    clock.advance(20)
    peaks = {"a": 0, "b": 0, "both": 0}
    for _ in range(50):
        service.run_pass()
        a, b = count_active(db, "a"), count_active(db, "b")
        assert a <= 2 and b <= 2 and a + b <= 3
        peaks = {
            "a": max(peaks["a"], a),
            "b": max(peaks["b"], b),
            "both": max(peaks["both"], a + b),
        }
        clock.advance(1.0)
    assert peaks == {"a": 2, "b": 2, "both": 3}  # the limits were reached, not just respected
    done = [r for r in list_runs(db, limit=None) if r.state == "success"]
    assert len(done) >= 25


def test_a_failing_run_is_retried_with_growing_delays_then_fails(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None, retries=2, retry_delay_s=10.0)
    service, launcher = make_scheduler(lambda run: Behaviour("failed", 0.0))
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 60, step=1.0)
    times = [t for run_id, t in launcher.launches if run_id == run.id]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(times) == 3 and 10 <= gaps[0] <= 12 and 20 <= gaps[1] <= 22
    final = get_run(db, run.id)
    assert (final.state, final.attempt, final.error) == ("failed", 3, "boom")


def test_a_run_whose_process_died_is_resumed_at_once(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None)
    fates = iter([Behaviour("die", 1.0), Behaviour("success", 1.0)])
    service, launcher = make_scheduler(lambda run: next(fates))
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 2)
    resumed = get_run(db, run.id)
    assert resumed.state in ("queued", "running") and resumed.attempt >= 1
    passes(service, clock, 4)
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("success", 2)
    assert len(launcher.launches) == 2


def test_a_hung_run_is_found_by_its_stale_heartbeat_and_resumed(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None)
    fates = iter([Behaviour("hang"), Behaviour("success", 1.0)])
    service, launcher = make_scheduler(lambda run: next(fates), stale_after=10.0)
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 9)
    assert get_run(db, run.id).state == "running"  # silent, but not for long enough yet
    passes(service, clock, 5)
    assert launcher.handles[0].code == -9  # the hung process was killed
    passes(service, clock, 3)
    final = get_run(db, run.id)
    assert (final.state, final.attempt) == ("success", 2)


def test_a_run_that_never_heartbeated_counts_from_its_start(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    ev = define(schedule=None)
    service, _ = make_scheduler(lambda run: Behaviour("success", 1.0), stale_after=10.0)
    run = create_run(db, ev.id, run_type="manual", logical_date=T0)
    start_run(db, run.id, owner="elsewhere", pid=1, host="another-host")
    update_run(db, run.id, heartbeat_at=None, started_at=T0 - seconds(11))
    report = service.run_pass()
    assert report.resumed == (run.id,) and report.launched == (run.id,)
    passes(service, clock, 3)
    assert get_run(db, run.id).state == "success"


def test_lost_attempts_are_limited(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None, retries=1)
    service, launcher = make_scheduler(lambda run: Behaviour("hang"), stale_after=5.0)
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 40)
    final = get_run(db, run.id)
    # one try and one retry, plus two attempts lost to crashes on top
    assert (final.state, final.attempt, len(launcher.launches)) == ("failed", 4, 4)
    assert final.error is not None and final.error.endswith("no attempts left")


def test_a_run_past_its_timeout_is_failed_with_the_reason(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None, timeout_s=5.0)
    service, launcher = make_scheduler(lambda run: Behaviour("success", 1000), stale_after=3.0)
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 12)
    final = get_run(db, run.id)
    assert final.state == "failed"
    assert final.error == "timed out: attempt 1 ran longer than its timeout of 5s"
    assert launcher.handles[0].code == -9 and len(launcher.launches) == 1


def test_a_process_that_exits_before_starting_is_relaunched_then_fails(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(schedule=None, retries=3)
    service, launcher = make_scheduler(lambda run: Behaviour("early"))
    run = trigger(db, "every2", clock=clock)
    passes(service, clock, 40, step=1.0)
    final = get_run(db, run.id)
    assert len(launcher.launches) == 3 and final.state == "failed"
    assert final.error == (
        "its process exited with code 1 before starting the run 3 times: "
        "DefinitionError: cannot import x:y"
    )


def test_a_paused_definition_creates_and_launches_nothing(
    db: Database, clock: ManualClock, define: Define, make_scheduler: Maker
) -> None:
    define(catchup=False)
    service, launcher = make_scheduler()
    pause(db, "every2")
    manual = trigger(db, "every2", clock=clock)
    passes(service, clock, 10)
    assert logical_dates(db, "every2", "scheduled") == []
    assert get_run(db, manual.id).state == "queued" and launcher.launches == []
    unpause(db, "every2", clock=clock)
    passes(service, clock, 1)
    assert logical_dates(db, "every2", "scheduled") == [T0 + seconds(8)]  # only the latest
    assert get_run(db, manual.id).state == "success"


def test_an_interval_that_has_a_run_is_not_created_again(
    db: Database, clock: ManualClock, define: Define
) -> None:
    ev = define(start_date=T0)
    create_run(db, ev.id, run_type="backfill", logical_date=T0 + seconds(2))
    clock.advance(6)
    created = create_due_runs(db, clock.now(), plan_due)
    assert [r.logical_date for r in created] == [T0, T0 + seconds(4)]
    assert get_evaluation(db, "every2").next_logical_date == T0 + seconds(6)


def test_creation_and_advance_commit_together_or_not_at_all(
    db: Database, clock: ManualClock, define: Define
) -> None:
    define("a", start_date=T0)
    define("b", start_date=T0)
    clock.advance(4)

    def crash_on_b(ev: EvaluationRecord, now: object) -> DuePlan:
        if ev.name == "b":
            raise RuntimeError("the scheduler died here")
        return plan_due(ev, clock.now())

    with pytest.raises(RuntimeError):
        create_due_runs(db, clock.now(), crash_on_b)
    assert logical_dates(db, "a") == [] and get_evaluation(db, "a").next_logical_date == T0
    create_due_runs(db, clock.now(), plan_due)
    create_due_runs(db, clock.now(), plan_due)
    assert logical_dates(db, "a") == logical_dates(db, "b") == [T0, T0 + seconds(2)]


def test_a_manual_run_merges_its_params_and_takes_the_latest_interval(
    db: Database, clock: ManualClock, define: Define
) -> None:
    define(schedule="0 2 * * *")
    run: RunRecord = trigger(db, "every2", params={"k": 2, "extra": "x"}, clock=clock)
    assert run.run_type == "manual" and run.logical_date == T0
    assert run.params == {"k": 2, "extra": "x"}
    day = timedelta(days=1)
    two = T0.replace(hour=2)
    assert (run.data_interval_start, run.data_interval_end) == (two - day, two)
