"""A remote launcher (Ray jobs) seen by the supervisor, with fakes on a hand-moved clock: the
job of a running run another scheduler launched is adopted; one that ended without ending
its run makes the run lost and resumed; a canceled run's job is stopped; a timed-out run is
failed before its job is stopped. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from hypermetric.catalog.db import Database
from hypermetric.catalog.records import EvaluationRecord, RunRecord
from hypermetric.catalog.runs import cancel_run, get_run, start_run, update_run
from hypermetric.config import Settings
from hypermetric.scheduler.clock import ManualClock
from hypermetric.scheduler.definitions import trigger
from hypermetric.scheduler.launcher import LaunchDeferred, Launcher, RunHandle
from hypermetric.scheduler.options import SchedulerOptions
from hypermetric.scheduler.service import Scheduler
from tests.scheduler.conftest import passes

Define = Callable[..., EvaluationRecord]


class FakeJob(RunHandle):
    """A job on a cluster: it runs until told to end; ``stop`` ends it (as Ray's stop_job)."""

    def __init__(self, run_id: int, attempt: int) -> None:
        super().__init__(run_id, None)
        self.attempt = attempt
        self.code: int | None = None
        self.stops = 0
        self.seen_state_at_stop: str | None = None

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.stops += 1
        self.code = -15

    def drives(self, run: RunRecord) -> bool:
        return run.state == "running" and run.attempt == self.attempt


class FakeCluster(Launcher):
    """Jobs by (run, attempt), launched by this or an earlier scheduler."""

    remote = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self.jobs: dict[tuple[int, int], FakeJob] = {}
        self.asked: list[tuple[int, int]] = []
        self.down = 0  # launches the cluster does not answer

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        if self.down:
            self.down -= 1
            raise LaunchDeferred("the Ray Jobs API at http://head:8265: connection refused")
        job = self.jobs[(run.id, run.attempt + 1)] = FakeJob(run.id, run.attempt + 1)
        return job

    def adopt(
        self,
        run_id: int,
        pid: int | None,
        *,
        created_before: datetime | None = None,
        evaluation: str = "",
        attempt: int = 0,
    ) -> RunHandle | None:
        self.asked.append((run_id, attempt))
        return self.jobs.get((run_id, attempt))


def scheduler(
    db: Database, settings: Settings, clock: ManualClock
) -> tuple[Scheduler, FakeCluster]:
    cluster = FakeCluster(db)
    options = SchedulerOptions(stale_after=30.0)
    service = Scheduler(settings, options=options, launcher=cluster, clock=clock, db=db)
    service.start()
    return service, cluster


def running_elsewhere(db: Database, clock: ManualClock, cluster: FakeCluster) -> RunRecord:
    """A run an earlier scheduler launched as a job, running at attempt 1 on another host."""
    run = trigger(db, "every2", clock=clock)
    start_run(db, run.id, owner="job", pid=77, host="a-node")
    update_run(db, run.id, started_at=clock.now(), heartbeat_at=clock.now())  # its clock
    cluster.jobs[(run.id, 1)] = FakeJob(run.id, 1)
    return get_run(db, run.id)


def test_a_job_that_ended_without_ending_its_run_makes_it_lost_and_resumed(
    db: Database, settings: Settings, clock: ManualClock, define: Define
) -> None:
    define(schedule=None)
    service, cluster = scheduler(db, settings, clock)
    try:
        run = running_elsewhere(db, clock, cluster)
        passes(service, clock, 1)
        assert (run.id, 1) in cluster.asked and run.id in service.supervisor.children
        assert get_run(db, run.id).state == "running"  # its job lives: adopted, not resumed
        cluster.jobs[(run.id, 1)].code = 1  # the job failed; the run still says running
        passes(service, clock, 1)
        resumed = get_run(db, run.id)
        assert resumed.state == "queued" and resumed.owner is not None  # launched again
        assert resumed.error == (
            "attempt 1 lost: its process None exited with code 1 without ending the run; resuming"
        )
        assert (run.id, 2) in cluster.jobs  # the next attempt is a job of its own
    finally:
        service.stop()


def test_a_canceled_run_has_its_job_stopped(
    db: Database, settings: Settings, clock: ManualClock, define: Define
) -> None:
    define(schedule=None)
    service, cluster = scheduler(db, settings, clock)
    try:
        run = running_elsewhere(db, clock, cluster)
        passes(service, clock, 1)
        cancel_run(db, run.id)
        passes(service, clock, 1)
        assert cluster.jobs[(run.id, 1)].stops == 1
        assert get_run(db, run.id).state == "canceled"
    finally:
        service.stop()


def test_a_timed_out_run_is_failed_before_its_job_is_stopped(
    db: Database, settings: Settings, clock: ManualClock, define: Define
) -> None:
    define(schedule=None, timeout_s=5.0)
    service, cluster = scheduler(db, settings, clock)
    try:
        run = running_elsewhere(db, clock, cluster)
        job = cluster.jobs[(run.id, 1)]
        original = job.kill

        def kill() -> None:  # what the job's driver would see when SIGTERM comes
            job.seen_state_at_stop = get_run(db, run.id).state
            original()

        job.kill = kill  # type: ignore[method-assign]
        for _ in range(80):
            clock.advance(0.5)
            if job.code is None and get_run(db, run.id).state == "running":
                update_run(db, run.id, heartbeat_at=clock.now())  # its driver is alive
            service.run_pass()
            if get_run(db, run.id).finished:
                break
        final = get_run(db, run.id)
        assert final.state == "failed"
        assert final.error == "timed out: attempt 1 ran longer than its timeout of 5s"
        assert job.seen_state_at_stop == "failed" and job.stops == 1
    finally:
        service.stop()


def test_a_launch_the_cluster_does_not_answer_waits_and_is_tried_again(
    db: Database, settings: Settings, clock: ManualClock, define: Define
) -> None:
    define(schedule=None)
    service, cluster = scheduler(db, settings, clock)
    try:
        cluster.down = 1
        run = trigger(db, "every2", clock=clock)
        passes(service, clock, 1)
        waiting = get_run(db, run.id)
        assert (waiting.state, waiting.owner, cluster.jobs) == ("queued", None, {})
        passes(service, clock, 12)
        assert (run.id, 1) in cluster.jobs and get_run(db, run.id).state == "queued"
    finally:
        service.stop()
