"""Evaluations that call a model API (a fake one on 127.0.0.1): shared rate limits, retries,
the call cache and rescoring, through the public API and the command line, on SQLite and
PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hypermetric as hm
from hypermetric import sql
from hypermetric.catalog.db import database
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.config import Settings
from tests.engine import api_sample
from tests.engine.conftest import ROOT, run_cli
from tests.engine.fake_api import FakeAPI, serve

pytestmark = pytest.mark.ray


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with serve(FakeAPI(delay=0.005)) as server:
        yield server


def _name() -> str:
    return f"api-{uuid.uuid4().hex[:8]}"


def _calls(run_id: int) -> list[tuple[str, int, bool, str | None]]:
    return [
        (r[0], int(r[1]), bool(r[2]), r[3])
        for r in sql(
            "SELECT example_id, attempts, cached, error FROM calls "
            f"WHERE run_id = {run_id} AND component = 'generate' ORDER BY example_id"
        ).fetchall()
    ]


def _errors(run_id: int) -> int:
    ((n,),) = sql(f"SELECT count(error) FROM scores WHERE run_id = {run_id}").fetchall()
    return int(n)


def test_a_rate_limit_under_the_apis_keeps_every_call_and_paces_them(
    engine_settings: Settings, api: FakeAPI
) -> None:
    api.limit, api.fail_first = 40, {"p3", "p7", "p11"}
    n, per_second = 100, 30.0
    params = {"url": api.url, "limit": _name(), "per_second": per_second}
    result = api_sample.limited.run(dataset=api_sample.prompts(n), params=params)
    assert result.run.state == "success" and _errors(result.run_id) == 0
    assert api.codes == {200: n, 503: 3}  # no 429: the limit kept under the API's
    rate = api.rate(api.answered)
    assert 0.8 * per_second < rate <= per_second * 1.02, rate
    assert api.busiest_second() <= per_second * 1.05 + 1
    calls = _calls(result.run_id)
    assert len(calls) == n and all(error is None and not hit for _, _, hit, error in calls)
    retried = {example: attempts for example, attempts, _, _ in calls if attempts > 1}
    assert retried == {"3": 2, "7": 2, "11": 2}  # the first-request 503s, retried away


def test_a_limit_set_too_high_backs_off_on_429_and_loses_no_call(
    engine_settings: Settings, api: FakeAPI
) -> None:
    import ray

    api.limit = 25
    n, name = 80, _name()
    params = {"url": api.url, "limit": name, "per_second": 500.0}
    result = api_sample.limited.run(dataset=api_sample.prompts(n), params=params)
    assert result.run.state == "success" and _errors(result.run_id) == 0
    assert api.codes.get(429, 0) > 0 and api.codes[200] == n
    calls = _calls(result.run_id)
    assert len(calls) == n and max(attempts for _, attempts, _, _ in calls) > 1
    # the limit backed off for everyone sharing it, and is still below what was asked
    rate, _ = ray.get(ray.get_actor(f"limit:{name}", namespace="hypermetric").state.remote())
    assert rate is not None and rate < 100


def test_concurrency_bounds_the_calls_in_flight_across_drivers(
    engine_settings: Settings, api: FakeAPI
) -> None:
    api.delay = 0.05
    n = 120  # two drivers, each overlapping several examples
    params = {"url": api.url, "limit": _name(), "concurrency": 3}
    result = api_sample.limited.run(dataset=api_sample.prompts(n), params=params)
    assert result.run.state == "success" and _errors(result.run_id) == 0
    assert api.codes == {200: n} and api.most_in_flight == 3


def test_two_runs_at_once_share_one_limit_by_name(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str, api: FakeAPI
) -> None:
    api.limit = 1000
    per_second, name, n = 20.0, _name(), 160
    env = {**env, "RAY_ADDRESS": ray_cluster, "PYTHONPATH": str(ROOT)}
    files = {tag: ROOT / "tests" / "engine" / f"_prompts_{tag}.jsonl" for tag in "ab"}
    for tag, path in files.items():
        path.write_text("".join(f'{{"id": {i}, "prompt": "{tag}{i}"}}\n' for i in range(n)))
    params = ["--param", f"url={api.url}", "--param", f"limit={name}"]
    params += ["--param", f"per_second={per_second}", "--no-progress"]
    targets = {"a": "limited_sync", "b": "limited_sync_2"}  # two evaluations, one limit
    run = [sys.executable, "-m", "hypermetric", "run"]
    try:
        procs = [
            subprocess.Popen(
                [*run, f"tests.engine.api_sample:{target}", "--dataset", str(files[tag]), *params],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag, target in targets.items()
        ]
        outcomes = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
    finally:
        for path in files.values():
            path.unlink()
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert api.codes == {200: 2 * n}
    a, b = api.times_of("a"), api.times_of("b")
    start, end = max(a[0], b[0]), min(a[-1], b[-1])
    assert end - start > 2.0, "the two runs did not call the API at the same time"
    both = [t for t in api.times if start <= t <= end]
    # together they kept to the one budget: each alone would have taken all of it
    assert api.rate(both) <= per_second * 1.05, api.rate(both)
    assert api.busiest_second(both) <= per_second * 1.05 + 1
    assert all(r.state == "success" for r in list_runs(database()))


def test_a_cached_rerun_calls_nothing_and_scores_the_same(
    engine_settings: Settings, api: FakeAPI
) -> None:
    n, params = 40, {"url": api.url}
    first = api_sample.cached.run(dataset=api_sample.prompts(n), params=params)
    assert api.requests == n
    again = api_sample.cached.run(dataset=api_sample.prompts(n), params=params)
    assert api.requests == n  # not one request more
    scores = "SELECT example_id, metric, value FROM scores WHERE run_id = {} ORDER BY ALL"
    assert (
        sql(scores.format(again.run_id)).fetchall() == sql(scores.format(first.run_id)).fetchall()
    )
    hits = sql(
        f"SELECT count(*) FILTER (WHERE cached), min(attempts) FROM calls "
        f"WHERE run_id = {again.run_id} AND component = 'cached'"
    ).fetchall()
    assert hits == [(n, 0)]
    api_sample.cached.run(dataset=api_sample.prompts(n), params={**params, "temperature": 1})
    assert api.requests == 2 * n  # another param: another key
    api_sample.cached_other_code.run(dataset=api_sample.prompts(n), params=params)
    assert api.requests == 3 * n  # other code: another key
    api_sample.cached.run(dataset=api_sample.prompts(n), params=params, cache=False)
    assert api.requests == 4 * n  # --no-cache
    done = run_cli_inline(["cache", "clear", "--component", "cached"])
    assert f"cleared {3 * n} cached calls" in done
    api_sample.cached.run(dataset=api_sample.prompts(n), params=params)
    assert api.requests == 5 * n


def test_run_cache_caches_every_component_from_the_command_line(
    engine_settings: Settings, api: FakeAPI, tmp_path: Path
) -> None:
    n = 12
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(f'{{"id": {i}, "prompt": "p{i}"}}\n' for i in range(n)))
    run = ["run", "tests.engine.api_sample:scored", "--dataset", str(data), "--no-progress"]
    run += ["--param", f"url={api.url}"]
    run_cli_inline([*run, "--cache"])  # a component without cache=True, cached for this run
    run_cli_inline([*run, "--cache"])
    assert api.requests == n
    run_cli_inline(run)  # without --cache: that component is not cached
    assert api.requests == 2 * n


def run_cli_inline(args: list[str]) -> str:
    """The command line in this process (its settings), through click's runner."""
    from click.testing import CliRunner

    from hypermetric.cli.app import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_rescore_scores_stored_outputs_with_todays_evals_and_calls_nothing(
    engine_settings: Settings, api: FakeAPI
) -> None:
    n = 30
    first = api_sample.scored.run(dataset=api_sample.prompts(n), params={"url": api.url})
    assert api.requests == n
    plain = f"SELECT DISTINCT attempts, cached FROM calls WHERE run_id = {first.run_id}"
    assert sql(plain).fetchall() == [(1, False)]  # plain calls: one attempt, not cached
    again = hm.rescore(first.run_id, runtime=api_sample.scored_fixed, dataset=api_sample.prompts(n))
    assert api.requests == n  # no component ran
    run = again.run
    assert (run.state, run.source_run_id, run.evaluation) == (
        "success",
        first.run_id,
        "api-rescore",
    )
    lengths = sql(
        f"SELECT DISTINCT value FROM scores WHERE run_id = {run.id} AND metric = 'length'"
    ).fetchall()
    assert sorted(v for (v,) in lengths) == [2.0, 3.0]  # the fixed eval: "p1".."p29"
    comparison = hm.compare(first.run_id, run.id)
    by_metric = {(d.component, d.metric): d for d in comparison.metrics}
    length = by_metric[("answer", "length")]
    assert (length.n, length.only_a, length.only_b) == (n, 0, 0)
    assert length.mean_b - length.mean_a == pytest.approx(-7.0)
    assert all(d.n == n and d.only_a == d.only_b == 0 for d in comparison.metrics)


