"""The web view's server time per page with a large history (default 1,000 runs, 10M scores).

The data: ``--evaluations`` scheduled evaluations x ``--nights`` nightly runs, each with
``--scores`` scores (four metrics, one of them lower-is-better) and one call per example,
committed in ``--shards`` shards per dataset as the engine does, in a temporary
HYPERMETRIC_HOME on SQLite; the version label changes every 50 nights. Each page is then
requested ``--repeat`` times through an in-process HTTP client, first over the shards as the
engine wrote them, then after the scheduler's maintenance pass packed them (on by default,
so a history the scheduler keeps looks like the second; the budget is judged there), and
the figure is the
server time the response reports in its ``Server-Timing`` header (routing, DB, DuckDB,
rendering: everything but the network), first request and best of the rest. The first
request of a page reads the stats of the runs it shows from the shards (cold); later ones
find them cached. ``hypermetric ui`` reads every finished run's stats in the background when
it starts (timed last), so its first pages are the warm case.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.common import maintain, temporary_home
from hypermetric.catalog.db import Database, database
from hypermetric.catalog.evaluations import upsert_evaluation
from hypermetric.catalog.records import UnitSummary
from hypermetric.catalog.runs import create_run, finish_run, start_run, update_run
from hypermetric.catalog.shards import commit_units
from hypermetric.config import Settings, load_settings, reset_settings
from hypermetric.storage.files import ShardStore, store_for
from hypermetric.storage.schemas import CALLS_SCHEMA, SCORES_SCHEMA

METRICS = ("exact_match", "token_f1", "recall_at_5", "context_tokens")
DIRECTIONS = {
    "evals": {m: {"higher_is_better": m != "context_tokens"} for m in METRICS},
}
START = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
BUDGET_MS = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py ui``."""
    parser.add_argument("--evaluations", type=int, default=5)
    parser.add_argument("--nights", type=int, default=200, help="runs per evaluation")
    parser.add_argument("--scores", type=int, default=10_000, help="scores per run")
    parser.add_argument("--shards", type=int, default=4, help="shards per run and dataset")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")


