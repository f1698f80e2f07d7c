"""No secret leaves in clear: with a password in the DB URL, credentials in the storage URI
and in ``AWS_*``, and a token in the environment, everything the scheduler (``--once`` and
serving), a run, ``runs show``, ``sql`` and failing commands print or store is searched for
them: their output, every file under the home (the run logs; on SQLite the DB itself), every
row of the metadata DB and every shard in the bucket.

PostgreSQL here trusts local connections, so it ignores the password the URL carries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import Base
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.config import Settings
from tests.scheduler.helpers import stop_scheduler, wait_for, write_runtime

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]

DB_PASSWORD = f"db-Pw-{uuid.uuid4().hex[:10]}"
KEY_ID = f"AKID{uuid.uuid4().hex[:12].upper()}"
STORAGE_SECRET = f"st-Secret-{uuid.uuid4().hex[:10]}"
AWS_SECRET = f"aws-Secret-{uuid.uuid4().hex[:10]}"
TOKEN = f"ui-Token-{uuid.uuid4().hex[:10]}"
SECRETS = (DB_PASSWORD, KEY_ID, STORAGE_SECRET, AWS_SECRET, TOKEN)


class Transcript:
    """Runs ``hypermetric`` commands with the secrets set, and keeps all they printed."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env, self.home = env, home
        self.printed: list[str] = []

    def run(self, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
        """Run a command to its end; returns its stdout and stderr."""
        done = subprocess.run(
            [sys.executable, "-m", "hypermetric", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        out = done.stdout + done.stderr
        self.printed.append(out)
        assert (done.returncode == 0) == ok, out
        return out

    def serve(self, seconds: float) -> str:
        """Run ``hypermetric scheduler`` for ``seconds``, then stop it with SIGTERM."""
        log = self.home.parent / f"scheduler-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hypermetric", "scheduler", "--tick", "0.5"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                time.sleep(seconds)
                stop_scheduler(proc)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        self.printed.append(log.read_text())
        return self.printed[-1]


def secret_env(
    env: dict[str, str], settings: Settings, s3_storage: str, ray: str
) -> dict[str, str]:
    """The test's environment with a password in the DB URL and credentials everywhere."""
    db_url = settings.db_url
    if db_url.startswith("postgresql"):
        db_url = make_url(db_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    storage = s3_storage.replace("s3://", f"s3://{KEY_ID}:{STORAGE_SECRET}@", 1)
    return {
        **env,
        "HYPERMETRIC_DB_URL": db_url,
        "HYPERMETRIC_STORAGE": storage,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "HYPERMETRIC_UI_TOKEN": TOKEN,
        "RAY_ADDRESS": ray,
        "HYPERMETRIC_HEARTBEAT_SECONDS": "0.5",
    }


def stored(db: Database, settings: Settings, s3_storage: str) -> list[str]:
    """Every row of the metadata DB, every file under the home and every shard, as text."""
    texts: list[str] = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            texts.extend(
                repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table.name}"'))
            )
    for path in settings.home.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode(errors="replace"))
    fs, root = pafs.FileSystem.from_uri(s3_storage)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as fh:
                texts.append(fh.read().decode(errors="replace"))
    return texts


def test_no_secret_is_printed_logged_or_stored(
    db: Database,
    settings: Settings,
    env: dict[str, str],
    tmp_path: Path,
    s3_storage: str,
    ray_cluster: str,
    backend: str,
) -> None:
    shell = Transcript(secret_env(env, settings, s3_storage, ray_cluster), settings.home)
    target = write_runtime(tmp_path, "secretive")  # runs are triggered
    shell.run("evals", "register", target)
    shell.run("evals", "trigger", "secretive")
    once = shell.run("scheduler", "--once")
    wait_for(lambda: all(r.finished for r in list_runs(db)), 180, "the first run")
    shell.run("evals", "trigger", "secretive")
    serving = shell.serve(15)
    wait_for(lambda: all(r.finished for r in list_runs(db)), 180, "the second run")
    runs = list_runs(db)
    assert len(runs) == 2 and {r.state for r in runs} == {"success"}, [r.error for r in runs]
    shell.run("runs", "show", str(runs[0].id))
    shell.run("runs", "list")
    scores = shell.run("sql", "SELECT run_id, count(*) AS n FROM scores GROUP BY ALL", "-f", "csv")
    assert sorted(scores.split()) == sorted(['"run_id","n"', *(f"{r.id},10" for r in runs)])
    shell.run("sql", "SELECT * FROM runs", "-f", "json")
    shell.run("sql", "SELECT * FROM evaluations", "-f", "json")
    # errors: a storage URI pyarrow cannot read (its message quotes the URI), a DB that is not
    # there, an unknown run
    bad_storage = f"nope://{KEY_ID}:{STORAGE_SECRET}@bucket/x"
    failed = shell.run("sql", "SELECT 1", env={"HYPERMETRIC_STORAGE": bad_storage}, ok=False)
    assert failed.startswith("error: ") and "nope://***@bucket/x" in failed
    down = "postgresql+psycopg://hm:" + DB_PASSWORD + "@127.0.0.1:9/hm"
    shell.run("runs", "list", env={"HYPERMETRIC_DB_URL": down}, ok=False)
    shell.run("runs", "show", "999", ok=False)
    if backend == "postgresql":
        assert "postgresql+psycopg://***@127.0.0.1" in once + serving  # the start line, masked
    everything = [*shell.printed, *stored(db, settings, s3_storage)]
    leaks = [
        (secret, t[max(0, t.find(secret) - 80) :][:160])
        for t in everything
        for secret in SECRETS
        if secret in t
    ]
    assert leaks == []
    assert get_run(db, runs[0].id).rows_count == 10
