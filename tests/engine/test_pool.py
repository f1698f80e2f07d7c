"""The actor pool's warm start: a first run's actors boot while the run sets itself up."""

from __future__ import annotations

import subprocess
import sys

import pytest
import ray

from hypermetric.engine.pool import ActorPool, live_nodes, spread


def test_the_pool_actors_do_not_import_the_catalog_or_duckdb() -> None:
    """An actor process imports the actors' module first: SQLAlchemy with the catalog's
    models, DuckDB and Alembic would add most of a second to every new actor."""
    code = (
        "import sys, hypermetric.engine.actors; "
        "print(sorted(m for m in ('sqlalchemy', 'duckdb', 'alembic') if m in sys.modules))"
    )
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
