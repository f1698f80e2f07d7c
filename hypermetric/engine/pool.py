"""Warm driver and evaluator actors, kept between runs of one process, placed on the
cluster's nodes in proportion to their CPUs.

Starting an actor is a new Python process that imports the user's code (about a second of
CPU here); a notebook, the quickstart, a benchmark or a test session that runs many
evaluations pays it once. An actor is lent to one run at a time (an evaluator is re-aimed
at it with ``begin``); a run that ends in error kills its actors rather than return them,
so a lent actor never carries another run's state.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hypermetric.engine.actors import DriverActor, EvaluatorActor
from hypermetric.engine.cluster import worker_paths

__all__ = ["ActorPool", "Lent", "live_nodes", "pool", "prewarm", "replacement", "spread"]

_KINDS = {"driver": DriverActor, "evaluator": EvaluatorActor}


@dataclass(frozen=True)
class Lent:
    """An actor, the node it was placed on, and the import paths it was handed."""

    actor: Any
    node: str
    paths: tuple[str, ...] = ()


def live_nodes() -> list[tuple[str, int]]:
    """The alive nodes with CPUs and their CPU counts (this node, if none reports any)."""
    nodes = [
        (node["NodeID"], int(node["Resources"].get("CPU", 0)))
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get("CPU", 0) >= 1
    ]
    return nodes or [(ray.get_runtime_context().get_node_id(), 1)]


def spread(nodes: list[tuple[str, int]], count: int) -> list[str]:
    """``count`` places over (node, CPUs): each node in turn while it has CPUs to fill,
    round after round, so a node gets about its share of CPUs (the actors hold no CPU;
    the runs bound their work)."""
    order = [
        node_id
        for round_ in range(max(cpus for _, cpus in nodes))
        for node_id, cpus in nodes
        if round_ < cpus
    ]
    return list(itertools.islice(itertools.cycle(order), count))


def replacement(node: str) -> str:
    """Where to start an actor instead of one that died on ``node``: the same node if it is
    still alive, else another."""
    nodes = live_nodes()
    return node if node in {node_id for node_id, _ in nodes} else spread(nodes, 1)[0]


class ActorPool:
    """Idle actors of this process's Ray job, by kind (``driver`` or ``evaluator``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[Lent]] = {kind: [] for kind in _KINDS}
        self._job: Any = None
        self._warmed: Any = None  # the job whose first actors were started by prewarm

    def _follow(self, job: Any) -> None:
        """Forget the idle actors of an earlier Ray connection (they are gone); under the lock."""
        if job != self._job:
            self._idle, self._job = {k: [] for k in _KINDS}, job

    def idle(self) -> dict[str, int]:
        """How many idle actors of each kind this process holds (the next run takes them)."""
        with self._lock:
            return {kind: len(actors) for kind, actors in self._idle.items()}

    def prewarm(self) -> None:
        """Start one driver and one evaluator for this Ray job, once, without waiting for
        them. A process's first run then sets itself up (imports, the catalog, the dataset's
        survey) while their processes boot, instead of before: most of a second of a first
        run, on any machine. The actors join the idle pool like returned ones."""
        job = ray.get_runtime_context().get_job_id()
        with self._lock:
            self._follow(job)
            if self._warmed == job:
                return
            self._warmed = job
        node = spread(live_nodes(), 1)[0]
        for kind in _KINDS:
            self.release(kind, [self._start(kind, node)])

    def acquire(self, kind: str, nodes: list[str]) -> list[Lent]:
        """An actor of ``kind`` on each of ``nodes``: idle ones first, new ones for the rest.

        Placement is strict (Ray's soft affinity may start an actor elsewhere while the
        node is alive): an actor placed on a node that has died fails at its first call, and
        the coordinator replaces it with one on a live node.
        """
        job = ray.get_runtime_context().get_job_id()
        lent: list[Lent | None] = [None] * len(nodes)
        with self._lock:
            self._follow(job)
            idle = self._idle[kind]
            for i, node in enumerate(nodes):
                match = next((a for a in idle if a.node == node), None)
                if match is not None:
                    idle.remove(match)
                    lent[i] = match
        return [item or self._start(kind, node) for item, node in zip(lent, nodes, strict=True)]

    @staticmethod
    def _start(kind: str, node: str) -> Lent:
        strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        options = _KINDS[kind].options(scheduling_strategy=strategy)  # type: ignore[attr-defined]
        paths = worker_paths()
        return Lent(options.remote(paths), node, tuple(paths))

    def release(self, kind: str, actors: list[Lent]) -> None:
        """Return healthy actors (an evaluator's buffer must be empty)."""
        with self._lock:
            self._idle[kind].extend(actors)

    def replace(self, kind: str, dead: Lent) -> Lent:
        """A new actor of ``kind`` instead of ``dead`` (on its node if alive), which is killed."""
        fresh = self.acquire(kind, [replacement(dead.node)])[0]
        self.discard([dead])
        return fresh

    def discard(self, actors: list[Lent]) -> None:
        """Kill actors that must not serve another run."""
        for lent in actors:
            ray.kill(lent.actor, no_restart=True)


pool = ActorPool()


def prewarm() -> None:
    """:meth:`ActorPool.prewarm` when this process is connected to Ray (it never starts Ray:
    a run that fails its checks must not have paid for a cluster)."""
    if ray.is_initialized():
        pool.prewarm()
