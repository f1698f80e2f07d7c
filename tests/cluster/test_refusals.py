"""What the ray-jobs launcher refuses before anything is submitted, each in one line: state
the cluster cannot reach, code too big to ship, an address that is not the Jobs API, and a
missing or wrong token (against the real cluster, whose token authentication is on)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hypermetric.config import load_settings
from hypermetric.scheduler.shipping import PACKAGE_LIMIT
from tests.cluster.conftest import cli
from tests.cluster.raycluster import RayCluster, free_port

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERMETRIC_"))}
    env.update(
        HOME=str(tmp_path),
        HYPERMETRIC_HOME=str(tmp_path / "home"),
        HYPERMETRIC_LAUNCHER="ray-jobs",
        RAY_ADDRESS=f"http://127.0.0.1:{free_port()}",
    )
    env.update(values)
    return env


def _refusal(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = cli(env, cwd, "scheduler", "--once", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


PG = "postgresql+psycopg://hm@db.invalid/hm"


def test_sqlite_with_a_cluster_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path, HYPERMETRIC_STORAGE="s3://bucket/shards")
    del env["HYPERMETRIC_LAUNCHER"]  # the option says it here
    line = _refusal(env, tmp_path, "--launcher", "ray-jobs")
    assert "SQLite" in line and "postgresql+psycopg://" in line
    assert "HYPERMETRIC_SHARED_PATHS=1" in line


def test_a_local_storage_path_with_a_cluster_is_refused(tmp_path: Path) -> None:
    line = _refusal(_env(tmp_path, HYPERMETRIC_DB_URL=PG), tmp_path)
    assert "HYPERMETRIC_STORAGE is a local path" in line and "s3://" in line
    assert "HYPERMETRIC_SHARED_PATHS=1" in line


def test_paths_marked_shared_pass_and_the_address_is_tried(tmp_path: Path) -> None:
    env = _env(tmp_path, HYPERMETRIC_SHARED_PATHS="1")
    line = _refusal(env, tmp_path)
    assert "cannot reach the Ray Jobs API at http://127.0.0.1:" in line


def test_an_address_that_is_not_the_jobs_api_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path, HYPERMETRIC_SHARED_PATHS="1", RAY_ADDRESS="127.0.0.1:6379")
    line = _refusal(env, tmp_path)
    assert "RAY_ADDRESS=127.0.0.1:6379 is not it" in line and "http://HEAD:8265" in line


def test_a_working_directory_over_the_upload_limit_is_refused(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "evals.py").write_text("X = 1\n")
    with (code / "weights.bin").open("wb") as fh:  # random bytes: the zip cannot shrink them
        for _ in range(PACKAGE_LIMIT // 2**20 + 1):
            fh.write(os.urandom(2**20))
    env = _env(tmp_path, HYPERMETRIC_SHARED_PATHS="1", HYPERMETRIC_JOB_WORKING_DIR=str(code))
    line = _refusal(env, tmp_path)
    assert f"the job's working directory {code} packs to 101 MiB" in line
    assert "HYPERMETRIC_JOB_EXCLUDES" in line and "HYPERMETRIC_JOB_WORKING_DIR=none" in line
    # left out, it no longer counts: the launcher goes on to the cluster's address
    env["HYPERMETRIC_JOB_EXCLUDES"] = "weights.bin"
    assert "cannot reach the Ray Jobs API" in _refusal(env, tmp_path)


def test_a_missing_token_is_one_line_saying_how_to_give_it(
    tmp_path: Path, ray_jobs_cluster: RayCluster
) -> None:
    env = _env(tmp_path, HYPERMETRIC_SHARED_PATHS="1", RAY_ADDRESS=ray_jobs_cluster.jobs_address)
    line = _refusal(env, tmp_path)
    assert "requires its authentication token; set RAY_AUTH_TOKEN" in line, line
    assert "RAY_AUTH_TOKEN_PATH" in line


def test_a_wrong_token_is_refused_and_never_shown(
    tmp_path: Path, ray_jobs_cluster: RayCluster
) -> None:
    wrong = "not-the-cluster-token-0123456789"
    token_file = tmp_path / "token"
    token_file.write_text(wrong + "\n")
    env = _env(
        tmp_path,
        HYPERMETRIC_SHARED_PATHS="1",
        RAY_ADDRESS=ray_jobs_cluster.jobs_address,
        RAY_AUTH_TOKEN_PATH=str(token_file),
    )
    line = _refusal(env, tmp_path)
    assert f"refused the token read from RAY_AUTH_TOKEN_PATH={token_file}" in line, line
    assert wrong not in line


def test_settings_name_the_launcher(tmp_path: Path) -> None:
    assert load_settings(environ={}, home=str(tmp_path)).launcher == "local"
    done = cli(_env(tmp_path, HYPERMETRIC_LAUNCHER="ray-job"), tmp_path, "scheduler", "--once")
    assert done.returncode == 1
    assert "launcher='ray-job' from HYPERMETRIC_LAUNCHER is not a launcher" in done.stderr
