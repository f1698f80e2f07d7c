"""What a Ray job takes along, and what the ray-jobs launcher refuses: no Ray, no cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hypermetric.config import load_settings
from hypermetric.errors import ConfigError, SchedulerError
from hypermetric.scheduler.rayjobs import submission_id
from hypermetric.scheduler.shipping import (
    check_reachable,
    cluster_token,
    job_env_vars,
    package_size,
    working_dir_env,
)

PG = "postgresql+psycopg://hm:pw@db/hm"


def test_the_launcher_and_shared_paths_are_settings(tmp_path: Path) -> None:
    env = {"HYPERMETRIC_LAUNCHER": "ray-jobs", "HYPERMETRIC_SHARED_PATHS": "yes"}
    settings = load_settings(environ=env, home=str(tmp_path))
    assert (settings.launcher, settings.shared_paths) == ("ray-jobs", True)
    assert load_settings(environ={}, home=str(tmp_path)).shared_paths is False
    with pytest.raises(ConfigError, match="HYPERMETRIC_SHARED_PATHS is not a yes/no value"):
        load_settings(environ={"HYPERMETRIC_SHARED_PATHS": "maybe"}, home=str(tmp_path))


@pytest.mark.parametrize(
    ("db_url", "storage", "refused"),
    [
        (None, "s3://b/p", "SQLite"),
        (PG, None, "local path"),
        (PG, "file:///mnt/shards", "local path"),
        (PG, "s3://b/p?endpoint_override=h:9000", None),
        (PG, "gs://b/p", None),
    ],
)
def test_state_the_cluster_cannot_reach_is_refused(
    tmp_path: Path, db_url: str | None, storage: str | None, refused: str | None
) -> None:
    settings = load_settings(environ={}, home=str(tmp_path), db_url=db_url, storage=storage)
    if refused is None:
        check_reachable(settings)
        return
    with pytest.raises(SchedulerError, match=refused) as caught:
        check_reachable(settings)
    assert "\n" not in str(caught.value) and "pw" not in str(caught.value)
    shared = load_settings(
        environ={"HYPERMETRIC_SHARED_PATHS": "1"}, home=str(tmp_path), db_url=db_url
    )
    check_reachable(shared)  # marked as a mount every node shares


def test_the_token_comes_from_where_ray_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cluster_token({}) is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-the-default-file\n")
    token = cluster_token({})
    assert token is not None and token.value == "from-the-default-file"
    named = tmp_path / "tok"
    named.write_text("from-a-named-file")
    token = cluster_token({"RAY_AUTH_TOKEN_PATH": str(named)})
    assert token is not None and token.value == "from-a-named-file"
    assert "from-a-named-file" not in repr(token)
    token = cluster_token({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(named)})
    assert token is not None and (token.value, token.source) == ("from-env", "RAY_AUTH_TOKEN")
    with pytest.raises(ConfigError, match="RAY_AUTH_TOKEN_PATH=/nope does not exist"):
        cluster_token({"RAY_AUTH_TOKEN_PATH": "/nope"})


def test_a_job_gets_the_resolved_settings_and_the_token(tmp_path: Path) -> None:
    env = {
        "HYPERMETRIC_UNIT_SIZE": "10",
        "HYPERMETRIC_LAUNCHER": "ray-jobs",
        "RAY_ADDRESS": "http://head:8265",
        "HYPERMETRIC_JOB_EXCLUDES": "data",
    }
    settings = load_settings(environ=env, home=str(tmp_path), db_url=PG, storage="s3://b/p")
    token = cluster_token({"RAY_AUTH_TOKEN": "sekrit-token"})
    shipped = job_env_vars(settings, token)
    assert shipped == {
        "HYPERMETRIC_DB_URL": PG,
        "HYPERMETRIC_STORAGE": "s3://b/p",
        "HYPERMETRIC_UNIT_SIZE": "10",
        "RAY_AUTH_TOKEN": "sekrit-token",
        "RAY_AUTH_MODE": "token",
    }  # not the scheduler's own: launcher, Jobs API address, home, what it ships


def test_the_working_dir_leaves_out_excludes_and_the_home(tmp_path: Path) -> None:
    (tmp_path / "evals.py").write_text("X = 1\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(300_000))  # random: the zip keeps its size
    home = tmp_path / ".hypermetric"
    home.mkdir()
    (home / "hypermetric.db").write_bytes(os.urandom(300_000))
    settings = load_settings(
        environ={
            "HYPERMETRIC_JOB_WORKING_DIR": str(tmp_path),
            "HYPERMETRIC_JOB_EXCLUDES": "big.bin",
        },
        home=str(home),
    )
    assert working_dir_env(settings) == {
        "working_dir": str(tmp_path),
        "excludes": ["big.bin", ".hypermetric"],
    }
    assert package_size(tmp_path, ["big.bin", ".hypermetric"]) < 2_000
    assert package_size(tmp_path, []) > 600_000
    none = load_settings(environ={"HYPERMETRIC_JOB_WORKING_DIR": "none"}, home=str(home))
    assert working_dir_env(none) == {}


def test_a_submission_id_is_the_evaluation_run_and_attempt() -> None:
    assert submission_id("QA nightly/v2", 12, 3) == "hypermetric-qa-nightly-v2-run12-attempt3"
    assert submission_id("QA nightly/v2", 12, 3) == submission_id("QA nightly/v2", 12, 3)
