"""The actor pool's warm start: a first run's actors boot while the run sets itself up."""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.catalog.types import utcnow
from hypermetric.engine.cluster import worker_paths
from hypermetric.engine.pool import ActorPool, live_nodes, spread

OWN_RUNTIME = """
import hypermetric as hm

@hm.eval
def length(output, example):
    return len(output)

@hm.component(evals=[length])
def shout(text):
    return text.upper()

@hm.runtime(name="engine-own-folder")
def loud(example):
    return shout(example["q"])
"""


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


def test_worker_paths_are_the_folders_a_fresh_worker_would_lack(tmp_path: Path) -> None:
    import ray as ray_module

    sys.path.insert(0, str(tmp_path))
    try:
        paths = worker_paths()
    finally:
        sys.path.remove(str(tmp_path))
    assert paths[0] == str(tmp_path)
    # what a fresh interpreter has, and Ray's own folders (`import ray` adds them to every
    # process), are not handed on
    assert not any(p.startswith(os.path.dirname(ray_module.__file__)) for p in paths)
    assert not any("site-packages" in p for p in paths)
    assert str(tmp_path) not in worker_paths()


@pytest.mark.ray
def test_a_new_actor_imports_user_code_from_the_folders_its_starter_had(
    ray_cluster: str, tmp_path: Path
) -> None:
    """A runtime in a folder this process put on its path reaches a new driver (here bound
    and driven), with no runtime environment on the job: that would keep the worker
    processes Ray starts in advance from serving the first actors."""
    (tmp_path / "hm_own_folder_rt.py").write_text(OWN_RUNTIME)
    sys.path.insert(0, str(tmp_path))
    own = ActorPool()
    try:
        module = importlib.import_module("hm_own_folder_rt")
        node = spread(live_nodes(), 1)[0]
        [driver] = own.acquire("driver", [node])
        ctx = RunContext(evaluation="engine-own-folder", logical_date=utcnow(), run_id=1)
        ray.get(driver.actor.bind.remote("a", module.loud, ctx, 1, None, None))
        chunk = pickle.dumps(next(iter_chunks([{"q": "ab"}, {"q": "abc"}], 2)))
        _, scored = driver.actor.drive.options(num_returns=2).remote("a", chunk, 0)
        assert ray.get(scored).scores.column("value").to_pylist() == [2.0, 3.0]
        own.discard([driver])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hm_own_folder_rt", None)
    assert not ray.get_runtime_context().runtime_env.get("env_vars")


@pytest.mark.ray
def test_a_warm_driver_imports_from_a_folder_put_on_the_path_after_it_started(
    ray_cluster: str, tmp_path: Path
) -> None:
    """A notebook runs once, then appends a folder to sys.path and runs code from it: the
    warm driver its second run takes was started without that folder."""
    from hypermetric.engine.driving import Drivers, Unit

    own = ActorPool()
    node = spread(live_nodes(), 1)[0]
    [first] = own.acquire("driver", [node])
    own.release("driver", [first])  # warm, started before the folder is on the path
    (tmp_path / "hm_late_folder_rt.py").write_text(OWN_RUNTIME)
    sys.path.append(str(tmp_path))
    try:
        module = importlib.import_module("hm_late_folder_rt")
        [warm] = own.acquire("driver", [node])
        assert warm.actor == first.actor
        ctx = RunContext(evaluation="engine-own-folder", logical_date=utcnow(), run_id=1)
        drivers = Drivers(1, module.loud, ctx, 1)
        drivers.start([warm])
        chunk = pickle.dumps(next(iter_chunks([{"q": "ab"}, {"q": "abc"}], 2)))
        drivers.drive(Unit(0, chunk, 2))
        [status] = list(drivers.driving)
        driven = drivers.driven(status)
        assert driven is not None
        assert ray.get(driven.payload).scores.column("value").to_pylist() == [2.0, 3.0]
        # the paths it was handed go back to the pool with it: the next bind sends none
        assert str(tmp_path) in drivers.lents[0].paths
        own.discard(drivers.lents)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hm_late_folder_rt", None)


@pytest.mark.ray
def test_a_driver_that_cannot_import_the_runtime_fails_the_run_saying_so(
    ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node without the folder of the user's code (here: a warm driver that is not told
    of it): the run's error names the import that failed, not the unit it could not drive."""
    from hypermetric.engine import driving
    from hypermetric.engine.driving import Drivers, Unit
    from hypermetric.errors import EngineError

    own = ActorPool()
    node = spread(live_nodes(), 1)[0]
    [warm] = own.acquire("driver", [node])
    (tmp_path / "hm_unseen_folder_rt.py").write_text(OWN_RUNTIME)
    sys.path.append(str(tmp_path))
    monkeypatch.setattr(driving, "worker_paths", lambda: list(warm.paths))
    try:
        module = importlib.import_module("hm_unseen_folder_rt")
        ctx = RunContext(evaluation="engine-own-folder", logical_date=utcnow(), run_id=7)
        drivers = Drivers(7, module.loud, ctx, 1)
        drivers.start([warm])
        chunk = pickle.dumps(next(iter_chunks([{"q": "ab"}], 1)))
        drivers.drive(Unit(0, chunk, 1))
        [status] = list(drivers.driving)
        with pytest.raises(EngineError) as failed:
            drivers.driven(status)
        assert str(failed.value) == (
            "run 7: ModuleNotFoundError: No module named 'hm_unseen_folder_rt'"
        )
    finally:
        own.discard([warm])
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hm_unseen_folder_rt", None)
