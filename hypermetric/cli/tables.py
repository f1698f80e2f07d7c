"""Rich tables of comparisons and power estimates, for ``compare`` and ``power``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from hypermetric.query.render import fmt_interval, fmt_num, fmt_p

if TYPE_CHECKING:
    from hypermetric.query.compare import Comparison, ExampleChange, MetricDelta
    from hypermetric.query.power import PowerEstimate

__all__ = ["ARROWS", "compare_table", "examples_table", "power_notes", "power_table"]

ARROWS = {True: "↑", False: "↓", None: "?"}

_VERDICTS = {"regressed": "[red]regressed[/red]", "improved": "[green]improved[/green]"}


def _verdict(m: MetricDelta, threshold: float | None, alpha: float) -> str:
    return _VERDICTS.get(m.verdict(threshold or 0.0, alpha), "")


@dataclass(frozen=True)
class _Shown:
    """The optional columns of a comparison's table, decided once for all its rows."""

    #: p adjusted across the metrics (unless the comparison's adjust is "none")
    adjusted: bool
    #: McNemar p: some metric is 0/1
    binary: bool
    #: only A/B, err: some metric has rows in one run only or errored (else the column is
    #: left out: every row paired, and the table fits a terminal)
    unpaired: bool
    #: within var A/B: some metric was scored over several epochs
    epochs: bool

    @classmethod
    def of(cls, comparison: Comparison) -> _Shown:
        metrics = comparison.metrics
        return cls(
            adjusted=comparison.adjust != "none",
            binary=any(m.binary for m in metrics),
            unpaired=any(m.only_a or m.only_b or m.errored for m in metrics),
            epochs=any(m.within_var_a is not None for m in metrics),
        )


def _compare_columns(comparison: Comparison, shown: _Shown) -> list[str]:
    level = f"{1 - comparison.alpha:.0%}"
    return [
        *("component", "metric", "n", "mean A", "mean B", "delta B-A", f"{level} CI"),
        *("p", *([f"p {comparison.adjust}"] if shown.adjusted else []), "MDE"),
        *(["McNemar p"] if shown.binary else []),
        "b/w/s",
        *(["only A/B, err"] if shown.unpaired else []),
        *(["within var A/B"] if shown.epochs else []),
        "",
    ]


def _compare_row(
    m: MetricDelta, comparison: Comparison, shown: _Shown, threshold: float | None
) -> list[str]:
    return [
        m.component or "",
        f"{m.metric} {ARROWS[m.higher_is_better]}",
        str(m.n),
        fmt_num(m.mean_a),
        fmt_num(m.mean_b),
        fmt_num(m.delta, signed=True),
        fmt_interval(m.ci_low, m.ci_high),
        fmt_p(m.p_value),
        *([fmt_p(m.p_adjusted)] if shown.adjusted else []),
        fmt_num(m.mde),
        *([fmt_p(m.mcnemar_p) if m.binary else ""] if shown.binary else []),
        "/".join("?" if v is None else str(v) for v in (m.improved, m.regressed, m.unchanged)),
        *([f"{m.only_a}/{m.only_b}, {m.errored}"] if shown.unpaired else []),
        *([f"{fmt_num(m.within_var_a)}/{fmt_num(m.within_var_b)}"] if shown.epochs else []),
        _verdict(m, threshold, comparison.alpha),
    ]


def _compare_caption(comparison: Comparison, shown: _Shown) -> str:
    c = comparison
    if c.cluster_by:
        clusters = sorted({m.clusters for m in c.metrics if m.clusters is not None})
        counts = "/".join(str(n) for n in clusters) or "0"
        ci = f"CI and p: clustered by {c.cluster_by} ({counts} clusters; CR1, t at C-1 df)"
    else:
        ci = f"CI: paired bootstrap ({c.resamples} resamples, seed {c.seed}); p: paired t-test"
    adjusted = {
        "holm": "p holm: Holm-adjusted across these metrics",
        "bh": "p bh: Benjamini-Hochberg-adjusted across these metrics",
        "none": "p not adjusted for the metrics tested together",
    }[c.adjust]
    caption = (
        f"paired by example (epochs reduced by {c.reduce}); {ci}; {adjusted}; "
        f"MDE: smallest true delta detected with {c.power:.0%} power at alpha {c.alpha:g}; "
        "a verdict needs the CI beyond 0 and the adjusted p below alpha; "
        "b/w/s: examples better/worse/same; ↑/↓: higher/lower is better"
    )
    if not shown.unpaired:
        caption += "; every row paired, none errored"
    if shown.binary:
        caption += "; McNemar: exact test of the discordant pairs of a 0/1 metric"
    if c.unknown_direction():
        caption += "; ?: neither run records the metric's direction"
    return caption


