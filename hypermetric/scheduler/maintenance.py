"""Background maintenance: a scheduler compacts the history by itself.

Every ``compact_every`` seconds (on by default) a serving scheduler runs a maintenance pass
on a thread of its own, beside its ticks, so run creation and launching never wait for it.
The pass packs the small shards of finished runs into large files (see
:mod:`hypermetric.query.compaction`), a batch of ``compact_batch_files`` files a new dataset
version, and begins no new batch past ``compact_budget`` seconds or once the scheduler is
stopping: what is left waits for the next pass. Running evaluations are never touched
(only finished runs' shards are packed) and their commits wait at most for one batch's
registration transaction.

Several schedulers on one PostgreSQL database take turns through a lease in the DB
(``maintenance_leases``): the one that holds it compacts, the others skip the pass; a lease
left by a scheduler that died expires. Two compactions that raced anyway could not both
commit: the second finds its shards gone and deletes its files (ConflictError).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from hypermetric.catalog.db import Database
from hypermetric.catalog.packing import acquire_lease, release_lease
from hypermetric.config import Settings
from hypermetric.errors import ConflictError
from hypermetric.query.compaction import compact
from hypermetric.scheduler.clock import Clock
from hypermetric.scheduler.options import SchedulerOptions

__all__ = ["LEASE", "Maintainer", "MaintenanceReport"]

log = logging.getLogger("hypermetric.scheduler")

#: the lease a scheduler holds while it compacts
LEASE = "compaction"


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance pass did (``ran`` False: another scheduler holds the lease)."""

    ran: bool
    version_ids: tuple[int, ...] = ()
    shards_merged: int = 0
    files_written: int = 0
    #: False when the budget, a stop or a conflict left work for the next pass
    complete: bool = True


class Maintainer:
    """Runs maintenance passes for one scheduler (``owner``)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        options: SchedulerOptions,
        *,
        owner: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.options = options
        self.owner = owner
        # long enough for a batch past the budget; renewed before each batch
        self._ttl = timedelta(seconds=max(60.0, 3 * options.compact_budget))

    def _hold(self) -> bool:
        return acquire_lease(self.db, LEASE, self.owner, self.clock.now(), self._ttl)

    def run(self, stop: Callable[[], bool] | None = None) -> MaintenanceReport:
        """One pass: take the lease (or skip), compact within the budget, give it back."""
        if not self._hold():
            log.debug("maintenance skipped: another scheduler holds the lease")
            return MaintenanceReport(ran=False)
        lost = False

        def should_stop() -> bool:
            nonlocal lost
            if stop is not None and stop():
                return True
            lost = not self._hold()  # renewed before each batch; lost: someone took over
            return lost

        try:
            reports = compact(
                self.settings,
                target_rows=self.options.compact_target_rows,
                batch_files=self.options.compact_batch_files,
                deadline=time.monotonic() + self.options.compact_budget,
                stop=should_stop,
            )
        except ConflictError as exc:
            log.info("maintenance: %s; the next pass tries again", exc)
            return MaintenanceReport(ran=True, complete=False)
        finally:
            if not lost:
                release_lease(self.db, LEASE, self.owner)
        report = MaintenanceReport(
            ran=True,
            version_ids=tuple(v for r in reports for v in r.version_ids),
            shards_merged=sum(r.shards_merged for r in reports),
            files_written=sum(r.files_written for r in reports),
            complete=all(r.complete for r in reports),
        )
        if report.shards_merged:
            log.info(
                "maintenance: packed %d shards into %d files (versions %s)%s",
                report.shards_merged,
                report.files_written,
                ", ".join(map(str, report.version_ids)),
                "" if report.complete else "; more at the next pass",
            )
        return report
