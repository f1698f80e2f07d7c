"""A metric's history as an SVG chart, computed here and drawn by the template.

One chart per (component, metric). Runs are placed evenly, oldest on the left (their
logical dates are irregular: manual runs seconds apart, nights a day apart), so every run
gets room for its point. Each run has its mean (a point), its 95% CI (a whisker) and the
CI band through all of them; a dashed line marks where the version label changes, and a
triangle the moves :func:`hypermetric.query.history.history` flags, green when the move is
an improvement in the metric's direction, red when a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypermetric.query.history import HistoryPoint

__all__ = ["Chart", "ChartPoint", "VersionMark", "chart_for", "charts_for"]

WIDTH, HEIGHT = 580, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


@dataclass(frozen=True)
class ChartPoint:
    """One run on the chart: its place, its whisker and what the tooltip says."""

    run_id: int
    x: float
    y: float
    ci_top: float | None
    ci_bottom: float | None
    shift: str
    good: bool | None
    tip: str


@dataclass(frozen=True)
class VersionMark:
    """Where the version label changes: a vertical line before the first run of it."""

    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything the template draws for one (component, metric)."""

    component: str | None
    metric: str
    higher_is_better: bool | None
    points: tuple[ChartPoint, ...]
    band: str
    line: str
    versions: tuple[VersionMark, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def shifts(self) -> int:
        """How many runs moved."""
        return sum(1 for p in self.points if p.shift)


def _y_range(points: Sequence[HistoryPoint]) -> tuple[float, float]:
    values = [v for p in points for v in (p.mean, p.ci_low, p.ci_high) if v is not None]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.06
    return low - pad, high + pad


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _tip(p: HistoryPoint) -> str:
    ci = (
        f"[{_fmt(p.ci_low)}, {_fmt(p.ci_high)}]"
        if p.ci_low is not None and p.ci_high is not None
        else "n/a"
    )
    expected = (
        f"; expected [{_fmt(p.expected_low)}, {_fmt(p.expected_high)}]"
        if p.expected_low is not None and p.expected_high is not None
        else ""
    )
    moved = f"; moved {p.shift}" if p.shift else ""
    mean = _fmt(p.mean) if p.mean is not None else "n/a"
    return (
        f"run {p.run_id} · {p.logical_date:%Y-%m-%d %H:%M} UTC · {p.version or '-'} · "
        f"n={p.n} · mean {mean} · 95% CI {ci}{expected}{moved}"
    )


def _band(
    xs: Sequence[float], tops: Sequence[float | None], bottoms: Sequence[float | None]
) -> str:
    """An SVG path: one closed shape per stretch of consecutive runs that have a CI."""
    paths: list[str] = []
    run: list[int] = []
    for i in [*range(len(xs)), -1]:
        if i >= 0 and tops[i] is not None:
            run.append(i)
            continue
        if run:
            upper = [f"{xs[j]:.1f},{tops[j]:.1f}" for j in run]
            lower = [f"{xs[j]:.1f},{bottoms[j]:.1f}" for j in reversed(run)]
            paths.append("M" + " L".join(upper + lower) + " Z")
        run = []
    return " ".join(paths)


def chart_for(points: Sequence[HistoryPoint]) -> Chart:
    """The chart of one series of history points (one component and metric, oldest first)."""
    low, high = _y_range(points)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(1, len(points) - 1) if len(points) > 1 else 0.0

    def x_of(i: int) -> float:
        return LEFT + (i * step if len(points) > 1 else inner_w / 2)

    def y_of(v: float) -> float:
        return TOP + inner_h * (high - v) / (high - low)

    up = points[-1].higher_is_better
    drawn: list[ChartPoint] = []
    marks: list[VersionMark] = []
    for i, p in enumerate(points):
        if i and p.version != points[i - 1].version:
            marks.append(VersionMark(x_of(i) - step / 2, p.version or "-"))
        good = None if not p.shift or up is None else (p.shift == "up") == up
        drawn.append(
            ChartPoint(
                run_id=p.run_id,
                x=x_of(i),
                y=y_of(p.mean if p.mean is not None else low),
                ci_top=None if p.ci_high is None else y_of(p.ci_high),
                ci_bottom=None if p.ci_low is None else y_of(p.ci_low),
                shift=p.shift,
                good=good,
                tip=_tip(p),
            )
        )
    xs = [d.x for d in drawn]
    line = "M" + " L".join(f"{d.x:.1f},{d.y:.1f}" for d in drawn)
    y_ticks = tuple((y_of(v), _fmt(v)) for v in (low + (high - low) * k / 4 for k in range(5)))
    every = max(1, len(points) // 6)
    x_ticks = tuple(
        (x_of(i), f"{p.logical_date:%m-%d}") for i, p in enumerate(points) if i % every == 0
    )
    return Chart(
        component=points[0].component,
        metric=points[0].metric,
        higher_is_better=up,
        points=tuple(drawn),
        band=_band(xs, [d.ci_top for d in drawn], [d.ci_bottom for d in drawn]),
        line=line,
        versions=tuple(marks),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
    )


def charts_for(points: Sequence[HistoryPoint]) -> list[Chart]:
    """One chart per (component, metric) of ``history()``'s points, in its order."""
    series: dict[tuple[str | None, str], list[HistoryPoint]] = {}
    for point in points:
        series.setdefault((point.component, point.metric), []).append(point)
    return [chart_for(s) for s in series.values() if any(p.mean is not None for p in s)]
