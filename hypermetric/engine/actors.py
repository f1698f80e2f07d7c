"""The Ray side of the pools: the driver actor (drives and scores units) and the stateful
evaluator actor (buffers scored units and writes shards).

Both are thin: the work is in :mod:`hypermetric.engine.worker`,
:mod:`hypermetric.engine.scoring` and :mod:`hypermetric.engine.evaluator`, which run without
Ray in unit tests. Both are kept warm between the runs of one process
(:mod:`hypermetric.engine.pool`): a fresh worker process spends most of a second of CPU
importing the user's code before its first example.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import threading
from dataclasses import dataclass

import pyarrow as pa
import ray

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import Chunk
from hypermetric.api.runtime import Runtime
from hypermetric.config import Settings, reset_settings
from hypermetric.engine.calls import RunServices
from hypermetric.engine.evaluator import EvaluatorCore, Flush, Thresholds, UnitDone
from hypermetric.engine.examples import FieldPolicy
from hypermetric.engine.replay import Replay, replay_unit
from hypermetric.engine.scoring import ScoredUnit, Scorer
from hypermetric.engine.worker import drive_unit
from hypermetric.errors import EngineError
from hypermetric.storage.files import store_for

__all__ = ["DriverActor", "EvaluatorActor"]


def _start(paths: list[str]) -> None:
    """What a new actor does first: put the import paths of the process that started it
    (:func:`~hypermetric.engine.cluster.worker_paths`) in front of its own, so the user
    code it is sent later imports as it did there; and warm up. pyarrow imports pandas,
    when it is installed, on its first conversion of a Python list (a fifth of a second):
    paid while a new actor waits for its first unit, not in it, which a first run would
    wait for."""
    sys.path[:0] = [path for path in paths if path not in sys.path]
    threading.Thread(target=pa.array, args=([], pa.string()), daemon=True).start()


@dataclass(frozen=True)
class _Bound:
    """The run attempt a driver drives: what every unit of it shares, and its scorer (what
    bound once)."""

    key: str
    runtime: Runtime | Replay
    context: RunContext
    concurrency: int
    services: RunServices | None
    scorer: Scorer


# num_cpus=0: an idle actor in the pool holds no CPU; the pool places actors on the nodes
# by their CPUs and the coordinator bounds the work given to each.
@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class DriverActor:
    """Runs the runtime over units, one at a time, and scores their calls. It keeps only
    the attempt it is bound to: if it dies, the coordinator starts another, binds it, and
    drives the units it had again."""

    def __init__(self, paths: list[str]) -> None:
        self._bound: _Bound | None = None
        _start(paths)

    def add_paths(self, paths: list[str]) -> None:
        """Put import paths its starter has gained since in front of its own (sent before a
        :meth:`bind` whose runtime imports from them)."""
        sys.path[:0] = [path for path in paths if path not in sys.path]
        importlib.invalidate_caches()

    def bind(
        self,
        key: str,
        runtime: Runtime | Replay,
        context: RunContext,
        concurrency: int,
        services: RunServices | None,
        fields: FieldPolicy | None,
    ) -> None:
        """Drive the units of the run attempt ``key`` from now on: what every unit of it
        shares travels once, not with each unit. A :class:`Replay` scores a stored run's
        calls again (a rescore) without calling anything; ``fields`` says which example
        fields the run stores."""
        own = runtime.runtime if isinstance(runtime, Replay) else runtime
        self._bound = _Bound(key, runtime, context, concurrency, services, Scorer(own, fields))

    @ray.method(num_returns=2)
    def drive(self, key: str, chunk: bytes, unit_id: int) -> tuple[None, ScoredUnit]:
        """Drive and score one unit of the attempt ``key`` (bound before, see :meth:`bind`;
        ``chunk``: a pickled :class:`Chunk`). Two results: an empty status, whose arrival
        tells the coordinator the unit was driven (or how its driver failed) without
        fetching the rows, and the scored unit, which goes from the object store to an
        evaluator."""
        bound = self._bound
        if bound is None or bound.key != key:
            raise EngineError(f"a driver was sent unit {unit_id} of an attempt it is not bound to")
        examples: Chunk = pickle.loads(chunk)
        if isinstance(bound.runtime, Replay):
            return None, replay_unit(bound.runtime, examples, unit_id, bound.scorer)
        scored = drive_unit(
            bound.runtime,
            examples,
            unit_id,
            bound.context,
            bound.concurrency,
            bound.scorer,
            bound.services,
        )
        return None, scored

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class EvaluatorActor:
    """Buffers scored units and writes shards for one run at a time; its state dies with
    it, so the coordinator replaces a dead actor and re-sends the units it held (the ledger
    is the truth). A warm actor is re-aimed at the next run with :meth:`begin`."""

    def __init__(self, paths: list[str]) -> None:
        self.core: EvaluatorCore | None = None
        self.failure: BaseException | None = None
        _start(paths)

    def begin(
        self,
        *,
        run_id: int,
        attempt: int,
        evaluation: str,
        version: str | None,
        settings: Settings,
        thresholds: Thresholds,
    ) -> int:
        """Serve this run from now on (whatever an earlier run left is dropped)."""
        self.core, self.failure = None, None
        try:
            reset_settings(settings)
            self.core = EvaluatorCore(
                run_id=run_id,
                evaluation=evaluation,
                version=version,
                store=store_for(settings),
                thresholds=thresholds,
                attempt=attempt,
            )
        except Exception as exc:
            self.failure = exc  # raised by the run's first call, which reports it
        return os.getpid()

    def _serving(self) -> EvaluatorCore:
        if self.failure is not None:
            raise self.failure
        if self.core is None:
            raise RuntimeError("evaluator used before begin()")
        return self.core

    def evaluate(self, scored: ScoredUnit) -> UnitDone:
        """Buffer one scored unit (it arrives resolved from a driver's result)."""
        return self._serving().evaluate(scored)

    def tick(self) -> Flush | None:
        """Flush if the buffer is older than the age threshold."""
        return self._serving().flush_if_old()

    def flush(self) -> Flush | None:
        """Flush whatever is buffered (the end of a run)."""
        return self._serving().flush()

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()