def compare_table(comparison: Comparison, threshold: float | None) -> Table:
    """One row a metric: the delta, its CI, raw and adjusted p, MDE and the verdict."""
    a, b = comparison.run_a, comparison.run_b
    table = Table(
        title=f"A: run {a.id} {a.evaluation}@{a.version_label or '-'}   "
        f"B: run {b.id} {b.evaluation}@{b.version_label or '-'}"
    )
    shown = _Shown.of(comparison)
    columns = _compare_columns(comparison, shown)
    rows = [_compare_row(m, comparison, shown, threshold) for m in comparison.metrics]
    for i, name in enumerate(columns):
        if i < 2:  # component and metric fold onto more lines when the terminal is narrow
            table.add_column(name, justify="left", overflow="fold")
            continue
        # a number is never cut: its column is as wide as its widest cell
        widest = max((len(Text.from_markup(row[i]).plain) for row in rows), default=0)
        table.add_column(name, justify="right", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*row)
    table.caption = _compare_caption(comparison, shown)
    return table


def examples_table(title: str, changes: Sequence[ExampleChange]) -> Table:
    """The examples that moved, one row each."""
    table = Table(title=title)
    for name in ("component", "metric", "example", "call", "A", "B", "delta"):
        table.add_column(name, justify="right" if name in ("A", "B", "delta") else "left")
    for c in changes:
        table.add_row(
            c.component or "",
            c.metric,
            c.example_id,
            str(c.call_index),
            fmt_num(c.value_a),
            fmt_num(c.value_b),
            fmt_num(c.delta, signed=True),
        )
    if not changes:
        table.caption = "none"
    return table


def power_table(e: PowerEstimate) -> Table:
    """The paired variance and the examples needed at each number of epochs."""
    table = Table(
        title=f"{e.evaluation} · {e.component or '-'} · {e.metric}: detect {e.delta:g} "
        f"with {e.power:.0%} power at alpha {e.alpha:g}"
    )
    clustered = e.design_effect is not None
    columns = ["epochs an example", "paired variance", "examples needed"]
    for col in columns + (["in clusters"] if clustered else []):
        table.add_column(col, justify="right")
    for plan in e.plans:
        row = [str(plan.epochs), fmt_num(plan.paired_var, 5), str(plan.examples)]
        table.add_row(*row, *([str(plan.clusters)] if clustered else []))
    return table


def power_notes(e: PowerEstimate) -> list[str]:
    """Where the variances came from, and what the suite detects today, one line each."""
    within = (
        f"within-example variance (across epochs) {fmt_num(e.within_var, 5)}"
        if e.within_var is not None
        else "one epoch an example: the within-example variance is unknown, so more epochs "
        "are not counted on"
    )
    return [
        f"from {e.runs} successful runs; between-example variance {fmt_num(e.between_var, 5)}",
        f"paired variance measured between versions {e.versions[0]} and {e.versions[1]}"
        if e.versions
        else "one version only: the paired variance is taken as twice one version's (conservative)",
        within,
        *_cluster_note(e),
        f"today: {e.examples_now} examples x {e.epochs_now} epochs detect "
        f"{fmt_num(e.mde_now)} with {e.power:.0%} power",
    ]


def _cluster_note(e: PowerEstimate) -> list[str]:
    if e.cluster_by is None:
        return []
    if e.design_effect is None or e.cluster_size is None:
        return [f"clustered by {e.cluster_by}: fewer than two clusters, so not clustered"]
    return [
        f"clustered by {e.cluster_by}: {e.clusters_now} clusters of {e.cluster_size:.1f} "
        "examples on "
        f"average; design effect {e.design_effect:.2f} (the error of a mean is "
        f"{e.design_effect**0.5:.2f}x that of independent examples)"
    ]
