"""Shards on an object store (``HYPERMETRIC_STORAGE=s3://...``): the same engine, commit
protocol, queries, compaction and cleaning as on local disk, against a local S3 server."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pytest

import hypermetric as hm
from hypermetric.catalog.db import database
from hypermetric.catalog.runs import list_runs
from hypermetric.catalog.shards import live_shards
from hypermetric.catalog.types import utcnow
from hypermetric.config import Settings, reset_settings
from hypermetric.engine.runner import run_runtime
from hypermetric.errors import StorageError
from hypermetric.query.compaction import compact
from hypermetric.query.retention import clean
from hypermetric.storage.files import TMP_DIR, ShardStore, masked, store_for
from hypermetric.storage.schemas import SCORES_SCHEMA
from tests.engine import sample


@pytest.fixture
def on_s3(engine_settings: Settings, s3_storage: str) -> Settings:
    return reset_settings(replace(engine_settings, storage=s3_storage))


def _objects(folder: str) -> list[str]:
    store = store_for()
    selector = pafs.FileSelector(store.full_path(folder), recursive=True, allow_not_found=True)
    return sorted(
        info.path for info in store.fs.get_file_info(selector) if info.type == pafs.FileType.File
    )


def _live_paths(run_id: int, dataset: str = "scores") -> list[str]:
    store = store_for()
    shards = live_shards(database(), dataset, run_ids=[run_id])
    return sorted(store.full_path(s.path) for s in shards)


@pytest.mark.ray
def test_a_run_on_s3_stores_every_score_once_and_queries_read_it(on_s3: Settings) -> None:
    run = run_runtime(sample.basic, dataset=sample.rows(300))
    assert run.state == "success" and run.rows_count == 600 and run.shard_count > 2
    # every object under the run's folders is a registered shard, and no temporary is left
    for dataset in ("scores", "calls"):
        assert _objects(f"{dataset}/run_id={run.id}") == _live_paths(run.id, dataset)
    assert _objects(TMP_DIR) == []
    counts = hm.sql(
        "SELECT metric, count(*), count(DISTINCT example_id), sum(value) FROM scores "
        f"WHERE run_id = {run.id} GROUP BY ALL ORDER BY 1"
    ).fetchall()
    # echo_id is 0 where each score sits on its own example
    assert counts == [("echo_id", 300, 300, 0.0), ("exact", 300, 300, 300.0)]
    calls = hm.sql("SELECT count(*), count(DISTINCT inputs) FROM calls").fetchall()
    assert calls == [(600, 300)]  # the runtime's own calls have no inputs


@pytest.mark.ray
def test_compact_and_clean_on_s3_keep_every_score_and_free_the_old_shards(
    on_s3: Settings,
) -> None:
    run = run_runtime(sample.basic, dataset=sample.rows(300))
    before = _live_paths(run.id)
    assert len(before) > 2
    compact()
    after = _live_paths(run.id)
    assert len(after) == 1 and not set(after) & set(before)
    assert hm.sql("SELECT count(*), sum(value) FROM scores").fetchall() == [(600, 300.0)]
    # the merged shards are still on the store until versions that read them expire
    assert set(before) <= set(_objects("scores"))
    report = clean(before=utcnow() + timedelta(days=1), grace=timedelta(0))
    assert set(report.deleted_shards) >= {p.split("/shards/", 1)[1] for p in before}
    assert _objects("scores") == after
    assert hm.sql("SELECT count(*), sum(value) FROM scores").fetchall() == [(600, 300.0)]


@pytest.mark.ray
def test_a_query_on_one_run_reads_only_that_runs_shards(on_s3: Settings) -> None:
    first = run_runtime(sample.basic, dataset=sample.rows(100))
    second = run_runtime(sample.basic, dataset=sample.rows(60))
    # damage the first run's shards behind the registry's back: a query that opened them
    # would fail, so one that succeeds never touched them
    store = store_for()
    for path in _live_paths(first.id):
        store.fs.delete_file(path)
    one_run = f"SELECT count(*), sum(value) FROM scores WHERE run_id = {second.id}"
    assert hm.sql(one_run).fetchall() == [(120, 60.0)]
    with pytest.raises(duckdb.Error, match=r"not exist|NoSuchKey|Not Found"):
        hm.sql("SELECT count(*) FROM scores").fetchall()


@pytest.mark.ray
def test_a_bucket_that_does_not_exist_fails_the_run_with_the_reason(
    on_s3: Settings, s3_endpoint: str
) -> None:
    missing = f"s3://hm-no-such-bucket/shards?scheme=http&endpoint_override={s3_endpoint}"
    reset_settings(replace(on_s3, storage=missing))
    reason = r"cannot write shard .* under s3://hm-no-such-bucket/.*Bucket 'hm-no-such-bucket'"
    with pytest.raises(StorageError, match=reason):
        run_runtime(sample.basic, dataset=sample.rows(20))
    (run,) = list_runs(database())
    assert run.state == "failed" and re.search(reason, run.error or "")


def test_storage_errors_never_show_the_credentials_of_the_uri(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's root should be")
    uri = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/shards?region=eu-west-1"
    store = ShardStore(uri=uri, fs=pafs.LocalFileSystem(), root=str(blocker))
    with pytest.raises(StorageError) as info:
        store.write("scores", 1, SCORES_SCHEMA.empty_table(), "u0")
    message = str(info.value)
    assert "s3://***@bucket/shards?region=eu-west-1" in message
    assert "AKIAEXAMPLE" not in message and "wJalrXUtnFEMI" not in message
    assert masked("/var/lib/hypermetric/data") == "/var/lib/hypermetric/data"
    assert masked("s3://bucket/a@b") == "s3://bucket/a@b"  # an @ in the path is no user part
