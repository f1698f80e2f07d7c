"""Supervision: launch claimed runs, watch them, and deal with what went wrong.

Each pass, without ever waiting on a run:

* children that exited are reaped: a failed run is retried (with backoff) while its
  definition allows; a run left ``running`` by a dead process is resumed at once; a
  process that exited before starting its run is relaunched, then the run fails;
* every claimed or running run (of any scheduler) is checked: one past its timeout has
  its process killed and is failed; one without a heartbeat for ``stale_after`` seconds
  (its process died or hangs, or its scheduler did) has its process killed if it hangs
  here and is resumed from its committed units, or failed once it lost too many attempts;
* a kill is checked before the run is touched: while a process of this host that drives
  the run outlives its kill, the run is left as it is and the kill tried again at the next
  pass, so a run is never queued again while its process lives (two drivers);
* runs that left the running set since the last pass are retried if they failed (so runs
  launched by a scheduler that died are looked after too), and what drives a canceled one
  is killed;
* with a remote launcher (Ray jobs), a running run this scheduler does not watch yet is
  reconciled with the cluster: the job of its attempt is adopted, and one that ended
  without ending the run makes the run lost at the next pass;
* ready queued runs are claimed within the limits and launched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypermetric.catalog.db import Database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.runs import get_run
from hypermetric.catalog.scheduling import claim_runs, record_launch, release_claim, touch_claims
from hypermetric.catalog.supervision import (
    ActiveRun,
    active_runs,
    fail_timed_out,
    recover_lost,
    requeue_for_retry,
    run_states,
)
from hypermetric.masking import masked
from hypermetric.scheduler.clock import Clock
from hypermetric.scheduler.launcher import LaunchDeferred, Launcher, RunHandle
from hypermetric.scheduler.options import SchedulerOptions, retry_delay
from hypermetric.scheduler.processes import pid_alive

__all__ = ["PassReport", "Supervisor", "Tally"]

log = logging.getLogger("hypermetric.scheduler")
#: seconds before a launch the launcher deferred is tried again
_DEFERRED = 10.0


@dataclass(frozen=True)
class PassReport:
    """What one pass did, by run id."""

    created: tuple[int, ...] = ()
    launched: tuple[int, ...] = ()
    resumed: tuple[int, ...] = ()
    retried: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()


@dataclass
class Tally:
    """A pass's report while it is being made."""

    created: list[int] = field(default_factory=list)
    launched: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def report(self) -> PassReport:
        """The frozen report."""
        return PassReport(
            tuple(self.created),
            tuple(self.launched),
            tuple(self.resumed),
            tuple(self.retried),
            tuple(self.failed),
        )


@dataclass
class _Child:
    handle: RunHandle
    killed: bool = False


