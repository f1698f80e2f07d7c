"""The scheduler: schedules stored in the metadata DB, one run per interval, launched as
processes that drive them on Ray, watched, timed out, retried and recovered after crashes.

::

    triggers.py     cron schedules in a timezone, their intervals, and the DST rule
    definitions.py  register, pause, unpause and trigger definitions; plan due intervals
    backfill.py     runs for the intervals of a past range, idempotently
    service.py      Scheduler: a pass, or serving; scheduler instances and adoption
    ticker.py       APScheduler ticks the passes (in-memory jobs rebuilt from the DB)
    supervisor.py   claim and launch runs; time out, resume and retry them
    launcher.py     how a run's process starts (``runs resume`` in a subprocess)
    rayjobs.py      or as a Ray job on a cluster, one per attempt (``--launcher ray-jobs``)
    shipping.py     what a job takes along (code, settings, token) and what is refused
    processes.py    processes on this host through psutil (pid and creation time): alive,
                    driving a run, killed with what they started, left behind by Ray
    rayhead.py      the local Ray head a scheduler owns when there is no RAY_ADDRESS
    options.py      a scheduler's limits and thresholds; the retry backoff
    maintenance.py  background compaction, one scheduler at a time (a lease in the DB)
    clock.py        the injected clock

``backfill.backfill`` queues a backfill (the module keeps its name, so the function is
not re-exported here). The locked transactions are the catalog's:
:mod:`hypermetric.catalog.scheduling`, :mod:`hypermetric.catalog.supervision`,
:mod:`hypermetric.catalog.instances` and :mod:`hypermetric.catalog.backfills`.
"""

from __future__ import annotations

from hypermetric.scheduler.backfill import BackfillPlan, BackfillResult, plan_backfill
from hypermetric.scheduler.clock import Clock, ManualClock, SystemClock
from hypermetric.scheduler.definitions import (
    Registration,
    pause,
    plan_due,
    register,
    trigger,
    unpause,
)
from hypermetric.scheduler.launcher import Launcher, RunHandle, SubprocessLauncher
from hypermetric.scheduler.options import SchedulerOptions, retry_delay
from hypermetric.scheduler.service import Scheduler
from hypermetric.scheduler.supervisor import PassReport
from hypermetric.scheduler.triggers import CronSchedule, Interval, Timetable

__all__ = [
    "BackfillPlan",
    "BackfillResult",
    "Clock",
    "CronSchedule",
    "Interval",
    "Launcher",
    "ManualClock",
    "PassReport",
    "Registration",
    "RunHandle",
    "Scheduler",
    "SchedulerOptions",
    "SubprocessLauncher",
    "SystemClock",
    "Timetable",
    "pause",
    "plan_backfill",
    "plan_due",
    "register",
    "retry_delay",
    "trigger",
    "unpause",
]