def _tables(
    run_id: int, evaluation: str, version: str, n: int, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    examples = n // len(METRICS)
    ids = np.char.add("ex", np.arange(examples).astype(str)).astype(object)
    stamp = pa.array(
        np.full(examples, np.datetime64("2026-11-01T02:00", "us")), pa.timestamp("us", tz="UTC")
    )
    total = examples * len(METRICS)
    values = np.clip(rng.normal(0.6, 0.2, total), 0.0, 1.0)
    scores = pa.Table.from_pydict(
        {
            "run_id": np.full(total, run_id, dtype=np.int64),
            "evaluation": pa.array([evaluation] * total, pa.string()),
            "version": pa.array([version] * total, pa.string()),
            "example_id": pa.array(np.repeat(ids, len(METRICS)), pa.string()),
            "component": pa.array(["generate"] * total, pa.string()),
            "call_index": np.zeros(total, dtype=np.int32),
            "metric": pa.array(np.tile(np.array(METRICS, dtype=object), examples), pa.string()),
            "value": values,
            "error": pa.nulls(total, pa.string()),
            "run_attempt": np.ones(total, dtype=np.int32),
            "created_at": pa.concat_arrays([stamp] * len(METRICS)),
        },
        schema=SCORES_SCHEMA,
    )
    answers = np.where(rng.random(examples) < 0.6, '"Paris"', '"Rome is the capital"')
    calls = pa.Table.from_pydict(
        {
            "run_id": np.full(examples, run_id, dtype=np.int64),
            "evaluation": pa.array([evaluation] * examples, pa.string()),
            "version": pa.array([version] * examples, pa.string()),
            "example_id": pa.array(ids, pa.string()),
            "component": pa.array(["generate"] * examples, pa.string()),
            "call_index": np.zeros(examples, dtype=np.int32),
            "inputs": pa.array(['{"question": "capital?"}'] * examples, pa.string()),
            "output": pa.array(answers.astype(object), pa.string()),
            "latency_ms": rng.gamma(2.0, 20.0, examples),
            "error": pa.nulls(examples, pa.string()),
            "run_attempt": np.ones(examples, dtype=np.int32),
            "created_at": stamp,
            "attempts": np.ones(examples, dtype=np.int32),
            "cached": np.zeros(examples, dtype=bool),
        },
        schema=CALLS_SCHEMA,
    )
    return scores, calls


def _commit(
    db: Database, store: ShardStore, run_id: int, tables: tuple[pa.Table, pa.Table], shards: int
) -> None:
    scores, calls = tables
    files, units = [], []
    score_bounds = np.linspace(0, scores.num_rows, shards + 1).astype(int)
    call_bounds = np.linspace(0, calls.num_rows, shards + 1).astype(int)
    for unit, ((lo, hi), (clo, chi)) in enumerate(
        zip(itertools.pairwise(score_bounds), itertools.pairwise(call_bounds), strict=True)
    ):
        files.append(store.write("scores", run_id, scores.slice(lo, hi - lo), f"u{unit}"))
        files.append(store.write("calls", run_id, calls.slice(clo, chi - clo), f"u{unit}"))
        units.append(UnitSummary(unit, int(chi - clo), int(hi - lo), int(chi - clo), 0))
    commit_units(db, run_id, files, units, attempt=1)


def _generate(args: argparse.Namespace, settings: Settings) -> list[int]:
    db, store = database(settings), store_for(settings)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    ids: list[int] = []
    for e in range(args.evaluations):
        name = f"eval-{e}"
        ev = upsert_evaluation(db, name, schedule="0 2 * * *", timezone="UTC")
        for night in range(args.nights):
            version = f"v{night // 50 + 1}"
            date = START + timedelta(days=night)
            run = create_run(
                db,
                ev.id,
                run_type="scheduled",
                logical_date=date,
                data_interval=(date, date + timedelta(days=1)),
                version_label=version,
            )
            update_run(db, run.id, versions=DIRECTIONS, params={"top_k": 5})
            start_run(db, run.id, owner="bench", pid=os.getpid(), host="bench")
            _commit(
                db, store, run.id, _tables(run.id, name, version, args.scores, rng), args.shards
            )
            finish_run(db, run.id, "success")
            ids.append(run.id)
            if len(ids) % 100 == 0:
                took = time.perf_counter() - started
                print(f"  {len(ids)} runs committed ({took:.0f}s)", flush=True)
    return ids


def _server_ms(response: Any) -> float:
    match = re.fullmatch(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
    if response.status_code != 200 or match is None:
        raise RuntimeError(f"{response.url} answered {response.status_code}: {response.text[:200]}")
    return float(match.group(1))


def _measure(client: Any, pages: list[tuple[str, str]], repeat: int) -> bool:
    within = True
    print(f"{'page':<44} {'first':>9} {'best':>9} {'median':>9}", flush=True)
    for label, url in pages:
        times = [_server_ms(client.get(url)) for _ in range(max(2, repeat))]
        first, rest = times[0], times[1:]
        best, median = min(rest), statistics.median(rest)
        mark = "" if median <= BUDGET_MS else f"  over {BUDGET_MS:.0f} ms"
        within &= median <= BUDGET_MS
        print(f"{label:<44} {first:7.1f}ms {best:7.1f}ms {median:7.1f}ms{mark}", flush=True)
    return within


def _maintain(settings: Settings) -> None:
    done = maintain(settings)
    print(
        f"after the scheduler's maintenance pass ({done.merged} shards packed in "
        f"{done.seconds:.0f}s):"
    )


def run(args: argparse.Namespace) -> int:
    """Generate the history, then time each page's server time."""
    from starlette.testclient import TestClient

    from hypermetric.ui.app import create_app

    with temporary_home("hm-bench-ui-", args.keep) as work:
        settings = reset_settings(load_settings(environ={}, home=str(work / "home")))
        runs = args.evaluations * args.nights
        print(
            f"home {settings.home} (SQLite); {os.cpu_count()} CPUs; load average "
            f"{os.getloadavg()[0]:.1f}; generating {runs} runs x {args.scores:,} scores "
            f"({runs * args.scores:,} rows) and {runs * args.scores // len(METRICS):,} calls",
            flush=True,
        )
        ids = _generate(args, settings)
        last, before = ids[args.nights - 1], ids[args.nights - 2]
        pages = [
            ("/ (grid, 20 nights x all evaluations)", "/"),
            ("/api/grid", "/api/grid"),
            ("/?state=success&version=v4", "/?state=success&version=v4"),
            (f"/evaluations/eval-0 ({args.nights} runs, all metrics)", "/evaluations/eval-0"),
            ("/evaluations/eval-0?metric=exact_match", "/evaluations/eval-0?metric=exact_match"),
            (f"/runs/{last}", f"/runs/{last}"),
            (f"/runs/{last}?page=50", f"/runs/{last}?page=50"),
            (f"/compare?a={before}&b={last}", f"/compare?a={before}&b={last}"),
            ("/sql?q=SELECT count(*) FROM runs", "/sql?q=SELECT+count(*)+FROM+runs"),
            (
                "/sql?q=... count(*) FROM scores WHERE run_id=",
                f"/sql?q=SELECT+count(*)+FROM+scores+WHERE+run_id={last}",
            ),
        ]
        print("shards as the engine wrote them:", flush=True)
        with TestClient(create_app(settings)) as client:
            _measure(client, pages, args.repeat)
        _maintain(settings)
        with TestClient(create_app(settings)) as client:
            within = _measure(client, pages, args.repeat)
        from hypermetric.ui.cache import RunStats

        started = time.perf_counter()
        read = RunStats(settings).warm()
        took = time.perf_counter() - started
        print(f"warm-up (hypermetric ui, in the background at start): {read} runs in {took:.1f}s")
        print(f"every median within {BUDGET_MS:.0f} ms: {'yes' if within else 'no'}")
    return 0
