"""The actor pool's warm start: a first run's actors boot while the run sets itself up."""

from __future__ import annotations

import subprocess
import sys

import pytest
import ray

from hypermetric.engine.pool import ActorPool, live_nodes, spread


@pytest.mark.parametrize(
    ("module", "unwanted"),
    [
        # an actor process imports the actors' module first: SQLAlchemy with the catalog's
        # models, DuckDB and Alembic would add most of a second to every new actor
        ("hypermetric.engine.actors", ("sqlalchemy", "duckdb", "alembic")),
        # a run returns a RunResult: DuckDB loads when the result is first read
        ("hypermetric.query.result", ("duckdb", "pyarrow.dataset")),
    ],
)
def test_what_a_first_run_imports_stays_out_of_its_path(
    module: str, unwanted: tuple[str, ...]
) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {unwanted!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.ray
def test_prewarm_starts_one_driver_and_one_evaluator_once_and_a_run_takes_them(
    ray_cluster: str,
) -> None:
    own = ActorPool()
    own.prewarm()
    own.prewarm()  # once per Ray job: a second call starts nothing
    assert own.idle() == {"driver": 1, "evaluator": 1}
    node = spread(live_nodes(), 1)[0]
    drivers = own.acquire("driver", [node, node])
    evaluators = own.acquire("evaluator", [node])
    try:
        # the warm ones were taken first (one driver more was started for the second place)
        assert own.idle() == {"driver": 0, "evaluator": 0}
        pids = ray.get([lent.actor.pid.remote() for lent in drivers + evaluators])
        assert len(set(pids)) == 3
    finally:
        own.discard(drivers + evaluators)