def test_rescore_from_the_command_line(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str, api: FakeAPI
) -> None:
    n = 20
    dataset = ROOT / "tests" / "engine" / "_rescore.jsonl"
    dataset.write_text("".join(f'{{"id": {i}, "prompt": "p{i}"}}\n' for i in range(n)))
    env = {**env, "RAY_ADDRESS": ray_cluster}
    try:
        ran = run_cli(
            env,
            "run",
            "tests.engine.api_sample:scored",
            "--dataset",
            str(dataset),
            "--param",
            f"url={api.url}",
            "--no-progress",
        )
        assert ran.returncode == 0, ran.stderr
        (source,) = list_runs(database(), evaluation="api-rescore")
        done = run_cli(env, "rescore", str(source.id), "--version", "fixed", "--no-progress")
        assert done.returncode == 0, done.stderr
    finally:
        dataset.unlink()
    assert api.requests == n
    newest = list_runs(database(), evaluation="api-rescore")[0]
    assert (newest.source_run_id, newest.version_label, newest.state) == (
        source.id,
        "fixed",
        "success",
    )
    assert get_run(database(), newest.id).rows_count == source.rows_count
    missing = run_cli(env, "rescore", "999999", "--no-progress")
    assert missing.returncode == 1 and "no run 999999" in missing.stderr


