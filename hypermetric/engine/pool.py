"""Warm evaluator actors, kept between runs of one process.

Starting an evaluator is a new Python process (about a second or two here); a notebook, the
quickstart or a test session that runs many evaluations pays it once. An actor is lent to
one run at a time and re-aimed at it with ``begin``; a run that ends in error kills its
actors rather than return them, so a lent actor never carries another run's state.
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from hypermetric.engine.actors import EvaluatorActor

__all__ = ["EvaluatorPool", "pool"]


class EvaluatorPool:
    """Idle evaluator actors of this process's Ray job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._job: Any = None

    def acquire(self, count: int) -> list[Any]:
        """``count`` actors: idle ones first, new ones for the rest."""
        job = ray.get_runtime_context().get_job_id()
        with self._lock:
            if job != self._job:  # a new Ray connection: the old actors are gone
                self._idle, self._job = [], job
            taken, self._idle = self._idle[:count], self._idle[count:]
        return taken + [EvaluatorActor.remote() for _ in range(count - len(taken))]  # type: ignore[attr-defined]

    def release(self, actors: list[Any]) -> None:
        """Return healthy actors whose buffers are empty."""
        with self._lock:
            self._idle.extend(actors)

    def discard(self, actors: list[Any]) -> None:
        """Kill actors that must not serve another run."""
        for actor in actors:
            ray.kill(actor, no_restart=True)


pool = EvaluatorPool()
