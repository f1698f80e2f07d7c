"""Cluster fixtures: one real two-node Ray cluster for the session, started with the README's
commands (token authentication on), and settings on PostgreSQL with shards on a local S3
server, which every node reaches. The session's own Ray (``ray_cluster``) is never touched:
this cluster has its own ports, temporary directories and token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hypermetric.config import Settings, reset_settings
from tests.cluster.raycluster import RayCluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_jobs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A head and a second node, one CPU each, started as the README says; stopped by pid."""
    cluster = RayCluster(tmp_path_factory.mktemp("rc"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def backend() -> str:
    """A cluster cannot share SQLite: these tests run on PostgreSQL only."""
    return "postgresql"


@pytest.fixture
def cluster_settings(settings: Settings, s3_storage: str) -> Settings:
    """PostgreSQL settings with shards on a fresh bucket of the local S3 server."""
    return reset_settings(replace(settings, storage=s3_storage))


@pytest.fixture
def cluster_env(cluster_settings: Settings, ray_jobs_cluster: RayCluster) -> dict[str, str]:
    """The environment of a scheduler that submits Ray jobs to the cluster, with its token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERMETRIC_"))}
    env.update(
        HOME=str(cluster_settings.home),  # no ~/.ray/auth_token of the machine's
        HYPERMETRIC_HOME=str(cluster_settings.home),
        HYPERMETRIC_DB_URL=cluster_settings.db_url,
        HYPERMETRIC_STORAGE=cluster_settings.storage,
        HYPERMETRIC_LAUNCHER="ray-jobs",
        RAY_ADDRESS=ray_jobs_cluster.jobs_address,
        RAY_AUTH_TOKEN=ray_jobs_cluster.token or "",
        PYTHONPATH=str(ROOT),
    )
    cluster_settings.home.mkdir(parents=True, exist_ok=True)
    return env


Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``hypermetric`` processes (schedulers); whatever is left is SIGKILLed after."""
    started: list[subprocess.Popen[bytes]] = []

    def _spawn(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"process-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypermetric", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``hypermetric ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "hypermetric", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
