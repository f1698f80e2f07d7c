"""Whether a process recorded in the DB (a run's, an import's, a scheduler's) still lives on
this host: known by its pid *and* its creation time, so a pid the system has since given to
a newer process is never taken for it. Light (psutil only): the engine, the importers and the
scheduler ask it."""

from __future__ import annotations

from datetime import datetime

import psutil

__all__ = ["CLOCK_SLACK", "MISSING", "pid_alive"]

#: seconds of slack when a creation time is compared with a time written in the DB (psutil
#: derives creation times from the boot time, which Linux gives in whole seconds)
CLOCK_SLACK = 2.0

#: what psutil raises for a pid no process holds any more
MISSING = (psutil.NoSuchProcess, psutil.ZombieProcess)


def pid_alive(pid: int, *, created_before: datetime | None = None) -> bool:
    """True if a live process holds ``pid`` (and, if given, was created by that time)."""
    if pid <= 0:
        return False  # 0 and below name groups to signal, never one process
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if created_before is None:
            return True
        return proc.create_time() <= created_before.timestamp() + CLOCK_SLACK
    except MISSING:
        return False
    except psutil.AccessDenied:
        return True  # another user's process: it exists, and we cannot tell more
