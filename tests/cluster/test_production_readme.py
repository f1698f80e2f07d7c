"""The README's "In production" block, every command, against the real cluster.

Its ``ray`` lines started the session's cluster (:mod:`tests.cluster.raycluster`); here its
exports are set, each example value swapped for this machine's (the PostgreSQL test server,
a bucket of the local S3 server, the cluster's Jobs API and token), and its ``hypermetric``
lines run in the folder of the README's own evaluation module: the scheduler submits the
registered evaluation's first run as a Ray job, which succeeds with its shards in S3.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from hypermetric.catalog.db import Database
from hypermetric.catalog.runs import list_runs
from tests.cluster.conftest import ROOT, Spawn, cli
from tests.cluster.raycluster import README, RayCluster, production_block
from tests.scheduler.helpers import stop_scheduler, wait_for

pytestmark = pytest.mark.slow

#: the README's example values, and what stands for each on this machine
EXAMPLES = {
    "HYPERMETRIC_DB_URL": "postgresql+psycopg://hypermetric@db.internal/hypermetric",
    "HYPERMETRIC_STORAGE": "s3://evals-bucket/hypermetric",
    "HYPERMETRIC_LAUNCHER": "ray-jobs",
    "RAY_ADDRESS": "http://ray-head.internal:8265",
    "RAY_AUTH_TOKEN": "$(ray get-auth-token --generate)",
}


def module_blocks() -> dict[str, str]:
    """The README's Python blocks that say which file they are (``# evals/qa.py``)."""
    found = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", README.read_text(), flags=re.S)
    return {path: f"# {path}\n{text}" for path, text in found}


@pytest.mark.timeout(600)
def test_the_production_setup_runs_as_written(
    db: Database,
    tmp_path: Path,
    cluster_env: dict[str, str],
    ray_jobs_cluster: RayCluster,
    spawn: Spawn,
) -> None:
    lines = [ln.split("#")[0].strip() for ln in production_block().splitlines()]
    lines = [ln for ln in lines if ln]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for line in lines:
        if line.startswith("pip install"):
            wanted = re.search(r"\[([\w,]+)\]", line)
            assert wanted and set(wanted.group(1).split(",")) <= set(extras), line

    code = tmp_path / "code"
    for path, text in module_blocks().items():
        target = code / path
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.parent / "__init__.py").touch()
        target.write_text(text)
    ours = {
        "HYPERMETRIC_DB_URL": cluster_env["HYPERMETRIC_DB_URL"],
        "HYPERMETRIC_STORAGE": cluster_env["HYPERMETRIC_STORAGE"],
        "HYPERMETRIC_LAUNCHER": "ray-jobs",
        "RAY_ADDRESS": ray_jobs_cluster.jobs_address,
        "RAY_AUTH_TOKEN": ray_jobs_cluster.token or "",
    }
    env = {k: v for k, v in cluster_env.items() if k not in ours}
    ran = []
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            assert EXAMPLES.get(name) == value, f"the test does not know {line!r}"
            env[name] = ours[name]
        elif line.startswith("hypermetric scheduler"):
            proc = spawn(env, code, *shlex.split(line)[1:])
            wait_for(
                lambda: any(r.state == "success" for r in list_runs(db, evaluation="capitals")),
                300,
                "the capitals run to succeed as a Ray job",
            )
            stop_scheduler(proc)
            ran.append(line)
        elif line.startswith("hypermetric "):
            done = cli(env, code, *shlex.split(line)[1:])
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            ran.append(line)
    assert set(ours) <= set(env) and len(ran) >= 3, ran
    (run,) = [r for r in list_runs(db, evaluation="capitals") if r.state == "success"]
    assert run.rows_count > 0 and run.shard_count > 0
    shown = cli(env, code, "runs", "logs", str(run.id))
    assert f"== job hypermetric-capitals-run{run.id}-attempt1 (SUCCEEDED) ==" in shown.stdout
    assert (ray_jobs_cluster.token or "@@") not in shown.stdout + shown.stderr
