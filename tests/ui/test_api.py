"""Every route of the web view through an HTTP client, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from starlette.testclient import TestClient

from hypermetric.catalog.evaluations import get_evaluation, upsert_evaluation
from hypermetric.catalog.runs import list_runs
from hypermetric.config import Settings
from hypermetric.errors import QueryError
from hypermetric.query.history import history
from hypermetric.ui.app import create_app
from hypermetric.ui.jsonable import jsonable
from tests.query.conftest import Runs
from tests.ui.conftest import make_run

SECRET = "sk-live-0123456789abcdef"


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present)


def test_the_grid_shows_each_run_with_its_state_and_headline_mean(
    runs: Runs, client: TestClient
) -> None:
    a = make_run(runs, "qa", "v1", [1.0, 0.0, 1.0, 1.0])
    b = make_run(runs, "qa", "v2", [0.0, 0.0, 1.0, 0.0])
    c = make_run(runs, "other", "v1", [1.0, 1.0], state="failed")
    grid = client.get("/api/grid").json()
    rows = {r["evaluation"]: r for r in grid["rows"]}
    assert set(rows) == {"qa", "other"}
    assert rows["qa"]["metric"] == "exact_match" and rows["qa"]["higher_is_better"] is True
    cells = {c["run_id"]: c for r in grid["rows"] for c in r["cells"] if c}
    assert set(cells) == {a, b, c}
    assert cells[a]["value"] == pytest.approx(0.75) and cells[b]["value"] == pytest.approx(0.25)
    assert cells[a]["shade"] == 1.0 and cells[b]["shade"] == -1.0  # best and worst of the row
    assert cells[c]["state"] == "failed"
    # each run in its logical date's column
    assert len(grid["dates"]) == 3
    html = client.get("/").text
    for run_id in (a, b, c):
        assert f'href="/runs/{run_id}"' in html
    assert "0.750" in html and "0.250" in html


def test_the_grid_filters_by_evaluation_state_version_and_metric(
    runs: Runs, client: TestClient
) -> None:
    a = make_run(runs, "qa", "v1", [1.0, 0.0])
    b = make_run(runs, "qa", "v2", [0.0, 0.0], state="failed")
    c = make_run(runs, "other", "v1", [1.0, 1.0])

    def shown(query: str) -> set[int]:
        grid = client.get(f"/api/grid?{query}").json()
        return {c["run_id"] for r in grid["rows"] for c in r["cells"] if c}

    assert shown("evaluation=qa") == {a, b}
    assert shown("state=failed") == {b}
    assert shown("version=v1") == {a, c}
    costs = client.get("/api/grid?metric=words").json()
    assert {r["metric"] for r in costs["rows"]} == {"words"}
    assert {r["higher_is_better"] for r in costs["rows"]} == {False}
    assert len(client.get("/api/grid?columns=1").json()["dates"]) == 1


def test_the_grid_refreshes_itself_only_while_runs_move(runs: Runs, client: TestClient) -> None:
    make_run(runs, "qa", "v1", [1.0])
    assert client.get("/api/grid").json()["live"] is False
    assert 'data-live="0"' in client.get("/partials/grid").text
    runs.start("qa", version="v2")  # running, nothing committed yet
    assert client.get("/api/grid").json()["live"] is True
    partial = client.get("/partials/grid").text
    assert 'data-live="1"' in partial and "<html" not in partial


def test_grid_input_errors_are_one_line(runs: Runs, client: TestClient) -> None:
    bad = client.get("/api/grid?state=sleeping")
    assert bad.status_code == 400 and "state must be one of" in bad.json()["error"]
    missing = client.get("/?evaluation=nope")
    assert missing.status_code == 404 and "no evaluation &#39;nope&#39;" in missing.text
    assert client.get("/api/grid?columns=zero").status_code == 400


def test_an_evaluation_page_draws_every_run_with_its_band_and_marks(
    runs: Runs, client: TestClient, settings: Settings
) -> None:
    ids = [make_run(runs, "qa", "v1", [0.5 + 0.01 * (i % 3)] * 10 + [0.4, 0.6]) for i in range(6)]
    ids.append(make_run(runs, "qa", "v2", [0.1] * 10 + [0.0, 0.2]))  # a move, and a new version
    points = history("qa", metric="exact_match", settings=settings)
    assert [p.run_id for p in points] == ids and points[-1].shift == "down"
    api = client.get("/api/evaluations/qa?metric=exact_match").json()
    assert [p["run_id"] for p in api["points"]] == ids
    assert api["points"][-1]["shift"] == "down"
    html = client.get("/evaluations/qa?metric=exact_match").text
    assert [int(x) for x in re.findall(r'<circle class="point[^"]*" data-run="(\d+)"', html)] == ids
    assert len(re.findall(r'<line class="whisker" data-run=', html)) == len(ids)
    assert re.search(r'<path class="band" d="M[\d.]+,[\d.]+ L', html)
    assert html.count('class="version-mark"') == 1 and ">v2</text>" in html
    assert 'class="shift bad"' in html  # exact_match went down: a regression, red
    for run_id in ids:
        assert f'href="/runs/{run_id}"' in html
    every = client.get("/evaluations/qa").text
    assert every.count('<section class="chart"') == 2  # exact_match and words


def test_the_history_page_has_exactly_what_hypermetric_history_computes(
    runs: Runs, client: TestClient, settings: Settings
) -> None:
    for i in range(9):
        make_run(runs, "qa", "v1" if i < 5 else "v2", [0.4 + 0.05 * (i % 4), 0.6, 1.0, 0.0])
    client.get("/api/evaluations/qa")  # the cache filled
    make_run(runs, "qa", "v2", [0.0, 0.0, 0.1, 0.0])  # one more night: read alone
    for query in ("", "?metric=words", "?window=3"):
        window = 3 if "window" in query else 7
        metric = "words" if "words" in query else None
        expected = jsonable(history("qa", metric=metric, window=window, settings=settings))
        assert client.get(f"/api/evaluations/qa{query}").json()["points"] == expected, query


def test_a_run_is_read_again_when_its_rows_change(runs: Runs, client: TestClient) -> None:
    from tests.query.conftest import ids, scores_table

    run_id = runs.start("qa", version="v1")
    runs.commit(run_id, 0, {"scores": scores_table(run_id, ids(2), [1.0, 1.0])})

    def value() -> float:
        (row,) = client.get("/api/grid").json()["rows"]
        return float(row["cells"][0]["value"])

    assert value() == 1.0
    runs.commit(run_id, 1, {"scores": scores_table(run_id, ids(2, "other"), [0.0, 0.0])})
    assert value() == 0.5
    runs.finish(run_id)
    assert value() == 0.5


def test_warming_reads_every_finished_run_once(
    runs: Runs, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hypermetric.ui.cache import RunStats

    a = make_run(runs, "qa", "v1", [1.0, 0.0, 1.0])
    b = make_run(runs, "qa", "v2", [0.0, 0.0], state="failed")
    running = runs.start("qa", version="v3")
    stats = RunStats(settings)
    assert stats.warm() == 2

    def no_read(run_ids: list[int]) -> dict[int, object]:
        raise AssertionError(f"runs {run_ids} read again")

    monkeypatch.setattr(stats, "_read", no_read)
    found = stats.of([r for r in list_runs(runs.db) if r.id != running])
    assert found[a][("generate", "exact_match")].mean == pytest.approx(2 / 3)
    assert found[b][("generate", "exact_match")].n == 2
    with pytest.raises(AssertionError, match="read again"):
        stats.of(list_runs(runs.db))  # the running run is never kept


def test_an_unknown_evaluation_is_404_and_a_bad_window_400(client: TestClient) -> None:
    assert client.get("/evaluations/nope").status_code == 404
    assert client.get("/api/evaluations/nope").json()["error"].startswith("no evaluation")


def test_a_run_page_shows_summary_errors_and_pages_of_examples(
    runs: Runs, client: TestClient
) -> None:
    values = [1.0, None, 0.0, None, 1.0]
    errors = [None, "TimeoutError: model took 30s", None, "TimeoutError: model took 30s", None]
    run_id = make_run(runs, "qa", "v1", values, errors=errors, params={"api_token": SECRET})
    view = client.get(f"/api/runs/{run_id}?per_page=2&page=2").json()
    summary = {s["metric"]: s for s in view["summary"]}
    assert summary["exact_match"]["n"] == 3 and summary["exact_match"]["errors"] == 2
    assert summary["exact_match"]["mean"] == pytest.approx(_mean(values))
    assert view["errors"] == [
        {
            "kind": "score",
            "component": "generate",
            "metric": "exact_match",
            "error": "TimeoutError: model took 30s",
            "count": 2,
            "example_id": "ex01",
        }
    ]
    assert view["examples_total"] == 5 and view["pages"] == 3
    assert [e["example_id"] for e in view["examples"]] == ["ex02", "ex03"]
    first = view["examples"][0]
    assert first["calls"][0]["output"] == '"answer 0.0"' and first["calls"][0]["latency_ms"] == 2.5
    assert {s["metric"] for s in first["scores"]} == {"exact_match", "words"}
    only_errors = client.get(f"/api/runs/{run_id}?errors=1").json()
    assert [e["example_id"] for e in only_errors["examples"]] == ["ex01", "ex03"]
    html = client.get(f"/runs/{run_id}").text
    assert "TimeoutError: model took 30s" in html and "api_token" in html
    assert 'rel="next"' in client.get(f"/runs/{run_id}?per_page=2").text


def test_secrets_in_params_are_masked_everywhere(
    runs: Runs, client: TestClient, db: object
) -> None:
    run_id = make_run(runs, "qa", "v1", [1.0], params={"api_token": SECRET})
    upsert_evaluation(runs.db, "qa", params={"password": SECRET})
    other = make_run(runs, "qa", "v2", [0.0])
    for url in (
        f"/runs/{run_id}",
        f"/api/runs/{run_id}",
        "/api/evaluations/qa",
        "/evaluations/qa",
        f"/api/compare?a={run_id}&b={other}",
        f"/compare?a={run_id}&b={other}",
    ):
        body = client.get(url).text
        assert SECRET not in body, url
    assert "***" in client.get(f"/api/runs/{run_id}").text


def test_an_unknown_run_is_404_and_a_bad_page_400(client: TestClient) -> None:
    missing = client.get("/runs/12345")
    assert missing.status_code == 404 and "no run 12345" in missing.text
    assert client.get("/api/runs/12345").status_code == 404
    bad = client.get("/api/runs/1?page=0")
    assert bad.status_code == 400 and "page must be a whole number" in bad.json()["error"]
    assert client.get("/runs/abc").status_code == 404


def test_compare_shows_the_statistics_and_the_regressed_outputs_side_by_side(
    runs: Runs, client: TestClient
) -> None:
    a = make_run(runs, "qa", "v1", [1.0, 1.0, 1.0, 0.0], outputs=["Paris", "Rome", "Oslo", "x"])
    b = make_run(
        runs, "qa", "v2", [1.0, 0.0, 0.0, 0.0], outputs=["Paris", "Rome city", "Bergen", "x"]
    )
    view = client.get("/api/compare?a=qa@v1&b=qa@v2&metric=exact_match").json()
    (metric,) = view["comparison"]["metrics"]
    assert metric["mean_a"] == pytest.approx(0.75) and metric["mean_b"] == pytest.approx(0.25)
    assert metric["delta"] == pytest.approx(-0.5) and metric["regressed"] == 2
    assert [r["change"]["example_id"] for r in view["regressions"]] == ["ex01", "ex02"]
    first = view["regressions"][0]
    assert first["output_a"] == [{"text": "Rome", "changed": False}]
    assert first["output_b"] == [
        {"text": "Rome", "changed": False},
        {"text": " city", "changed": True},
    ]
    html = client.get(f"/compare?a={a}&b={b}").text
    assert "<ins> city</ins>" in html and "<del>Oslo</del>" in html and "<ins>Bergen</ins>" in html
    assert 'class="verdict-' in html and 'data-metric="words"' in html
    assert "paired bootstrap" in html


def test_compare_input_errors_are_one_line(runs: Runs, client: TestClient) -> None:
    make_run(runs, "qa", "v1", [1.0])
    assert "name both runs" in client.get("/api/compare?a=1").json()["error"]
    missing = client.get("/api/compare?a=qa@v1&b=qa@v9")
    assert missing.status_code == 404 and "no successful run" in missing.json()["error"]
    assert client.get("/compare").status_code == 200  # the empty form


def test_sql_answers_a_count_and_downloads_csv(runs: Runs, client: TestClient) -> None:
    make_run(runs, "qa", "v1", [1.0, 0.0, 1.0])
    make_run(runs, "qa", "v2", [0.0, 0.0])
    api = client.get("/api/sql", params={"q": "SELECT count(*) AS n FROM scores"}).json()
    assert api == {"columns": ["n"], "rows": [[10]], "more": False}
    html = client.get("/sql", params={"q": "SELECT count(*) AS n FROM scores"}).text
    assert re.search(r"<td>10</td>", html) and "Download CSV" in html
    query = "SELECT run_id, example_id, value FROM scores WHERE metric = 'exact_match' ORDER BY ALL"
    response = client.get("/api/sql.csv", params={"q": query})
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["run_id", "example_id", "value"] and len(rows) == 6
    more = client.get("/api/sql", params={"q": "SELECT * FROM range(20)", "max_rows": 5}).json()
    assert len(more["rows"]) == 5 and more["more"] is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("COPY scores TO 'out.csv'", "COPY statements are refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("ATTACH '/tmp/x.db' AS x", "Permission Error"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("   ", "the query is empty"),
    ],
)
def test_sql_refuses_what_hypermetric_sql_refuses(
    client: TestClient, query: str, expected: str
) -> None:
    api = client.get("/api/sql", params={"q": query})
    assert api.status_code == 400 and expected in api.json()["error"]
    csv_response = client.get("/api/sql.csv", params={"q": query})
    assert csv_response.status_code == 400 and expected in csv_response.json()["error"]
    if query.strip():
        page = client.get("/sql", params={"q": query})
        assert page.status_code == 400 and 'id="sql-error"' in page.text


def test_an_error_that_quotes_a_credential_shows_it_masked(client: TestClient) -> None:
    query = 'SELECT "postgresql://hm:hunter2222@db/hm" FROM runs'
    api = client.get("/api/sql", params={"q": query})
    assert api.status_code == 400 and "not found" in api.json()["error"]
    assert "hunter2222" not in api.text and "***" in api.text
    page = client.get("/sql", params={"q": query}).text  # the query itself is the user's own
    (line,) = re.findall(r'<p class="error-line" id="sql-error">(.*?)</p>', page)
    assert "not found" in line and "hunter2222" not in line and "***" in line


def test_a_query_past_its_time_is_stopped_with_one_line(settings: Settings) -> None:
    from hypermetric.ui.console import run_sql

    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran past 0.3 s and was stopped; narrow it"):
        run_sql(settings, "SELECT count(*) FROM range(100000000000) a", timeout=0.3)
    assert time.monotonic() - started < 10
    assert run_sql(settings, "SELECT 1 AS one", timeout=5).rows == ((1,),)


def test_writes_need_the_token_in_a_header(runs: Runs, settings: Settings) -> None:
    make_run(runs, "qa", "v1", [1.0])
    read_only = TestClient(create_app(settings))
    refused = read_only.post("/api/evaluations/qa/pause")
    assert refused.status_code == 403 and "writes are off" in refused.json()["error"]
    guarded = TestClient(create_app(settings, token="s3cret-token"))
    assert guarded.post("/api/evaluations/qa/pause").status_code == 401
    wrong = guarded.post("/api/evaluations/qa/pause", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    # a cookie is what a browser would send by itself to another site's server: never enough
    guarded.cookies.set("token", "s3cret-token")
    assert guarded.post("/api/evaluations/qa/pause").status_code == 401
    assert get_evaluation(runs.db, "qa").paused is False
    ok = guarded.post("/api/evaluations/qa/pause", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json() == {"evaluation": "qa", "paused": True}
    assert get_evaluation(runs.db, "qa").paused is True
    assert guarded.get("/api/evaluations/qa/pause").status_code == 405  # never a GET


def test_a_write_with_the_token_triggers_and_backfills(runs: Runs, settings: Settings) -> None:
    upsert_evaluation(
        runs.db, "nightly", import_path="hypermetric.examples.qa:qa_nightly", schedule="0 2 * * *"
    )
    client = TestClient(create_app(settings, token="s3cret-token"))
    auth = {"Authorization": "Bearer s3cret-token"}
    done = client.post(
        "/api/evaluations/nightly/trigger", headers=auth, json={"params": {"top_k": 3}}
    )
    assert done.status_code == 200, done.text
    (run,) = list_runs(runs.db, evaluation="nightly")
    assert done.json()["run_id"] == run.id and run.state == "queued"
    assert run.params == {"top_k": 3}
    backfill = client.post(
        "/api/evaluations/nightly/backfill",
        headers=auth,
        json={"start": "2026-01-01", "end": "2026-01-03"},
    )
    assert backfill.status_code == 200, backfill.text
    assert len(backfill.json()["run_ids"]) == 3
    bad = client.post("/api/evaluations/nightly/backfill", headers=auth, json={"start": "x"})
    assert bad.status_code == 400 and "'end' is missing" in bad.json()["error"]
    unknown = client.post("/api/evaluations/nope/trigger", headers=auth)
    assert unknown.status_code == 404
    not_json = client.post("/api/evaluations/nightly/trigger", headers=auth, content=b"{x")
    assert not_json.status_code == 400
    assert client.post("/api/evaluations/nightly/delete", headers=auth).status_code == 404


def test_every_response_says_its_server_time_and_forbids_framing(client: TestClient) -> None:
    response = client.get("/api/grid")
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])
    assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    static = client.get("/static/app.js")
    assert static.status_code == 200 and "Authorization" in static.text
    # no path from a URL to a file outside the package's static folder
    for escape in ("/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/%2fetc%2fpasswd"):
        response = client.get(escape)
        assert response.status_code == 404 and "create_app" not in response.text, escape


def test_a_loopback_server_answers_only_loopback_host_names(settings: Settings) -> None:
    from hypermetric.ui.server import allowed_hosts_for

    client = TestClient(create_app(settings, allowed_hosts=allowed_hosts_for("127.0.0.1")))
    assert client.get("/api/grid", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/api/grid", headers={"Host": "evil.example"}).status_code == 400
    assert allowed_hosts_for("0.0.0.0") is None
