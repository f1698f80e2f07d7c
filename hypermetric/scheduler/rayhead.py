"""The local Ray head a scheduler starts for its runs when no RAY_ADDRESS is given.

One thread owns the head for its whole life: Ray's head processes die with the thread
that started them (they are bound to it by the parent-death signal), and Ray installs a
SIGTERM handler of its own only on the main thread, which this keeps free of it.
"""

from __future__ import annotations

import logging
import os
import threading

from hypermetric.errors import SchedulerError
from hypermetric.scheduler.processes import (
    descendants,
    holders_of,
    kill_survivors,
    ray_session_dir,
)

__all__ = ["LocalRayHead"]

log = logging.getLogger("hypermetric.scheduler")


class LocalRayHead:
    """Start with :meth:`start` (returns the address), end with :meth:`stop`."""

    def __init__(self) -> None:
        self.address: str | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._own, name="ray-head", daemon=True)

    def start(self) -> str:
        """Start the head (once) and return its address for the run processes."""
        if not self._thread.is_alive() and not self._ready.is_set():
            self._thread.start()
        self._ready.wait()
        if self._error is not None or self.address is None:
            raise SchedulerError(f"cannot start a local Ray head: {self._error}; set RAY_ADDRESS")
        return self.address

    def stop(self) -> None:
        """Stop the head and wait for it (processes it leaves behind are killed)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def _own(self) -> None:
        from hypermetric.engine.cluster import start_local_head, stop_local_head

        try:
            self.address = start_local_head()
        except BaseException as exc:  # reported by start(), in the caller's thread
            self._error = exc
            return
        finally:
            self._ready.set()
        log.info("started a local Ray head at %s for the runs", self.address)
        self._done.wait()
        session = ray_session_dir()
        # the head's processes: below this one, or (agents Ray detaches) holding its session
        started = descendants(os.getpid()) + (holders_of(session) if session else [])
        stop_local_head()
        left = kill_survivors(started, grace=5.0)
        if left:
            log.info("killed %d of the local Ray head's processes left after its shutdown", left)
