"""The web view in real headless Chromium (Debian's package, driven by Playwright), over
the quickstart's runs.

Skipped, with the reason, where Playwright or a ``chromium`` executable is missing
(`.ci/run` installs Debian's package; Playwright's own browser download does not work
here). ``HYPERMETRIC_UI_SCREENSHOT=docs/ui.png`` also writes the screenshot the README
shows.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hypermetric.catalog.db import database, dispose
from hypermetric.catalog.runs import get_run, list_runs
from hypermetric.cli import cli
from hypermetric.config import Settings, load_settings, reset_settings
from hypermetric.query.compare import compare
from hypermetric.query.connection import sql
from hypermetric.ui.app import create_app
from hypermetric.ui.server import allowed_hosts_for

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = playwright_api.expect
pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOKEN = "browser-test-token"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, or a skip that says how to get it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(
            "no chromium executable: `apt-get install -y chromium` (Debian's package; "
            "Playwright's own browser download does not work here)"
        )
    return path


@pytest.fixture(scope="module")
def quickstart(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A home the quickstart filled (SQLite, the session's Ray cluster)."""
    home = tmp_path_factory.mktemp("ui-quickstart") / "home"
    current = reset_settings(load_settings(environ={}, home=str(home)))
    try:
        result = CliRunner().invoke(cli, ["quickstart"])
        assert result.exit_code == 0, result.output
        # the quickstart ends by naming the web view to try next
        last = [line for line in result.output.splitlines() if line.strip()][-1]
        assert "hypermetric ui" in last, last
        yield current
    finally:
        dispose(current.db_url)
        reset_settings(load_settings(environ={}, home=str(home.parent / "unused")))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(quickstart: Settings) -> Iterator[str]:
    """The web view over the quickstart's home, served by uvicorn in a thread, with a token."""
    import uvicorn

    app = create_app(quickstart, token=TOKEN, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the web view did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """A headless Chromium."""
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh page whose relative URLs go to the server; JavaScript errors fail the test."""
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, errors


def test_the_grid_shows_the_quickstarts_runs(page: Any, quickstart: Settings) -> None:
    page.goto("/")
    runs = list_runs(database(quickstart), limit=None)
    assert len(runs) >= 5  # two versions and the backfilled nights
    for run in runs:
        cell = page.locator(f'a[data-run="{run.id}"]')
        assert cell.is_visible(), f"run {run.id} is not in the grid"
        assert run.state in cell.inner_text().lower()
    rows = page.locator("table.grid tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.evaluation)")) == [
        "demo-qa",
        "demo-qa-nightly",
    ]
    page.select_option("select[name=evaluation]", "demo-qa")
    page.click("form.filters button")
    page.wait_for_url("**/?evaluation=demo-qa**")
    assert page.locator("table.grid tbody tr").count() == 1


def test_the_grid_refreshes_itself_while_a_run_goes_on(page: Any, quickstart: Settings) -> None:
    from tests.query.conftest import Runs, ids, scores_table

    db = database(quickstart)
    runs = Runs(db, quickstart)
    run_id = runs.start("demo-qa", version="v3", logical_date=datetime.now(UTC))
    try:
        page.goto("/?evaluation=demo-qa")
        cell = page.locator(f'a[data-run="{run_id}"]')
        expect(cell).to_contain_text("running")
        expect(page.locator("#grid")).to_have_attribute("data-live", "1")
        table = scores_table(
            run_id,
            ids(4),
            [1.0, 1.0, 0.0, 1.0],
            evaluation="demo-qa",
            version="v3",
            metric="exact_match",
            component="answer",
        )
        runs.commit(run_id, 0, {"scores": table})
        runs.finish(run_id)
        # no reload: the page fetches the grid again while a run is not finished
        expect(cell).to_contain_text("success", timeout=15_000)
        expect(cell).to_contain_text("0.750")
        expect(page.locator("#grid")).to_have_attribute("data-live", "0")
    finally:
        if not get_run(db, run_id).finished:
            runs.finish(run_id)


def test_the_history_chart_draws_every_runs_point_with_its_band(
    page: Any, quickstart: Settings
) -> None:
    nightly = [
        r.id for r in list_runs(database(quickstart), evaluation="demo-qa-nightly", state="success")
    ]
    page.goto("/evaluations/demo-qa-nightly")
    chart = page.locator('section.chart[data-metric="exact_match"]')
    drawn = chart.locator("circle.point").evaluate_all(
        """points => points.map(p => {
            const box = p.getBBox();
            const whisker = p.parentNode.querySelector('line.whisker');
            const w = whisker.getBBox();
            return {run: Number(p.dataset.run), cy: box.y + box.height / 2, w: w.height,
                    top: w.y, bottom: w.y + w.height, shown: box.width > 0};
        })"""
    )
    assert sorted(d["run"] for d in drawn) == sorted(nightly)
    for point in drawn:  # each point sits inside its own 95% CI whisker, and is drawn
        assert point["shown"] and point["w"] > 0 and point["top"] <= point["cy"] <= point["bottom"]
    band = chart.locator("path.band").evaluate(
        "b => { const r = b.getBBox(); return [r.width, r.height]; }"
    )
    assert band[0] > 0 and band[1] > 0


def test_hovering_a_point_names_its_run_and_clicking_opens_it(page: Any) -> None:
    page.goto("/evaluations/demo-qa-nightly")
    point = page.locator('section.chart[data-metric="exact_match"] circle.point').first
    run_id = point.get_attribute("data-run")
    point.hover()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible() and f"run {run_id}" in tooltip.inner_text()
    point.click()
    page.wait_for_url(f"**/runs/{run_id}")
    assert page.locator("h1").inner_text().startswith(f"Run {run_id}")
    assert page.locator("table.summary tbody tr").count() >= 7  # the demo's metrics
    assert page.locator("table.examples tr.example").count() > 0


def test_the_compare_page_shows_the_regressions_of_the_two_versions(
    page: Any, quickstart: Settings
) -> None:
    expected = compare("demo-qa@v1", "demo-qa@v2", metric="exact_match", settings=quickstart)
    assert expected.regressions, "the quickstart's versions should differ"
    page.goto("/compare?a=demo-qa@v1&b=demo-qa@v2")
    verdicts = page.locator("#metrics tbody tr").evaluate_all(
        "rows => Object.fromEntries(rows.map(r => [r.dataset.metric, r.className]))"
    )
    assert verdicts["context_tokens"] == "verdict-regressed"  # v2 reads more: a cost
    page.click("#by-metric a:text-matches('^exact_match')")
    page.wait_for_url("**metric=exact_match**")
    shown = page.locator("#regressions tr.regression").evaluate_all(
        "rows => rows.map(r => r.dataset.example)"
    )
    assert shown == [c.example_id for c in expected.regressions]
    first = page.locator("#regressions tr.regression").first
    assert first.locator("td.side-a").inner_text() != first.locator("td.side-b").inner_text()
    assert first.locator("del, ins").count() > 0  # the difference is highlighted


def test_the_sql_page_answers_a_count_and_refuses_copy(page: Any, quickstart: Settings) -> None:
    ((count,),) = sql("SELECT count(*) FROM scores", settings=quickstart).fetchall()
    page.goto("/sql")
    page.fill("#q", "SELECT count(*) AS n FROM scores")
    page.click("#run-sql")
    page.wait_for_selector("#sql-result")
    assert page.locator("#sql-result tbody td").inner_text() == str(count)
    assert page.locator("#csv").get_attribute("href").startswith("/api/sql.csv?q=")
    page.fill("#q", "COPY scores TO 'stolen.csv'")
    page.click("#run-sql")
    page.wait_for_selector("#sql-error")
    assert "COPY statements are refused" in page.locator("#sql-error").inner_text()
    assert not Path("stolen.csv").exists()


def test_a_write_without_the_token_is_refused(page: Any, quickstart: Settings) -> None:
    db = database(quickstart)
    before = len(list_runs(db, evaluation="demo-qa-nightly", limit=None))
    page.goto("/evaluations/demo-qa-nightly")
    page.click("button[data-action=trigger]")
    result = page.locator("#write-result")
    expect(result).to_have_text(re.compile(r"^401: this write needs the token"))
    page.fill("#token", "not-the-token")
    page.click("button[data-action=trigger]")
    expect(result).to_have_text(re.compile(r"^403: wrong token"))
    assert len(list_runs(db, evaluation="demo-qa-nightly", limit=None)) == before
    page.fill("#token", TOKEN)
    page.click("button[data-action=pause]")
    expect(result).to_contain_text("done")
    from hypermetric.catalog.evaluations import get_evaluation

    assert get_evaluation(db, "demo-qa-nightly").paused is True
    page.reload()  # the button now unpauses
    page.click("button[data-action=unpause]")
    expect(result).to_contain_text("done")
    assert get_evaluation(db, "demo-qa-nightly").paused is False


def test_a_screenshot_of_the_history_is_not_blank(page: Any, tmp_path: Path) -> None:
    from PIL import Image

    page.goto("/evaluations/demo-qa-nightly")
    path = tmp_path / "ui.png"
    page.screenshot(path=str(path))
    image = Image.open(path).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, lines, a band: not one flat colour
    most = max(c for c, _ in colours) / (image.width * image.height)
    assert most < 0.9, f"{most:.0%} of the screenshot is one colour"
    target = os.environ.get("HYPERMETRIC_UI_SCREENSHOT")
    if target:
        shutil.copyfile(path, ROOT / target)
