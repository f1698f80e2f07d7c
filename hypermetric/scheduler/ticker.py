"""APScheduler drives the service's passes: a tick, and a job at every upcoming due time.

The job store is in memory and rebuilt from the DB after every pass; it is never shared
with another process (APScheduler's own advice), and catchup never depends on it: a
missed fire time is found again in the DB by the next pass.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hypermetric.errors import SchedulerError

if TYPE_CHECKING:
    from hypermetric.scheduler.service import Scheduler

__all__ = ["Ticker"]

log = logging.getLogger("hypermetric.scheduler")
_DUE_PREFIX = "due:"
#: due-time jobs kept in memory at once (later ones are added by later passes)
_MAX_DUE_JOBS = 100


class Ticker:
    """Runs the passes of a :class:`Scheduler` on APScheduler until ``stop`` is set."""

    def __init__(self, service: Scheduler, stop: threading.Event) -> None:
        self.service = service
        self.stop = stop
        self.error: SchedulerError | None = None
        self.horizon = max(10.0, 5 * service.options.tick_seconds)
        #: held by a pass from start to end
        self._passing = threading.Lock()
        #: held by a maintenance pass from start to end
        self._maintaining = threading.Lock()
        self.aps = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            # one worker: passes never overlap, so they need no locking among themselves
            # maintenance (compaction) on a thread of its own: a pass never waits for it
            executors={"default": ThreadPoolExecutor(1), "maintenance": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    def run(self) -> None:
        """Tick until stopped; the pass in progress ends before this returns."""
        # a pass longer than the tick skips ticks on purpose: no warning for each
        logging.getLogger("apscheduler.executors").setLevel(logging.ERROR)
        self.aps.add_job(
            self._pass,
            IntervalTrigger(seconds=self.service.options.tick_seconds, timezone=UTC),
            id="tick",
            next_run_time=datetime.now(UTC),
        )
        every = self.service.options.compact_every
        if every:
            self.aps.add_job(
                self._maintain,
                IntervalTrigger(seconds=every, timezone=UTC),
                id="maintenance",
                executor="maintenance",
                # soon after start, not in the middle of the first passes
                next_run_time=datetime.now(UTC) + timedelta(seconds=min(every, 30.0)),
            )
        self.aps.start()
        try:
            # sleep, not stop.wait(): a signal handler calling stop.set() while this thread
            # holds the event's lock inside wait() would deadlock
            while not self.stop.is_set():
                time.sleep(0.2)
        finally:
            # the pass in progress ends first, then the scheduler stops without waiting:
            # shutdown(wait=True) holds APScheduler's job store lock while it waits for the
            # running job, and a pass takes that lock to re-plan the due-time jobs
            with self._passing:
                self.aps.shutdown(wait=False)
            with self._maintaining:  # its batch ends; it begins no other once stopped
                pass

    def _pass(self) -> None:
        with self._passing:
            if not self.stop.is_set():
                self._run_pass()

    def _maintain(self) -> None:
        with self._maintaining:
            if self.stop.is_set():
                return
            try:
                self.service.run_maintenance(stop=self.stop.is_set)
            except Exception:
                log.exception("maintenance pass failed; trying again at the next one")

    def _run_pass(self) -> None:
        try:
            self.service.run_pass()
        except SchedulerError as exc:
            log.error("%s", exc)
            self.error = exc
            self.stop.set()
            return
        except Exception:
            # the DB may be restarting: say so, and try again at the next tick
            log.exception("scheduler pass failed; trying again at the next tick")
            return
        try:
            self._sync()
        except Exception:
            log.exception("could not read the next due times; the tick goes on")

    def _sync(self) -> None:
        now = datetime.now(UTC)
        wanted = {
            f"{_DUE_PREFIX}{due.isoformat()}": due
            for due in self.service.next_due(self.horizon)[:_MAX_DUE_JOBS]
            if due > now
        }
        for job in self.aps.get_jobs():
            if job.id.startswith(_DUE_PREFIX) and job.id not in wanted:
                job.remove()
        for job_id, due in wanted.items():
            if self.aps.get_job(job_id) is None:
                self.aps.add_job(self._pass, DateTrigger(run_date=due, timezone=UTC), id=job_id)
