"""Launchers of real run processes without Ray, for ``hypermetric scheduler --launcher``.

Their processes are :mod:`tests.scheduler.run_process` stand-ins for ``runs resume``.
"""

from __future__ import annotations

import os
import sys

from hypermetric.config import Settings
from hypermetric.scheduler.launcher import Launcher, SubprocessLauncher
from hypermetric.scheduler.processes import Killer, sigkill

STAND_IN = [sys.executable, "-m", "tests.scheduler.run_process", "resume", "{run_id}"]


def stand_in(settings: Settings, *options: str, killer: Killer = sigkill) -> Launcher:
    """A launcher whose run processes are stand-ins told ``options``."""
    return SubprocessLauncher(settings, [*STAND_IN, *options], killer=killer)


def paused(settings: Settings) -> Launcher:
    """``--launcher tests.scheduler.launchers:paused``: each run process records its launch
    (and this scheduler's pid) in ``<home>/launches.txt``, waits 2.5 s between its claim and
    the start of its run, then runs for 1 s and succeeds."""
    record = ("--record", str(settings.home / "launches.txt"), "--launched-by", str(os.getpid()))
    return stand_in(settings, *record, "--pause", "2.5", "--seconds", "1")
