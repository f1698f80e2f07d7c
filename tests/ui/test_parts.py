"""The web view's parts without a server: diffs, masking in bulk, chart shapes, the token."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from hypermetric.masking import masked
from hypermetric.query.history import HistoryPoint
from hypermetric.ui.charts import chart_for
from hypermetric.ui.comparison import Segment, diff_words, shown_value
from hypermetric.ui.jsonable import masked_all
from hypermetric.ui.writes import check_token


def test_diff_words_marks_what_each_side_lacks() -> None:
    left, right = diff_words("the capital is Rome", "the capital is Paris, France")
    assert left == (Segment("the capital is ", False), Segment("Rome", True))
    assert right == (Segment("the capital is ", False), Segment("Paris, France", True))
    assert "".join(s.text for s in right) == "the capital is Paris, France"
    same = diff_words("same", "same")
    assert same == ((Segment("same", False),), (Segment("same", False),))


def test_shown_value_unquotes_strings_and_keeps_other_json() -> None:
    assert shown_value('"Paris"') == "Paris"
    assert shown_value('["d1", "d2"]') == '["d1", "d2"]'
    assert shown_value("not json") == "not json" and shown_value(None) == ""


def test_masked_all_masks_each_text_as_masked_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abcdefghijklmnop")
    texts = [
        "key sk-abcdefghijklmnop in a prompt",
        None,
        "postgresql+psycopg://user:pw@db/hm",
        "",
        "?token=abc&x=1",
        "nothing here",
        "multi\nline password=hunter22\nend",
    ]
    assert masked_all(texts) == [masked(t) if t else t for t in texts]
    assert "sk-abcdefghijklmnop" not in str(masked_all(texts))


def _point(i: int, mean: float, version: str, shift: str = "") -> HistoryPoint:
    return HistoryPoint(
        run_id=i,
        logical_date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i),
        version=version,
        component="c",
        metric="m",
        n=10,
        mean=mean,
        ci_low=None if i == 2 else mean - 0.1,
        ci_high=None if i == 2 else mean + 0.1,
        expected_low=None,
        expected_high=None,
        baseline_runs=0,
        shift=shift,
        higher_is_better=True,
    )


def test_a_chart_places_runs_evenly_and_breaks_its_band_where_a_run_has_no_ci() -> None:
    chart = chart_for(
        [
            _point(0, 0.5, "v1"),
            _point(1, 0.6, "v1"),
            _point(2, 0.55, "v1"),
            _point(3, 0.5, "v2"),
            _point(4, 0.2, "v2", shift="down"),
        ]
    )
    xs = [p.x for p in chart.points]
    assert xs == sorted(xs) and len({round(b - a, 6) for a, b in itertools.pairwise(xs)}) == 1
    assert chart.band.count("M") == 2 and chart.band.count("Z") == 2  # runs 0-1, then 3-4
    assert [m.label for m in chart.versions] == ["v2"] and xs[2] < chart.versions[0].x < xs[3]
    low, high = chart.points[4], chart.points[1]
    assert low.y > high.y  # SVG y grows downwards: a lower mean sits lower
    assert low.shift == "down" and low.good is False and chart.shifts == 1
    for p in chart.points:
        if p.ci_top is not None and p.ci_bottom is not None:
            assert p.ci_top < p.y < p.ci_bottom
    assert "run 4" in low.tip and "moved down" in low.tip


@pytest.mark.parametrize(
    ("server", "header", "status"),
    [
        (None, "Bearer x", 403),
        ("", None, 403),
        ("tok-123", None, 401),
        ("tok-123", "Bearer tok-12", 403),
        ("tok-123", "Basic tok-123", 403),
        ("tok-123", "tok-123", 403),
    ],
)
def test_the_token_check_refuses(server: str | None, header: str | None, status: int) -> None:
    refusal = check_token(server, header)
    assert refusal is not None and refusal.status == status


def test_the_token_check_lets_the_right_bearer_write() -> None:
    assert check_token("tok-123", "Bearer tok-123") is None
    assert check_token("tok-123", "bearer  tok-123 ") is None