def test_a_rate_limit_leases_thousands_of_permits_a_second(ray_cluster: str) -> None:
    from hypermetric.engine.calls import cluster_limiter

    limiter = cluster_limiter(hm.RateLimit(_name(), per_second=5000))
    limiter.acquire()  # the actor starts
    start, count = time.monotonic(), 4000
    for _ in range(count):
        limiter.acquire()
        limiter.release()
    assert count / (time.monotonic() - start) > 2000


def _alive(name: str) -> bool:
    """Whether the limit's actor answers (a stopped one's name is free again)."""
    import ray

    try:
        actor = ray.get_actor(f"limit:{name}", namespace="hypermetric")
        ray.get(actor.state.remote(), timeout=10)
    except (ValueError, ray.exceptions.RayActorError):
        return False
    return True


def _wait(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_an_idle_limits_actor_stops_itself_and_the_next_call_starts_it_again(
    ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hypermetric.engine import calls

    monkeypatch.setattr(calls, "IDLE_EXIT", 1.0)
    name = _name()
    limiter = calls.ClusterLimiter(hm.RateLimit(name, per_second=1000, concurrency=2))
    limiter.acquire()  # a slot held: not idle, however long
    time.sleep(2.5)
    assert _alive(name)
    limiter.release()
    assert _wait(lambda: not _alive(name)), "the idle actor is still there"
    # the next call starts it again, and the limit works as before
    limiter.acquire()
    limiter.release()
    assert _alive(name)


def test_a_slot_whose_process_died_does_not_keep_the_actor(
    ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hypermetric.engine import calls

    monkeypatch.setattr(calls, "IDLE_EXIT", 1.0)
    monkeypatch.setattr(calls, "MAX_HOLD", 2.0)
    name = _name()
    limiter = calls.ClusterLimiter(hm.RateLimit(name, per_second=1000, concurrency=2))
    limiter.acquire()  # and never released: its process was killed mid-call
    assert _alive(name)
    assert _wait(lambda: not _alive(name)), "a slot held past MAX_HOLD kept the actor"
