"""Shared fixtures: every DB test runs on SQLite and on PostgreSQL.

PostgreSQL is reached through ``HYPERMETRIC_TEST_PG_URL`` (an SQLAlchemy URL to a server
database we may create databases from, e.g. ``postgresql+psycopg://postgres@127.0.0.1/test``).
A fresh database is created for the session and dropped after it. Without the variable the
PostgreSQL half is skipped with that reason; CI sets it and fails if the server is down.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hypermetric.catalog.db import Database, database, dispose, dispose_all
from hypermetric.catalog.models import Base
from hypermetric.config import Settings, load_settings, reset_settings

PG_ENV = "HYPERMETRIC_TEST_PG_URL"

# The object-store tests talk to a local S3 server with these credentials. They are set before
# the session's Ray cluster starts, so its worker processes inherit them, and they make sure no
# test can reach a real account.
os.environ.update(
    AWS_ACCESS_KEY_ID="hypermetric-test",
    AWS_SECRET_ACCESS_KEY="hypermetric-test",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"hm_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # a set variable means the server must be there
        pytest.fail(f"{PG_ENV}={base} is set but PostgreSQL is unreachable: {exc}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_migrated(pg_server_url: str) -> str:
    """The session's PostgreSQL database, upgraded to head once."""
    from hypermetric.catalog import migrate

    db = database(
        load_settings(environ={}, home="/nonexistent", db_url=pg_server_url), migrate=False
    )
    migrate.upgrade(db)
    return pg_server_url


@pytest.fixture(autouse=True)
def _import_path_restored() -> Iterator[None]:
    """A command run through the CLI runner puts its working directory on this process's
    import path, as the script does: the change ends with its test (a session fixture's
    entry, made before any test's fixtures, stays)."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(scope="session")
def user_code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder on the import path of this process and of the session's Ray workers, for
    tests that write user code (as a user's project folder is for their runs)."""
    path = tmp_path_factory.mktemp("user_code")
    sys.path.insert(0, str(path))
    return path


@pytest.fixture(scope="session")
def ray_cluster(user_code_dir: Path) -> Iterator[str]:
    """One local Ray cluster (2 CPUs) for the whole session, shared by every Ray test;
    returns its address so subprocesses can join it."""
    import ray

    from hypermetric.engine.cluster import connect

    connect(None, num_cpus=2)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3 server (moto) for the session; returns its ``host:port``."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_endpoint: str) -> str:
    """A ``HYPERMETRIC_STORAGE`` URI on a new, empty bucket of the local S3 server."""
    import pyarrow.fs as pafs

    bucket = f"hm-{uuid.uuid4().hex[:12]}"
    options = f"scheme=http&endpoint_override={s3_endpoint}&region=us-east-1"
    fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?{options}&allow_bucket_creation=true")
    fs.create_dir(bucket)
    return f"s3://{bucket}/shards?{options}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The metadata DB backend under test."""
    return str(request.param)


def _truncate(db: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings with a fresh home and a migrated, empty metadata DB on ``backend``."""
    home = tmp_path / "home"
    if backend == "postgresql":
        db_url = request.getfixturevalue("pg_migrated")
    else:
        db_url = f"sqlite:///{home / 'hypermetric.db'}"
    current = reset_settings(load_settings(environ={}, home=str(home), db_url=db_url))
    try:
        yield current
    finally:
        if backend == "postgresql":
            _truncate(database(current, migrate=False))
        else:
            dispose(current.db_url)
        reset_settings(load_settings(environ={}, home=str(tmp_path / "unused")))


@pytest.fixture
def db(settings: Settings) -> Database:
    """The migrated metadata DB of ``settings``."""
    return database(settings)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment variables that point a subprocess at the same home and DB."""
    out = dict(os.environ)
    out.update(
        HYPERMETRIC_HOME=str(settings.home),
        HYPERMETRIC_DB_URL=settings.db_url,
        HYPERMETRIC_STORAGE=settings.storage,
    )
    return out
