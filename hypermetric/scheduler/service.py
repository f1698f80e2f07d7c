"""The scheduler service: ``hypermetric scheduler``.

The metadata DB is the only source of truth. APScheduler ticks in this process only: an
in-memory job store holds a ``tick`` job (a pass every ``tick_seconds``) and one job per
upcoming due time, rebuilt from the DB after every pass, so a run is created the moment
its interval is due. A pass:

1. heartbeats this scheduler, declares dead the schedulers whose heartbeat went stale
   and adopts what they left (runs that failed while nobody watched are retried);
2. creates the runs of due intervals (each with the advance of its definition, in one
   locked transaction);
3. supervises launched and running runs (see :mod:`hypermetric.scheduler.supervisor`);
4. claims ready runs and launches them.

Beside the passes, on a thread of its own, a serving scheduler compacts the history every
``compact_every`` seconds (see :mod:`hypermetric.scheduler.maintenance`); a pass never
waits for it.

On SQLite one scheduler may run; a second refuses to start. On PostgreSQL several may,
and row locks with ``SKIP LOCKED`` keep each run created once and launched once.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType

from hypermetric.catalog.db import Database, database
from hypermetric.catalog.instances import (
    InstanceRecord,
    adopt_instances,
    heartbeat_instance,
    prune_instances,
    reap_instances,
    register_instance,
    stop_instance,
)
from hypermetric.catalog.scheduling import create_due_runs, next_due_times
from hypermetric.catalog.supervision import failed_since, recover_lost, requeue_for_retry
from hypermetric.config import Settings, get_settings
from hypermetric.errors import SchedulerError
from hypermetric.masking import masked
from hypermetric.scheduler.clock import Clock, SystemClock
from hypermetric.scheduler.definitions import plan_due
from hypermetric.scheduler.launcher import Launcher, launcher_for
from hypermetric.scheduler.maintenance import Maintainer, MaintenanceReport
from hypermetric.scheduler.options import SchedulerOptions, retry_delay
from hypermetric.scheduler.processes import pid_alive
from hypermetric.scheduler.rayhead import LocalRayHead
from hypermetric.scheduler.supervisor import PassReport, Supervisor, Tally

__all__ = ["Scheduler"]

log = logging.getLogger("hypermetric.scheduler")
_PRUNE_AFTER = timedelta(days=7)


class Scheduler:
    """One scheduler process: :meth:`run_pass` once, or :meth:`serve` until stopped."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        options: SchedulerOptions | None = None,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
        db: Database | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.options = options or SchedulerOptions()
        # first: what a launcher refuses (state a cluster cannot reach...) needs no DB
        self.launcher = launcher or launcher_for(self.settings)
        self.db = db or database(self.settings)
        self.clock = clock or SystemClock()
        self.instance_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.stale_after = self.options.stale_seconds(self.settings.heartbeat_seconds)
        self.supervisor = Supervisor(
            self.db,
            self.clock,
            self.launcher,
            self.options,
            owner=f"scheduler/{self.instance_id}",
            host=self.host,
            stale_after=self.stale_after,
        )
        self.maintainer = Maintainer(
            self.settings,
            self.db,
            self.clock,
            self.options,
            owner=f"scheduler/{self.instance_id}",
        )
        self._ray_address = self.settings.ray_address
        self._head: LocalRayHead | None = None
        self._started = False
        self._lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Register this scheduler (SchedulerError if SQLite has a live one already)."""
        now = self.clock.now()
        dead = register_instance(
            self.db,
            instance_id=self.instance_id,
            host=self.host,
            pid=os.getpid(),
            now=now,
            seen_before=now - timedelta(seconds=self.stale_after),
            is_gone=self._is_gone,
        )
        for other in dead:
            log.warning("scheduler pid %d on %s is gone; adopting its runs", other.pid, other.host)
        prune_instances(self.db, now - _PRUNE_AFTER)
        self._started = True
        where = masked(self.db.url)
        log.info("scheduler %s started (pid %d, %s)", self.instance_id, os.getpid(), where)

    def _is_gone(self, other: InstanceRecord) -> bool:
        # created after it registered: the pid was reused, the scheduler is gone
        alive = pid_alive(other.pid, created_before=other.started_at)
        return other.host == self.host and not alive

    def stop(self) -> None:
        """Mark this scheduler stopped; with its own Ray, stop it and queue its runs again.

        Runs on an external cluster (RAY_ADDRESS) go on and are adopted by the next
        scheduler; runs on the local Ray this scheduler started cannot outlive it, so
        they are killed and queued to resume at once.
        """
        with self._lock:
            if self._head is not None:
                self._requeue_children()
                self._head.stop()
                self._head = None
            self.launcher.close()
            if self._started:
                stop_instance(self.db, self.instance_id, self.clock.now())
                self._started = False

    def _requeue_children(self) -> None:
        now = self.clock.now()
        for run_id in self.supervisor.kill_children():
            recover_lost(
                self.db,
                run_id,
                now,
                seen_before=now + timedelta(days=1),
                max_attempts=1 << 30,
                reason="its scheduler stopped",
            )

    def ray_address(self) -> str | None:
        """The Ray address runs get: RAY_ADDRESS, else a local head started on first use.

        With ``once`` no head is started (it would die with this process): each run then
        starts a local Ray of its own.
        """
        if self._ray_address is None and not self.options.once:
            self._head = LocalRayHead()
            self._ray_address = self._head.start()
        return self._ray_address

    # -- passes ------------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        """One pass: heartbeat, adopt, create due runs, supervise, launch."""
        if not self._started:
            raise SchedulerError("call start() before run_pass(); serve() does both")
        with self._lock:
            tally = Tally()
            now = self.clock.now()
            heartbeat_instance(self.db, self.instance_id, now)
            self._adopt(now, tally)
            planner = functools.partial(plan_due, max_runs=self.options.catchup_batch)
            created = create_due_runs(
                self.db,
                now,
                planner,
                limit=self.options.due_batch,
                unit_size=self.settings.unit_size,
            )
            for run in created:
                log.info("run %d (%s) created for %s", run.id, run.evaluation, run.logical_date)
            tally.created.extend(r.id for r in created)
            self.supervisor.supervise(tally)
            self.supervisor.launch_ready(tally, self.ray_address)
            return tally.report()

    def run_maintenance(self, stop: Callable[[], bool] | None = None) -> MaintenanceReport:
        """One background maintenance pass (compaction), whatever ``compact_every`` says:
        skipped when another scheduler holds the lease. Never holds up :meth:`run_pass`."""
        return self.maintainer.run(stop)

    def _adopt(self, now: datetime, tally: Tally) -> None:
        for other in reap_instances(self.db, now - timedelta(seconds=self.stale_after)):
            log.warning("scheduler pid %d on %s stopped heartbeating", other.pid, other.host)
        orphans = [o for o in adopt_instances(self.db) if o.id != self.instance_id]
        if not orphans:
            return
        since = min(o.heartbeat_at for o in orphans) - timedelta(seconds=self.stale_after)
        for run_id in failed_since(self.db, since):
            if requeue_for_retry(self.db, run_id, now, retry_delay) is not None:
                tally.retried.append(run_id)

    def next_due(self, horizon: float) -> list[datetime]:
        """Distinct due times of definitions within ``horizon`` seconds, soonest first."""
        until = self.clock.now() + timedelta(seconds=horizon)
        return sorted({due for _, due in next_due_times(self.db, until, limit=1000)})

    # -- serving -----------------------------------------------------------------------

    def serve(
        self, stop_event: threading.Event | None = None, *, handle_signals: bool = False
    ) -> None:
        """Run until ``stop_event`` is set (or SIGTERM/SIGINT with ``handle_signals``).

        Call it from the main thread; the signal handlers are installed again once a
        local Ray head is up (Ray's core chains handlers of its own).
        """
        from hypermetric.scheduler.ticker import Ticker

        stop_event = stop_event or threading.Event()
        if handle_signals:
            _stop_on_signals(stop_event)
        self.start()
        try:
            if self.launcher.needs_ray and not stop_event.is_set():
                # a head takes seconds to start: not in the middle of a pass
                self.ray_address()
            if handle_signals:
                _stop_on_signals(stop_event)  # again: Ray's core chains its own in front
            ticker = Ticker(self, stop_event)
            ticker.run()
        finally:
            self.stop()
        if ticker.error is not None:
            raise ticker.error

    def serve_once(self) -> tuple[PassReport, MaintenanceReport | None]:
        """Start, do one pass, stop: ``hypermetric scheduler --once``.

        With ``compact_every`` set, a maintenance pass follows (None: off), so a scheduler
        run from cron compacts the history as a long-lived one does; a pass with nothing
        to pack costs a query, and one that finds another scheduler compacting skips.
        """
        self.start()
        try:
            report = self.run_pass()
            return report, self.run_maintenance() if self.options.compact_every else None
        finally:
            self.stop()


def _stop_on_signals(stop_event: threading.Event) -> None:
    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping (%s)", signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