class Supervisor:
    """Launches and watches runs for one scheduler instance."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        launcher: Launcher,
        options: SchedulerOptions,
        *,
        owner: str,
        host: str,
        stale_after: float,
    ) -> None:
        self.db, self.clock, self.launcher, self.options = db, clock, launcher, options
        self.owner, self.host, self.stale_after = owner, host, stale_after
        self.children: dict[int, _Child] = {}
        self._watched: set[int] = set()
        self._early_exits: dict[int, int] = {}
        #: runs whose process outlived a kill, so far
        self._unkilled: set[int] = set()

    # -- one pass ----------------------------------------------------------------------

    def supervise(self, report: Tally) -> None:
        """Reap children, check every active run, retry runs that failed meanwhile."""
        self._reap(report)
        active = active_runs(self.db)
        for run in active:
            self._check(run, report)
        current = {r.run_id for r in active}
        gone = sorted(self._watched - current - set(report.resumed) - set(report.failed))
        ending: set[int] = set()
        for run_id, state in run_states(self.db, gone).items():
            if state == "canceled" and self.launcher.remote:
                self._stop_canceled(run_id)
            if state != "failed":
                continue
            if self._runs_here(run_id):
                ending.add(run_id)  # its process is still ending: retried once it is gone
            else:
                self._retry(run_id, report)
        self._watched = current | ending
        starting = [rid for rid, c in self.children.items() if not c.killed]
        touch_claims(self.db, starting, self.owner, self.clock.now())

    def launch_ready(self, report: Tally, ray_address: Callable[[], str | None]) -> None:
        """Claim ready runs up to the free slots and launch each."""
        # a killed process that outlived its kill still holds its slot
        free = self.options.parallelism - len(self.children)
        claimed = claim_runs(
            self.db, self.clock.now(), owner=self.owner, host=self.host, limit=free
        )
        for run in claimed:
            try:
                handle = self.launcher.launch(
                    run, ray_address() if self.launcher.needs_ray else None
                )
            except LaunchDeferred as exc:
                retry_at = self.clock.now() + timedelta(seconds=_DEFERRED)
                release_claim(self.db, run.id, self.owner, self.clock.now(), retry_at=retry_at)
                log.warning("run %d not launched, again in %gs: %s", run.id, _DEFERRED, exc)
                continue
            except Exception as exc:  # a launcher failure fails the run, never the scheduler
                reason = masked(f"could not launch its process: {type(exc).__name__}: {exc}")
                log.error("run %d %s", run.id, reason)
                release_claim(self.db, run.id, self.owner, self.clock.now(), fail_reason=reason)
                report.failed.append(run.id)
                continue
            self.children[run.id] = _Child(handle)
            record_launch(self.db, run.id, self.owner, handle.pid)
            report.launched.append(run.id)
            log.info("run %d (%s) launched: %s", run.id, run.evaluation, handle.name)

    def kill_children(self) -> list[int]:
        """Kill every launched process (the scheduler's Ray is going away).

        Returns the runs whose processes are gone; one that outlived its kill keeps its
        run, for the next scheduler to find.
        """
        gone = []
        for run_id, child in sorted(self.children.items()):
            child.handle.kill()
            child.killed = True
            if child.handle.stopped():
                gone.append(run_id)
            else:
                log.error("run %d: its %s outlived its kill", run_id, child.handle.name)
        return gone

    # -- children ----------------------------------------------------------------------

    def _reap(self, report: Tally) -> None:
        for run_id, child in list(self.children.items()):
            code = child.handle.poll()
            if code is None:
                continue
            del self.children[run_id]
            if child.killed:
                continue
            run = get_run(self.db, run_id)
            if run.state == "queued" and run.owner == self.owner:
                self._exited_early(run_id, code, child.handle, report)
            elif run.state == "running" and child.handle.drives(run):
                reason = f"its {child.handle.name} exited with code {code} without ending the run"
                self._lost(run_id, reason, self._max_attempts_of(run_id), report, pid=run.pid)
            elif run.state == "failed":
                self._retry(run_id, report)

    def _exited_early(self, run_id: int, code: int, handle: RunHandle, report: Tally) -> None:
        count = self._early_exits[run_id] = self._early_exits.get(run_id, 0) + 1
        words = masked(handle.last_words())  # it goes to the run row
        now = self.clock.now()
        if count >= self.options.launch_attempts:
            reason = f"its process exited with code {code} before starting the run {count} times"
            reason += f": {words}" if words else ""
            if release_claim(self.db, run_id, self.owner, now, fail_reason=reason):
                report.failed.append(run_id)
                log.error("run %d failed: %s", run_id, reason)
            self._early_exits.pop(run_id, None)
            return
        retry_at = now + timedelta(seconds=min(60.0, 5.0 * count))
        release_claim(self.db, run_id, self.owner, now, retry_at=retry_at)
        log.warning(
            "run %d: its process exited with code %d before starting (%s)", run_id, code, words
        )

    # -- active runs -------------------------------------------------------------------

    def _check(self, run: ActiveRun, report: Tally) -> None:
        now = self.clock.now()
        child = self.children.get(run.run_id)
        if run.claimed:
            starting = child is not None or (run.host == self.host and self._booting(run))
            if not starting and run.last_seen < now - timedelta(seconds=self.stale_after):
                self._lost(run.run_id, "its launch was lost", 0, report)
            return
        if child is None and self.launcher.remote:
            self._reconcile(run)
        grace = timedelta(seconds=self.stale_after)
        if (
            run.timeout_s
            and run.started_at
            and run.started_at + timedelta(seconds=run.timeout_s) + grace < now
        ):
            self._time_out(run, report)
        elif run.last_seen < now - grace:
            if not self._stopped(run):
                return  # its process lives on: resuming now would make two drivers
            reason = f"no heartbeat for {(now - run.last_seen).total_seconds():.0f}s"
            max_attempts = run.retries + 1 + self.options.crash_resumes
            self._lost(run.run_id, reason, max_attempts, report)

    def _booting(self, run: ActiveRun) -> bool:
        handle = self._adopt(run.run_id, run.host, run.pid, None, run.evaluation, run.attempt + 1)
        return handle is not None and handle.poll() is None

    def _reconcile(self, run: ActiveRun) -> None:
        """Watch the job that drives ``run`` (launched by another scheduler) from now on."""
        handle = self._adopt(
            run.run_id, run.host, run.pid, run.started_at, run.evaluation, run.attempt
        )
        if handle is not None:
            self.children[run.run_id] = _Child(handle)
            log.info("run %d: watching its job, launched by another scheduler", run.run_id)

    def _stop_canceled(self, run_id: int) -> None:
        child = self.children.get(run_id)
        run = get_run(self.db, run_id)
        handle = (
            child.handle
            if child
            else self._adopt(run_id, run.host, run.pid, run.started_at, run.evaluation, run.attempt)
        )
        if handle is not None and handle.poll() is None:
            log.info("run %d was canceled; stopping what drives it", run_id)
            handle.kill()

    def _time_out(self, run: ActiveRun, report: Tally) -> None:
        remote = self.launcher.remote
        if not remote and not self._stopped(run):
            return
        now = self.clock.now()
        reason = (
            f"timed out: attempt {run.attempt} ran longer than its timeout of {run.timeout_s:g}s"
        )
        cutoff = now - timedelta(seconds=run.timeout_s or 0)
        if fail_timed_out(self.db, run.run_id, now, started_before=cutoff, reason=reason):
            log.warning("run %d (%s) %s", run.run_id, run.evaluation, reason)
            if remote:
                # a job is stopped with SIGTERM, and its driver would write an end of its own:
                # the attempt is failed (fenced) first, then its job stopped; the run is
                # retried once the job has ended (it is "gone" and failed from now on)
                report.failed.append(run.run_id)
                self._stopped(run)
            elif not self._retry(run.run_id, report):
                report.failed.append(run.run_id)

    def _stopped(self, run: ActiveRun) -> bool:
        """Kill the run's process if it is on this host; True once it is gone.

        A run of another host has no process here: its silence is all there is to go on.
        A live process of this host that drives the run but is not one a launcher started
        (``hypermetric run`` in a terminal, a notebook) is not killed, only waited for.
        """
        child = self.children.get(run.run_id)
        if child is not None:
            handle: RunHandle | None = child.handle
        else:
            handle = self._adopt(
                run.run_id, run.host, run.pid, run.started_at, run.evaluation, run.attempt
            )
        if handle is None:
            return not self._lives_here(run)
        handle.kill()
        if child is not None:
            child.killed = True
        if not handle.stopped():
            self._note_unkilled(run.run_id, f"its {handle.name} outlived its kill")
            return False
        if child is not None:
            child.handle.poll()  # reaped now: a killed child is never looked at again
            del self.children[run.run_id]
        if run.run_id in self._unkilled:
            self._unkilled.discard(run.run_id)
            log.warning("run %d: its process is gone at last", run.run_id)
        return True

    def _lives_here(self, run: ActiveRun) -> bool:
        """True if the process that started this attempt still runs on this host."""
        if run.host != self.host or run.pid is None or run.started_at is None:
            return False
        if not pid_alive(run.pid, created_before=run.started_at):
            return False
        self._note_unkilled(run.run_id, f"its process {run.pid} was not launched by a scheduler")
        return True

    def _note_unkilled(self, run_id: int, why: str) -> None:
        if run_id not in self._unkilled:
            self._unkilled.add(run_id)
            log.error("run %d: %s and still runs; the run waits for it to end", run_id, why)

    def _adopt(
        self,
        run_id: int,
        host: str | None,
        pid: int | None,
        started_at: datetime | None,
        evaluation: str,
        attempt: int,
    ) -> RunHandle | None:
        """What drives ``run_id`` that this scheduler did not start: a live process of this
        host, or (remote launcher) the job of that attempt, wherever it runs."""
        if host != self.host and not self.launcher.remote:
            return None
        return self.launcher.adopt(
            run_id, pid, created_before=started_at, evaluation=evaluation, attempt=attempt
        )

    def _runs_here(self, run_id: int) -> bool:
        """True while something this scheduler can see drives ``run_id`` (it may be ending)."""
        if run_id in self.children:
            return True
        run = get_run(self.db, run_id)
        handle = self._adopt(run_id, run.host, run.pid, run.started_at, run.evaluation, run.attempt)
        return handle is not None and not handle.stopped()

    def _max_attempts_of(self, run_id: int) -> int:
        retries = get_evaluation(self.db, get_run(self.db, run_id).evaluation_id).retries
        return retries + 1 + self.options.crash_resumes

    def _lost(
        self, run_id: int, reason: str, max_attempts: int, report: Tally, *, pid: int | None = None
    ) -> None:
        """Recover a lost run: stale, or (``pid`` given) its process ``pid`` is known dead."""
        now = self.clock.now()
        seen_before = now - timedelta(seconds=self.stale_after)
        state = recover_lost(
            self.db,
            run_id,
            now,
            seen_before=now + timedelta(days=1) if pid is not None else seen_before,
            max_attempts=max_attempts,
            reason=reason,
            pid=pid,
        )
        if state == "queued":
            report.resumed.append(run_id)
            log.warning("run %d: %s; queued again", run_id, reason)
        elif state == "failed":
            report.failed.append(run_id)
            log.error("run %d failed: %s and no attempts left", run_id, reason)

    def _retry(self, run_id: int, report: Tally) -> bool:
        run = requeue_for_retry(self.db, run_id, self.clock.now(), retry_delay)
        if run is None:
            return False
        report.retried.append(run_id)
        log.info("run %d (%s) %s", run_id, run.evaluation, run.error)
        return True
